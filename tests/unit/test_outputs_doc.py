"""docs/outputs.md against the code: every actor and kind the world can log, every column written,
every coded value and every result.json key is documented, and nothing documented is gone.

The (actor, kind) pairs are read from the source at each ``records.log(...)`` site (literals, their
``if``/``else`` forms, and f-strings or parameters whose values a contract's ``Literal`` closes); a
short world run with a stand-in engine then checks that the scan missed nothing it emits.
"""

from __future__ import annotations

import ast
import csv
import functools
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any, get_args, get_type_hints

import pytest

from contracts.messages import (
    Command,
    CommandAction,
    ConsumableOrder,
    Message,
    Notification,
    WorkOrder,
    WorkOrderStatus,
)
from harness.accounting import Tally
from harness.chaos_command import verdict_of
from harness.outputs import write_run
from harness.runner import _Chaos
from sim.records import LEVELS, POWER, Failure
from sim.scenario_file import load, with_overrides
from sim.world import World

ROOT = Path(__file__).resolve().parents[2]
DOC = (ROOT / "docs" / "outputs.md").read_text(encoding="utf-8")
SOURCES = sorted([*(ROOT / "sim").rglob("*.py"), *(ROOT / "harness").rglob("*.py")])
CSV_FILES = ("events.csv", "ground_truth.csv", "connectivity.csv", "timeseries.csv")


def literal(struct: type[Message], name: str) -> frozenset[str]:
    """The values of a contract field typed as a ``Literal``."""
    return frozenset(get_args(get_type_hints(struct)[name]))


# An f-string field or a parameter at a log site stands for the closed set of its contract type.
FIELDS = {"message.kind": literal(Notification, "kind"), "message.action": frozenset(get_args(CommandAction))}
PARAMETERS = {("_status", "status"): literal(WorkOrderStatus, "status")}


# -- the doc --------------------------------------------------------------------------------------
def _cell(text: str) -> str:
    text = text.strip()
    code = re.fullmatch(r"`([^`]+)`", text)
    return code.group(1) if code else text


def sections(text: str) -> list[tuple[str, str]]:
    """(heading, body) of every heading, the body running to the next heading; fenced code skipped."""
    out: list[tuple[str, list[str]]] = [("", [])]
    fenced = False
    for line in text.splitlines():
        if line.startswith("```"):
            fenced = not fenced
            continue
        if fenced:
            continue
        if line.startswith("#"):
            out.append((line.lstrip("#").strip(), []))
        else:
            out[-1][1].append(line)
    return [(h, "\n".join(body)) for h, body in out]


def tables(body: str) -> list[tuple[list[str], list[list[str]]]]:
    """Every Markdown table of ``body`` as (header, rows), cells without their code spans' backticks."""
    found: list[tuple[list[str], list[list[str]]]] = []
    block: list[list[str]] = []
    for line in [*body.splitlines(), ""]:
        if line.startswith("|"):
            block.append([_cell(c) for c in line.strip().strip("|").split("|")])
        elif block:
            assert len(block) >= 2 and set("".join(block[1])) <= set("-: "), block
            found.append((block[0], block[2:]))
            block = []
    return found


def section(heading: str) -> str:
    bodies = [body for h, body in sections(DOC) if h == heading]
    assert len(bodies) == 1, f"docs/outputs.md needs one heading {heading!r}"
    return bodies[0]


def table_rows(rows_of: list[tuple[list[str], list[list[str]]]], *header: str) -> list[list[str]]:
    """The rows of the one table whose header starts with ``header``."""
    matching = [rows for head, rows in rows_of if tuple(head[: len(header)]) == header]
    assert len(matching) == 1, f"docs/outputs.md needs one table headed {header}"
    return matching[0]


def documented(heading: str, *header: str) -> list[str]:
    """The first cells of the table headed ``header`` under the heading ``heading``."""
    return [row[0] for row in table_rows(tables(section(heading)), *header)]


def everywhere(*header: str) -> list[list[str]]:
    """The rows of the one table of the whole doc whose header starts with ``header``."""
    return table_rows([t for _, body in sections(DOC) for t in tables(body)], *header)


# -- the code ---------------------------------------------------------------------------------------
def _is_records(node: ast.expr) -> bool:
    return (isinstance(node, ast.Name) and node.id == "records") or (
        isinstance(node, ast.Attribute) and node.attr == "records"
    )


def _on(node: ast.expr, attr: str) -> bool:
    """``node`` is ``<records>.attr`` (``self.records.link``, ``w.records.log``, ``records.link``)."""
    return isinstance(node, ast.Attribute) and node.attr == attr and _is_records(node.value)


def _functions(tree: ast.Module) -> dict[int, ast.FunctionDef]:
    """Each node's innermost enclosing function (by the node's id)."""
    owner: dict[int, ast.FunctionDef] = {}
    for func in ast.walk(tree):  # breadth first: an inner function overwrites its outer one
        if isinstance(func, ast.FunctionDef):
            for node in ast.walk(func):
                owner[id(node)] = func
    return owner


def _assigned(name: str, func: ast.FunctionDef, where: str) -> set[str]:
    """Every string assigned to ``name`` in ``func`` (``x = …`` and ``x, y = …, …``)."""
    values: set[str] = set()
    for node in ast.walk(func):
        if not isinstance(node, ast.Assign):
            continue
        for target in node.targets:
            if isinstance(target, ast.Name) and target.id == name:
                values |= strings(node.value, func, where)
            elif isinstance(target, ast.Tuple) and isinstance(node.value, ast.Tuple):
                for t, v in zip(target.elts, node.value.elts, strict=True):
                    if isinstance(t, ast.Name) and t.id == name:
                        values |= strings(v, func, where)
    return values


def strings(expr: ast.expr, func: ast.FunctionDef | None, where: str) -> set[str]:
    """Every string ``expr`` can be at a log site; fails on a form it cannot read."""
    if isinstance(expr, ast.Constant) and isinstance(expr.value, str):
        return {expr.value}
    if isinstance(expr, ast.IfExp):
        return strings(expr.body, func, where) | strings(expr.orelse, func, where)
    if isinstance(expr, ast.JoinedStr):
        out = {""}
        for part in expr.values:
            if isinstance(part, ast.Constant):
                out = {o + str(part.value) for o in out}
            else:
                assert isinstance(part, ast.FormattedValue)
                key = ast.unparse(part.value)
                assert key in FIELDS, f"{where}: teach this test the values of {{{key}}} (FIELDS)"
                out = {o + v for o in out for v in FIELDS[key]}
        return out
    if isinstance(expr, ast.Name) and func is not None:
        values = _assigned(expr.id, func, where)
        if expr.id in {a.arg for a in func.args.args}:
            param = (func.name, expr.id)
            assert param in PARAMETERS, f"{where}: teach this test the values of parameter {param} (PARAMETERS)"
            values |= PARAMETERS[param]
        assert values, f"{where}: no value found for {expr.id}"
        return values
    raise AssertionError(f"{where}: cannot read {ast.unparse(expr)!r}; teach this test the form")


@functools.cache
def _parsed() -> tuple[tuple[str, ast.Module], ...]:
    return tuple((str(path.relative_to(ROOT)), ast.parse(path.read_text(encoding="utf-8"))) for path in SOURCES)


def _trees() -> Iterator[tuple[str, ast.Module]]:
    yield from _parsed()


@functools.cache
def log_sites() -> list[tuple[str, set[tuple[str, str]]]]:
    """Each ``records.log(t, actor, kind, …)`` call: where, and every (actor, kind) it can log."""
    sites = []
    for name, tree in _trees():
        owner = _functions(tree)
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and _on(node.func, "log"):
                where = f"{name}:{node.lineno}"
                args = dict(enumerate(node.args)) | {
                    {"actor": 1, "kind": 2}[k.arg]: k.value for k in node.keywords if k.arg in ("actor", "kind")
                }
                func = owner.get(id(node))
                actors, kinds = strings(args[1], func, where), strings(args[2], func, where)
                sites.append((where, {(a, k) for a in actors for k in kinds}))
    return sites


def bypasses() -> list[str]:
    """Appends to the event log that go around ``Records.log``."""
    found = []
    for name, tree in _trees():
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Attribute)
                and node.attr in ("append", "extend", "insert")
                and _on(node.value, "events")
            ):
                found.append(f"{name}:{node.lineno}")
            if isinstance(node, ast.AugAssign) and _on(node.target, "events"):
                found.append(f"{name}:{node.lineno}")
    return found


def link_kinds() -> dict[str, str]:
    """Every ``kind`` appended to ``records.link`` (``append((t, who, kind, detail))`` or ``+= [(…) for …]``)."""
    kinds: dict[str, str] = {}
    for name, tree in _trees():
        for node in ast.walk(tree):
            rows: list[ast.expr] = []
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and _on(node.func.value, "link"):
                assert node.func.attr == "append", (
                    f"{name}:{node.lineno}: teach this test records.link.{node.func.attr}"
                )
                rows = [node.args[0]]
            elif isinstance(node, ast.AugAssign) and _on(node.target, "link"):
                value = node.value
                rows = [value.elt] if isinstance(value, ast.ListComp) else list(getattr(value, "elts", []))
            else:
                continue
            where = f"{name}:{node.lineno}"
            assert rows and all(isinstance(r, ast.Tuple) and len(r.elts) == 4 for r in rows), where
            for row in rows:
                assert isinstance(row, ast.Tuple)
                for kind in strings(row.elts[2], None, where):
                    kinds[kind] = where
    return kinds


def fixed_by_values() -> set[str]:
    """What a failure's ``fixed_by`` can be: ``by`` given to repairs, ``by`` defaults, assignments."""
    repairs = {"repair", "remote_fix_all", "_prevented", "_maybe_restored"}
    values: set[str] = set()

    def consts(expr: ast.expr) -> set[str]:
        if isinstance(expr, ast.Constant) and isinstance(expr.value, str):
            return {expr.value}
        if isinstance(expr, ast.IfExp):
            return consts(expr.body) | consts(expr.orelse)
        return set()

    for path in sorted((ROOT / "sim").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in repairs:
                values |= {v for k in node.keywords if k.arg == "by" for v in consts(k.value)}
            elif isinstance(node, ast.FunctionDef) and node.name in repairs:
                args = node.args.args[len(node.args.args) - len(node.args.defaults) :]
                values |= {v for a, d in zip(args, node.args.defaults, strict=True) if a.arg == "by" for v in consts(d)}
            elif isinstance(node, ast.Assign):
                for target in node.targets:
                    pairs = (
                        zip(target.elts, node.value.elts, strict=True)
                        if isinstance(target, ast.Tuple) and isinstance(node.value, ast.Tuple)
                        else [(target, node.value)]
                    )
                    for t, v in pairs:
                        if (isinstance(t, ast.Name) and t.id == "by") or (
                            isinstance(t, ast.Attribute) and t.attr == "fixed_by"
                        ):
                            values |= consts(v)
    return values


def result_keys() -> tuple[set[str], set[str], set[str]]:
    """(top-level keys, ``messages`` keys always there, ``messages`` keys added when non-zero) of a run's result."""
    top: set[str] = set()
    messages: set[str] = set()
    optional: set[str] = set()
    for path in (ROOT / "harness" / "runner.py", ROOT / "experiments" / "execute.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.FunctionDef) and node.name == "_result":
                returned = [n for n in ast.walk(node) if isinstance(n, ast.Return)]
                assert len(returned) == 1 and isinstance(returned[0].value, ast.Dict)
                for key, value in zip(returned[0].value.keys, returned[0].value.values, strict=True):
                    assert isinstance(key, ast.Constant)
                    top.add(str(key.value))
                    if key.value == "messages":
                        assert isinstance(value, ast.Dict)
                        messages |= {str(k.value) for k in value.keys if isinstance(k, ast.Constant)}
            if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Subscript):
                target = node.targets[0]
                inner = target.value
                if isinstance(inner, ast.Name) and inner.id == "result" and isinstance(target.slice, ast.Constant):
                    top.add(str(target.slice.value))
                elif (
                    isinstance(inner, ast.Subscript)
                    and isinstance(inner.value, ast.Name)
                    and inner.value.id == "result"
                    and isinstance(inner.slice, ast.Constant)
                    and inner.slice.value == "messages"
                    and isinstance(target.slice, ast.Constant)
                ):
                    optional.add(str(target.slice.value))
    return top, messages, optional


# -- a run ------------------------------------------------------------------------------------------
def _answers(failure: Failure, n: int, t: float, consumables: set[str]) -> list[Message]:
    """A stand-in engine's answers to a failure: a work order, a notice, a command and an order (of
    the consumable that ran empty, else of one the device lacks), cycling through every notification
    kind and command action."""
    kinds: list[Any] = sorted(literal(Notification, "kind"))  # Literal values, as the Structs take them
    actions: list[Any] = sorted(get_args(CommandAction))
    device = failure.device_id
    consumable = failure.mode if failure.mode in consumables else "no_such_consumable"
    return [
        WorkOrder(
            work_order_id=f"wo-{n}",
            case_id=f"case-{n}",
            device_id=device,
            ts=t,
            issue="stand_in",
            skill="general",
            parts=[],
            duration_s=3600.0,
        ),
        Notification(
            notification_id=f"note-{n}", device_id=device, ts=t, kind=kinds[n % len(kinds)], case_id=f"case-{n}"
        ),
        Command(command_id=f"cmd-{n}", device_id=device, ts=t, action=actions[n % len(actions)]),
        ConsumableOrder(order_id=f"order-{n}", device_id=device, ts=t, consumable=consumable, quantity=1.0),
    ]


def run(name: str, days: float, answer: int) -> World:
    """``scenarios/NAME.yaml`` for ``days`` through the world alone; the first ``answer`` failing
    devices get the stand-in engine's answers at the next sync step."""
    scenario = with_overrides(load(ROOT / "scenarios" / f"{name}.yaml"), duration_days=days)
    world = World(scenario)
    consumables = {c.name for fleet in world.fleets for c in fleet.consumables}
    answered: set[str] = set()
    t = 0.0
    while t < scenario.duration_s:
        t = min(t + scenario.sync_interval_s, scenario.duration_s)
        world.advance(t)
        for failure in list(world.records.failures):
            if len(answered) < answer and failure.device_id not in answered:
                answered.add(failure.device_id)
                for message in _answers(failure, len(answered), t, consumables):
                    world.deliver(message)
    return world


@pytest.fixture(scope="module")
def worlds() -> list[World]:
    return [run("regional_outage", 6.0, 60), run("city", 1.0, 0)]


# -- the tests --------------------------------------------------------------------------------------
def test_the_scan_reads_every_log_site_and_finds_what_it_should() -> None:
    sites = log_sites()
    pairs = {p for _, found in sites for p in found}
    assert len(sites) >= 15, sites
    assert len(pairs) >= 30, sorted(pairs)
    assert {a for a, _ in pairs} >= {"device", "owner", "agent", "technician", "engine", "world"}
    assert ("engine", "notify_resolved") in pairs and ("technician", "part_missing") in pairs
    assert not bypasses(), "append to the event log through Records.log, whose sites this test reads"


def test_every_actor_and_kind_the_code_can_log_is_documented_and_nothing_else() -> None:
    in_code = {p for _, found in log_sites() for p in found}
    in_doc = {(row[0], row[1]) for row in everywhere("actor", "kind")}
    assert in_code - in_doc == set(), "undocumented in docs/outputs.md"
    assert in_doc - in_code == set(), "documented in docs/outputs.md but never logged"
    assert {row[0] for row in everywhere("actor", "who")} == {a for a, _ in in_code}


def test_a_world_run_logs_nothing_the_scan_missed(worlds: list[World]) -> None:
    in_code = {p for _, found in log_sites() for p in found}
    seen = {(e[1], e[2]) for w in worlds for e in w.records.events}
    assert seen <= in_code, seen - in_code
    assert len(seen) >= 20, sorted(seen)  # the stand-in engine reached the field, the couriers and the depots
    link = {row[2] for w in worlds for row in w.records.link}
    assert link <= set(link_kinds()), link
    assert len(link) >= 4, link


def test_every_link_kind_is_documented_and_nothing_else() -> None:
    kinds = link_kinds()
    assert len(kinds) >= 5, kinds
    assert {row[0] for row in everywhere("kind", "who")} == set(kinds)


def test_the_csv_headers_written_are_the_documented_columns(worlds: list[World], tmp_path: Path) -> None:
    write_run(tmp_path, {"scenario": worlds[0].scenario.name}, worlds[0].records)
    assert json.loads((tmp_path / "result.json").read_text(encoding="utf-8")) == {"scenario": "regional_outage"}
    for name in CSV_FILES:
        with open(tmp_path / name, newline="", encoding="utf-8") as f:
            header = next(csv.reader(f))
        assert header == documented(f"`{name}`", "column", "unit", "meaning"), name


def test_the_coded_values_of_the_ground_truth_and_the_level_series_are_documented(
    worlds: list[World], tmp_path: Path
) -> None:
    doc_fixed_by = {row[0] for row in everywhere("fixed_by", "meaning")}
    assert fixed_by_values() == doc_fixed_by
    assert len(doc_fixed_by) >= 6
    world = worlds[0]
    write_run(tmp_path, {}, world.records)
    with open(tmp_path / "ground_truth.csv", newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    modes = {m for fleet in world.fleets for m in fleet.mode_names} | {POWER}
    assert {r["mode"] for r in rows} <= modes
    assert POWER in {r["mode"] for r in rows}  # the outage's power cut
    assert {r["severity"] for r in rows} <= {"down", "degraded"}
    assert {r["prevented"] for r in rows} <= {"0", "1"}
    assert {r["fixed_by"] for r in rows} <= doc_fixed_by | {""}
    ground = {row[0]: row[2] for row in table_rows(tables(section("`ground_truth.csv`")), "column")}
    assert all(f"`{v}`" in ground[c] for c, v in [("mode", POWER), ("severity", "down"), ("severity", "degraded")])
    assert documented("`timeseries.csv`", "series", "counts") == list(LEVELS[1:])
    with open(tmp_path / "timeseries.csv", newline="", encoding="utf-8") as f:
        assert {r["series"] for r in csv.DictReader(f)} == set(LEVELS[1:])


def test_every_result_key_and_message_count_is_documented() -> None:
    top, messages, optional = result_keys()
    assert {"messages", "kpis", "manifest", "accounting", "chaos", "replication"} <= top
    assert len(messages) >= 10 and len(optional) >= 3, (messages, optional)
    assess = {"scorecard", "ledger", "checklist"}  # experiments.assess.assess's blocks
    assert set(documented("`result.json`", "key", "when", "holds")) == top | assess
    assert set(documented("`messages`", "key", "unit", "meaning")) == messages | optional


def test_the_accounting_and_chaos_blocks_are_documented() -> None:
    keys: dict[str, Any] = {
        "accounting": Tally(examples={"lost": ["x"]}).as_dict(),
        "chaos": _Chaos([], None).report()  # type: ignore[arg-type]
        | verdict_of({"kpis": {}}, {"kpis": {}, "messages": {"lost": 0}, "chaos": {"not_reached": []}}),
    }
    expected = {f"{block}.{key}" for block, found in keys.items() for key in found}
    assert set(documented("`accounting` and `chaos`", "key", "meaning")) == expected
