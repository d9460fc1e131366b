"""Lenient, trusting reads of plain merged scenario data, for :mod:`sim.scenario_checks`.

A :class:`View` reads the data as :func:`sim.catalogue.expand_traced` left it and treats a part with
a type problem (a path in ``bad``) as unknown: a set of names read from it is None, and the checks
that need it wait for the type problem to be fixed instead of reporting a follow-on. The name sets
of product entries are read leniently, for membership only (:func:`entry_sets`).
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from typing import Any, NamedTuple

from sim.catalogue import Path

__all__ = [
    "FEEDS",
    "MISSING",
    "Finding",
    "FleetNames",
    "View",
    "entry_sets",
    "listed",
    "numbers",
    "suggest",
    "taints",
    "union",
]

MISSING = object()


class Finding(NamedTuple):
    """One problem at a place in the merged data."""

    path: Path
    message: str


_LOOKALIKE = str.maketrans("lIoO", "1100")  # a version typed `4.l` or `2.O`


def suggest(name: str, known: Iterable[str], cutoff: float = 0.65) -> str:
    """``"; did you mean 'x'?"`` for the closest of ``known`` to ``name`` (difflib), or ``""``."""
    names = sorted(set(known) - {name})
    alike = [k for k in names if k.translate(_LOOKALIKE).casefold() == name.translate(_LOOKALIKE).casefold()]
    close = alike or difflib.get_close_matches(name, names, n=1, cutoff=cutoff)
    return f"; did you mean {close[0]!r}?" if close else ""


def listed(names: Iterable[str]) -> str:
    return ", ".join(sorted(names)) or "none"


def union(sets: Iterable[set[str] | None]) -> set[str] | None:
    out: set[str] = set()
    for s in sets:
        if s is None:
            return None
        out |= s
    return out


# What feeds each of the lenient name sets: a type problem at such a key (or at a whole item, list
# or fleet) under ``fleets`` or ``products`` leaves the set incomplete, and the checks against it wait.
FEEDS = {
    "sensors": {"sensors", "sensor", "name"},
    "modes": {"name"},
    "consumables": {"name"},
    "codes": {"fault_code", "name"},
    "symptoms": {"symptom"},
    "parts": {"repair", "service", "part", "parts"},
    "firmware": {"firmware"},
    "dimensions": {"cohorts"},
}


_WHOLE = {"fleets", "products", "sensors", "failure_modes", "consumables", "engine"}


def taints(bad: Path, feeds: set[str]) -> bool:
    if bad[:1] not in (("fleets",), ("products",)):
        return False
    return len(bad) <= 2 or isinstance(bad[-1], int) or bad[-1] in _WHOLE or bool(feeds.intersection(bad))


def numbers(*values: Any) -> bool:
    return all(isinstance(x, int | float) and not isinstance(x, bool) for x in values)


def total(values: Iterable[Any]) -> float | None:
    """The sum of shares, or None when one of them is not a number (a type problem elsewhere)."""
    values = list(values)
    return float(sum(values)) if values and numbers(*values) else None


class View:
    """Lenient reads of the merged data that trust no part with a type problem."""

    def __init__(self, data: Any, bad: set[Path]) -> None:
        self.data = data
        self.bad = bad

    def broken(self, path: Path) -> bool:
        """Whether a type problem lies at ``path`` or above it."""
        return any(path[: len(b)] == b for b in self.bad)

    def get(self, path: Path) -> Any:
        node = self.data
        for step in path:
            if (isinstance(step, int) and isinstance(node, list) and 0 <= step < len(node)) or (
                isinstance(step, str) and isinstance(node, dict) and step in node
            ):
                node = node[step]  # type: ignore[index]
            else:
                return MISSING
        return node

    def text(self, path: Path) -> str | None:
        value = self.get(path)
        return value if isinstance(value, str) and not self.broken(path) else None

    def items(self, path: Path) -> list[tuple[Path, dict[str, Any]]]:
        """The mappings of the list at ``path`` with their paths (none if it is not a list)."""
        value = self.get(path)
        if not isinstance(value, list) or self.broken(path):
            return []
        return [((*path, i), item) for i, item in enumerate(value) if isinstance(item, dict)]

    def keys(self, path: Path) -> list[tuple[Path, str, Any]]:
        """The entries of the mapping at ``path`` (none if it is not a mapping)."""
        value = self.get(path)
        if not isinstance(value, dict) or self.broken(path):
            return []
        return [((*path, str(k)), str(k), v) for k, v in value.items()]

    def names(self, path: Path, key: str = "name") -> set[str] | None:
        """The ``key`` of every item of the list at ``path``; None if any of them is unknown."""
        value = self.get(path)
        if value is MISSING:
            return set()
        if not isinstance(value, list) or self.broken(path):
            return None
        out = set()
        for i, item in enumerate(value):
            name = item.get(key) if isinstance(item, dict) else None
            if not isinstance(name, str) or self.broken((*path, i, key)):
                return None
            out.add(name)
        return out

    def key_set(self, path: Path) -> set[str] | None:
        value = self.get(path)
        if value is MISSING:
            return set()
        if not isinstance(value, dict) or self.broken(path):
            return None
        return {str(k) for k in value}


def entry_sets(entry: Any) -> dict[str, set[str]]:
    """What a product entry (plain data) names, read leniently: for membership, never for errors."""
    out: dict[str, set[str]] = {k: set() for k in ("sensors", "modes", "consumables", "codes", "symptoms")}
    out |= {"parts": set(), "firmware": set(), "dimensions": set()}
    if not isinstance(entry, dict):
        return out

    def each(key: str) -> list[dict[str, Any]]:
        items = entry.get(key)
        return [i for i in items if isinstance(i, dict)] if isinstance(items, list) else []

    def add(kind: str, value: Any) -> None:
        if isinstance(value, str):
            out[kind].add(value)

    for s in each("sensors"):
        add("sensors", s.get("name"))
    for m in each("failure_modes"):
        add("modes", m.get("name"))
        add("codes", m.get("fault_code"))
        add("symptoms", m.get("symptom"))
        for fix in (m.get("repair"), m.get("service")):
            if isinstance(fix, dict):
                add("parts", fix.get("part"))
    for c in each("consumables"):
        for kind in ("modes", "consumables", "codes"):
            add(kind, c.get("name"))
        add("sensors", c.get("sensor"))
        add("symptoms", c.get("symptom"))
    for key, kind in (("firmware", "firmware"), ("parts", "parts"), ("cohorts", "dimensions")):
        if isinstance(entry.get(key), dict):
            out[kind] |= {str(k) for k in entry[key]}
    return out


class FleetNames:
    """What one merged fleet names; a None set is unknown (a type problem in it)."""

    def __init__(self, v: View, at: Path, fleet: dict[str, Any], entry: Any) -> None:
        self.at = at
        self.name = v.text((*at, "name"))
        self.product = v.text((*at, "product"))
        self.entry = entry if isinstance(entry, dict) else None
        own = v.names((*at, "sensors"))
        self.sensors = union([own, v.names((*at, "consumables"), "sensor")])
        self.consumables = v.names((*at, "consumables"))
        self.modes = union([v.names((*at, "failure_modes")), self.consumables])
        self.firmware = v.key_set((*at, "firmware"))
        regions = v.key_set((*at, "regions"))
        self.regions = None if self.entry is None and not regions and not own else regions
        self.of_entry = entry_sets(self.entry)
        merged = entry_sets(fleet)  # lenient: the names this fleet has, for membership
        self.known = {k: merged[k] | self.of_entry[k] for k in merged}
