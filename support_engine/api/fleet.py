"""The fleet as the API and the console see it: every device the engine knows, its state, and the twin of one.

A device is known when it is registered, heard from (readings, events), named by a case, or
quarantined. Its state is one of ``quarantined`` (unregistered, its messages set aside), else
``offline``, else ``case`` (one open), else ``ok``; "in sync" means every desired firmware or
setting is reported. These filters are applied to the rows read (they are not columns).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import msgspec
import sqlalchemy as sa

from contracts.messages import DeviceRecord
from support_engine import database
from support_engine import schema as t
from support_engine.api.models import (
    DeviceSummary,
    DeviceTwin,
    FleetRow,
    FleetSummary,
    Page,
    Registration,
    page,
    stamped,
)
from support_engine.api.queries import OPEN_STATES, Reader, case_query

__all__ = ["DeviceFilter", "device", "devices", "fleet", "fleet_and_devices"]


@dataclass(frozen=True, slots=True)
class DeviceFilter:
    product: str | None = None
    offline: bool | None = None
    quarantined: bool | None = None
    in_sync: bool | None = None

    def keeps(self, d: Mapping[str, Any]) -> bool:
        return (
            (self.product is None or d["product"] == self.product)
            and (self.offline is None or d["offline"] == self.offline)
            and (self.quarantined is None or d["quarantined"] == self.quarantined)
            and (self.in_sync is None or d["in_sync"] is self.in_sync)
        )


def _in_sync(reported: str | None, desired: str | None) -> bool:
    wanted = msgspec.json.decode(desired or "{}", type=dict[str, str])
    if not wanted:
        return True
    have = msgspec.json.decode(reported or "{}", type=dict[str, str])
    return all(have.get(k) == v for k, v in wanted.items())


def _firmware(reported: str | None) -> str | None:
    if not reported or reported == "{}":
        return None
    return msgspec.json.decode(reported, type=dict[str, str]).get("firmware")


# -- devices --------------------------------------------------------------------------------
_HEARD = ("event", "telemetry")  # ledger streams of a device's own messages


def _device_rows(reader: Reader, db: database.Reader) -> list[dict[str, Any]]:
    """Every device the engine knows (registered, heard from, named by a case, or quarantined), by id."""
    snap = reader.metrics.snapshot
    ledger, c, d = t.ingest_ledger.c, t.cases.c, t.devices.c
    events = dict(
        db.rows(sa.select(ledger.source, sa.func.max(ledger.ts)).where(ledger.kind.in_(_HEARD)).group_by(ledger.source))
    )
    open_case = dict(db.rows(sa.select(c.device_id, c.case_id).where(c.state.in_(OPEN_STATES))))
    with_cases = {r[0] for r in db.rows(sa.select(c.device_id).distinct())}
    registry = {
        r[0]: r
        for r in db.rows(
            sa.select(
                d.device_id, d.product, d.region, d.owner_id, d.record.is_not(None), d.reported, d.desired, d.offline
            )
        )
    }
    held = {r[0] for r in db.rows(sa.select(t.quarantine.c.device_id))}
    ids = set(snap.devices) | set(events) | with_cases | set(registry) | held | set(snap.open_case_of)
    out = []
    for device in sorted(ids):
        reg = registry.get(device)
        seen = [t for t in (snap.last_seen_s(device), events.get(device)) if t is not None]
        registered = bool(reg[4]) if reg else False
        offline = bool(reg[7]) if reg else False
        quarantined = device in held and not registered
        case = open_case.get(device) or snap.open_case_of.get(device)
        out.append(
            {
                "device_id": device,
                "last_seen_s": max(seen, default=None),
                "open_case": case,
                "product": reg[1] if reg else None,
                "region": reg[2] if reg else None,
                "owner_id": reg[3] if reg else None,
                "registered": registered,
                "offline": offline,
                "quarantined": quarantined,
                "in_sync": _in_sync(reg[5], reg[6]) if reg else None,
                "state": "quarantined" if quarantined else "offline" if offline else "case" if case else "ok",
                "reported": reg[5] if reg else None,
            }
        )
    return out


def devices(reader: Reader, wanted: DeviceFilter, offset: int, limit: int) -> Page[DeviceSummary]:
    with reader.connect() as db:
        rows = _device_rows(reader, db)
    return _device_page(reader, rows, wanted, offset, limit)


def fleet(reader: Reader) -> FleetSummary:
    with reader.connect() as db:
        return _fleet(_device_rows(reader, db))


def fleet_and_devices(
    reader: Reader, wanted: DeviceFilter, offset: int, limit: int
) -> tuple[FleetSummary, Page[DeviceSummary]]:
    """The fleet's summary and a page of its devices, from one read."""
    with reader.connect() as db:
        rows = _device_rows(reader, db)
    return _fleet(rows), _device_page(reader, rows, wanted, offset, limit)


def _device_page(
    reader: Reader, rows: list[dict[str, Any]], wanted: DeviceFilter, offset: int, limit: int
) -> Page[DeviceSummary]:
    kept = [d for d in rows if wanted.keeps(d)]
    items = [DeviceSummary(**stamped(d, reader.time)) for d in kept[offset : offset + limit]]
    return page(items, len(kept), offset, limit)


def _fleet(rows: list[dict[str, Any]]) -> FleetSummary:
    by: dict[str | None, Counter[str]] = {}
    firmware: dict[str | None, Counter[str]] = {}
    for d in rows:
        tally = by.setdefault(d["product"], Counter())
        tally["devices"] += 1
        tally[d["state"]] += 1
        if d["in_sync"] is not None:
            tally["in_sync" if d["in_sync"] else "out_of_sync"] += 1
        version = _firmware(d["reported"])
        if version is not None:
            firmware.setdefault(d["product"], Counter())[version] += 1
    products = sorted(by, key=lambda p: (p is None, p or ""))
    return FleetSummary(
        devices=len(rows),
        by_product=[
            FleetRow(
                product=p,
                devices=by[p]["devices"],
                ok=by[p]["ok"],
                case=by[p]["case"],
                offline=by[p]["offline"],
                quarantined=by[p]["quarantined"],
                in_sync=by[p]["in_sync"],
                out_of_sync=by[p]["out_of_sync"],
                firmware=dict(sorted(firmware.get(p, Counter()).items())),
            )
            for p in products
        ],
    )


def device(reader: Reader, device_id: str) -> DeviceTwin | None:
    snap = reader.metrics.snapshot
    ledger, a, c = t.ingest_ledger.c, t.alerts.c, t.cases.c
    with reader.connect() as db:
        event = db.scalar(sa.select(sa.func.max(ledger.ts)).where(ledger.kind.in_(_HEARD), ledger.source == device_id))
        alerts = db.dicts(sa.select(t.alerts).where(a.device_id == device_id).order_by(a.raised_s, a.alert_id))
        cases = db.dicts(case_query().where(c.device_id == device_id).order_by(c.opened_s, c.case_id))
        rows = db.dicts(sa.select(t.devices).where(t.devices.c.device_id == device_id))
        held = db.rows(sa.select(t.quarantine.c.device_id).where(t.quarantine.c.device_id == device_id))
    reading = snap.last_seen_s(device_id)
    known = device_id in snap.slot_of or event is not None or cases or device_id in snap.open_case_of
    if not known and not rows and not held:
        return None
    seen = [t for t in (reading, event) if t is not None]
    open_case = next((c["case_id"] for c in cases if c["state"] in OPEN_STATES), None)
    return DeviceTwin(
        **stamped({"device_id": device_id, "last_seen_s": max(seen, default=None)}, reader.time),
        values=snap.latest_values(device_id),
        open_case=open_case or snap.open_case_of.get(device_id),
        alerts=[reader.alert(a) for a in alerts],
        cases=[reader.case_record(c) for c in cases],
        registration=_registration(reader, rows[0]) if rows else None,
    )


def _registration(reader: Reader, row: dict[str, Any]) -> Registration:
    record = msgspec.json.decode(row["record"], type=DeviceRecord) if row.get("record") else None
    reported = msgspec.json.decode(row["reported"] or "{}", type=dict[str, str])
    desired = msgspec.json.decode(row["desired"] or "{}", type=dict[str, str])
    return Registration(
        **stamped(
            {
                "product": row["product"],
                "owner_id": row["owner_id"],
                "region": row["region"],
                "contract": row["contract"],
                "warranty_until_s": row["warranty_until_s"],
            },
            reader.time,
        ),
        cohorts=dict(record.cohorts) if record is not None else {},
        reported=reported,
        desired=desired,
        in_sync=all(reported.get(k) == v for k, v in desired.items()),
        offline=bool(row["offline"]),
    )
