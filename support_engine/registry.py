"""Read a device registry file: the devices an engine knows, with owner, product, region, firmware,
cohorts, contract and warranty (:class:`contracts.messages.DeviceRecord`).

Formats, by extension: ``.csv`` (a header row; ``cohort.NAME`` columns are cohorts; empty cells are
absent), ``.jsonl`` (one record per line), ``.json``, ``.yaml`` / ``.yml`` (a list of records). A
problem names the file, the record and the field.

:func:`iter_devices` hands the records over in lists of a few thousand; a ``.jsonl`` file is read
as it goes, never whole, so that a million-device registry costs its chunk and a set of ids.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec
import yaml

from contracts.messages import DeviceRecord
from support_engine.errors import ConfigError

__all__ = ["CHUNK", "iter_devices", "load_devices"]

_NUMBERS = ("warranty_until_s", "interval_s")
CHUNK = 10_000
"""Records a list of :func:`iter_devices` holds at most."""


def load_devices(path: Path) -> list[DeviceRecord]:
    """The records of a registry file; :class:`ConfigError` names the file, record and problem."""
    return [record for chunk in iter_devices(path) for record in chunk]


def iter_devices(path: Path, chunk: int = CHUNK) -> Iterator[list[DeviceRecord]]:
    """The records of a registry file, in lists of at most ``chunk``, in file order.

    :class:`ConfigError` names the file, record and problem, as :func:`load_devices` would (a file
    that is not valid JSON anywhere is refused as such before a bad record is named); with a
    ``.jsonl`` file it may come after the lists of the records before the problem.
    """
    if chunk < 1:
        raise ValueError(f"chunk must be >= 1, not {chunk}")
    if path.suffix.lower() == ".jsonl":
        yield from _jsonl(path, chunk)
        return
    records = _whole(path)
    for start in range(0, len(records), chunk):
        yield records[start : start + chunk]


def _jsonl(path: Path, chunk: int) -> Iterator[list[DeviceRecord]]:
    """A ``.jsonl`` registry, line by line; a bad record is raised once every later line is known to parse."""
    problem: ConfigError | None = None
    seen: set[str] = set()
    shared = _Shared()
    out: list[DeviceRecord] = []
    n = 0
    try:
        with path.open(encoding="utf-8", newline="\n") as lines:
            for physical in lines:
                for line in physical.splitlines():  # the lines str.splitlines finds, as a whole read would
                    if not line.strip():
                        continue
                    n += 1
                    try:
                        row = json.loads(line)
                    except ValueError as exc:
                        raise ConfigError(f"{path}: not valid jsonl: {exc}") from exc
                    if problem is not None:
                        continue
                    try:
                        out.append(_record(path, n, row, seen, shared))
                    except ConfigError as exc:
                        problem = exc
                        continue
                    if len(out) == chunk:
                        yield out
                        out = []
    except OSError as exc:
        raise ConfigError(f"cannot read the device registry {path}: {exc.strerror or exc}") from exc
    if problem is not None:
        raise problem
    if out:
        yield out


class _Shared:
    """One copy of each value many records repeat (a product, a firmware, a cohort), for one file's records."""

    def __init__(self) -> None:
        self.text: dict[str, str] = {}
        self.cohorts: dict[tuple[tuple[str, str], ...], dict[str, str]] = {}

    def row(self, row: Any) -> Any:
        """``row`` with its repeated strings replaced by their first copy."""
        if isinstance(row, dict):
            for key in _REPEATED:
                value = row.get(key)
                if isinstance(value, str):
                    row[key] = self.text.setdefault(value, value)
            cohorts = row.get("cohorts")
            if isinstance(cohorts, dict):
                row["cohorts"] = {self._str(k): self._str(v) for k, v in cohorts.items()}
        return row

    def record(self, record: DeviceRecord) -> DeviceRecord:
        """``record`` with the first cohorts dict equal to its own (records are never changed in place)."""
        if not record.cohorts:
            return record
        shared = self.cohorts.setdefault(tuple(record.cohorts.items()), record.cohorts)
        return record if shared is record.cohorts else msgspec.structs.replace(record, cohorts=shared)

    def _str(self, value: Any) -> Any:
        return self.text.setdefault(value, value) if isinstance(value, str) else value


_REPEATED = ("product", "region", "firmware", "contract")


def _record(path: Path, n: int, row: Any, seen: set[str], shared: _Shared) -> DeviceRecord:
    try:
        record = msgspec.convert(shared.row(row), DeviceRecord)
    except msgspec.ValidationError as exc:
        raise ConfigError(f"{path}: record {n}: {exc}") from exc
    if record.device_id in seen:
        raise ConfigError(f"{path}: record {n}: device {record.device_id!r} appears twice")
    seen.add(record.device_id)
    return shared.record(record)


def _whole(path: Path) -> list[DeviceRecord]:
    """A registry in a format read whole (CSV, JSON, YAML)."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read the device registry {path}: {exc.strerror or exc}") from exc
    suffix = path.suffix.lower()
    try:
        if suffix == ".csv":
            rows: list[Any] = [_csv_row(row) for row in csv.DictReader(text.splitlines())]
        elif suffix == ".json":
            rows = json.loads(text)
        elif suffix in (".yaml", ".yml"):
            rows = yaml.safe_load(text) or []
        else:
            raise ConfigError(
                f"{path}: a device registry is .csv, .jsonl, .json or .yaml, not {suffix or 'no extension'!r}"
            )
    except (ValueError, yaml.YAMLError) as exc:
        raise ConfigError(f"{path}: not valid {suffix.lstrip('.')}: {exc}") from exc
    if not isinstance(rows, list):
        raise ConfigError(f"{path}: expected a list of device records")
    seen: set[str] = set()
    shared = _Shared()
    return [_record(path, n, row, seen, shared) for n, row in enumerate(rows, start=1)]


def _csv_row(row: dict[str, str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    cohorts: dict[str, str] = {}
    for key, value in row.items():
        if value is None or value == "":
            continue
        if key.startswith("cohort."):
            cohorts[key.removeprefix("cohort.")] = value
        elif key in _NUMBERS:
            out[key] = float(value)
        else:
            out[key] = value
    if cohorts:
        out["cohorts"] = cohorts
    return out
