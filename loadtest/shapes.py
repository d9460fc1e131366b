"""Load shapes: how many users run at each moment of a load test, by name and parameters.

A shape is a small frozen object asked ``at(t)`` for ``(users, spawn_rate)``; the locustfile's
``LoadTestShape`` hands its answers to Locust. Every shape ends its run with a *drain*: no users
for ``drain_s`` seconds, so that the engine's receipts for the last messages still arrive (and are
counted) before Locust stops, then ``None``.

| shape | users over the run (peak ``users``, ``spawn_rate``, ``duration_s``) |
|---|---|
| ``soak`` (default) | up to ``users`` at ``spawn_rate``, held to the end |
| ``ramp`` | a straight line from 0 to ``users`` over ``up`` (default: the whole run), then held; ``down`` falls back to 0 before the end |
| ``step`` | ``steps`` equal steps up to ``users``, each ``step`` long (default: the run split evenly) |
| ``spike`` | ``base`` users (default a tenth), ``users`` from ``at`` for ``hold``, then ``base`` again |

Written ``NAME`` or ``NAME:key=value,key=value`` (``spike:at=20s,hold=10s,base=50``); durations take
``90``, ``90s``, ``2m``, ``1h30m``. Pure: no Locust, no clock.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import ClassVar

__all__ = [
    "SHAPES",
    "Plan",
    "Ramp",
    "Shape",
    "ShapeError",
    "Spike",
    "Step",
    "Soak",
    "parse_duration",
    "parse_shape",
]

_DURATION = re.compile(r"^(?:(?P<h>\d+(?:\.\d+)?)h)?(?:(?P<m>\d+(?:\.\d+)?)m)?(?:(?P<s>\d+(?:\.\d+)?)s?)?$")


class ShapeError(ValueError):
    """A shape name, parameter or duration that cannot be used; the message says which and why."""


def parse_duration(text: str) -> float:
    """Seconds in ``90``, ``90s``, ``2m``, ``1h30m`` or ``1.5h``; raise :class:`ShapeError` otherwise."""
    match = _DURATION.fullmatch(text.strip().lower())
    if not text.strip() or match is None or not any(match.groups()):
        raise ShapeError(f"{text!r} is not a duration (examples: 90, 90s, 2m, 1h30m)")
    hours, minutes, seconds = (float(match.group(k) or 0) for k in "hms")
    return hours * 3600 + minutes * 60 + seconds


@dataclass(frozen=True)
class Shape:
    """Peak ``users``, ``spawn_rate`` (users started per second) and ``duration_s`` of the load."""

    name: ClassVar[str] = ""
    users: int
    spawn_rate: float
    duration_s: float

    def __post_init__(self) -> None:
        if self.users < 1:
            raise ShapeError(f"{self.name}: users must be >= 1, not {self.users}")
        if not (math.isfinite(self.spawn_rate) and self.spawn_rate > 0):
            raise ShapeError(f"{self.name}: spawn rate must be a number > 0, not {self.spawn_rate}")
        if not (math.isfinite(self.duration_s) and self.duration_s > 0):
            raise ShapeError(f"{self.name}: the duration must be > 0 s, not {self.duration_s}")

    def at(self, t: float) -> tuple[int, float]:
        """Users wanted ``t`` seconds into the load (0 <= t < duration_s) and the rate to get there."""
        raise NotImplementedError

    def peak(self) -> int:
        """The most users the shape ever asks for."""
        return self.users

    def params(self) -> dict[str, float]:
        """The shape's own parameters, defaults resolved (for the report)."""
        return {}


@dataclass(frozen=True)
class Soak(Shape):
    """Up to ``users`` at ``spawn_rate``, then held to the end: a long steady load."""

    name: ClassVar[str] = "soak"

    def at(self, t: float) -> tuple[int, float]:
        return self.users, self.spawn_rate


@dataclass(frozen=True)
class Ramp(Shape):
    """A straight line from 0 to ``users`` over ``up_s`` (0: the whole run), held, then ``down_s`` back to 0."""

    name: ClassVar[str] = "ramp"
    up_s: float = 0.0
    down_s: float = 0.0

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.up_s < 0 or self.down_s < 0 or self.rise_s + self.down_s > self.duration_s:
            raise ShapeError(
                f"ramp: up ({self.rise_s:g} s) and down ({self.down_s:g} s) must fit in the run ({self.duration_s:g} s)"
            )

    @property
    def rise_s(self) -> float:
        return self.up_s or self.duration_s - self.down_s

    def params(self) -> dict[str, float]:
        return {"up_s": self.rise_s, "down_s": self.down_s}

    def at(self, t: float) -> tuple[int, float]:
        rate = max(self.users / self.rise_s, 1.0) * 2  # the line moves each tick: spawn faster than it rises
        fall_from = self.duration_s - self.down_s
        if t >= fall_from and self.down_s > 0:
            left = max(0.0, 1.0 - (t - fall_from) / self.down_s)
            return math.floor(self.users * left), max(self.users / self.down_s, 1.0) * 2
        return max(1, min(self.users, math.ceil(self.users * t / self.rise_s))), rate


@dataclass(frozen=True)
class Step(Shape):
    """``steps`` equal steps up to ``users``, each ``step_s`` long (0: the run split evenly), then held."""

    name: ClassVar[str] = "step"
    steps: int = 5
    step_s: float = 0.0

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.steps < 1 or self.steps > self.users:
            raise ShapeError(f"step: steps must be 1 to users ({self.users}), not {self.steps}")
        if self.step_s < 0:
            raise ShapeError(f"step: the step length must be >= 0 s, not {self.step_s:g}")

    @property
    def length_s(self) -> float:
        return self.step_s or self.duration_s / self.steps

    def params(self) -> dict[str, float]:
        return {"steps": self.steps, "step_s": self.length_s}

    def at(self, t: float) -> tuple[int, float]:
        k = min(int(t // self.length_s), self.steps - 1)
        return math.ceil(self.users * (k + 1) / self.steps), self.spawn_rate


@dataclass(frozen=True)
class Spike(Shape):
    """``base`` users (-1: a tenth of ``users``), ``users`` from ``at_s`` for ``hold_s``, then ``base`` again.

    ``at_s`` defaults (-1) to a third of the run and ``hold_s`` (0) to a sixth.
    """

    name: ClassVar[str] = "spike"
    base: int = -1
    at_s: float = -1.0
    hold_s: float = 0.0

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 0 <= self.floor <= self.users:
            raise ShapeError(f"spike: base must be 0 to users ({self.users}), not {self.base}")
        if self.hold_s < 0 or not 0 <= self.start_s < self.duration_s:
            raise ShapeError(f"spike: at ({self.start_s:g} s) must fall inside the run ({self.duration_s:g} s)")

    @property
    def floor(self) -> int:
        return max(1, self.users // 10) if self.base < 0 else self.base

    @property
    def start_s(self) -> float:
        return self.duration_s / 3 if self.at_s < 0 else self.at_s

    @property
    def length_s(self) -> float:
        return self.hold_s or self.duration_s / 6

    def params(self) -> dict[str, float]:
        return {"base": self.floor, "at_s": self.start_s, "hold_s": self.length_s}

    def at(self, t: float) -> tuple[int, float]:
        if self.start_s <= t < self.start_s + self.length_s:
            return self.users, self.spawn_rate
        return self.floor, self.spawn_rate


SHAPES: dict[str, type[Shape]] = {s.name: s for s in (Soak, Ramp, Step, Spike)}
# parameter as written -> (field, kind)
_PARAMS: dict[str, dict[str, tuple[str, str]]] = {
    "soak": {},
    "ramp": {"up": ("up_s", "duration"), "down": ("down_s", "duration")},
    "step": {"steps": ("steps", "int"), "step": ("step_s", "duration")},
    "spike": {"base": ("base", "int"), "at": ("at_s", "duration"), "hold": ("hold_s", "duration")},
}


def parse_shape(spec: str, *, users: int, spawn_rate: float, duration_s: float) -> Shape:
    """Build the shape ``NAME[:key=value,...]`` for ``users`` peak users over ``duration_s``."""
    name, _, rest = spec.strip().partition(":")
    name = name.strip().lower()
    if name not in SHAPES:
        raise ShapeError(f"unknown shape {name!r}; choose one of {', '.join(SHAPES)}")
    known = _PARAMS[name]
    values: dict[str, float | int] = {}
    for item in filter(None, (p.strip() for p in rest.split(","))):
        key, sep, raw = item.partition("=")
        key = key.strip().lower()
        if not sep or key not in known:
            allowed = ", ".join(f"{k}=" for k in known) or "none"
            raise ShapeError(f"{name}: unknown parameter {item!r} (parameters: {allowed})")
        field, kind = known[key]
        if kind == "duration":
            values[field] = parse_duration(raw)
        else:
            try:
                values[field] = int(raw)
            except ValueError:
                raise ShapeError(f"{name}: {key} must be a whole number, not {raw.strip()!r}") from None
    return SHAPES[name](users=users, spawn_rate=spawn_rate, duration_s=duration_s, **values)  # type: ignore[arg-type]


@dataclass(frozen=True)
class Plan:
    """A shape followed by its drain: ``at(t)`` is ``(users, rate)``, then ``(0, rate)`` for ``drain_s``, then None."""

    shape: Shape
    drain_s: float = 10.0

    def __post_init__(self) -> None:
        if not (math.isfinite(self.drain_s) and self.drain_s >= 0):
            raise ShapeError(f"the drain must be >= 0 s, not {self.drain_s}")

    @property
    def total_s(self) -> float:
        return self.shape.duration_s + self.drain_s

    def at(self, t: float) -> tuple[int, float] | None:
        if t < 0:
            raise ValueError(f"t must be >= 0, not {t}")
        if t < self.shape.duration_s:
            return self.shape.at(t)
        if t < self.total_s:
            return 0, float(max(self.shape.peak(), 1))  # stop everyone within about a second
        return None

    def describe(self) -> dict[str, object]:
        """The shape's name and every parameter with its defaults resolved, for the report."""
        s = self.shape
        return {
            "name": s.name,
            "users": s.users,
            "spawn_rate": s.spawn_rate,
            "duration_s": s.duration_s,
            **s.params(),
            "drain_s": self.drain_s,
        }
