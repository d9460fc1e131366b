"""Cross-field checks of a scenario: every name that refers to another part is resolved and checked.

Sensors, modes, consumables, fault codes, symptoms, firmware versions, issues, skills, parts,
regions, products and cohort dimensions are checked wherever they were written: in a fleet, in
the scenario's own ``products`` (a product's rules against the product's own sensors, its fault
codes against its own modes and consumables), in the engine section. A near-miss name gets a
"did you mean". The checks read the plain merged data (:func:`sim.catalogue.expand_traced`), not
the frozen :class:`~sim.scenario.Scenario`, so that they run in the same pass as the type checks:
a part with a type problem is unknown here and the checks that need it are skipped rather than
guessed at. Paths are those of the merged data; :mod:`sim.scenario_file` points them at the
author's own file.
"""

from __future__ import annotations

from typing import Any

from sim import catalogue
from sim.catalogue import Builtin, Path, Trace
from sim.records import NO_POWER
from sim.scenario_view import (
    FEEDS,
    MISSING,
    Finding,
    FleetNames,
    View,
    entry_sets,
    listed,
    numbers,
    suggest,
    taints,
    total,
    union,
)

__all__ = ["OTHER", "Finding", "check", "suggest", "unresolved_fleets"]

OTHER = "other"
"""The symptom of a contact about no failure the device has (the world's owners describe what they noticed)."""
FALLBACK_SKILL = "general"  # the skill of the engine's fallback issue `unknown` (support_engine.core.base)
RULE_LISTS = ("rules", "trends", "anomalies")


class _Checker:
    def __init__(self, data: Any, original: Any, trace: Trace, bad: set[Path]) -> None:
        self.v = View(data, bad)
        self.original = original
        self.trace = trace
        self.out: list[Finding] = []
        entries = {**catalogue.builtin(), **(data.get("products") if isinstance(data.get("products"), dict) else {})}
        self.fleets = [
            FleetNames(self.v, at, f, entries.get(str(f.get("product")))) for at, f in self.v.items(("fleets",))
        ]
        self.fleets_known = isinstance(data.get("fleets"), list) and not self.v.broken(("fleets",))
        self.bad_bases = _bad_bases(original)  # such an entry is missing its base: what it names is unknown
        for f in self.fleets:
            if f.product in self.bad_bases:
                f.regions = None
        self.products = {f.product for f in self.fleets if f.product is not None}
        self.issues = self.v.key_set(("engine", "issues"))
        self.symptoms = self.v.key_set(("engine", "symptoms"))
        self.default_issue = self.v.text(("engine", "default_issue"))
        self.all = {k: set().union(*(f.known[k] for f in self.fleets)) for k in entry_sets(None)}
        self.tainted = {kind for kind, feeds in FEEDS.items() if any(taints(b, feeds) for b in bad)}
        if any(f.product in self.bad_bases for f in self.fleets):
            self.tainted |= set(FEEDS)
        self.priced = self.v.key_set(("costs", "parts"))
        self.repair_parts = self.all["parts"] | (self.priced or set())  # what an issue may predict
        issue_parts = [self.v.get((*at, "parts")) for at, _, _ in self.v.keys(("engine", "issues"))]
        stated = {p for parts in issue_parts if isinstance(parts, list) for p in parts if isinstance(p, str)}
        self.stock_parts = self.repair_parts | stated  # what a depot or a van may stock
        self.ota = {
            version
            for at in [a for a, _, _ in self.v.keys(("engine", "issues"))] + [a for a, _ in self._campaigns()]
            if (version := self.v.text((*at, "ota_version"))) is not None
        }
        self._crews()
        self._agents()

    def sure(self, kind: str, names: set[str]) -> set[str] | None:
        """``names`` (a lenient set of ``kind``), or None when a type problem may have hidden some."""
        return None if kind in self.tainted or not self.fleets_known else names

    def report(self, path: Path, message: str) -> None:
        self.out.append(Finding(path, message))

    def mine(self, path: Path) -> bool:
        """Whether the author wrote ``path`` in the scenario itself (not in a product entry)."""
        origin = self.trace.locate(path)
        return not isinstance(origin, Builtin) and origin[:1] != ("products",)

    def _campaigns(self) -> list[tuple[Path, dict[str, Any]]]:
        return self.v.items(("engine", "campaigns"))

    # -- who can do what ------------------------------------------------------------------------
    def _crews(self) -> None:
        """``self.skills``: the crews' skills; None when anyone has every skill or it is unknown."""
        techs = ("technicians",)
        self.skills: set[str] | None = None
        self.field = True
        crews = self.v.get((*techs, "crews"))
        if crews is MISSING or crews == []:  # `count: N`: one crew with every skill; 0: no field service
            count = self.v.get((*techs, "count"))
            self.field = not (count in (0, MISSING) and not self.v.broken(techs))
            return
        groups = [self.v.get((*at, "skills")) for at, _ in self.v.items((*techs, "crews"))]
        if self.v.broken((*techs, "crews")) or not all(isinstance(g, list) for g in groups):
            return
        if any(not g for g in groups):
            return
        self.skills = {s for g in groups for s in g if isinstance(s, str)}

    def _agents(self) -> None:
        """``self.agent_skills``: the skills agents serve; None when some serve every skill or unknown."""
        centre = ("contact_centre",)
        self.agent_skills: set[str] | None = None
        self.agents_known = False
        agents, groups = self.v.get((*centre, "agents")), self.v.get((*centre, "groups"))
        if self.v.broken(centre) or (isinstance(agents, int) and agents > 0):
            return
        skills = [self.v.get((*at, "skills")) for at, _ in self.v.items((*centre, "groups"))]
        if not isinstance(groups, list) or not groups or not all(isinstance(s, list) for s in skills):
            return
        if len(skills) != len(groups) or any(not s for s in skills):
            return
        self.agents_known = True
        self.agent_skills = {x for s in skills for x in s if isinstance(x, str)}

    def skill(self, path: Path) -> None:
        skill = self.v.text(path)
        if skill is None or self.skills is None or not self.field or skill in self.skills:
            return
        self.report(path, f"no technician crew has skill {skill!r}{suggest(skill, self.skills)}")

    def issue(self, path: Path) -> None:
        name = self.v.text(path)
        if name is None or self.issues is None or name in self.issues:
            return
        self.report(path, f"unknown issue {name!r} (engine.issues: {listed(self.issues)}){suggest(name, self.issues)}")

    def member(self, path: Path, name: str | None, known: set[str] | None, what: str, label: str = "") -> None:
        """Report ``name`` unless it is one of ``known`` (None: unknown, nothing to check against)."""
        if name is None or known is None or name in known:
            return
        shown = f" ({label}: {listed(known)})" if label else ""
        self.report(path, f"{what} {name!r}{shown}{suggest(name, known)}")

    def unique(self, path: Path, key: str, what: str) -> None:
        seen: set[str] = set()
        for at, _ in self.v.items(path):
            name = self.v.text((*at, key))
            if name is not None and name in seen:
                self.report((*at, key), f"duplicate {what} {name!r}")
            if name is not None:
                seen.add(name)

    # -- the checks -----------------------------------------------------------------------------
    def run(self) -> list[Finding]:
        self.top_level()
        self.products_section()
        for fleet in self.fleets:
            self.fleet(fleet)
        self.rules()
        self.engine_maps()
        self.engine_issues()
        self.engine_other()
        self.people_and_places()
        return self.out

    def top_level(self) -> None:
        duration, warmup = self.v.get(("duration_days",)), self.v.get(("warmup_days",))
        trusted = not self.v.broken(("warmup_days",)) and not self.v.broken(("duration_days",))
        if trusted and numbers(duration, warmup) and warmup >= duration:
            self.report(("warmup_days",), f"must be < duration_days ({duration:g})")
        self.unique(("fleets",), "name", "fleet name")

    def products_section(self) -> None:
        """The scenario's own product entries, each against itself (and the fleets that use it)."""
        original = self.original.get("products") if isinstance(self.original, dict) else None
        for at, name, entry in self.v.keys(("products",)):
            if not isinstance(entry, dict):
                continue
            given = original.get(name) if isinstance(original, dict) else None
            base = given.get("base") if isinstance(given, dict) else None
            if base is not None and str(base) not in catalogue.names():
                entries = catalogue.names()
                self.report(
                    (*at, "base"),
                    f"unknown catalogue entry {base!r} (catalogue: {listed(entries)}){suggest(str(base), entries)}",
                )
            users = [f for f in self.fleets if f.product == name]
            own = entry_sets(entry)
            known = {k: own[k].union(*(f.known[k] for f in users)) for k in own}
            self.product_engine(at, name, known)

    def product_engine(self, at: Path, name: str, known: dict[str, set[str]]) -> None:
        engine = (*at, "engine")
        for key in RULE_LISTS:
            for rule, _ in self.v.items((*engine, key)):
                sensor = self.v.text((*rule, "sensor"))
                if sensor is not None and self.sure("sensors", known["sensors"]) and sensor not in known["sensors"]:
                    self.report(
                        (*rule, "sensor"),
                        f"product {name!r} has no sensor {sensor!r} (it has: {listed(known['sensors'])}), so the rule"
                        f" would never fire{suggest(sensor, known['sensors'])}",
                    )
        self.dead_keys((*engine, "fault_codes"), known, f"of product {name!r}")
        self.dead_keys((*engine, "symptoms"), known, f"of product {name!r}")
        self.dead_keys((*engine, "diagnoses"), known, f"of product {name!r}")
        for issue, _, _ in self.v.keys((*engine, "issues")):
            self.member(
                (*issue, "consumable"),
                self.v.text((*issue, "consumable")),
                self.sure("consumables", known["consumables"]),
                f"product {name!r} has no consumable",
                "it has",
            )
            self.parts((*issue, "parts"), known["parts"] | self.repair_parts)

    def dead_keys(self, path: Path, known: dict[str, set[str]], whose: str) -> None:
        """Keys of ``symptoms``, ``fault_codes`` or ``diagnoses`` at ``path`` that nothing ever reports."""
        mapped = self.v.key_set(path) or set()
        for at, _, _ in self.v.keys(path):
            self.dead_key(at, known, mapped, whose)

    def dead_key(self, at: Path, known: dict[str, set[str]], mapped: set[str], whose: str) -> None:
        kind, key = at[-2], str(at[-1])
        if {"codes", "symptoms", "modes", "consumables"} & self.tainted or not self.fleets_known:
            return
        if kind == "fault_codes" and key not in known["codes"]:
            close = suggest(key, known["codes"])
            hint = ""
            for consumable in sorted(known["consumables"] - mapped):
                if close == f"; did you mean {consumable!r}?":
                    hint = f" (unmapped, consumable {consumable!r} is never re-ordered from its level)"
            self.report(
                at,
                f"no failure mode or consumable {whose} reports fault code {key!r} (a mode reports its"
                f" `fault_code`, a consumable running low its own name: {listed(known['codes'])}){close}{hint}",
            )
        elif kind == "symptoms" and key not in known["symptoms"] | {OTHER, NO_POWER}:
            self.report(
                at,
                f"no failure mode or consumable {whose} has symptom {key!r} (they have:"
                f" {listed(known['symptoms'])}; owners also say `{OTHER}` and `{NO_POWER}`)"
                f"{suggest(key, known['symptoms'])}",
            )
        elif kind == "diagnoses" and key not in known["modes"] | {"ok"}:
            self.report(
                at,
                f"no failure mode or consumable {whose} is named {key!r} (a device answers a diagnostic with"
                f" the name of what failed: {listed(known['modes'])}){suggest(key, known['modes'])}",
            )

    def parts(self, path: Path, known: set[str]) -> None:
        value = self.v.get(path)
        if not isinstance(value, list) or self.v.broken(path) or self.sure("parts", known) is None:
            return
        for k, part in enumerate(value):
            if isinstance(part, str) and part not in known:
                self.report(
                    (*path, k),
                    f"unknown part {part!r}: no failure mode's repair or service uses it and it has no price"
                    f"{suggest(part, known)}",
                )

    def fleet(self, f: FleetNames) -> None:
        at = f.at
        if f.sensors == set() and f.product is not None and f.product not in self.bad_bases:
            if f.entry is None:
                known = sorted({*catalogue.names(), *(self.v.key_set(("products",)) or set())})
                self.report(
                    (*at, "product"),
                    f"product {f.product!r} is not in the catalogue ({', '.join(catalogue.names())}) or in"
                    f" `products`, and the fleet lists no `sensors` of its own: name a product, or describe the"
                    f" fleet in full{suggest(f.product, known)}",
                )
            else:
                self.report((*at, "sensors"), f"the fleet has no sensors: list them here or in product {f.product!r}")
        names = [self.v.get((*a, "name")) for a, _ in self.v.items((*at, "sensors"))]
        names += [self.v.get((*a, "sensor")) for a, _ in self.v.items((*at, "consumables"))]
        if f.sensors is not None and len(set(names)) != len(names):
            self.report((*at, "sensors"), "sensor names (including consumables' sensors) must be unique")
        modes = [
            self.v.get((*a, "name")) for key in ("failure_modes", "consumables") for a, _ in self.v.items((*at, key))
        ]
        if f.modes is not None and len(set(modes)) != len(modes):
            self.report((*at, "failure_modes"), "failure mode and consumable names must be unique")
        versions = None if f.firmware is None else self.sure("firmware", f.firmware | f.of_entry["firmware"] | self.ota)
        for mode, _ in self.v.items((*at, "failure_modes")):
            self.member(
                (*mode, "precursor", "sensor"),
                self.v.text((*mode, "precursor", "sensor")),
                f.sensors,
                "unknown sensor",
                "fleet has",
            )
            for effect, _ in self.v.items((*mode, "effects")):
                self.member(
                    (*effect, "sensor"), self.v.text((*effect, "sensor")), f.sensors, "unknown sensor", "fleet has"
                )
            self.symptom((*mode, "symptom"))
            self.skill((*mode, "repair", "skill"))
            firmware = self.v.get((*mode, "firmware"))
            if isinstance(firmware, list) and versions is not None and not self.v.broken((*mode, "firmware")):
                for k, version in enumerate(firmware):
                    if isinstance(version, str) and version not in versions:
                        self.report(
                            (*mode, "firmware", k),
                            f"firmware version {version!r} is in no firmware mix and no OTA installs it (versions:"
                            f" {listed(versions)}), so the mode never happens{suggest(version, versions)} (a version"
                            " no device starts on goes in the mix with share 0)",
                        )
        for consumable, _ in self.v.items((*at, "consumables")):
            self.symptom((*consumable, "symptom"))
        for dim, _, values in self.v.keys((*at, "cohorts")):
            cohorts = values.values() if isinstance(values, dict) else []
            shares = total(c.get("share") for c in cohorts if isinstance(c, dict))
            if shares is not None and shares <= 0:
                self.report(dim, "shares must add up to more than 0")
            for value, _, _ in self.v.keys(dim):
                for _, mode_name, _ in self.v.keys((*value, "life_factor")):
                    self.member((*value, "life_factor"), mode_name, f.modes, "unknown failure mode", "fleet has")
        for key in ("firmware", "regions"):
            shares = self.v.get((*at, key))
            weights = total(shares.values()) if isinstance(shares, dict) and not self.v.broken((*at, key)) else None
            if weights is not None and weights <= 0:
                self.report((*at, key), "shares must add up to more than 0")
        interval, sync = self.v.get((*at, "telemetry_interval_s")), self.v.get(("sync_interval_s",))
        sync = 3600.0 if sync is MISSING else sync
        trusted = not self.v.broken((*at, "telemetry_interval_s")) and not self.v.broken(("sync_interval_s",))
        if trusted and numbers(interval, sync) and interval > sync:
            self.report((*at, "telemetry_interval_s"), "must be <= sync_interval_s")
        self.without(f)
        self.routed(f)

    def without(self, f: FleetNames) -> None:
        drop = self.v.get((*f.at, "without"))
        if f.entry is None or not isinstance(drop, list) or self.v.broken((*f.at, "without")):
            return
        known = f.of_entry["sensors"] | f.of_entry["modes"]
        for k, name in enumerate(drop):
            if isinstance(name, str) and name not in known:
                self.report(
                    (*f.at, "without", k),
                    f"product {f.product!r} has no sensor, failure mode or consumable {name!r} to leave out"
                    f"{suggest(name, known)}",
                )

    def routed(self, f: FleetNames) -> None:
        routing = self.v.get(("contact_centre", "routing"))
        routing = routing if isinstance(routing, dict) and not self.v.broken(("contact_centre", "routing")) else {}
        if not self.agents_known or self.agent_skills is None or f.product is None:
            return
        skill = routing.get(f.product, "general")
        if isinstance(skill, str) and skill not in self.agent_skills:
            where = ("contact_centre", "routing", f.product) if f.product in routing else ("contact_centre",)
            self.report(
                where,
                f"no agent group serves skill {skill!r} (contacts about {f.name}){suggest(skill, self.agent_skills)}",
            )
        for at, _, _ in self.v.keys((*f.at, "contact_streams")):  # a stream's own queue
            own = self.v.text((*at, "skill"))
            if own is not None and own not in self.agent_skills:
                self.report((*at, "skill"), f"no agent group serves skill {own!r}{suggest(own, self.agent_skills)}")

    def symptom(self, path: Path) -> None:
        name = self.v.text(path)
        if name is None or self.symptoms is None or name in self.symptoms or self.default_issue is not None:
            return
        if self.v.broken(("engine", "default_issue")):
            return
        self.report(
            path,
            f"symptom {name!r} is not in engine.symptoms and there is no engine.default_issue{suggest(name, self.symptoms)}",
        )

    def rules(self) -> None:
        sensors = union(f.sensors for f in self.fleets) if self.fleets_known else None
        names: set[str] = set()
        for key in RULE_LISTS:
            for at, _ in self.v.items(("engine", key)):
                name = self.v.text((*at, "name"))
                if name is not None and name in names:
                    self.report(
                        (*at, "name"),
                        f"duplicate rule name {name!r} (names are unique across rules, trends and anomalies)",
                    )
                names |= {name} if name is not None else set()
                self.issue((*at, "issue"))
                sensor = self.v.text((*at, "sensor"))
                if sensor is None or sensors is None:
                    continue
                if sensor not in sensors:
                    self.report((*at, "sensor"), f"no fleet has a sensor {sensor!r}{suggest(sensor, sensors)}")
                    continue
                if (*at, "products") in self.trace.injected:
                    continue
                self.scope(at, sensor)

    def scope(self, at: Path, sensor: str) -> None:
        value = self.v.get((*at, "products"))
        if not isinstance(value, list) or self.v.broken((*at, "products")):
            return
        for k, product in enumerate(value):
            if not isinstance(product, str) or None in (f.sensors for f in self.fleets):
                continue
            if product not in self.products:
                self.report(
                    (*at, "products", k),
                    f"no fleet is of product {product!r} (fleets: {sorted(self.products)}){suggest(product, self.products)}",
                )
            elif not any(f.sensors is not None and sensor in f.sensors for f in self.fleets if f.product == product):
                self.report((*at, "products", k), f"product {product!r} does not report {sensor!r}")

    def engine_maps(self) -> None:
        complete = self.fleets_known and all(f.modes is not None and f.sensors is not None for f in self.fleets)
        for key in ("symptoms", "fault_codes", "diagnoses"):
            mapped = self.v.key_set(("engine", key)) or set()
            for at, _, _ in self.v.keys(("engine", key)):
                self.issue(at)
                if complete and self.mine(at):
                    self.dead_key(at, self.all, mapped, "of any fleet")
        self.issue(("engine", "default_issue"))
        self.issue(("engine", "offline", "issue"))
        dimensions = self.sure("dimensions", {"firmware"} | self.all["dimensions"])
        for at, _ in self._campaigns():
            issues = self.v.get((*at, "issues"))
            for k in range(len(issues) if isinstance(issues, list) else 0):
                self.issue((*at, "issues", k))
            self.issue((*at, "recall_issue"))
            if self.fleets_known:
                by = self.v.text((*at, "by"))
                self.member((*at, "by"), by, dimensions, "no fleet has a cohort dimension", "dimensions")
        self.unique(("engine", "campaigns"), "name", "campaign name")
        self.unique(("engine", "technicians"), "id", "technician id")

    def engine_issues(self) -> None:
        for at, _, _ in self.v.keys(("engine", "issues")):
            self.skill((*at, "skill"))
            parts = self.v.get((*at, "parts"))
            if isinstance(parts, list) and not self.v.broken((*at, "parts")):
                for k, part in enumerate(parts):
                    if not isinstance(part, str):
                        continue
                    if part not in self.repair_parts:
                        if (
                            self.mine(at) and self.sure("parts", self.repair_parts) is not None
                        ):  # a product's own issues are checked with it
                            self.report(
                                (*at, "parts", k),
                                f"unknown part {part!r}: no failure mode's repair or service uses it and it has no"
                                f" price{suggest(part, self.repair_parts)}",
                            )
                    elif self.priced and part not in self.priced:
                        self.report((*at, "parts"), f"part {part!r} has no price in costs.parts")
            if self.mine(at) and self.fleets_known:
                consumable = self.v.text((*at, "consumable"))
                self.member(
                    (*at, "consumable"),
                    consumable,
                    self.sure("consumables", self.all["consumables"]),
                    "no fleet has a consumable",
                    "consumables",
                )
        fallback = self.symptoms is not None and OTHER not in self.symptoms and self.default_issue is None
        if (
            self.field
            and self.skills is not None
            and FALLBACK_SKILL not in self.skills
            and fallback
            and not self.v.broken(("engine",))
        ):
            self.report(
                ("technicians", "crews"),
                f"no technician crew has skill {FALLBACK_SKILL!r}, which the engine's fallback issue `unknown` needs:"
                f" a contact whose symptom engine.symptoms does not map (`{OTHER}`: about no failure the device has)"
                f" gets it; map `{OTHER}` in engine.symptoms to an issue your crews can take, set"
                f" engine.default_issue, or give a crew skill {FALLBACK_SKILL!r}",
            )

    def engine_other(self) -> None:
        for at, _ in self.v.items(("engine", "maintenance")):
            self.maintenance_plan(at)
        self.unique(("engine", "maintenance"), "name", "maintenance plan name")
        for at, product, _ in self.v.keys(("engine", "settings")):
            if self.mine(at) and self.fleets_known:
                self.member(at, product, self.products, "no fleet is of product", "fleets")

    def maintenance_plan(self, at: Path) -> None:
        """A plan's products, cohorts, services and counter, each checked against the fleets it covers."""
        products = self.v.get((*at, "products"))
        named = [p for p in products if isinstance(p, str)] if isinstance(products, list) else []
        if isinstance(products, list) and self.fleets_known:
            for k, product in enumerate(products):
                self.member(
                    (*at, "products", k),
                    product if isinstance(product, str) else None,
                    self.products,
                    "no fleet is of product",
                    "fleets",
                )
        scope = [f for f in self.fleets if not named or f.product in named]
        no_fleet = f"no fleet of product {listed(set(named))} has" if named else "no fleet has"
        self.skill((*at, "skill"))
        self.parts((*at, "parts"), self.repair_parts)
        if not self.fleets_known or not scope:
            return

        def known(kind: str) -> set[str] | None:
            return self.sure(kind, set().union(*(f.known[kind] for f in scope)))

        for dim_at, dimension, _ in self.v.keys((*at, "cohorts")):
            self.member(dim_at, dimension, known("dimensions"), f"{no_fleet} a cohort dimension", "dimensions")
        services = self.v.get((*at, "services"))
        for k, mode in enumerate(services if isinstance(services, list) else []):
            name = mode if isinstance(mode, str) else None
            self.member((*at, "services", k), name, known("modes"), f"{no_fleet} a failure mode", "modes")
        sensor, sensors = self.v.text((*at, "usage_sensor")), known("sensors")
        if sensor is None or sensors is None:
            return
        if sensor not in sensors:
            self.member((*at, "usage_sensor"), sensor, sensors, f"{no_fleet} a sensor")
        elif not any(sensor in self._counters(f) for f in scope):
            self.report(
                (*at, "usage_sensor"),
                f"sensor {sensor!r} is not a counter (no `rises_per_day`): a usage plan reads a count that rises"
                " with use; give the sensor `rises_per_day`, or make the plan a calendar one (`every_days`)",
            )

    def _counters(self, f: FleetNames) -> set[str]:
        """The counter sensors (with ``rises_per_day``) the fleet or its product entry lists."""
        found: set[str] = set()
        for listed_sensors in (self.v.get((*f.at, "sensors")), (f.entry or {}).get("sensors")):
            for sensor in listed_sensors if isinstance(listed_sensors, list) else []:
                if isinstance(sensor, dict) and sensor.get("rises_per_day") and isinstance(sensor.get("name"), str):
                    found.add(sensor["name"])
        return found

    def people_and_places(self) -> None:
        for key, what in (("depots", "depot"), ("outages", "outage")):
            self.unique((key,), "name", f"{what} name")
        self.unique(("technicians", "crews"), "name", "crew name")
        self.unique(("contact_centre", "groups"), "name", "agent group name")
        for at, _ in self.v.items(("outages",)):
            unanswered = self.symptoms is not None and NO_POWER not in self.symptoms and self.default_issue is None
            if self.v.get((*at, "power")) is True and not self.v.broken((*at, "power")) and unanswered:
                self.report(
                    (*at, "power"),
                    f"symptom {NO_POWER!r} is not in engine.symptoms and there is no engine.default_issue",
                )
        regions = union(f.regions for f in self.fleets) if self.fleets_known else None
        places = [*self.v.items(("outages",)), *self.v.items(("technicians", "crews")), *self.v.items(("depots",))]
        for at, _ in places:
            self.member((*at, "region"), self.v.text((*at, "region")), regions, "unknown region", "fleets have")
        stocks = [(*at, "stock") for at, _ in self.v.items(("depots",))]
        stocks += [(*at, "van_stock") for at, _ in self.v.items(("technicians", "crews"))]
        for stock in stocks if self.fleets_known else []:
            for at, part, _ in self.v.keys(stock):
                if part not in self.stock_parts and self.sure("parts", self.stock_parts) is not None:
                    self.report(
                        at,
                        f"unknown part {part!r}: no failure mode's repair or service and no issue uses it, and it has"
                        f" no price{suggest(part, self.stock_parts)}",
                    )
        for at, product, _ in self.v.keys(("contact_centre", "routing")):
            if self.fleets_known:
                self.member(at, product, self.products, "no fleet is of product", "fleets")
        for at, name, _ in self.v.keys(("costs", "refill_margin")):
            if self.fleets_known:
                self.member(
                    at,
                    name,
                    self.sure("consumables", self.all["consumables"]),
                    "no fleet has a consumable",
                    "consumables",
                )


def check(data: Any, original: Any, trace: Trace, bad: set[Path]) -> list[Finding]:
    """Every cross-field problem of merged scenario ``data`` (``original``: as the author wrote it),
    skipping the parts under the paths in ``bad`` (their type problems are reported already)."""
    if not isinstance(data, dict) or () in bad:
        return []
    return _Checker(data, original, trace, bad).run()


def _bad_bases(original: Any) -> set[str]:
    """The scenario's own products whose ``base`` is no catalogue entry."""
    own = original.get("products") if isinstance(original, dict) else None
    if not isinstance(own, dict):
        return set()
    return {
        str(name)
        for name, entry in own.items()
        if isinstance(entry, dict) and entry.get("base") is not None and str(entry["base"]) not in catalogue.names()
    }


def unresolved_fleets(original: Any) -> set[int]:
    """Indices of the fleets that list no sensors and whose product has no entry (in the catalogue or
    in ``products``) or names an unknown ``base``: what their overrides lack is no news."""
    if not isinstance(original, dict) or not isinstance(original.get("fleets"), list):
        return set()
    known = set(catalogue.entries(original)) - _bad_bases(original)
    return {
        i
        for i, f in enumerate(original["fleets"])
        if isinstance(f, dict)
        and not f.get("sensors")
        and isinstance(f.get("product"), str)
        and f["product"] not in known
    }
