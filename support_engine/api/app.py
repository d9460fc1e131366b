"""The app of one engine: its JSON routes, its console, the API docs (offline), the token, the error answers.

Three rules hold for every route. A query parameter the route does not declare is refused with
422, naming it and the ones it takes (a misspelt filter must not answer as if unfiltered). A
database error answers 503. With a token, every request outside :data:`OPEN_PATHS` (console pages,
their static files and the API docs included) needs ``Authorization: Bearer TOKEN``.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Awaitable, Callable
from datetime import datetime
from importlib import metadata
from pathlib import Path

from fastapi import Depends, FastAPI, Request, Response
from fastapi.exception_handlers import http_exception_handler, request_validation_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from starlette.exceptions import HTTPException as StarletteHTTPException

from contracts.engine_config import EngineConfig
from support_engine import console, database
from support_engine.api.docs import add_docs
from support_engine.api.queries import Reader
from support_engine.api.routes import add_routes
from support_engine.api.timebase import DEFAULT_SIM_EPOCH, TimeBase, parse_epoch
from support_engine.errors import StorageError
from support_engine.metrics import EngineMetrics

__all__ = ["OPEN_PATHS", "create_app"]

log = logging.getLogger("sot.engine")
OPEN_PATHS = frozenset({"/healthz", "/readyz"})
"""Routes served without the token: probes an orchestrator calls, which tell only up or down."""


def create_app(
    where: str | Path | database.Database,
    metrics: EngineMetrics,
    *,
    connected: Callable[[], bool],
    token: str | None = None,
    degraded: Callable[[], str | None] = lambda: None,
    ready: Callable[[], bool] | None = None,
    engine_config: EngineConfig | None = None,
    sim_epoch: str | datetime = DEFAULT_SIM_EPOCH,
    time_origin: float = 0.0,
    inspecting: str | None = None,
) -> FastAPI:
    """The API and console of one engine: ``where`` is its database, ``metrics`` its live figures.

    ``where`` is what :class:`~support_engine.storage.Storage` takes: a file path, ``sqlite:///PATH``,
    a PostgreSQL URL (``:memory:`` is refused: no other connection could see it), or the
    :class:`~support_engine.database.Database` itself (the engine's: its readers' pool is shared).
    ``token``: every route outside :data:`OPEN_PATHS` requires ``Authorization: Bearer TOKEN``.
    ``engine_config``: the engine's configuration, for SLA targets (case clocks), technicians,
    campaign stages and the symptoms behind an issue; without it those are not shown.
    ``sim_epoch``: event clock, the calendar time simulated time 0 is shown as (ISO 8601; naive: UTC).
    ``time_origin``: wall clock, the Unix time of engine time 0 (``sot engine --time-origin``); the
    speed is ``metrics.speed``. The clock itself is ``metrics.clock``.
    ``inspecting``: ``sot engine --inspect``, the database shown; /healthz answers 200 with status
    ``inspect`` (no broker is expected).
    """
    db = database.Database.at(where)
    if db.location.target == ":memory:":
        raise ValueError(f"the HTTP API needs a database file or server, not {db.location.shown!r}")
    reader = Reader(
        db,
        metrics,
        TimeBase(metrics.clock, parse_epoch(sim_epoch), time_origin, metrics.speed),
        engine_config,
    )
    try:
        version = metadata.version("sot-twin")
    except metadata.PackageNotFoundError:
        version = "0"
    app = FastAPI(
        title="sot support engine",
        version=version,
        description="Read-only view of a running support engine: devices, cases, work orders, alerts, "
        "campaigns, dead letters, KPIs, metrics. Its console is at `/`.",
        docs_url=None,
        redoc_url=None,
        dependencies=[Depends(_known_parameters)],
    )
    if token is not None:
        _require_token(app, token)
    pages = console.Console(reader)
    _error_answers(app, pages)
    add_routes(app, reader, connected=connected, degraded=degraded, ready=ready, inspecting=inspecting)
    add_docs(app, favicon=f"{console.STATIC}/favicon.svg")
    pages.add_to(app)
    return app


async def _known_parameters(request: Request) -> None:
    """Refuse (422) a query parameter the route does not declare, naming it and those it takes."""
    route = request.scope.get("route")
    if not isinstance(route, APIRoute):
        return
    allowed = _declared(route)
    unknown = [name for name in dict.fromkeys(request.query_params.keys()) if name not in allowed]
    if unknown:
        takes = ", ".join(sorted(allowed)) or "no query parameters"
        raise RequestValidationError(
            [
                {
                    "type": "extra_forbidden",
                    "loc": ("query", name),
                    "msg": f"unknown query parameter {name!r}: {route.path} takes {takes}",
                    "input": request.query_params.get(name),
                }
                for name in unknown
            ]
        )


def _declared(route: APIRoute) -> set[str]:
    """The query parameters ``route`` and its dependencies declare (by the name a client sends)."""
    names: set[str] = set()
    todo = [route.dependant]
    while todo:
        dependant = todo.pop()
        names.update(field.alias for field in dependant.query_params)
        todo.extend(dependant.dependencies)
    return names


def _error_answers(app: FastAPI, pages: console.Console) -> None:
    """Errors as JSON for the API, as a page for the console."""

    @app.exception_handler(StorageError)  # what either driver raised, translated by the database layer
    async def database_error(request: Request, exc: StorageError) -> Response:
        log.warning("HTTP API: %s %s: database error: %s", request.method, request.url.path, exc)
        detail = f"database unavailable: {exc}"
        if console.is_page(request.url.path):
            return pages.error(request, 503, [detail])
        return JSONResponse({"detail": detail}, status_code=503)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> Response:
        if console.is_page(request.url.path):
            return pages.error(request, 422, [str(e.get("msg", e)) for e in exc.errors()])
        return await request_validation_exception_handler(request, exc)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        if console.is_page(request.url.path):
            return pages.error(request, exc.status_code, [str(exc.detail)])
        return await http_exception_handler(request, exc)


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
