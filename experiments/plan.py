"""What an experiment runs: arms (policies or sweep points) by replications on common seeds.

Replication *i* runs every arm on the same seed (common random numbers): devices fail at the same
moments under every arm until an arm's actions change their history, so a difference between arms
is measured on the same failures. Seeds derive from the scenario's seed
(``SeedSequence(seed).spawn``), so replication *i*'s seed is the same whether an experiment asks for
5 replications or 50, and the whole experiment is reproducible.

Each replication has a key: a hash of the fully resolved scenario (the arm's policy and overrides
applied), its seed and its warm-up. The key names its directory under ``DIR/replications/``; a
re-run finds what is already there and runs only what is missing.
"""

from __future__ import annotations

import hashlib
import itertools
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import msgspec
import numpy as np

from experiments.errors import ExperimentError
from experiments.overrides import Setting, apply, plain, resolve
from experiments.policies import PolicySpec, apply_policy
from sim.scenario import Scenario

__all__ = ["Arm", "Plan", "ReplicationSpec", "compare_plan", "replication_seeds", "sweep_plan"]

KEY_VERSION = 1  # bump when a replication's meaning changes, so old results are not reused


def replication_seeds(base_seed: int, n: int) -> list[int]:
    """The seeds of replications 0..n-1, derived from the scenario's seed."""
    children = np.random.SeedSequence(base_seed).spawn(n)
    return [int(c.generate_state(1, np.uint32)[0]) for c in children]


@dataclass(frozen=True)
class Arm:
    """One arm: a label, the engine policy it runs, and the fully resolved scenario as plain data."""

    label: str
    policy: str
    scenario: dict[str, Any]
    source: str | None = None
    overrides: tuple[tuple[str, Any], ...] = ()


@dataclass(frozen=True)
class ReplicationSpec:
    """One run to do: an arm on a seed. Plain data only, so it travels to any worker."""

    arm: str
    index: int
    seed: int
    policy: str
    scenario: dict[str, Any]
    warmup_days: float
    key: str

    @property
    def dirname(self) -> str:
        return f"{_slug(self.arm)}-r{self.index:03d}-{self.key[:12]}"


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._=-]+", "_", text)[:60] or "arm"


def _key(scenario: dict[str, Any], seed: int, warmup_days: float) -> str:
    blob = msgspec.json.encode({"v": KEY_VERSION, "scenario": scenario, "seed": seed, "warmup_days": warmup_days})
    return hashlib.sha256(msgspec.json.encode(msgspec.json.decode(blob), order="sorted")).hexdigest()


@dataclass(frozen=True)
class Plan:
    """An experiment: its kind, arms, baseline and warm-up."""

    kind: str  # compare or sweep
    base: Scenario
    arms: tuple[Arm, ...]
    warmup_days: float = 0.0
    settings: tuple[Setting, ...] = ()

    @property
    def baseline(self) -> str:
        return self.arms[0].label

    def seeds(self, n: int) -> list[int]:
        return replication_seeds(self.base.seed, n)

    def replications(self, n: int) -> list[ReplicationSpec]:
        """Replications 0..n-1 of every arm, replication-major (pairs finish together)."""
        out = []
        for index, seed in enumerate(self.seeds(n)):
            for arm in self.arms:
                key = _key(arm.scenario, seed, self.warmup_days)
                out.append(ReplicationSpec(arm.label, index, seed, arm.policy, arm.scenario, self.warmup_days, key))
        return out


def compare_plan(base: Scenario, policies: Sequence[PolicySpec], warmup_days: float = 0.0) -> Plan:
    """Arms for ``sot compare``: one per policy, the first the baseline."""
    labels = [p.label for p in policies]
    dupes = sorted({x for x in labels if labels.count(x) > 1})
    if dupes:
        raise ExperimentError(f"policy label(s) given twice: {', '.join(dupes)} (a policy file's `name` labels it)")
    arms = []
    for spec in policies:
        scenario = apply_policy(base, spec)
        arms.append(Arm(spec.label, scenario.engine.policy, plain(scenario), spec.source))
    return Plan("compare", base, tuple(arms), warmup_days)


def sweep_plan(base: Scenario, policy: PolicySpec, settings: Sequence[Setting], warmup_days: float = 0.0) -> Plan:
    """Arms for ``sot sweep``: every point of the grid of ``settings``, the first point the baseline."""
    start = apply_policy(base, policy)
    arms = []
    for values in itertools.product(*(s.values for s in settings)):
        data = plain(start)
        for setting, value in zip(settings, values, strict=True):
            data = apply(data, setting, value)
        label = ", ".join(f"{_short(s.path)}={_fmt(v)}" for s, v in zip(settings, values, strict=True))
        scenario = resolve(data, "--set " + label)
        pairs = tuple((s.path, v) for s, v in zip(settings, values, strict=True))
        arms.append(Arm(label, scenario.engine.policy, plain(scenario), policy.source, pairs))
    return Plan("sweep", base, tuple(arms), warmup_days, tuple(settings))


def _short(path: str) -> str:
    """``engine.rules[compressor_duty].above`` → ``compressor_duty.above``; ``engine.sla.resolution_s`` → ``sla.resolution_s``."""
    m = re.search(r"\[([^\]]+)\]\.?([^\[]*)$", path)
    return f"{m.group(1)}.{m.group(2)}".rstrip(".") if m else ".".join(path.split(".")[-2:])


def _fmt(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)
