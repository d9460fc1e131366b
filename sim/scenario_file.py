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

from sim import catalogue
from sim.errors import Problem, ScenarioError
from sim.scenario import Name, Product, Scenario

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


def _skills_of(groups: list[list[str]]) -> tuple[bool, set[str]]:
    """(anyone has every skill, the named skills) of agent groups or crews."""
    return any(not g for g in groups), {skill for g in groups for skill in g}


def _cross_checks(scenario: Scenario) -> list[Problem]:
    """Problems that span fields: names that must refer to each other or be unique."""
    problems: list[Problem] = []
    fleet_names: set[str] = set()
    all_sensors: set[str] = set()
    regions: set[str] = set()
    engine = scenario.engine
    issues = engine.issues
    techs = scenario.technicians
    crews_all, crew_skills = _skills_of([c.skills for c in techs.crews]) if techs.crews else (True, set())
    centre = scenario.contact_centre
    groups = [g.skills for g in centre.groups] + ([[]] if centre.agents else [])
    agents_all, agent_skills = _skills_of(groups)

    def tech_skill(skill: str, where: str) -> None:
        if not crews_all and skill not in crew_skills:
            problems.append(Problem(where, f"no technician crew has skill {skill!r}"))

    def symptom(name: str, where: str) -> None:
        if name not in engine.symptoms and engine.default_issue is None:
            problems.append(
                Problem(where, f"symptom {name!r} is not in engine.symptoms and there is no engine.default_issue")
            )

    if scenario.warmup_days >= scenario.duration_days:
        problems.append(Problem("warmup_days", f"must be < duration_days ({scenario.duration_days:g})"))
    for i, fleet in enumerate(scenario.fleets):
        at = f"fleets[{i}]"
        if fleet.name in fleet_names:
            problems.append(Problem(f"{at}.name", f"duplicate fleet name {fleet.name!r}"))
        fleet_names.add(fleet.name)
        regions.update(fleet.regions)
        if not fleet.sensors:
            known_products = ", ".join(catalogue.names())
            problems.append(
                Problem(
                    f"{at}.sensors",
                    f"the fleet has no sensors: product {fleet.product!r} is not in the catalogue ({known_products})"
                    " or in `products`, so list the fleet's `sensors` (or name a catalogue product)",
                )
            )
        sensors = [s.name for s in fleet.sensors] + [c.sensor for c in fleet.consumables]
        all_sensors.update(sensors)
        if len(set(sensors)) != len(sensors):
            problems.append(Problem(f"{at}.sensors", "sensor names (including consumables' sensors) must be unique"))
        mode_names = [m.name for m in fleet.failure_modes] + [c.name for c in fleet.consumables]
        if len(set(mode_names)) != len(mode_names):
            problems.append(Problem(f"{at}.failure_modes", "failure mode and consumable names must be unique"))
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
            symptom(mode.symptom, f"{mat}.symptom")
            tech_skill(mode.repair.skill, f"{mat}.repair.skill")
        for j, consumable in enumerate(fleet.consumables):
            symptom(consumable.symptom, f"{at}.consumables[{j}].symptom")
        for dim, values in fleet.cohorts.items():
            if sum(c.share for c in values.values()) <= 0:
                problems.append(Problem(f"{at}.cohorts.{dim}", "shares must add up to more than 0"))
            for value, cohort in values.items():
                for mode_name in cohort.life_factor:
                    if mode_name not in mode_names:
                        problems.append(
                            Problem(f"{at}.cohorts.{dim}.{value}.life_factor", f"unknown failure mode {mode_name!r}")
                        )
        for key, shares in (("firmware", fleet.firmware), ("regions", fleet.regions)):
            if shares and sum(shares.values()) <= 0:
                problems.append(Problem(f"{at}.{key}", "shares must add up to more than 0"))
        skill = centre.routing.get(fleet.product, "general")
        if not agents_all and skill not in agent_skills:
            where = f"contact_centre.routing.{fleet.product}" if fleet.product in centre.routing else "contact_centre"
            problems.append(Problem(where, f"no agent group serves skill {skill!r} (contacts about {fleet.name})"))
        if fleet.telemetry_interval_s > scenario.sync_interval_s:
            problems.append(Problem(f"{at}.telemetry_interval_s", "must be <= sync_interval_s"))
    products_with: dict[str, set[str]] = {}
    for fleet in scenario.fleets:
        for sensor in [s.name for s in fleet.sensors] + [c.sensor for c in fleet.consumables]:
            products_with.setdefault(sensor, set()).add(fleet.product)
    placed = [
        (f"engine.{key}[{k}]", rule)
        for key in ("rules", "trends", "anomalies")
        for k, rule in enumerate(getattr(engine, key))
    ]
    fleet_products = {fleet.product for fleet in scenario.fleets}
    for at, rule in placed:
        if rule.sensor not in all_sensors:
            problems.append(Problem(f"{at}.sensor", f"no fleet has a sensor {rule.sensor!r}"))
            continue
        for k, product in enumerate(rule.products):
            if product not in fleet_products:
                problems.append(
                    Problem(
                        f"{at}.products[{k}]", f"no fleet is of product {product!r} (fleets: {sorted(fleet_products)})"
                    )
                )
            elif product not in products_with[rule.sensor]:
                problems.append(Problem(f"{at}.products[{k}]", f"product {product!r} does not report {rule.sensor!r}"))
    for name, issue in issues.items():
        tech_skill(issue.skill, f"engine.issues.{name}.skill")
        for part in issue.parts:
            if scenario.costs.parts and part not in scenario.costs.parts:
                problems.append(Problem(f"engine.issues.{name}.parts", f"part {part!r} has no price in costs.parts"))
    for key, names in (
        ("depots", [d.name for d in scenario.depots]),
        ("technicians.crews", [c.name for c in techs.crews]),
        ("contact_centre.groups", [g.name for g in centre.groups]),
        ("outages", [o.name for o in scenario.outages]),
    ):
        if len(set(names)) != len(names):
            problems.append(Problem(key, "names must be unique"))
    for k, outage in enumerate(scenario.outages):
        if outage.power:
            symptom("no_power", f"outages[{k}].power")
    region_list = ", ".join(sorted(regions)) or "none"
    places = [(f"outages[{k}]", o.region) for k, o in enumerate(scenario.outages)]
    places += [(f"technicians.crews[{k}]", c.region) for k, c in enumerate(techs.crews)]
    places += [(f"depots[{k}]", d.region) for k, d in enumerate(scenario.depots)]
    for where, region in places:
        if region is not None and region not in regions:
            problems.append(Problem(f"{where}.region", f"unknown region {region!r} (fleets have: {region_list})"))
    return problems


_NAMED_ITEM = re.compile(r"^fleets\[(\d+)\]\.(sensors|failure_modes|consumables)\[(\d+)\](.*)$")


def _names(data: Any, i: int, key: str) -> list[Any]:
    try:
        return [item.get("name") if isinstance(item, dict) else None for item in data["fleets"][i][key]]
    except (KeyError, IndexError, TypeError):
        return []


def _in_users_terms(problem: Problem, original: Any, merged: Any) -> Problem:
    """Point a problem in a merged fleet list at the user's own item, or name the product it came from."""
    m = _NAMED_ITEM.match(problem.path)
    if m is None:
        return problem
    i, key, j, rest = int(m.group(1)), m.group(2), int(m.group(3)), m.group(4)
    merged_names = _names(merged, i, key)
    name = merged_names[j] if j < len(merged_names) else None
    mine = _names(original, i, key)
    if name is not None and name in mine:
        return Problem(f"fleets[{i}].{key}[{mine.index(name)}]{rest}", problem.message)
    if name is None:
        return problem
    product = merged["fleets"][i].get("product")
    return Problem(f"fleets[{i}].{key}[{name}]{rest}", f"{problem.message} (in product {product!r})")


def validate_data(data: Any) -> tuple[Scenario | None, list[Problem]]:
    """Validate parsed YAML; return the scenario (if valid) and every problem found.

    The scenario's own ``products`` are checked first; then every fleet is merged with its product
    entry (:func:`sim.catalogue.expand`) and the whole is checked.
    """
    if isinstance(data, dict) and "products" in data:
        products = catalogue.own_products(data) if isinstance(data["products"], dict) else data["products"]
        problems = _check(products, dict[Name, Product], "products")
        if problems:
            return None, problems
    original = data
    data = catalogue.expand(data)
    problems = _check(data, Scenario, "")
    if problems:
        return None, [_in_users_terms(p, original, data) for p in problems]
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
    """Return the JSON Schema of scenario files (for editors' completion and checking)."""
    schema: dict[str, Any] = msgspec.json.schema(Scenario)
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "sot scenario"
    return schema
