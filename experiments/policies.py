"""Policies to compare: a name (``reactive``, ``proactive``) or a YAML file over the ``engine:`` section.

A policy file is real engine configuration, not a flag: it overlays the scenario's ``engine:``
section (thresholds, rules, issues, SLA, …) — mappings merge by key, lists of named things merge by
name — and the result is validated like a scenario, each problem with its path in the policy file.
Its optional ``name`` labels it (default: the file name); its ``policy`` picks the base behaviour
(default: the scenario's).

    # aggressive.yaml: catch compressors earlier, promise a faster first response
    name: aggressive
    policy: proactive
    rules:
      - {name: freezer_compressor_overwork, above: 0.65}
    sla: {first_response_s: 7200}
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from contracts.engine_config import POLICIES
from experiments.errors import ExperimentError
from experiments.overrides import overlay, plain
from sim.errors import Problem, ScenarioError
from sim.scenario import Scenario
from sim.scenario_file import validate_data

__all__ = ["PolicySpec", "apply_policy", "read_policy"]


@dataclass(frozen=True)
class PolicySpec:
    """One policy of an experiment: its label, its base behaviour and its overlay of ``engine:``."""

    label: str
    policy: str | None  # reactive / proactive, or None: the scenario's
    overlay: dict[str, Any]
    source: str | None = None  # the policy file, if any


def read_policy(text: str) -> PolicySpec:
    """A policy by name, or read from a YAML file (``ExperimentError`` or ``ScenarioError`` if bad)."""
    if text in POLICIES:
        return PolicySpec(text, text, {})
    path = Path(text)
    if path.suffix.lower() not in (".yaml", ".yml") and not path.exists():
        raise ExperimentError(f"policy {text!r}: not one of {', '.join(POLICIES)}, and no such policy file")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ExperimentError(f"policy file {text}: cannot read it ({exc.strerror or exc})") from exc
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark is not None else "YAML"
        raise ScenarioError(text, [Problem(f"<{where}>", f"not valid YAML: {getattr(exc, 'problem', exc)}")]) from exc
    if not isinstance(data, dict):
        raise ScenarioError(
            text, [Problem("", "a policy file is a mapping of engine settings (rules, issues, sla, …)")]
        )
    data = dict(data)
    label = data.pop("name", None) or path.stem
    if not isinstance(label, str) or not label.strip():
        raise ScenarioError(text, [Problem("name", "must be a non-empty string")])
    policy = data.get("policy")
    if policy is not None and policy not in POLICIES:
        raise ScenarioError(text, [Problem("policy", f"must be one of {', '.join(POLICIES)}")])
    return PolicySpec(label.strip(), policy, data, str(path))


def apply_policy(scenario: Scenario, spec: PolicySpec) -> Scenario:
    """The scenario with the policy's overlay merged into ``engine:`` and its policy set, validated."""
    if not spec.overlay and spec.policy is None:
        return scenario
    data = plain(scenario)
    engine = overlay(data.get("engine") or {}, spec.overlay)
    if spec.policy is not None:
        engine["policy"] = spec.policy
    data["engine"] = engine
    result, problems = validate_data(data)
    if result is None:
        source = spec.source or spec.label
        mine = [_in_policy_terms(p) for p in problems]
        raise ScenarioError(source, mine)
    return result


def _in_policy_terms(problem: Problem) -> Problem:
    """A problem under ``engine.`` is one in the policy file itself: drop the prefix."""
    if problem.path.startswith("engine."):
        return Problem(problem.path.removeprefix("engine."), problem.message)
    if problem.path == "engine":
        return Problem("", problem.message)
    return problem
