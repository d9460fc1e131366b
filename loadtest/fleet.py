"""The fleet a load test simulates, taken from a scenario file: products, counts, intervals, sensors.

A load test and a simulation describe the same fleet: :func:`from_scenario` reads a scenario's fleets
(after the catalogue merge) into a :class:`FleetMix`, a small frozen value that travels to Locust
workers as JSON. Users are handed out to fleets in proportion to their counts by an
:class:`Allocator`, so that any number of users, and every prefix of them, follows the mix.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import msgspec

if TYPE_CHECKING:
    from sim.scenario import Scenario

__all__ = ["Allocator", "FleetMix", "FleetSpec", "SensorSpec", "UserKind", "from_scenario", "from_scenario_file"]

UserKind = Literal["device", "gateway"]
HEALTHY_CODE = "self_test_passed"
CONSUMABLE_LEVEL = 0.6  # share of capacity a load test reports for every consumable


class SensorSpec(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A sensor's healthy level and noise, as the scenario gives them."""

    name: str
    baseline: float
    noise_sd: float = 0.0


class FleetSpec(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """One fleet as a load test sees it: what its devices report, and how often.

    ``fault_codes`` are the codes its devices report in ``fault`` events (empty: they send
    ``diagnosis`` events instead).
    """

    name: str
    product: str
    count: int
    interval_s: float
    devices_per_gateway: int
    sensors: tuple[SensorSpec, ...]
    fault_codes: tuple[str, ...] = ()

    @property
    def gateways(self) -> int:
        """Gateways the fleet needs (each carries up to ``devices_per_gateway`` devices)."""
        return math.ceil(self.count / self.devices_per_gateway)

    def event(self, pick: float) -> tuple[Literal["fault", "diagnosis"], str]:
        """The (kind, code) of an occasional device event; ``pick`` in [0, 1) chooses the code."""
        if not self.fault_codes:
            return "diagnosis", HEALTHY_CODE
        return "fault", self.fault_codes[min(int(pick * len(self.fault_codes)), len(self.fault_codes) - 1)]


class FleetMix(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Every fleet of a scenario; users are spread over them in proportion to their counts."""

    scenario: str
    fleets: tuple[FleetSpec, ...]

    def __post_init__(self) -> None:
        if not self.fleets:
            raise ValueError("a fleet mix needs at least one fleet")
        for f in self.fleets:
            if f.count <= 0 or not (math.isfinite(f.interval_s) and f.interval_s > 0) or f.devices_per_gateway <= 0:
                raise ValueError(f"fleet {f.name!r}: count, interval_s and devices_per_gateway must be > 0")
            if not f.sensors:
                raise ValueError(f"fleet {f.name!r} has no sensors: its devices would have nothing to report")

    @property
    def devices(self) -> int:
        return sum(f.count for f in self.fleets)

    def weights(self, kind: UserKind) -> list[int]:
        """How many users of ``kind`` each fleet would have at full size: devices, or gateways."""
        return [f.count if kind == "device" else f.gateways for f in self.fleets]

    def full_size(self, kind: UserKind) -> int:
        """Users needed to simulate the whole fleet: one per device, or one per gateway."""
        return sum(self.weights(kind))

    def allocator(self, kind: UserKind) -> Allocator:
        return Allocator(self.weights(kind))

    def users_by_fleet(self, users: int, kind: UserKind) -> dict[str, int]:
        """How ``users`` users of ``kind`` split over the fleets (what an :class:`Allocator` hands out)."""
        alloc = self.allocator(kind)
        counts = dict.fromkeys((f.name for f in self.fleets), 0)
        for _ in range(users):
            counts[self.fleets[alloc.next()].name] += 1
        return counts

    def message_rate(self, users: int, kind: UserKind, speed: float, event_share: float = 0.0) -> float:
        """Messages per second that ``users`` users send at ``speed`` (intervals divided by it).

        ``event_share`` is the share of a device's ticks that also send an event (gateways send none).
        """
        if users < 0 or not (math.isfinite(speed) and speed > 0):
            raise ValueError(f"users must be >= 0 and speed a finite number > 0 (got {users}, {speed})")
        split = self.users_by_fleet(users, kind)
        per_tick = 1.0 + (event_share if kind == "device" else 0.0)
        return sum(split[f.name] * per_tick * speed / f.interval_s for f in self.fleets)

    def speed_for_rate(self, rate: float, users: int, kind: UserKind, event_share: float = 0.0) -> float:
        """The speed at which ``users`` users of ``kind`` send ``rate`` messages per second."""
        if not (math.isfinite(rate) and rate > 0) or users <= 0:
            raise ValueError(f"rate and users must be > 0 (got {rate}, {users})")
        return rate / self.message_rate(users, kind, 1.0, event_share)

    def encode(self) -> str:
        """JSON, to hand the mix to Locust workers as an option value."""
        return msgspec.json.encode(self).decode()

    @classmethod
    def decode(cls, text: str | bytes) -> FleetMix:
        try:
            return msgspec.json.decode(text, type=cls)
        except msgspec.ValidationError as exc:
            raise ValueError(f"not a fleet mix: {exc}") from exc
        except msgspec.DecodeError as exc:
            raise ValueError(f"fleet mix is not valid JSON: {exc}") from exc


class Allocator:
    """Hands users out to fleets in proportion to ``weights``, deterministically.

    Each next user goes to the fleet furthest below its share (the first such fleet on a tie), so
    after any n users every fleet has its share of n within about one user (always within two).
    Stateful; one per process.
    """

    def __init__(self, weights: list[int]) -> None:
        if not weights or any(w < 0 for w in weights) or sum(weights) <= 0:
            raise ValueError(f"weights must be >= 0 with a positive sum, not {weights}")
        total = sum(weights)
        self._shares = [w / total for w in weights]
        self._given = [0] * len(weights)
        self._n = 0

    def next(self) -> int:
        """The index of the fleet the next user belongs to."""
        self._n += 1
        lag = [share * self._n - given for share, given in zip(self._shares, self._given, strict=True)]
        best = max(range(len(lag)), key=lambda i: (lag[i], -i))
        self._given[best] += 1
        return best


def from_scenario(scenario: Scenario) -> FleetMix:
    """The fleet mix of a loaded scenario (its fleets after the catalogue merge)."""
    fleets = []
    for f in scenario.fleets:
        codes = sorted({m.fault_code for m in f.failure_modes if m.fault_code is not None})
        fleets.append(
            FleetSpec(
                name=f.name,
                product=f.product,
                count=f.count,
                interval_s=f.telemetry_interval_s,
                devices_per_gateway=f.devices_per_gateway,
                sensors=(
                    *(SensorSpec(name=s.name, baseline=s.baseline, noise_sd=s.noise_sd) for s in f.sensors),
                    # consumable levels are sensors too; a load test holds them at a comfortable level
                    *(
                        SensorSpec(name=c.sensor, baseline=CONSUMABLE_LEVEL * c.capacity, noise_sd=c.noise_sd)
                        for c in f.consumables
                    ),
                ),
                fault_codes=tuple(codes),
            )
        )
    return FleetMix(scenario=scenario.name, fleets=tuple(fleets))


def from_scenario_file(path: str | Path) -> FleetMix:
    """Read a scenario file (raises :class:`sim.errors.ScenarioError` with every problem) into a mix."""
    from sim.scenario_file import load

    return from_scenario(load(path))
