"""The product catalogue: one YAML file per kind of connected product, ready for a fleet to use.

A fleet that says ``product: car`` starts from ``car.yaml`` here (or from the scenario's own
``products`` section, which wins): its sensors, failure modes, consumables, firmware mix, usage,
downtime prices, part prices and the engine rules and issues that suit it. Whatever the fleet
itself gives overrides the entry; lists of named items (sensors, modes, consumables, rules) merge
by ``name``. :func:`expand` does that merge on plain data, before validation, so that every
problem is still reported with its path in the scenario.
"""

from __future__ import annotations

import copy
from functools import cache
from importlib import resources
from typing import Any

import yaml

__all__ = ["FLEET_KEYS", "NAMED_LISTS", "builtin", "expand", "names", "own_products"]

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
    "downtime_per_hour",
    "degraded_per_hour",
)
NAMED_LISTS = ("sensors", "failure_modes", "consumables", "rules", "trends", "anomalies")
RULE_LISTS = ("rules", "trends", "anomalies")


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


def _merge_named(base: list[Any], override: list[Any]) -> list[Any]:
    """Merge two lists of mappings by ``name``: same name → keys of the override win; new names append."""
    out = [dict(item) if isinstance(item, dict) else item for item in base]
    at = {item.get("name"): i for i, item in enumerate(out) if isinstance(item, dict)}
    for item in override:
        name = item.get("name") if isinstance(item, dict) else None
        if name is not None and name in at and isinstance(out[at[name]], dict):
            out[at[name]] = {**out[at[name]], **item}
        else:
            out.append(item)
    return out


def _merge(base: dict[str, Any], override: dict[str, Any], keys: tuple[str, ...] | None = None) -> dict[str, Any]:
    out = {k: v for k, v in base.items() if keys is None or k in keys}
    for key, value in override.items():
        if key in NAMED_LISTS and isinstance(value, list) and isinstance(out.get(key), list):
            out[key] = _merge_named(out[key], value)
        else:
            out[key] = value
    return out


def _without(fleet: dict[str, Any]) -> None:
    drop = fleet.get("without")
    if not isinstance(drop, list):
        return
    for key in ("sensors", "failure_modes", "consumables"):
        items = fleet.get(key)
        if isinstance(items, list):
            fleet[key] = [i for i in items if not (isinstance(i, dict) and i.get("name") in drop)]


def own_products(data: Any) -> dict[str, Any]:
    """The scenario's ``products`` section with each ``base`` merged in (plain data; never raises)."""
    own = data.get("products") if isinstance(data, dict) else None
    if not isinstance(own, dict):
        return {}
    catalogue = _builtin()
    resolved: dict[str, Any] = {}
    for name, entry in own.items():
        if isinstance(entry, dict) and "base" in entry:
            base = copy.deepcopy(catalogue.get(str(entry["base"]), {}))
            resolved[str(name)] = _merge(base, {k: v for k, v in entry.items() if k != "base"})
        else:
            resolved[str(name)] = entry
    return resolved


def expand(data: Any) -> Any:
    """Return scenario data with every fleet's product entry merged in (plain data in, plain data out).

    Unknown products and malformed entries are left for validation to report; this never raises.
    """
    if not isinstance(data, dict) or not isinstance(data.get("fleets"), list):
        return data
    own = own_products(data)
    catalogue = {**builtin(), **own}
    out = dict(data)
    if own:
        out["products"] = own
    engine = dict(out.get("engine") or {}) if isinstance(out.get("engine"), dict) else out.get("engine")
    product_engine: dict[str, Any] = {}
    part_prices: dict[str, Any] = {}
    fleets = []
    for fleet in out["fleets"]:
        entry = catalogue.get(str(fleet.get("product"))) if isinstance(fleet, dict) else None
        if not isinstance(entry, dict):
            fleets.append(fleet)
            continue
        merged = _merge(entry, fleet, FLEET_KEYS)
        _without(merged)
        fleets.append(merged)
        if isinstance(entry.get("parts"), dict):
            part_prices = {**part_prices, **entry["parts"]}
        product = entry.get("engine")
        if isinstance(product, dict):
            name = str(fleet.get("product"))
            # A product's own rules watch that product's devices only (the engine knows each device's
            # product from its registry), whatever other products report under the same sensor name.
            scoped = {
                k: [{"products": [name], **r} if isinstance(r, dict) else r for r in (product.get(k) or [])]
                for k in RULE_LISTS
            }
            merged_engine: dict[str, Any] = {k: _merge_named(product_engine.get(k, []), scoped[k]) for k in RULE_LISTS}
            for key in ("issues", "symptoms", "fault_codes", "diagnoses"):
                merged_engine[key] = {**product_engine.get(key, {}), **(product.get(key) or {})}
            product_engine = merged_engine
    out["fleets"] = fleets
    if product_engine:
        present = {
            s.get("name") if key == "sensors" else s.get("sensor")
            for f in fleets
            if isinstance(f, dict)
            for key in ("sensors", "consumables")
            if isinstance(f.get(key), list)
            for s in f[key]
            if isinstance(s, dict)
        }
        for key in RULE_LISTS:
            product_engine[key] = [
                r for r in product_engine[key] if not isinstance(r, dict) or r.get("sensor") in present
            ]
    if product_engine and (engine is None or isinstance(engine, dict)):
        mine = engine or {}
        combined = dict(mine)
        for key in RULE_LISTS:
            combined[key] = _merge_named(product_engine[key], list(mine.get(key) or []))
        for key in ("issues", "symptoms", "fault_codes", "diagnoses"):
            combined[key] = {**product_engine[key], **(mine.get(key) or {})}
        out["engine"] = combined
    if part_prices:
        costs = out.get("costs")
        if costs is None or isinstance(costs, dict):
            costs = dict(costs or {})
            if costs.get("parts") is None or isinstance(costs.get("parts"), dict):
                costs["parts"] = {**part_prices, **(costs.get("parts") or {})}
            out["costs"] = costs
    return out
