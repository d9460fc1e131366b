"""Engine partitions: which shards of the device topics one engine process owns (shared by the
engine, which runs as a partition, and the harness, which starts them and counts for them).

A deployment splits its device topics into ``shards`` (:mod:`contracts.topics`); partition K of N
owns the shards ``s`` with ``s % N == K``. Each partition is a whole engine for the devices of its
shards: their twins, rules, alerts, cases, commands and work orders, in its own persistent MQTT
session and its own database. Nothing a partition decides depends on another's devices, so N
partitions decide what one engine would, device by device; decisions that weigh the whole fleet
at once (fleet-wide rollouts, cohort campaigns, the engine's own technician assignment) need one
engine, and a partitioned engine refuses a configuration that makes them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from contracts.engine_config import EngineConfig
from contracts.errors import PartitionError
from contracts.messages import Clock, DeviceRecord
from contracts.topics import shard_of

__all__ = ["Partition", "check_partitionable", "fleet_wide_decisions"]

_SPEC = re.compile(r"^(\d{1,4})/(\d{1,4})$")


@dataclass(frozen=True)
class Partition:
    """Partition ``index`` of ``count`` over ``shards`` shards (``shards >= count``)."""

    index: int = 0
    count: int = 1
    shards: int = 1

    def __post_init__(self) -> None:
        if not 1 <= self.count <= 4096 or not 0 <= self.index < self.count:
            raise PartitionError(f"partition {self.index}/{self.count}: expected K/N with 0 <= K < N <= 4096")
        if not self.count <= self.shards <= 4096:
            raise PartitionError(
                f"{self.shards} shards cannot be shared by {self.count} partitions: give at least one shard each"
            )

    @classmethod
    def parse(cls, spec: str, shards: int | None = None) -> Partition:
        """``"K/N"`` (partition K of N, counting from 0) over ``shards`` shards (default N)."""
        match = _SPEC.fullmatch(spec.strip())
        if match is None:
            raise PartitionError(f"--partition {spec!r}: expected K/N, partition K of N counting from 0 (e.g. 0/2)")
        index, count = int(match[1]), int(match[2])
        return cls(index, count, count if shards is None else shards)

    @property
    def alone(self) -> bool:
        return self.count == 1

    @property
    def owned(self) -> list[int]:
        """The shards this partition owns."""
        return [s for s in range(self.shards) if s % self.count == self.index]

    @property
    def id_scope(self) -> str:
        """What this partition puts in the ids it makes (``case-p1-0000001``); none alone."""
        return "" if self.alone else f"p{self.index}-"

    def owns(self, shard: int) -> bool:
        return shard % self.count == self.index

    def owns_record(self, record: DeviceRecord) -> bool:
        """Whether a registry entry is one of this partition's devices (by its gateway's shard, or its own)."""
        return self.alone or self.owns(shard_of(record.gateway_id or record.device_id, self.shards))

    def expected(self, clock: Clock) -> int:
        """How many of the messages ``clock`` counts are on this partition's topics."""
        if not clock.shards:
            return clock.published
        if len(clock.shards) != self.shards:
            raise PartitionError(
                f"the world counts {len(clock.shards)} shards and this engine {self.shards}: "
                "start the engine with the world's --shards"
            )
        unsharded = clock.published - sum(clock.shards)
        return unsharded + sum(clock.shards[s] for s in self.owned)


def fleet_wide_decisions(config: EngineConfig) -> list[str]:
    """What in ``config`` weighs the whole fleet at once (and so needs one engine, not partitions)."""
    found: list[str] = []
    if config.policy == "proactive":
        found += [f"issues.{name}.rollout_after" for name, issue in config.issues.items() if issue.rollout_after]
        if config.campaigns:
            found.append("campaigns")
    if config.technicians:
        found.append("technicians (the engine's own assignment)")
    return found


def check_partitionable(config: EngineConfig, partition: Partition) -> None:
    """Refuse a partition of an engine whose configuration makes fleet-wide decisions."""
    if partition.alone:
        return
    found = fleet_wide_decisions(config)
    if found:
        raise PartitionError(
            f"engine partitions decide device by device, and this configuration decides for the whole fleet "
            f"at once ({', '.join(found)}): run it with one engine"
        )
