"""Read a scenario file: YAML → every problem with its path, or a frozen :class:`Scenario`.

The pipeline is read (YAML, duplicate keys refused, the line and column of every place kept) →
merge each fleet with its product entry, tracing where each part was written → check the types
of the whole and its cross-references (:mod:`sim.scenario_checks`) in one pass, collecting every
problem rather than stopping at the first → point each problem at the place in the author's own
file → convert (defaults filled, values validated).
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

from contracts.engine_config import EngineConfig
from sim import catalogue, scenario_checks, scenario_schema
from sim.catalogue import Path as Loc
from sim.errors import Problem, ScenarioError
from sim.scenario import Scenario
from sim.scenario_checks import Finding, suggest

__all__ = ["json_schema", "load", "loads", "render", "validate_data", "validate_text", "with_overrides"]


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


def _join(path: Loc, key: object) -> Loc:
    return (*path, str(key))


def render(path: Loc) -> str:
    """A path as the messages write it: ``fleets[0].failure_modes[1].firmware[0]``."""
    out = ""
    for step in path:
        out += f"[{step}]" if isinstance(step, int) else f".{step}" if out else step
    return out


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


def _check(value: Any, tp: Any, path: Loc) -> list[Finding]:
    """Check ``value`` against the annotation ``tp``, returning every problem found below ``path``."""
    origin = typing.get_origin(tp)
    if origin is typing.Annotated:
        inner, *metas = typing.get_args(tp)
        problems = _check(value, inner, path)
        return problems or (_convert(value, tp, path) if any(map(_constrains, metas)) else [])
    if isinstance(tp, type) and issubclass(tp, msgspec.Struct):
        return _check_struct(value, tp, path)
    if origin in (Union, types.UnionType):
        return _check_union(value, typing.get_args(tp), path)
    if origin is list:
        if not isinstance(value, list):
            return [Finding(path, f"expected a list, got {_type_name(value)}")]
        (item,) = typing.get_args(tp)
        return [p for i, v in enumerate(value) for p in _check(v, item, (*path, i))]
    if origin is dict:
        if not isinstance(value, dict):
            return [Finding(path, f"expected a mapping, got {_type_name(value)}")]
        key_tp, value_tp = typing.get_args(tp)
        problems = []
        for k, v in value.items():
            key_problems = _convert(k, key_tp, _join(path, k))
            problems += [Finding(p.path, f"key {p.message}") for p in key_problems]
            problems += _check(v, value_tp, _join(path, k))
        return problems
    if origin is Literal:
        allowed = typing.get_args(tp)
        if value in allowed:
            return []
        close = suggest(value, [a for a in allowed if isinstance(a, str)], 0.8) if isinstance(value, str) else ""
        return [Finding(path, f"must be one of {', '.join(map(repr, allowed))} (got {value!r}){close}")]
    return _convert(value, tp, path)


_CONSTRAINTS = ("gt", "ge", "lt", "le", "multiple_of", "pattern", "min_length", "max_length", "tz")


def _constrains(meta: object) -> bool:
    """Whether ``Annotated`` metadata validates (bounds, a pattern), not only documents (a description)."""
    return isinstance(meta, msgspec.Meta) and any(getattr(meta, c) is not None for c in _CONSTRAINTS)


def _convert(value: Any, tp: Any, path: Loc) -> list[Finding]:
    if isinstance(value, float) and not math.isfinite(value):  # YAML's .nan and .inf; msgspec bounds let inf pass
        return [Finding(path, "must be a finite number")]
    try:
        msgspec.convert(value, tp)
    except msgspec.ValidationError as exc:
        return [Finding(path, _humanise(str(exc)))]
    return []


# Structs whose own checks (``__post_init__``) are cross-references that :mod:`sim.scenario_checks`
# makes with a path each; the engine's are run once those pass (:func:`_validate`).
_DEFERRED: tuple[type[msgspec.Struct], ...] = (Scenario, EngineConfig)


def _check_struct(value: Any, cls: type[msgspec.Struct], path: Loc) -> list[Finding]:
    if not isinstance(value, dict):
        return [Finding(path, f"expected a mapping, got {_type_name(value)}")]
    config = cls.__struct_config__
    fields = {f.encode_name: f for f in msgspec.structs.fields(cls)}
    problems = []
    for key in value:
        if key not in fields and key != config.tag_field:
            allowed = ", ".join(sorted(fields))
            close = suggest(key, fields) if isinstance(key, str) else ""
            problems.append(Finding(_join(path, key), f"unknown key (allowed here: {allowed}){close}"))
    for name, field in fields.items():
        if name in value:
            problems += _check(value[name], field.type, _join(path, name))
        elif field.required:
            problems.append(Finding(_join(path, name), "required"))
    if not problems and cls not in _DEFERRED:  # cross-field checks of this struct (__post_init__)
        problems += _convert(value, cls, path)
    return problems


def _check_union(value: Any, members: tuple[Any, ...], path: Loc) -> list[Finding]:
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
        if not isinstance(tag, typing.Hashable) or tag not in tagged:
            allowed = ", ".join(map(str, tagged))
            close = suggest(tag, map(str, tagged), 0.8) if isinstance(tag, str) else ""
            return [Finding(_join(path, tag_field), f"must be one of {allowed} (got {tag!r}){close}")]
        return _check_struct(value, tagged[tag], path)
    for member in members:
        if member is type(None):
            continue
        if not _check(value, member, path):
            return []
    return [p for p in _check(value, members[0], path)]


Positions = dict[Loc, tuple[int, int]]


def _positions(root: yaml.Node | None) -> Positions:
    """(line, column) of every place in the composed YAML: a mapping entry's key, a list item."""
    out: Positions = {}
    stack: list[tuple[Loc, yaml.Node]] = [((), root)] if root is not None else []
    seen: set[int] = set()
    while stack:
        path, node = stack.pop()
        if id(node) in seen:  # an alias: its places are those of its anchor
            continue
        seen.add(id(node))
        children: dict[str | int, tuple[yaml.Node, yaml.Node]] = {}
        if isinstance(node, yaml.MappingNode):  # merged (`<<`) entries first, then the explicit ones
            children = {str(k.value): (k, v) for k, v in node.value if isinstance(k, yaml.ScalarNode)}
        elif isinstance(node, yaml.SequenceNode):
            children = {i: (item, item) for i, item in enumerate(node.value)}
        for step, (mark, child) in children.items():
            out[(*path, step)] = (mark.start_mark.line + 1, mark.start_mark.column + 1)
            stack.append(((*path, step), child))
    return out


def _follow_on(found: Finding, unresolved: set[int]) -> bool:
    """A required field missing from an override of a fleet whose product does not exist."""
    path = found.path
    return found.message == "required" and len(path) == 5 and path[0] == "fleets" and path[1] in unresolved


def _named(path: Loc, data: Any) -> str:
    """``path`` with each list index of a named item written as its name (``failure_modes[power_loss]``)."""
    out, node, previous = "", data, None
    for step in path:
        item = node[step] if isinstance(step, int) and isinstance(node, list) and step < len(node) else None
        if isinstance(step, str):
            item = node.get(step) if isinstance(node, dict) else None
            out += f".{step}" if out else step
        else:
            name = item.get("name") if isinstance(item, dict) and previous in catalogue.NAMED_LISTS else None
            out += f"[{name if isinstance(name, str) else step}]"
        node, previous = item, step
    return out


def _located(found: Finding, trace: catalogue.Trace, merged: Any, positions: Positions) -> Problem:
    """The problem at the place the author wrote it (or named by product when the catalogue did)."""
    origin = trace.locate(found.path)
    if isinstance(origin, catalogue.Builtin):
        text, message = _named(found.path, merged), f"{found.message} (in catalogue product {origin.product!r})"
        mine = [p for p in _prefixes(found.path) if trace.locate(p) == p]
    else:
        text, message, mine = render(origin), found.message, _prefixes(origin)
    at = next((positions[p] for p in mine if p in positions), None)
    return Problem(text, message, *at) if at is not None else Problem(text, message)


def _prefixes(path: Loc) -> list[Loc]:
    return [path[:k] for k in range(len(path), 0, -1)]


def _validate(data: Any, positions: Positions) -> tuple[Scenario | None, list[Problem]]:
    merged, trace = catalogue.expand_traced(data)
    found = _check(merged, Scenario, ())
    unresolved = scenario_checks.unresolved_fleets(data)
    found = [f for f in found if not _follow_on(f, unresolved)]
    found += scenario_checks.check(merged, data, trace, {f.path for f in found})
    if isinstance(merged, dict) and not any(f.path[:1] in ((), ("engine",)) for f in found):
        found += _convert(merged.get("engine", {}), EngineConfig, ("engine",))
    problems: list[Problem] = []
    for problem in (_located(f, trace, merged, positions) for f in found):
        if problem not in problems:
            problems.append(problem)
    problems.sort(key=lambda p: (p.line is not None, p.line or 0, p.column or 0))
    if problems:
        return None, problems
    try:
        return msgspec.convert(merged, Scenario), []
    except msgspec.ValidationError as exc:  # a __post_init__ the walk did not reach
        text = str(exc)
        where = text.rsplit("- at `$", 1)[1].rstrip("`").lstrip(".") if "- at `$" in text else ""
        return None, [Problem(where, _humanise(text))]


def validate_data(data: Any) -> tuple[Scenario | None, list[Problem]]:
    """Validate parsed YAML; return the scenario (if valid) and every problem found, in one pass.

    Every fleet is merged with its product entry (:func:`sim.catalogue.expand_traced`); then the
    types, ranges and unknown keys of the whole (the scenario's own ``products`` included) and the
    cross-references (:mod:`sim.scenario_checks`) are checked, and each problem is pointed at the
    place its author wrote it.
    """
    return _validate(data, {})


def validate_text(text: str, source: str = "<string>") -> tuple[Scenario | None, list[Problem]]:
    """Parse YAML ``text`` and validate it; never raises for bad content. Problems carry line and column."""
    loader = _UniqueKeyLoader(text)
    try:
        node = loader.get_single_node()
        data = loader.construct_document(node) if node is not None else None
    except RecursionError:
        return None, [Problem("<YAML>", "not valid YAML: nested too deeply")]
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark is not None else "YAML"
        problem = getattr(exc, "problem", None) or str(exc)
        return None, [Problem(f"<{where}>", f"not valid YAML: {problem}")]
    finally:
        loader.dispose()
    if data is None:
        return None, [Problem("", "the file is empty")]
    return _validate(data, _positions(node))


def loads(text: str, source: str = "<string>") -> Scenario:
    """Parse and validate YAML text, raising :class:`ScenarioError` with every problem."""
    scenario, problems = validate_text(text, source)
    if scenario is None:
        raise ScenarioError(source, problems)
    return scenario


MAX_FILE_BYTES = 4 * 2**20
"""The largest scenario file read: a scenario describes fleets, it does not list their devices."""


def load(path: str | Path) -> Scenario:
    """Read and validate a scenario file, raising :class:`ScenarioError` with every problem."""
    p = Path(path)
    try:
        size = p.stat().st_size
        if size > MAX_FILE_BYTES:
            problem = f"the file is {size / 2**20:.0f} MB; a scenario file is at most {MAX_FILE_BYTES // 2**20} MB"
            raise ScenarioError(str(p), [Problem("", problem + " (fleets are counts and distributions, not lists)")])
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
    """The JSON Schema of scenario files as people write them (:mod:`sim.scenario_schema`)."""
    return scenario_schema.json_schema()
