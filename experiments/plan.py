"""What an experiment runs: arms (policies or sweep points) by replications on common seeds.

Replication *i* runs every arm on the same seed (common random numbers): devices fail at the same
moments under every arm until an arm's actions change their history, so a difference between arms
is measured on the same failures. Seeds derive from the scenario's seed
(``SeedSequence(seed).spawn``), so replication *i*'s seed is the same whether an experiment asks for
5 replications or 50, and the whole experiment is reproducible.

Each replication has a key: a hash of the fully resolved scenario (the arm's policy and overrides
applied, its warm-up included), its seed, and the code that produces and scores it. The key names its directory under ``DIR/replications/``; a
re-run finds what is already there and runs only what is missing.
"""

from __future__ import annotations

import functools
import hashlib
import importlib
import itertools
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
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
    key: str

    @property
    def dirname(self) -> str:
        return f"{_slug(self.arm)}-r{self.index:03d}-{self.key[:12]}"


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._=-]+", "_", text)[:60] or "arm"


_SCORED_BY = ("contracts", "sim", "support_engine", "harness")
_SCORING = ("assess.py", "checklist.py", "ledger.py", "rundata.py", "scorecard.py")


@functools.cache
def code_fingerprint() -> str:
    """A hash of the code a replication's figures depend on: world, engine, harness and scoring.

    Part of every replication's key, so that results stored by other code are run again rather
    than mixed with new ones in one comparison. The report's code is not part of it.
    """
    digest = hashlib.sha256()
    for package in _SCORED_BY:
        root = Path(importlib.import_module(package).__path__[0])
        for path in sorted([*root.rglob("*.py"), *root.rglob("*.yaml")]):
            digest.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes())
    here = Path(__file__).parent
    for name in _SCORING:
        digest.update(name.encode() + b"\0" + (here / name).read_bytes())
    return digest.hexdigest()[:16]


def _key(scenario: dict[str, Any], seed: int) -> str:
    blob = {"v": KEY_VERSION, "code": code_fingerprint(), "scenario": scenario, "seed": seed}
    return hashlib.sha256(msgspec.json.encode(blob, order="sorted")).hexdigest()


@dataclass(frozen=True)
class Plan:
    """An experiment: its kind, arms (the first is the baseline) and, for a sweep, its settings."""

    kind: str  # compare or sweep
    base: Scenario
    arms: tuple[Arm, ...]
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
                key = _key(arm.scenario, seed)
                out.append(ReplicationSpec(arm.label, index, seed, arm.policy, arm.scenario, key))
        return out


def compare_plan(base: Scenario, policies: Sequence[PolicySpec]) -> Plan:
    """Arms for ``sot compare``: one per policy, the first the baseline."""
    labels = [p.label for p in policies]
    dupes = sorted({x for x in labels if labels.count(x) > 1})
    if dupes:
        raise ExperimentError(f"policy label(s) given twice: {', '.join(dupes)} (a policy file's `name` labels it)")
    arms = []
    for spec in policies:
        scenario = apply_policy(base, spec)
        arms.append(Arm(spec.label, scenario.engine.policy, plain(scenario), spec.source))
    return Plan("compare", base, tuple(arms))


def sweep_plan(base: Scenario, policy: PolicySpec, settings: Sequence[Setting]) -> Plan:
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
    labels = [a.label for a in arms]
    if len(set(labels)) != len(labels):
        dupes = sorted({x for x in labels if labels.count(x) > 1})
        raise ExperimentError(f"the grid has the same point more than once: {'; '.join(dupes)}")
    return Plan("sweep", base, tuple(arms), tuple(settings))


def _short(path: str) -> str:
    """``engine.rules[compressor_duty].above`` → ``compressor_duty.above``; ``engine.sla.resolution_s`` → ``sla.resolution_s``."""
    m = re.search(r"\[([^\]]+)\]\.?([^\[]*)$", path)
    return f"{m.group(1)}.{m.group(2)}".rstrip(".") if m else ".".join(path.split(".")[-2:])


def _fmt(value: Any) -> str:
    return repr(value) if isinstance(value, float) else str(value)
