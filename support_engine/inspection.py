"""What an engine's database holds, taken up without writing: a restart's state, and an inspection's.

A restarted engine and a read-only inspection (``sot engine --inspect DB``) start from the same
things: the registry and the twins' state, the core's last snapshot (open cases, alerts, pending
commands, campaigns), and the counters. :func:`restore` puts them into an engine core;
:func:`read` reads them through a read-only connection (:class:`~support_engine.database.ReadOnly`:
no schema upgrade, no writer lock, nothing written) and restores a core of its own, whose timers
never run. :func:`commands_sent` counts the outbox's commands by action: the counters have no such
count, and the outbox keeps every command the engine sent.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import msgspec

from contracts.engine_config import EngineConfig
from contracts.messages import DeviceRecord
from support_engine import database
from support_engine.core.engine import Engine, Snapshot
from support_engine.database import Connection
from support_engine.errors import StorageError

__all__ = ["SERVICE_COUNTERS", "Stored", "commands_sent", "read", "restore"]

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


def read(where: str | Path, config: EngineConfig) -> Stored:
    """Restore a core of ``config`` from the database at ``where``, through a read-only connection.

    :class:`StorageError` if it cannot be opened or is not an engine's database.
    """
    location = database.locate(where)
    if location.backend == "sqlite" and not Path(location.target).is_file():
        raise StorageError(f"no database file {location.shown!r}")
    with database.ReadOnly(location).connect() as db:
        missing = [t for t in _TABLES if t not in db.tables()]
        if missing:
            raise StorageError(f"{location.shown!r} is not a support engine's database: no table {', '.join(missing)}")
        saved = {str(name): int(value) for name, value in db.rows("SELECT name, value FROM counters")}
        rows = db.rows("SELECT state FROM engine_state WHERE id = 1")
        state = bytes(rows[0][0]) if rows else None
        core = Engine(config)
        counters = restore(core, saved, _devices(db), state)
        return Stored(core, counters, _commands(db))


def commands_sent(where: str | Path) -> dict[str, int]:
    """The commands in the outbox of the database at ``where``, by action (none for ``:memory:``)."""
    location = database.locate(where)
    if location.target == ":memory:":
        return {}
    with database.ReadOnly(location).connect() as db:
        return _commands(db)


def _devices(db: Connection) -> list[DeviceRow]:
    rows = db.rows("SELECT device_id, record, reported, desired, offline FROM devices ORDER BY device_id")
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


def _commands(db: Connection) -> dict[str, int]:
    decoder = msgspec.json.Decoder(_Command)
    counts: dict[str, int] = {}
    after = 0
    while True:
        rows = db.rows(
            "SELECT id, payload FROM outbox WHERE kind = 'SendCommand' AND id > ? ORDER BY id LIMIT ?", (after, _PAGE)
        )
        for _, payload in rows:
            action = decoder.decode(payload).action
            counts[action] = counts.get(action, 0) + 1
        if len(rows) < _PAGE:
            return dict(sorted(counts.items()))
        after = int(rows[-1][0])
