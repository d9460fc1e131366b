"""The files a run writes: its result document, the event log, the ground truth, the link's record
and the level series.

The world and the runner return records; only this module (called by the CLI and by the
experiments' executor) writes them to disk.
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from sim.records import LEVELS, Records

__all__ = ["write_run"]


def write_run(out_dir: Path, result: Mapping[str, Any], records: Records) -> None:
    """Write a run's files: result.json, events.csv, ground_truth.csv, connectivity.csv, timeseries.csv."""
    (out_dir / "result.json").write_text(json.dumps(result, indent=2, sort_keys=False) + "\n", encoding="utf-8")
    with open(out_dir / "events.csv", "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["t_s", "actor", "kind", "device_id", "ref", "detail"])
        for row in sorted(records.events, key=lambda r: r[0]):
            writer.writerow([f"{row[0]:.3f}", *row[1:]])
    with open(out_dir / "ground_truth.csv", "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["device_id", "fleet", "mode", "severity", "onset_s", "prevented", "restored_s", "fixed_by"])
        for fl in sorted(records.failures, key=lambda x: (x.onset_s, x.device_id)):
            restored = "" if math.isnan(fl.restored_s) else f"{fl.restored_s:.3f}"
            onset = f"{fl.onset_s:.3f}"
            writer.writerow(
                [fl.device_id, fl.fleet, fl.mode, fl.severity, onset, int(fl.prevented), restored, fl.fixed_by]
            )
    with open(out_dir / "connectivity.csv", "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["t_s", "who", "kind", "detail"])
        for t, who, kind, detail in sorted(records.link, key=lambda r: (r[0], r[1])):
            writer.writerow([f"{t:.3f}", who, kind, detail])
    with open(out_dir / "timeseries.csv", "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["t_s", "t_days", "series", "value"])
        for level in records.levels:  # tidy: one row per sync step and series
            t, values = level[0], level[1:]
            for name, value in zip(LEVELS[1:], values, strict=True):
                writer.writerow(
                    [
                        f"{t:.3f}",
                        f"{t / 86400.0:.6f}",
                        name,
                        int(value) if float(value).is_integer() else repr(float(value)),
                    ]
                )
