"""Overrides of a scenario by path: ``engine.rules[compressor_duty].above=0.55,0.65`` and overlays.

A path walks the scenario's plain data after the catalogue merge, so it reaches what a fleet
inherited from its product as well as what the file says itself. ``key`` steps into a mapping,
``[3]`` into a list by position, and ``[name]`` into a list of named things by name — or, where no
item has that name, by the one item that has the value in another field (``rules[compressor_duty]``
is the rule on that sensor). Values are YAML scalars or flow collections (``0.8``, ``true``,
``[a, b]``).

An overlay (a policy file) merges into a section: mappings merge key by key, lists of named things
merge by name, anything else is replaced.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import msgspec
import yaml

from experiments.errors import ExperimentError
from sim.errors import Problem, ScenarioError
from sim.scenario import Scenario
from sim.scenario_file import validate_data

__all__ = ["Setting", "apply", "overlay", "parse_setting", "resolve"]

_NUMBER = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")  # 1e5 too, which YAML 1.1 reads as text
_STEP = re.compile(r"\.?([A-Za-z_][A-Za-z0-9_]*)|\[([^\]]+)\]")


@dataclass(frozen=True)
class Setting:
    """One ``--set``: a path and the values to try along it."""

    path: str
    steps: tuple[str | int, ...]
    values: tuple[Any, ...]


def _steps(path: str) -> tuple[str | int, ...]:
    steps: list[str | int] = []
    at = 0
    while at < len(path):
        m = _STEP.match(path, at)
        if m is None or m.end() == at or (at == 0 and path.startswith(".")):
            raise ExperimentError(f"{path!r}: cannot read the path at {path[at:]!r} (write a.b[name].c or a.b[0].c)")
        key, index = m.group(1), m.group(2)
        if key is not None:
            steps.append(key)
        else:
            steps.append(int(index) if index.strip().lstrip("-").isdigit() else index.strip())
        at = m.end()
    if not steps or not isinstance(steps[0], str):
        raise ExperimentError(f"{path!r}: a path starts with a field name")
    return tuple(steps)


def _value(text: str, where: str) -> Any:
    try:
        return (
            float(text)
            if _NUMBER.fullmatch(text.strip()) and not text.strip().lstrip("+-").isdigit()
            else yaml.safe_load(text)
        )
    except yaml.YAMLError as exc:
        raise ExperimentError(f"{where}: {text!r} is not a YAML value") from exc


def _split_values(text: str) -> list[str]:
    """Split ``a,b,[c,d]`` at top-level commas."""
    parts, depth, start = [], 0, 0
    for i, ch in enumerate(text):
        if ch in "[{":
            depth += 1
        elif ch in "]}":
            depth -= 1
        elif ch == "," and depth == 0:
            parts.append(text[start:i])
            start = i + 1
    parts.append(text[start:])
    return [p.strip() for p in parts]


def parse_setting(text: str) -> Setting:
    """Parse ``PATH=v1,v2,…`` (``--set``)."""
    path, sep, values = text.partition("=")
    path = path.strip()
    if not sep or not path or not values.strip():
        raise ExperimentError(
            f"{text!r}: write PATH=VALUE[,VALUE…], e.g. 'engine.rules[compressor_duty].above=0.6,0.7'"
        )
    if path in ("seed", "schema_version"):
        raise ExperimentError(f"{path!r}: replications take their seeds from the scenario's seed; set that in the file")
    parsed = tuple(_value(v, path) for v in _split_values(values) if v)
    if not parsed:
        raise ExperimentError(f"{text!r}: no value to try")
    return Setting(path, _steps(path), parsed)


def _pick(items: list[Any], key: str, where: str) -> int:
    named = [i for i, item in enumerate(items) if isinstance(item, dict) and item.get("name") == key]
    if len(named) == 1:
        return named[0]
    by_value = [i for i, item in enumerate(items) if isinstance(item, dict) and key in item.values()]
    if len(by_value) == 1:
        return by_value[0]
    names = [str(item.get("name")) for item in items if isinstance(item, dict) and "name" in item]
    if len(by_value) > 1:
        hits = ", ".join(str(items[i].get("name", i)) for i in by_value)
        raise ExperimentError(f"{where}[{key}]: {len(by_value)} items match ({hits}); name one of them")
    raise ExperimentError(
        f"{where}[{key}]: no item is named or has the value {key!r}; names: {', '.join(names) or 'none'}"
    )


def apply(data: Any, setting: Setting, value: Any) -> Any:
    """Return a copy of plain scenario data with ``value`` set at ``setting``'s path."""
    out = copy.deepcopy(data)
    node, where = out, ""
    for k, given in enumerate(setting.steps):
        last = k == len(setting.steps) - 1
        step = _pick(node, given, where) if isinstance(given, str) and isinstance(node, list) else given
        if isinstance(step, int):
            if not isinstance(node, list) or not -len(node) <= step < len(node):
                raise ExperimentError(f"{setting.path}: {where or 'the scenario'} has no item [{step}]")
            where = f"{where}[{step}]"
        else:
            if not isinstance(node, dict):
                raise ExperimentError(f"{setting.path}: {where or 'the scenario'} is not a mapping")
            if step not in node and not last:
                node[step] = {}
            where = f"{where}.{step}" if where else step
        if last:
            node[step] = value
        else:
            node = node[step]
    return out


def overlay(base: Any, over: Any) -> Any:
    """Merge ``over`` into ``base``: mappings by key, lists of named mappings by name, else replace."""
    if isinstance(base, dict) and isinstance(over, dict):
        out = dict(base)
        for key, value in over.items():
            out[key] = overlay(base[key], value) if key in base else value
        return out
    if isinstance(base, list) and isinstance(over, list) and all(isinstance(i, dict) and "name" in i for i in over):
        out_list = list(base)
        at = {item.get("name"): i for i, item in enumerate(out_list) if isinstance(item, dict)}
        for item in over:
            if item["name"] in at:
                out_list[at[item["name"]]] = overlay(out_list[at[item["name"]]], item)
            else:
                out_list.append(item)
        return out_list
    return over


def resolve(data: Mapping[str, Any], source: str) -> Scenario:
    """Validate changed plain scenario data; a problem names ``source`` (the --set or the policy file)."""
    scenario, problems = validate_data(dict(data))
    if scenario is None:
        raise ScenarioError(source, problems or [Problem("", "invalid")])
    return scenario


def plain(scenario: Scenario) -> dict[str, Any]:
    """The scenario as plain data after the catalogue merge (what paths and overlays act on)."""
    data: dict[str, Any] = msgspec.to_builtins(scenario)
    return data
