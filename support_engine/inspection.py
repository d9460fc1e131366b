"""What an engine's database holds, taken up without writing: a restart's state, and an inspection's.

A restarted engine and a read-only inspection (``sot engine --inspect DB``) start from the same
things: the registry and the twins' state, the core's last snapshot (open cases, alerts, pending
commands, campaigns), and the counters. :func:`restore` puts them into an engine core;
:func:`read` reads them through a read-only connection from the database's readers' pool
(:meth:`~support_engine.database.Database.reader`: no schema upgrade, no writer lock, nothing
written) and restores a core of its own, whose timers never run. :func:`devices`,
:func:`counters` and :func:`state` read them through either kind of connection (the engine's
:class:`~support_engine.storage.Storage` reads with them too). :func:`commands_sent` counts the
outbox's commands by action: the counters have no such count, and the outbox keeps every command
the engine sent.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import msgspec
import sqlalchemy as sa
from sqlalchemy.sql import Executable

from contracts.engine_config import EngineConfig
from contracts.messages import DeviceRecord
from support_engine import schema
from support_engine.core.engine import Engine, Snapshot
from support_engine.database import Database
from support_engine.errors import StorageError

__all__ = ["SERVICE_COUNTERS", "Rows", "Stored", "commands_sent", "counters", "devices", "read", "restore", "state"]

SERVICE_COUNTERS = frozenset({"registry_received", "broker_session_lost", "broker_dropped"})
"""Counted by the service, not by the core (besides the message accounting, ``msg_*``)."""
_TABLES = ("counters", "engine_state", "devices", "outbox", "cases")  # an engine database has them all
_PAGE = 10_000  # outbox rows decoded at a time

DeviceRow = tuple[str, DeviceRecord | None, dict[str, str], dict[str, str], bool]


class _Command(msgspec.Struct):
    action: str  # the one field of a stored command counted here


@dataclass(frozen=True, slots=True)
class Stored:
    """An engine core restored from a database, the service's own counters, and the commands sent by action."""

    core: Engine
    counters: dict[str, int]  # the service's (``msg_*`` and :data:`SERVICE_COUNTERS`); the core has the rest
    commands: dict[str, int]


def restore(
    core: Engine, saved: Mapping[str, int], devices: Iterable[DeviceRow], state: bytes | None
) -> dict[str, int]:
    """Give ``core`` the registry, twins, snapshot and counters a database holds; return the service's counters.

    The core's counters are the stored ones even without a snapshot (an engine that took in
    readings and never acted saved none): else they would start again at 0, and overwrite the
    stored totals at the next commit.
    """
    ours = {k: v for k, v in saved.items() if k.startswith("msg_") or k in SERVICE_COUNTERS}
    for device, record, reported, desired, offline in devices:
        if record is not None:
            core.provision([record])
        core.restore_twins(device, reported, desired, offline)
    stats = {k: v for k, v in saved.items() if k not in ours}
    if state is not None:
        core.restore(msgspec.json.decode(state, type=Snapshot), stats)
    elif saved:  # not a fresh database: what provisioning the registry again counted is in ``stats`` already
        core.stats = Counter(stats)
    return ours


def read(where: str | Path | Database, config: EngineConfig) -> Stored:
    """Restore a core of ``config`` from the database at ``where``, through a read-only connection.

    :class:`StorageError` if it cannot be opened or is not an engine's database.
    """
    db = Database.at(where)
    location = db.location
    if location.backend == "sqlite" and not Path(location.target).is_file():
        raise StorageError(f"no database file {location.shown!r}")
    with db.reader() as conn:
        missing = [t for t in _TABLES if t not in conn.tables()]
        if missing:
            raise StorageError(f"{location.shown!r} is not a support engine's database: no table {', '.join(missing)}")
        core = Engine(config)
        ours = restore(core, counters(conn), devices(conn), state(conn))
        return Stored(core, ours, _commands(conn))


def commands_sent(where: str | Path | Database) -> dict[str, int]:
    """The commands in the outbox of the database at ``where``, by action (none for ``:memory:``)."""
    db = Database.at(where)
    if db.location.target == ":memory:":
        return {}
    with db.reader() as conn:
        return _commands(conn)


class Rows(Protocol):
    """A connection that answers a query with its rows: the engine's writer, or a reader from the pool."""

    def rows(self, statement: Executable, params: Mapping[str, Any] | None = None) -> list[tuple[Any, ...]]: ...


def counters(db: Rows) -> dict[str, int]:
    """The stored counters, by name."""
    t = schema.counters.c
    return {str(name): int(value) for name, value in db.rows(sa.select(t.name, t.value))}


def state(db: Rows) -> bytes | None:
    """The engine core's last saved snapshot (JSON), if any."""
    rows = db.rows(sa.select(schema.engine_state.c.state).where(schema.engine_state.c.id == 1))
    return bytes(rows[0][0]) if rows else None


def devices(db: Rows) -> list[DeviceRow]:
    """Every device row: id, registry record (None: not registered), reported and desired state, offline."""
    d = schema.devices.c
    rows = db.rows(sa.select(d.device_id, d.record, d.reported, d.desired, d.offline).order_by(d.device_id))
    return [
        (
            str(device),
            msgspec.json.decode(record, type=DeviceRecord) if record else None,
            msgspec.json.decode(reported, type=dict[str, str]),
            msgspec.json.decode(desired, type=dict[str, str]),
            bool(offline),
        )
        for device, record, reported, desired, offline in rows
    ]


def _commands(db: Rows) -> dict[str, int]:
    decoder = msgspec.json.Decoder(_Command)
    o = schema.outbox.c
    query = (
        sa.select(o.id, o.payload)
        .where(o.kind == "SendCommand", o.id > sa.bindparam("after"))
        .order_by(o.id)
        .limit(_PAGE)
    )
    counts: dict[str, int] = {}
    after = 0
    while True:
        rows = db.rows(query, {"after": after})
        for _, payload in rows:
            action = decoder.decode(payload).action
            counts[action] = counts.get(action, 0) + 1
        if len(rows) < _PAGE:
            return dict(sorted(counts.items()))
        after = int(rows[-1][0])
