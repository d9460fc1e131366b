"""Read a scenario file: YAML → every problem with its path, or a frozen :class:`Scenario`.

The pipeline is read (YAML, duplicate keys refused) → check the structure against the types,
collecting every problem rather than stopping at the first → convert (defaults filled, values
validated) → cross-field checks (a precursor names a sensor the fleet has, ...).
"""

from __future__ import annotations

import math
import re
import types
import typing
from pathlib import Path
from typing import Any, Literal, Union

import msgspec
import yaml

from sim.errors import Problem, ScenarioError
from sim.scenario import Scenario

__all__ = ["json_schema", "load", "loads", "validate_text", "with_overrides"]


class _UniqueKeyLoader(yaml.SafeLoader):
    """A safe YAML loader that refuses duplicate keys instead of keeping the last one."""


def _construct_mapping(loader: _UniqueKeyLoader, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
    seen: set[Any] = set()
    for key_node, _ in node.value:
        if key_node.tag == "tag:yaml.org,2002:merge":  # `<<: *base`; explicit keys may override merged ones
            continue
        key = loader.construct_object(key_node, deep=deep)
        if not isinstance(key, typing.Hashable):
            raise yaml.constructor.ConstructorError(None, None, "a mapping key must be a scalar", key_node.start_mark)
        if key in seen:
            raise yaml.constructor.ConstructorError(None, None, f"duplicate key {key!r}", key_node.start_mark)
        seen.add(key)
    return loader.construct_mapping(node, deep=deep)


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def _join(path: str, key: object) -> str:
    return f"{path}.{key}" if path else str(key)


def _type_name(value: object) -> str:
    return {dict: "a mapping", list: "a list", str: "a string", type(None): "null", bool: "a boolean"}.get(
        type(value), type(value).__name__
    )


_BOUND = re.compile(r"Expected `(\w+)` (>=|>|<=|<) (-?[\d.e+-]+)")
_LENGTH = re.compile(r"Expected `(\w+)` of length (>=|<=) (\d+)")


def _humanise(message: str) -> str:
    """Turn a msgspec message (without its ``- at `$...``` tail) into a short phrase."""
    message = message.split(" - at `", 1)[0]
    if m := _BOUND.fullmatch(message):
        number = float(m.group(3))
        shown = str(int(number)) if number.is_integer() else m.group(3)
        return f"must be {m.group(2)} {shown}"
    if m := _LENGTH.fullmatch(message):
        return f"must have {'at least' if m.group(2) == '>=' else 'at most'} {m.group(3)} item(s)"
    if message.startswith("Expected `str` matching regex"):
        return "must be 1-64 letters, digits or '_.:-'"
    if message.startswith("Expected `"):
        return message.replace("Expected", "expected", 1).replace("`", "")
    return message[:1].lower() + message[1:]


def _check(value: Any, tp: Any, path: str) -> list[Problem]:
    """Check ``value`` against the annotation ``tp``, returning every problem found below ``path``."""
    origin = typing.get_origin(tp)
    if origin is typing.Annotated:
        inner = typing.get_args(tp)[0]
        if _is_container(inner):
            problems = _check(value, inner, path)
            return problems or _convert(value, tp, path)
        return _convert(value, tp, path)
    if isinstance(tp, type) and issubclass(tp, msgspec.Struct):
        return _check_struct(value, tp, path)
    if origin in (Union, types.UnionType):
        return _check_union(value, typing.get_args(tp), path)
    if origin is list:
        if not isinstance(value, list):
            return [Problem(path, f"expected a list, got {_type_name(value)}")]
        (item,) = typing.get_args(tp)
        return [p for i, v in enumerate(value) for p in _check(v, item, f"{path}[{i}]")]
    if origin is dict:
        if not isinstance(value, dict):
            return [Problem(path, f"expected a mapping, got {_type_name(value)}")]
        key_tp, value_tp = typing.get_args(tp)
        problems = []
        for k, v in value.items():
            key_problems = _convert(k, key_tp, _join(path, k))
            problems += [Problem(p.path, f"key {p.message}") for p in key_problems]
            problems += _check(v, value_tp, _join(path, k))
        return problems
    if origin is Literal:
        allowed = typing.get_args(tp)
        if value in allowed:
            return []
        return [Problem(path, f"must be one of {', '.join(map(repr, allowed))} (got {value!r})")]
    return _convert(value, tp, path)


def _is_container(tp: Any) -> bool:
    return typing.get_origin(tp) in (list, dict) or (isinstance(tp, type) and issubclass(tp, msgspec.Struct))


def _convert(value: Any, tp: Any, path: str) -> list[Problem]:
    if isinstance(value, float) and not math.isfinite(value):  # YAML's .nan and .inf; msgspec bounds let inf pass
        return [Problem(path, "must be a finite number")]
    try:
        msgspec.convert(value, tp)
    except msgspec.ValidationError as exc:
        return [Problem(path, _humanise(str(exc)))]
    return []


def _check_struct(value: Any, cls: type[msgspec.Struct], path: str) -> list[Problem]:
    if not isinstance(value, dict):
        return [Problem(path, f"expected a mapping, got {_type_name(value)}")]
    config = cls.__struct_config__
    fields = {f.encode_name: f for f in msgspec.structs.fields(cls)}
    problems = []
    for key in value:
        if key not in fields and key != config.tag_field:
            allowed = ", ".join(sorted(fields))
            problems.append(Problem(_join(path, key), f"unknown key (allowed here: {allowed})"))
    for name, field in fields.items():
        if name in value:
            problems += _check(value[name], field.type, _join(path, name))
        elif field.required:
            problems.append(Problem(_join(path, name), "required"))
    if not problems:  # cross-field checks of this struct (__post_init__) run once its parts are valid
        problems += _convert(value, cls, path)
    return problems


def _check_union(value: Any, members: tuple[Any, ...], path: str) -> list[Problem]:
    if value is None and type(None) in members:
        return []
    tagged = {
        s.__struct_config__.tag: s
        for s in members
        if isinstance(s, type) and issubclass(s, msgspec.Struct) and s.__struct_config__.tag_field
    }
    if tagged and isinstance(value, dict):
        tag_field = next(iter(tagged.values())).__struct_config__.tag_field
        assert tag_field is not None
        tag = value.get(tag_field)
        if tag not in tagged:
            allowed = ", ".join(map(str, tagged))
            return [Problem(_join(path, tag_field), f"must be one of {allowed} (got {tag!r})")]
        return _check_struct(value, tagged[tag], path)
    for member in members:
        if member is type(None):
            continue
        if not _check(value, member, path):
            return []
    return [p for p in _check(value, members[0], path)]


def _cross_checks(scenario: Scenario) -> list[Problem]:
    """Problems that span fields: names that must refer to each other or be unique."""
    problems: list[Problem] = []
    fleet_names: set[str] = set()
    all_sensors: set[str] = set()
    issues = scenario.engine.issues
    for i, fleet in enumerate(scenario.fleets):
        at = f"fleets[{i}]"
        if fleet.name in fleet_names:
            problems.append(Problem(f"{at}.name", f"duplicate fleet name {fleet.name!r}"))
        fleet_names.add(fleet.name)
        sensors = [s.name for s in fleet.sensors]
        all_sensors.update(sensors)
        if len(set(sensors)) != len(sensors):
            problems.append(Problem(f"{at}.sensors", "sensor names must be unique"))
        if len({m.name for m in fleet.failure_modes}) != len(fleet.failure_modes):
            problems.append(Problem(f"{at}.failure_modes", "failure mode names must be unique"))
        known = ", ".join(sensors)
        for j, mode in enumerate(fleet.failure_modes):
            mat = f"{at}.failure_modes[{j}]"
            if mode.precursor is not None and mode.precursor.sensor not in sensors:
                problems.append(
                    Problem(f"{mat}.precursor.sensor", f"unknown sensor {mode.precursor.sensor!r} (fleet has: {known})")
                )
            for k, effect in enumerate(mode.effects):
                if effect.sensor not in sensors:
                    problems.append(
                        Problem(f"{mat}.effects[{k}].sensor", f"unknown sensor {effect.sensor!r} (fleet has: {known})")
                    )
            if mode.symptom not in scenario.engine.symptoms and scenario.engine.default_issue is None:
                problems.append(
                    Problem(
                        f"{mat}.symptom",
                        f"symptom {mode.symptom!r} is not in engine.symptoms and there is no engine.default_issue",
                    )
                )
        if fleet.telemetry_interval_s > scenario.sync_interval_s:
            problems.append(Problem(f"{at}.telemetry_interval_s", "must be <= sync_interval_s"))
    for k, rule in enumerate(scenario.engine.rules):
        if rule.sensor not in all_sensors:
            problems.append(Problem(f"engine.rules[{k}].sensor", f"no fleet has a sensor {rule.sensor!r}"))
    for name, issue in issues.items():
        for part in issue.parts:
            if scenario.costs.parts and part not in scenario.costs.parts:
                problems.append(Problem(f"engine.issues.{name}.parts", f"part {part!r} has no price in costs.parts"))
    return problems


def validate_data(data: Any) -> tuple[Scenario | None, list[Problem]]:
    """Validate parsed YAML; return the scenario (if valid) and every problem found."""
    problems = _check(data, Scenario, "")
    if problems:
        return None, problems
    try:
        scenario = msgspec.convert(data, Scenario)
    except msgspec.ValidationError as exc:  # a __post_init__ the walk did not reach
        text = str(exc)
        where = text.rsplit("- at `$", 1)[1].rstrip("`").lstrip(".") if "- at `$" in text else ""
        return None, [Problem(where, _humanise(text))]
    problems = _cross_checks(scenario)
    return (None if problems else scenario), problems


def validate_text(text: str, source: str = "<string>") -> tuple[Scenario | None, list[Problem]]:
    """Parse YAML ``text`` and validate it; never raises for bad content."""
    try:
        data = yaml.load(text, Loader=_UniqueKeyLoader)
    except RecursionError:
        return None, [Problem("<YAML>", "not valid YAML: nested too deeply")]
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark is not None else "YAML"
        problem = getattr(exc, "problem", None) or str(exc)
        return None, [Problem(f"<{where}>", f"not valid YAML: {problem}")]
    if data is None:
        return None, [Problem("", "the file is empty")]
    return validate_data(data)


def loads(text: str, source: str = "<string>") -> Scenario:
    """Parse and validate YAML text, raising :class:`ScenarioError` with every problem."""
    scenario, problems = validate_text(text, source)
    if scenario is None:
        raise ScenarioError(source, problems)
    return scenario


def load(path: str | Path) -> Scenario:
    """Read and validate a scenario file, raising :class:`ScenarioError` with every problem."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ScenarioError(str(p), [Problem("", f"cannot read file: {exc}")]) from exc
    return loads(text, str(p))


def with_overrides(scenario: Scenario, **changes: Any) -> Scenario:
    """Return ``scenario`` with top-level fields replaced (``duration_days=7``), re-validated."""
    data = msgspec.to_builtins(scenario)
    data.update({k: v for k, v in changes.items() if v is not None})
    result, problems = validate_data(data)
    if result is None:
        raise ScenarioError("<overrides>", problems)
    return result


def json_schema() -> dict[str, Any]:
    """Return the JSON Schema of scenario files (for editors' completion and checking)."""
    schema: dict[str, Any] = msgspec.json.schema(Scenario)
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "sot scenario"
    return schema
