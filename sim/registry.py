"""The device registry as a support organisation knows the world's fleets, made and written in chunks.

A record per device (product, owner, region, the firmware it shipped with, its cohorts, its
reporting interval) costs about a kilobyte as a Python object: the registry is made a chunk of
devices at a time as it is read, and written to a file the same way, never whole.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator
from pathlib import Path

import msgspec

from contracts.messages import DeviceRecord
from sim.fleet import FleetState

__all__ = ["CHUNK", "device_records", "firmware_code", "write_jsonl"]

CHUNK = 10_000
"""Records made (and written) at a time."""


def firmware_code(version: str) -> str:
    """A firmware version as a name the contracts accept (letters, digits and ``_.:-``, at most 64)."""
    return "".join(ch if ch.isalnum() or ch in "_.:-" else "_" for ch in version)[:64] or "unknown"


def device_records(fleets: Iterable[FleetState], chunk: int = CHUNK) -> Iterator[DeviceRecord]:
    """Every device of ``fleets``, in order, made ``chunk`` devices at a time."""
    if chunk <= 0:
        raise ValueError(f"chunk must be > 0, not {chunk}")
    for fleet in fleets:
        product, interval_s = fleet.spec.product, fleet.spec.telemetry_interval_s
        region_of = [*fleet.regions, None]  # code -1 (none) picks the last
        per = fleet.spec.devices_per_gateway
        gateway_of = [gateway for gateway, _ in fleet.gateways]
        version_of = [*(firmware_code(v) for v in fleet.versions), None]
        for lo in range(0, fleet.n, chunk):
            hi = min(lo + chunk, fleet.n)
            regions = [region_of[r] for r in fleet.region[lo:hi].tolist()]
            versions = [version_of[v] for v in fleet.firmware[lo:hi].tolist()]
            cohorts = [(dim, names, which[lo:hi].tolist()) for dim, (names, which) in fleet.cohort.items()]
            for i, device_id in enumerate(fleet.ids[lo:hi]):
                yield DeviceRecord(
                    device_id=device_id,
                    product=product,
                    owner_id=f"owner-{device_id}",
                    region=regions[i],
                    firmware=versions[i],
                    cohorts={dim: names[codes[i]] for dim, names, codes in cohorts},
                    interval_s=interval_s,
                    gateway_id=gateway_of[(lo + i) // per],
                )


def write_jsonl(registry: Iterable[DeviceRecord], path: Path, chunk: int = CHUNK) -> int:
    """Write ``registry`` to ``path`` as JSON lines, ``chunk`` records at a time; return how many.

    The bytes are those of ``msgspec.json.encode(record) + b"\\n"`` for every record, in order.
    """
    if chunk <= 0:
        raise ValueError(f"chunk must be > 0, not {chunk}")
    encoder = msgspec.json.Encoder()
    count = 0
    remaining = iter(registry)
    with path.open("wb") as out:
        while batch := list(itertools.islice(remaining, chunk)):
            out.write(encoder.encode_lines(batch))
            count += len(batch)
    return count
