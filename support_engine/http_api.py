"""The engine's read-only HTTP API and ``/metrics``, served by uvicorn on a thread of the engine process.

Nothing here touches the engine core. Stored records (cases, work orders, alerts, SLA breaches,
devices heard from by events) come from the engine's database, SQLite or PostgreSQL, through a
read-only connection per request (:class:`~support_engine.database.ReadOnly`; SQLite's WAL lets
readers run beside the engine's writer); live figures (twins, open cases, counters, campaigns)
come from the :class:`~support_engine.metrics.LiveSnapshot` the service publishes after each
commit. The server thread installs no signal handlers (uvicorn only does so on the main thread),
so SIGTERM still reaches the engine, which stops the server on its way out.

With a token, every route but the probes (:data:`OPEN_PATHS`) answers 401 unless the request
carries ``Authorization: Bearer TOKEN``.
"""

from __future__ import annotations

import logging
import math
import secrets
import socket
import threading
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Annotated, Any, Literal

import msgspec
import uvicorn
from fastapi import FastAPI, HTTPException, Query, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST
from pydantic import BaseModel, ConfigDict

from contracts.messages import DeviceRecord
from support_engine import database
from support_engine.errors import StorageError
from support_engine.metrics import EngineMetrics

__all__ = ["OPEN_PATHS", "CaseState", "HttpApi", "WorkOrderState", "create_app"]

log = logging.getLogger("sot.engine")

CaseState = Literal["open", "in_progress", "resolved", "closed"]
WorkOrderState = Literal["created", "accepted", "on_site", "awaiting_part", "done", "closed", "cancelled"]
Limit = Annotated[int, Query(ge=1, le=10_000, description="At most this many rows.")]
_STOP_GRACE_S = 3.0
OPEN_PATHS = frozenset({"/healthz", "/readyz"})
"""Routes served without the token: probes an orchestrator calls, which tell only up or down."""


# -- response models ---------------------------------------------------------------------------------
class _Model(BaseModel):
    model_config = ConfigDict(frozen=True)


class Health(_Model):
    """Whether the engine is connected to its broker, whether something holds it up (``degraded``:
    its database locked by another process, say), and when it last committed handled messages."""

    status: Literal["ok", "disconnected", "degraded"]
    connected: bool
    degraded: str | None = None  # what holds the engine up, if anything
    clock: Literal["event", "wall"]
    last_step_engine_s: float | None  # engine time (event clock: the step's t) of the last commit
    last_step_at: datetime | None  # wall time of that commit (UTC)
    last_step_age_s: float | None


class DeviceSummary(_Model):
    device_id: str
    last_seen_s: float | None  # latest reading or event, engine time
    open_case: str | None


class CaseRecord(_Model):
    case_id: str
    device_id: str
    issue: str
    state: str  # a CaseState
    priority: int
    origin: str
    opened_s: float
    updated_s: float
    escalation: int  # SLA warnings and breaches so far (each raised the priority)
    first_response_s: float | None


class WorkOrderRecord(_Model):
    work_order_id: str
    case_id: str
    device_id: str
    state: str  # a WorkOrderState
    visit: int
    updated_s: float
    technician_id: str | None


class AlertRecord(_Model):
    alert_id: str
    device_id: str
    rule: str
    case_id: str | None
    value: float | None
    raised_s: float
    cleared_s: float | None
    flapping: bool


class SlaBreachRecord(_Model):
    clock: str
    ts: float


class CaseDetail(CaseRecord):
    work_orders: list[WorkOrderRecord]
    alerts: list[AlertRecord]
    sla_breaches: list[SlaBreachRecord]
    sla_warnings: list[SlaBreachRecord]


class Registration(_Model):
    """What the registry says about a device, and its twin's reported/desired state."""

    product: str | None
    owner_id: str | None
    region: str | None
    contract: str | None
    warranty_until_s: float | None
    cohorts: dict[str, str]
    reported: dict[str, str]  # firmware and settings the device reports
    desired: dict[str, str]  # what it should run
    in_sync: bool  # every desired value reported
    offline: bool


class QuarantineRecord(_Model):
    device_id: str
    first_s: float
    last_s: float
    messages: int


class FleetCampaignRecord(_Model):
    campaign_id: str
    rule: str
    action: str  # ota | recall
    cohort: str  # "by=value"
    state: str  # running | completed | aborted
    stage: int
    targets: int
    sent: int
    failed: int
    opened_s: float
    updated_s: float
    reason: str


class DeviceTwin(_Model):
    device_id: str
    last_seen_s: float | None
    values: dict[str, float]  # latest value of each sensor
    open_case: str | None
    alerts: list[AlertRecord]
    cases: list[CaseRecord]
    registration: Registration | None  # None: never registered nor reported firmware/settings


class CampaignRecord(_Model):
    issue: str
    version: str | None
    devices_targeted: int | None  # None: started before this engine process
    started_s: float | None


class MessageFigures(_Model):
    ingested: int
    rejected: int
    duplicates: int
    emitted: int


class Kpis(_Model):
    """The engine's counters and figures derived from them (since the database was created)."""

    messages: MessageFigures
    open_cases: int
    cases_opened: int
    cases_resolved: int
    resolved_within_sla_share: float | None  # of the resolved cases; None before the first
    sla_breaches: int
    remote_fixes: int
    second_visits: int
    work_orders: int
    counters: dict[str, int]


# -- storage ------------------------------------------------------------------------------------------
def _where(*conditions: tuple[str, object]) -> tuple[str, tuple[object, ...]]:
    """A WHERE clause of the conditions whose value is not None, and its arguments."""
    given = [(sql, value) for sql, value in conditions if value is not None]
    clause = " AND ".join(sql for sql, _ in given)
    return (f" WHERE {clause}" if given else ""), tuple(value for _, value in given)


_CASE_COLUMNS = "case_id, device_id, issue, state, priority, origin, opened_s, updated_s, escalation, first_response_s"


def _registration(row: dict[str, Any]) -> Registration:
    record = msgspec.json.decode(row["record"], type=DeviceRecord) if row.get("record") else None
    reported = msgspec.json.decode(row["reported"] or "{}", type=dict[str, str])
    desired = msgspec.json.decode(row["desired"] or "{}", type=dict[str, str])
    return Registration(
        product=row["product"],
        owner_id=row["owner_id"],
        region=row["region"],
        contract=row["contract"],
        warranty_until_s=row["warranty_until_s"],
        cohorts=dict(record.cohorts) if record is not None else {},
        reported=reported,
        desired=desired,
        in_sync=all(reported.get(k) == v for k, v in desired.items()),
        offline=bool(row["offline"]),
    )


def create_app(
    where: str | Path,
    metrics: EngineMetrics,
    *,
    connected: Callable[[], bool],
    token: str | None = None,
    degraded: Callable[[], str | None] = lambda: None,
    ready: Callable[[], bool] | None = None,
) -> FastAPI:
    """The API of one engine: ``where`` is its database, ``metrics`` its live figures.

    ``token``: every route outside :data:`OPEN_PATHS` requires ``Authorization: Bearer TOKEN``.

    ``where`` is what :class:`~support_engine.storage.Storage` takes: a file path, ``sqlite:///PATH``
    or a PostgreSQL URL (``:memory:`` is refused: no other connection could see it).
    """
    location = database.locate(where)
    if location.target == ":memory:":
        raise ValueError(f"the HTTP API needs a database file or server, not {str(where)!r}")
    store = database.ReadOnly(location)
    try:
        version = metadata.version("sot-twin")
    except metadata.PackageNotFoundError:
        version = "0"
    app = FastAPI(
        title="sot support engine",
        version=version,
        description="Read-only view of a running support engine: devices, cases, work orders, KPIs, metrics.",
    )
    if token is not None:
        _require_token(app, token)

    @app.exception_handler(StorageError)  # what either driver raised, translated by the database layer
    async def database_error(request: Request, exc: StorageError) -> JSONResponse:
        log.warning("HTTP API: %s %s: database error: %s", request.method, request.url.path, exc)
        return JSONResponse({"detail": f"database unavailable: {exc}"}, status_code=503)

    @app.get(
        "/healthz",
        response_model=Health,
        responses={503: {"model": Health, "description": "Not connected, or held up."}},
    )
    def healthz(response: Response) -> Health:
        """Connected to the broker and not held up (503 otherwise), clock mode, and the last commit of handled messages."""
        snap = metrics.snapshot
        up = connected()
        held = degraded()
        wall = snap.committed_wall_s
        if not up or held:
            response.status_code = 503
        return Health(
            status="disconnected" if not up else "degraded" if held else "ok",
            connected=up,
            degraded=held,
            clock=metrics.clock,
            last_step_engine_s=snap.engine_now_s,
            last_step_at=None if wall is None else datetime.fromtimestamp(wall, UTC),
            last_step_age_s=None if wall is None else max(0.0, time.time() - wall),
        )

    @app.get("/readyz", responses={503: {"description": "Not ready: starting, or not connected."}})
    def readyz(response: Response) -> dict[str, bool]:
        """Ready to serve (200): started, subscribed and connected; a liveness probe uses /healthz."""
        is_ready = connected() if ready is None else ready()
        if not is_ready:
            response.status_code = 503
        return {"ready": is_ready}

    @app.get("/devices", response_model=list[DeviceSummary])
    def devices(limit: Limit = 1000) -> list[DeviceSummary]:
        """Devices the engine has heard from (readings, events, cases), by id."""
        snap = metrics.snapshot
        with store.connect() as db:
            events = dict(db.rows("SELECT source, max(ts) FROM ingest_ledger WHERE kind = 'event' GROUP BY source"))
            with_cases = {row[0] for row in db.rows("SELECT DISTINCT device_id FROM cases")}
        ids = sorted(set(snap.devices) | set(events) | with_cases | set(snap.open_case_of))[:limit]
        out = []
        for device in ids:
            seen = [t for t in (snap.last_seen_s(device), events.get(device)) if t is not None]
            out.append(
                DeviceSummary(
                    device_id=device, last_seen_s=max(seen, default=None), open_case=snap.open_case_of.get(device)
                )
            )
        return out

    @app.get("/devices/{device_id}", response_model=DeviceTwin, responses={404: {"description": "Never heard of."}})
    def device(device_id: str) -> DeviceTwin:
        """A device's twin: latest readings, its alerts and cases."""
        snap = metrics.snapshot
        with store.connect() as db:
            last_event = db.rows("SELECT max(ts) FROM ingest_ledger WHERE kind = 'event' AND source = ?", (device_id,))[
                0
            ][0]
            alerts = db.dicts("SELECT * FROM alerts WHERE device_id = ? ORDER BY raised_s, alert_id", (device_id,))
            cases = db.dicts(
                f"SELECT {_CASE_COLUMNS} FROM cases WHERE device_id = ? ORDER BY opened_s, case_id", (device_id,)
            )
            rows = db.dicts("SELECT * FROM devices WHERE device_id = ?", (device_id,))
        reading = snap.last_seen_s(device_id)
        known = device_id in snap.slot_of or last_event is not None or cases or device_id in snap.open_case_of
        if not known and not rows:
            raise HTTPException(404, f"no device {device_id!r}")
        seen = [t for t in (reading, last_event) if t is not None]
        return DeviceTwin(
            device_id=device_id,
            last_seen_s=max(seen, default=None),
            values=snap.latest_values(device_id),
            open_case=snap.open_case_of.get(device_id),
            alerts=[AlertRecord(**a) for a in alerts],
            cases=[CaseRecord(**c) for c in cases],
            registration=_registration(rows[0]) if rows else None,
        )

    @app.get("/cases", response_model=list[CaseRecord])
    def cases(state: CaseState | None = None, device: str | None = None, limit: Limit = 100) -> list[CaseRecord]:
        """Cases, most recently opened first."""
        where, args = _where(("state = ?", state), ("device_id = ?", device))
        sql = f"SELECT {_CASE_COLUMNS} FROM cases{where} ORDER BY opened_s DESC, case_id DESC LIMIT ?"
        with store.connect() as db:
            rows = db.dicts(sql, (*args, limit))
        return [CaseRecord(**r) for r in rows]

    @app.get("/cases/{case_id}", response_model=CaseDetail, responses={404: {"description": "No such case."}})
    def case(case_id: str) -> CaseDetail:
        """One case with its work orders, alerts and SLA breaches."""
        with store.connect() as db:
            found = db.dicts(f"SELECT {_CASE_COLUMNS} FROM cases WHERE case_id = ?", (case_id,))
            if not found:
                raise HTTPException(404, f"no case {case_id!r}")
            orders = db.dicts("SELECT * FROM work_orders WHERE case_id = ? ORDER BY work_order_id", (case_id,))
            alerts = db.dicts("SELECT * FROM alerts WHERE case_id = ? ORDER BY raised_s, alert_id", (case_id,))
            breaches = db.dicts("SELECT clock, ts FROM sla_breaches WHERE case_id = ? ORDER BY ts", (case_id,))
            warnings = db.dicts("SELECT clock, ts FROM sla_warnings WHERE case_id = ? ORDER BY ts", (case_id,))
        return CaseDetail(
            **found[0],
            work_orders=[WorkOrderRecord(**o) for o in orders],
            alerts=[AlertRecord(**a) for a in alerts],
            sla_breaches=[SlaBreachRecord(**b) for b in breaches],
            sla_warnings=[SlaBreachRecord(**w) for w in warnings],
        )

    @app.get("/work-orders", response_model=list[WorkOrderRecord])
    def work_orders(state: WorkOrderState | None = None, limit: Limit = 100) -> list[WorkOrderRecord]:
        """Work orders, most recently changed first."""
        where, args = _where(("state = ?", state))
        sql = f"SELECT * FROM work_orders{where} ORDER BY updated_s DESC, work_order_id DESC LIMIT ?"
        with store.connect() as db:
            rows = db.dicts(sql, (*args, limit))
        return [WorkOrderRecord(**r) for r in rows]

    @app.get("/campaigns", response_model=list[FleetCampaignRecord])
    def campaigns() -> list[FleetCampaignRecord]:
        """Campaigns opened by cohort comparison (staged OTA updates and recalls), oldest first."""
        with store.connect() as db:
            rows = db.dicts("SELECT * FROM campaigns ORDER BY opened_s, campaign_id")
        return [FleetCampaignRecord(**r) for r in rows]

    @app.get("/quarantine", response_model=list[QuarantineRecord])
    def quarantine(limit: Limit = 1000) -> list[QuarantineRecord]:
        """Unregistered devices whose messages were set aside (registered-only provisioning)."""
        with store.connect() as db:
            rows = db.dicts("SELECT * FROM quarantine ORDER BY device_id LIMIT ?", (limit,))
        return [QuarantineRecord(**r) for r in rows]

    @app.get("/rollouts", response_model=list[CampaignRecord])
    def rollouts() -> list[CampaignRecord]:
        """Fleet-wide updates of issues with ``rollout_after``, in the order they started."""
        return [
            CampaignRecord(issue=c.issue, version=c.version, devices_targeted=c.devices_targeted, started_s=c.started_s)
            for c in metrics.snapshot.campaigns
        ]

    @app.get("/kpis", response_model=Kpis)
    def kpis() -> Kpis:
        """The engine's counters and the figures derived from them."""
        snap = metrics.snapshot
        c = snap.counters
        resolved = c.get("cases_resolved", 0)
        within = c.get("cases_resolved_within_sla", 0)
        return Kpis(
            messages=MessageFigures(
                ingested=c.get("msg_ingested", 0),
                rejected=c.get("msg_rejected", 0),
                duplicates=c.get("msg_duplicates", 0),
                emitted=c.get("msg_emitted", 0),
            ),
            open_cases=len(snap.open_case_of),
            cases_opened=c.get("cases_opened", 0),
            cases_resolved=resolved,
            resolved_within_sla_share=within / resolved if resolved else None,
            sla_breaches=c.get("sla_breaches", 0),
            remote_fixes=c.get("remote_fixes", 0),
            second_visits=c.get("second_visits", 0),
            work_orders=c.get("work_orders", 0),
            counters=dict(c),
        )

    @app.get(
        "/metrics",
        response_class=Response,
        responses={200: {"content": {CONTENT_TYPE_LATEST: {}}, "description": "Prometheus text format."}},
    )
    def prometheus() -> Response:
        """Prometheus metrics of this engine (its own registry)."""
        return Response(metrics.exposition(), media_type=CONTENT_TYPE_LATEST)

    return app


def _require_token(app: FastAPI, token: str) -> None:
    """Answer 401 to any request outside :data:`OPEN_PATHS` without ``Authorization: Bearer token``."""
    if not token:
        raise ValueError("the HTTP token must not be empty")
    expected = f"Bearer {token}".encode()

    @app.middleware("http")
    async def bearer(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        if request.url.path in OPEN_PATHS:
            return await call_next(request)
        given = request.headers.get("authorization", "").encode()
        if secrets.compare_digest(given, expected):
            return await call_next(request)
        return JSONResponse(
            {"detail": "missing or wrong bearer token"}, status_code=401, headers={"WWW-Authenticate": "Bearer"}
        )


# -- server -------------------------------------------------------------------------------------------
def _bind(host: str, port: int) -> socket.socket:
    """A listening socket on ``host:port`` (0: any free port), so that a busy port fails at start."""
    family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(128)
    except OSError:
        sock.close()
        raise
    return sock


class HttpApi:
    """``app`` served by uvicorn on a daemon thread; :meth:`stop` ends it (the engine calls it on its way out).

    The socket is bound in the constructor, which raises :class:`OSError` if it cannot be.
    """

    def __init__(self, app: FastAPI, *, host: str = "127.0.0.1", port: int = 0) -> None:
        self._sock = _bind(host, port)
        bound_host, self.port = self._sock.getsockname()[:2]
        self.url = f"http://{f'[{bound_host}]' if ':' in bound_host else bound_host}:{self.port}"
        config = uvicorn.Config(
            app,
            log_config=None,  # logs go through the engine's handlers
            access_log=False,
            lifespan="off",
            server_header=False,
            timeout_graceful_shutdown=math.ceil(_STOP_GRACE_S),
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._serve, name="sot-http", daemon=True)

    def _serve(self) -> None:
        try:
            self._server.run(sockets=[self._sock])
        except BaseException:  # the engine goes on without its API; say why
            log.exception("the HTTP API stopped")

    def start(self) -> None:
        self._thread.start()
        log.info("HTTP API on %s", self.url, extra={"http_url": self.url})

    def stop(self) -> None:
        """Ask the server to finish; force it after a grace period."""
        self._server.should_exit = True
        if self._thread.ident is None:  # never started
            self._sock.close()
            return
        self._thread.join(_STOP_GRACE_S + 1)
        if self._thread.is_alive():
            self._server.force_exit = True
            self._thread.join(_STOP_GRACE_S)
        self._sock.close()
