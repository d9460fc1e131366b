"""Read a device registry file: the devices an engine knows, with owner, product, region, firmware,
cohorts, contract and warranty (:class:`contracts.messages.DeviceRecord`).

Formats, by extension: ``.csv`` (a header row; ``cohort.NAME`` columns are cohorts; empty cells are
absent), ``.jsonl`` (one record per line), ``.json``, ``.yaml`` / ``.yml`` (a list of records). A
problem names the file, the record and the field.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import msgspec
import yaml

from contracts.messages import DeviceRecord
from support_engine.errors import ConfigError

__all__ = ["load_devices"]

_NUMBERS = ("warranty_until_s", "interval_s")


def load_devices(path: Path) -> list[DeviceRecord]:
    """The records of a registry file; :class:`ConfigError` names the file, record and problem."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read the device registry {path}: {exc.strerror or exc}") from exc
    suffix = path.suffix.lower()
    try:
        if suffix == ".csv":
            rows: list[Any] = [_csv_row(row) for row in csv.DictReader(text.splitlines())]
        elif suffix == ".jsonl":
            rows = [json.loads(line) for line in text.splitlines() if line.strip()]
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
    records: list[DeviceRecord] = []
    seen: set[str] = set()
    for n, row in enumerate(rows, start=1):
        try:
            record = msgspec.convert(row, DeviceRecord)
        except msgspec.ValidationError as exc:
            raise ConfigError(f"{path}: record {n}: {exc}") from exc
        if record.device_id in seen:
            raise ConfigError(f"{path}: record {n}: device {record.device_id!r} appears twice")
        seen.add(record.device_id)
        records.append(record)
    return records


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
