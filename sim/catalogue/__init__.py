"""The product catalogue: one YAML file per kind of connected product, ready for a fleet to use.

A fleet that says ``product: car`` starts from ``car.yaml`` here (or from the scenario's own
``products`` section, which wins): its sensors, failure modes, consumables, firmware mix, usage,
downtime prices, part prices and the engine rules and issues that suit it. Whatever the fleet
itself gives overrides the entry; lists of named items (sensors, modes, consumables, rules) merge
by ``name``. :func:`expand` does that merge on plain data, before validation, so that every
problem is still reported with its path in the scenario: :func:`expand_traced` also returns a
:class:`Trace` that says where each part of the merged scenario was written (the author's file,
or a built-in entry).
"""

from __future__ import annotations

import copy
from collections.abc import Hashable
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from typing import Any

import yaml

__all__ = [
    "FLEET_KEYS",
    "NAMED_LISTS",
    "Builtin",
    "Origin",
    "Path",
    "Trace",
    "builtin",
    "entries",
    "expand",
    "expand_traced",
    "names",
    "own_products",
]

# Keys of a product entry that a fleet inherits; the rest (``parts``, ``engine``) go elsewhere.
FLEET_KEYS = (
    "telemetry_interval_s",
    "devices_per_gateway",
    "age_days",
    "sensors",
    "failure_modes",
    "consumables",
    "usage",
    "cohorts",
    "firmware",
    "regions",
    "connectivity",
    "owners",
    "contact_streams",
    "downtime_per_hour",
    "degraded_per_hour",
)
NAMED_LISTS = ("sensors", "failure_modes", "consumables", "rules", "trends", "anomalies")
RULE_LISTS = ("rules", "trends", "anomalies")
ENGINE_MAPS = ("issues", "symptoms", "fault_codes", "diagnoses")

Path = tuple[str | int, ...]
"""A place in plain scenario data: mapping keys (as text) and list indices (``("fleets", 0, "count")``)."""


@dataclass(frozen=True)
class Builtin:
    """A place in a built-in catalogue entry: a part of the merged scenario the author did not write."""

    product: str
    path: Path


Origin = Path | Builtin


def _at(origin: Origin, *more: str | int) -> Origin:
    if isinstance(origin, Builtin):
        return Builtin(origin.product, (*origin.path, *more))
    return (*origin, *more)


@dataclass
class Trace:
    """Where each part of a merged scenario was written; a place not listed is where it is now.

    ``own`` maps places in the resolved ``products`` section (each entry with its ``base`` merged
    in) to the author's entry or the base; ``merged`` maps places in the merged fleets, engine and
    part prices to the author's fleet, a ``products`` entry (a place in the resolved section) or a
    built-in entry. ``injected`` holds the ``products`` scopes the merge gave a product's rules.
    """

    own: dict[Path, Origin] = field(default_factory=dict)
    merged: dict[Path, Origin] = field(default_factory=dict)
    injected: set[Path] = field(default_factory=set)

    def locate(self, path: Path) -> Origin:
        """Where the part of the merged scenario at ``path`` was written."""
        if path[:1] == ("products",):
            return _lookup(self.own, path)
        origin = _lookup(self.merged, path)
        if not isinstance(origin, Builtin) and origin[:1] == ("products",) and origin != path:
            return _lookup(self.own, origin)
        return origin


def _lookup(table: dict[Path, Origin], path: Path) -> Origin:
    for k in range(len(path), 0, -1):
        origin = table.get(path[:k])
        if origin is not None:
            return _at(origin, *path[k:])
    return path


@cache
def _builtin() -> dict[str, dict[str, Any]]:
    entries: dict[str, dict[str, Any]] = {}
    for item in sorted(resources.files(__name__).iterdir(), key=lambda p: p.name):
        if item.name.endswith(".yaml"):
            data = yaml.safe_load(item.read_text(encoding="utf-8"))
            entries[item.name.removesuffix(".yaml")] = data
    return entries


def builtin() -> dict[str, dict[str, Any]]:
    """Every built-in product entry by name (fresh copies: callers may change them)."""
    return copy.deepcopy(_builtin())


def names() -> list[str]:
    return sorted(_builtin())


@dataclass
class _Item:
    """An item of a named list on its way through the merge: its value and where its keys were written."""

    value: Any
    origin: Origin
    keys: dict[str, Origin] = field(default_factory=dict)  # keys written elsewhere than ``origin``


def _name(item: Any) -> Hashable | None:
    name = item.get("name") if isinstance(item, dict) else None
    return name if isinstance(name, Hashable) else None


def _items(values: list[Any], at: Origin) -> list[_Item]:
    return [_Item(dict(v) if isinstance(v, dict) else v, _at(at, k)) for k, v in enumerate(values)]


def _merge_named(base: list[_Item], override: list[_Item]) -> list[_Item]:
    """Merge two lists of mappings by ``name``: same name → keys of the override win; new names append."""
    out = list(base)
    at = {_name(item.value): i for i, item in enumerate(out) if _name(item.value) is not None}
    for item in override:
        name = _name(item.value)
        if name is not None and name in at and isinstance(out[at[name]].value, dict):
            old = out[at[name]]
            kept = {k: old.keys.get(k, _at(old.origin, k)) for k in old.value if k not in item.value}
            out[at[name]] = _Item({**old.value, **item.value}, item.origin, {**kept, **item.keys})
        else:
            out.append(item)
    return out


def _flatten(items: list[_Item], at: Path, table: dict[Path, Origin]) -> list[Any]:
    """The values of ``items`` (a list at ``at``), recording where each item and key was written."""
    for i, item in enumerate(items):
        table[(*at, i)] = item.origin
        for key, origin in item.keys.items():
            table[(*at, i, key)] = origin
    return [item.value for item in items]


def _merge(
    base: dict[str, Any], base_at: Origin, override: dict[str, Any], over_at: Origin, keys: tuple[str, ...] | None
) -> tuple[dict[str, Any], dict[str, list[_Item]], dict[Path, Origin]]:
    """``override`` over ``base`` (only ``keys`` of it; an unset ``None`` is not inherited).

    Returns the merged mapping, its named lists as items (for ``without``) and where its other keys
    were written, relative to the mapping.
    """
    out = {k: v for k, v in base.items() if keys is None or (k in keys and v is not None)}
    where: dict[Path, Origin] = {(k,): _at(base_at, k) for k in out}
    lists: dict[str, list[_Item]] = {}
    for key, value in override.items():
        where[(key,)] = _at(over_at, key)
        if key in NAMED_LISTS and isinstance(value, list) and isinstance(out.get(key, []), list):
            lists[key] = _merge_named(_items(out.get(key, []), _at(base_at, key)), _items(value, _at(over_at, key)))
        out[key] = value
    for key, value in out.items():
        if key not in lists and key in NAMED_LISTS and isinstance(value, list) and key not in override:
            lists[key] = _items(value, _at(base_at, key))
    return out, lists, where


def _finish(
    out: dict[str, Any], lists: dict[str, list[_Item]], where: dict[Path, Origin], at: Path
) -> dict[Path, Origin]:
    """Put the merged named lists into ``out`` and return where everything was written, under ``at``."""
    table = {(*at, *rel): origin for rel, origin in where.items()}
    for key, items in lists.items():
        out[key] = _flatten(items, (*at, key), table)
    return table


def _without(fleet: dict[str, Any], lists: dict[str, list[_Item]]) -> None:
    drop = fleet.get("without")
    if not isinstance(drop, list):
        return
    for key in ("sensors", "failure_modes", "consumables"):
        if key in lists:
            lists[key] = [i for i in lists[key] if not (isinstance(i.value, dict) and i.value.get("name") in drop)]


def _own_products(data: Any, trace: Trace) -> dict[str, Any]:
    own = data.get("products") if isinstance(data, dict) else None
    if not isinstance(own, dict):
        return {}
    catalogue = _builtin()
    resolved: dict[str, Any] = {}
    for key, entry in own.items():
        name = str(key)
        if isinstance(entry, dict) and "base" in entry:
            base_name = str(entry["base"])
            base = copy.deepcopy(catalogue.get(base_name, {}))
            rest = {k: v for k, v in entry.items() if k != "base"}
            out, lists, where = _merge(base, Builtin(base_name, ()), rest, ("products", name), None)
            trace.own.update(_finish(out, lists, where, ("products", name)))
            resolved[name] = out
        else:
            resolved[name] = entry
    return resolved


def own_products(data: Any) -> dict[str, Any]:
    """The scenario's ``products`` section with each ``base`` merged in (plain data; never raises)."""
    return _own_products(data, Trace())


def entries(data: Any) -> dict[str, Any]:
    """Every product entry a fleet of this scenario can name: the catalogue's, then the scenario's own."""
    return {**builtin(), **own_products(data)}


def expand(data: Any) -> Any:
    """Return scenario data with every fleet's product entry merged in (plain data in, plain data out).

    Unknown products and malformed entries are left for validation to report; this never raises.
    """
    return expand_traced(data)[0]


def expand_traced(data: Any) -> tuple[Any, Trace]:
    """:func:`expand`, and where each part of the result was written."""
    trace = Trace()
    if not isinstance(data, dict) or not isinstance(data.get("fleets"), list):
        return data, trace
    own = _own_products(data, trace)
    catalogue = {**builtin(), **own}
    out = dict(data)
    if own:
        out["products"] = own
    product_rules: dict[str, list[_Item]] = {k: [] for k in RULE_LISTS}
    product_maps: dict[str, dict[Any, tuple[Any, Origin]]] = {k: {} for k in ENGINE_MAPS}
    part_prices: dict[Any, tuple[Any, Origin]] = {}
    injected: set[Origin] = set()
    any_engine = False
    fleets = []
    for i, fleet in enumerate(out["fleets"]):
        name = str(fleet.get("product")) if isinstance(fleet, dict) else ""
        entry = catalogue.get(name) if isinstance(fleet, dict) else None
        if not isinstance(entry, dict) or not isinstance(fleet, dict):
            fleets.append(fleet)
            continue
        entry_at: Origin = ("products", name) if name in own else Builtin(name, ())
        merged, lists, where = _merge(entry, entry_at, fleet, ("fleets", i), FLEET_KEYS)
        _without(merged, lists)
        trace.merged.update(_finish(merged, lists, where, ("fleets", i)))
        fleets.append(merged)
        if isinstance(entry.get("parts"), dict):
            part_prices.update({k: (v, _at(entry_at, "parts", k)) for k, v in entry["parts"].items()})
        product = entry.get("engine")
        if not isinstance(product, dict):
            continue
        any_engine = True
        engine_at = _at(entry_at, "engine")
        for key in RULE_LISTS:
            given = product.get(key)
            rules = _items(given if isinstance(given, list) else [], _at(engine_at, key))
            # A product's own rules watch that product's devices only (the engine knows each device's
            # product from its registry), whatever other products report under the same sensor name.
            for rule in rules:
                if isinstance(rule.value, dict) and "products" not in rule.value:
                    rule.value = {"products": [name], **rule.value}
                    rule.keys["products"] = _at(rule.origin, "products")
                    injected.add(rule.keys["products"])
            product_rules[key] = _merge_named(product_rules[key], rules)
        for key in ENGINE_MAPS:
            given = product.get(key)
            if isinstance(given, dict):
                product_maps[key].update({k: (v, _at(engine_at, key, k)) for k, v in given.items()})
    out["fleets"] = fleets
    present = {
        sensor
        for f in fleets
        if isinstance(f, dict)
        for key in ("sensors", "consumables")
        if isinstance(f.get(key), list)
        for s in f[key]
        if isinstance(s, dict) and isinstance(sensor := s.get("name" if key == "sensors" else "sensor"), Hashable)
    }
    for key in RULE_LISTS:  # a product's rule on a sensor that no fleet has (after `without`) is dropped
        product_rules[key] = [
            r
            for r in product_rules[key]
            if not isinstance(r.value, dict) or _hashable_in(r.value.get("sensor"), present)
        ]
    engine = out.get("engine")
    if any_engine and (engine is None or isinstance(engine, dict)):
        mine = engine or {}
        combined = dict(mine)
        for key in RULE_LISTS:
            given = mine.get(key)
            if given is None or isinstance(given, list):
                items = _merge_named(product_rules[key], _items(given or [], ("engine", key)))
                combined[key] = _flatten(items, ("engine", key), trace.merged)
        for key in ENGINE_MAPS:
            given = mine.get(key)
            if given is None or isinstance(given, dict):
                combined[key] = {k: v for k, (v, _) in product_maps[key].items()} | (given or {})
                trace.merged.update({("engine", key, str(k)): o for k, (_, o) in product_maps[key].items()})
                trace.merged.update({("engine", key, str(k)): ("engine", key, str(k)) for k in given or {}})
        out["engine"] = combined
        trace.injected = {
            path for path, origin in trace.merged.items() if path[-1] == "products" and origin in injected
        }
    if part_prices:
        costs = out.get("costs")
        if costs is None or isinstance(costs, dict):
            costs = dict(costs or {})
            if costs.get("parts") is None or isinstance(costs.get("parts"), dict):
                mine_parts = costs.get("parts") or {}
                costs["parts"] = {k: v for k, (v, _) in part_prices.items()} | mine_parts
                trace.merged.update(
                    {("costs", "parts", str(k)): o for k, (_, o) in part_prices.items() if k not in mine_parts}
                )
            out["costs"] = costs
    return out, trace


def _hashable_in(value: Any, names: set[Any]) -> bool:
    return isinstance(value, Hashable) and value in names
