"""The cost ledger against figures worked out by hand on hand-built records."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest

from contracts import Contact, EngineConfig, IssueType, Sla
from experiments.ledger import LINES, REVENUE_LINES, cost_ledger
from experiments.rundata import EngineLog, RunData, SlaBreachRow, read_engine_log
from sim.kpis import compute_kpis
from sim.records import Enquiry, Incident, Job, Records
from sim.scenario import Scenario
from sim.scenario_file import load, validate_data
from support_engine.core.actions import CreateWorkOrder
from support_engine.core.engine import Engine
from support_engine.storage import Storage
from tests.messages import status

ROOT = Path(__file__).resolve().parents[2]
DAY = 86400.0
H = 3600.0
PRICES = {
    "truck_roll": 200.0,
    "labour_per_hour": 80.0,
    "contact": 8.0,
    "agent_per_hour": 50.0,
    "sla_penalty": 100.0,
    "churned_owner": 3000.0,
    "monitoring_per_device_year": 6.0,
    "refill_margin": {"slot_a": 5.0},
}


def scenario(**costs: Any) -> Scenario:
    """365 devices for 10 days: 10 device-years. Freezers cost 25/h down and 3/h degraded (catalogue),
    the lab's freezers 100/h down (their own price), vending machines 8/h and 2/h."""
    data = {
        "name": "ledger",
        "duration_days": 10,
        "fleets": [
            {"name": "shop", "product": "freezer", "count": 200},
            {"name": "lab", "product": "freezer", "count": 65, "downtime_per_hour": 100.0},
            {"name": "vend", "product": "vending_machine", "count": 100},
        ],
        "contact_centre": {
            "agents": 2,
            "handle_time_s": {"dist": "fixed", "value": 360},
            "handle_time_by_channel": {"chat": {"dist": "fixed", "value": 720}},
        },
        "technicians": {"count": 2},
        "costs": {**PRICES, **costs},
        "engine": {"sla": {"first_response_s": 3600, "resolution_s": 86400}},
    }
    result, problems = validate_data(data)
    assert result is not None, problems
    return result


def incident(
    device: str, fleet: str, onset_d: float, hours: float | None, severity: str = "down", **kw: Any
) -> Incident:
    restored = math.nan if hours is None else onset_d * DAY + hours * H
    return Incident(device, fleet, 1, onset_d * DAY, severity, restored_s=restored, **kw)


def records() -> Records:
    r = Records()
    r.incidents = [
        incident("shop-000001", "shop", 1.0, 10.0, contacts=1),  # 10 h down x 25 = 250
        incident("shop-000002", "shop", 2.0, 20.0, "degraded", churned=True, contacts=1),  # 20 h x 3 = 60
        incident("shop-000002", "shop", 3.0, 1.0, "degraded", churned=True, contacts=1),  # 1 h x 3; same owner
        incident("lab-000001", "lab", 4.0, 2.0, churned=True, contacts=1),  # 2 h x 100 = 200
        incident("vend-000001", "vend", 10.0 - 5.0 / 24.0, None),  # open: 5 h to the end x 8 = 40
        incident("vend-000002", "vend", 5.0, 4.0, "degraded"),  # 4 h x 2 = 8
    ]
    r.jobs = {
        "wo-1": Job("wo-1", "shop-000001", "cooling", 1.0 * DAY, 1, 2.5, ["compressor"], [], "fixed"),
        "wo-2": Job("wo-2", "shop-000002", "seal", 2.0 * DAY, 2, 4.0, ["door_seal", "door_seal"], ["part"], "fixed"),
    }
    calls = [(1.1, "shop-000001", "phone"), (2.1, "shop-000002", "app"), (3.02, "shop-000002", "chat")]
    calls.append((4.05, "lab-000001", "self_service"))
    for k, (t, device, channel) in enumerate(calls):  # one contact in each of the first four incidents
        r.log(t * DAY, "owner", "contact", device, f"contact-{k}", f"{channel}: not_cooling")
        r.log(t * DAY, "agent", "answered", device, f"contact-{k}", "agents-000")
    for k, (t, consumable) in enumerate([(5.0, "slot_a"), (6.0, "slot_a"), (7.0, "slot_a"), (8.0, "slot_b")]):
        r.log(t * DAY, "courier", "delivered", "vend-000003", f"order-{k}", consumable)
    return r


BREACHES = [  # the engine's record of its breached clocks: one first response, two resolutions
    SlaBreachRow("c1", "first_response", 1 * DAY + H),
    SlaBreachRow("c1", "resolution", 2 * DAY),
    SlaBreachRow("c2", "resolution", 3 * DAY),
]


def run(policy: str = "proactive", start_s: float = 0.0, **kw: Any) -> RunData:
    return RunData(
        scenario=kw.pop("scenario", None) or scenario(),
        policy=policy,
        records=kw.pop("records", None) or records(),
        engine=kw.pop("engine", None) or EngineLog(sla_breaches=list(BREACHES)),
        stats=kw.pop("stats", {"sla_breaches": 3, "sla_breaches_first_response": 1, "sla_breaches_resolution": 2}),
        end_s=10 * DAY,
        start_s=start_s,
    )


def test_every_line_is_priced_by_hand() -> None:
    ledger = cost_ledger(run())
    lines = ledger["lines"]
    assert list(lines) == list(LINES)
    assert ledger["device_years"] == pytest.approx(10.0)
    down = lines["downtime"]
    assert (down["down_h"], down["degraded_h"], down["amount"]) == pytest.approx((17.0, 25.0, 561.0))
    assert down["by_product"]["freezer"] == pytest.approx({"down_h": 12.0, "degraded_h": 21.0, "amount": 513.0})
    assert down["by_product"]["vending_machine"] == pytest.approx({"down_h": 5.0, "degraded_h": 4.0, "amount": 48.0})
    assert (lines["truck_rolls"]["visits"], lines["truck_rolls"]["amount"]) == (3, 600.0)
    assert (lines["technician_time"]["labour_h"], lines["technician_time"]["amount"]) == (6.5, 520.0)
    agent = lines["agent_time"]  # 4 contacts x 8; phone 6 + app 6 + chat 12 min = 0.4 h x 50, self-service free
    assert (agent["contacts"], agent["agent_h"], agent["amount"]) == (4, pytest.approx(0.4), pytest.approx(52.0))
    assert agent["by_channel"] == {"app": 1, "chat": 1, "phone": 1, "self_service": 1}
    parts = lines["parts"]  # compressor 320 + 2 door seals x 45 (catalogue prices)
    assert (parts["parts_used"], parts["amount"]) == (3, 410.0)
    assert parts["by_part"]["door_seal"] == {"count": 2, "price": 45.0, "amount": 90.0}
    sla = lines["sla_penalties"]
    assert (sla["breaches"], sla["first_response"], sla["resolution"], sla["amount"]) == (3, 1, 2, 300.0)
    assert sla["counted_from"] == "engine sla_breaches"
    assert (lines["churn"]["churned_owners"], lines["churn"]["amount"]) == (2, 6000.0)
    assert (lines["monitoring"]["charged"], lines["monitoring"]["amount"]) == (True, pytest.approx(60.0))
    sales = lines["consumable_sales"]  # three slot_a refills x 5; slot_b has no margin
    assert (sales["kind"], sales["refills"], sales["amount"]) == ("revenue", 4, 15.0)
    assert sales["by_consumable"]["slot_b"] == {"count": 1, "price": 0.0, "amount": 0.0}
    cost = 561 + 600 + 520 + 52 + 410 + 300 + 6000 + 60
    assert (ledger["cost"], ledger["revenue"]) == (pytest.approx(cost), 15.0)
    assert ledger["total"] == pytest.approx(cost - 15.0)
    assert ledger["net_per_device_year"] == pytest.approx((cost - 15.0) / 10.0)


def test_per_device_year_divides_each_line_and_signs_revenue_negative() -> None:
    ledger = cost_ledger(run())
    per = ledger["per_device_year"]
    assert set(per) == {*LINES, "net"}
    for name, line in ledger["lines"].items():
        assert line["per_device_year"] == pytest.approx(line["amount"] / 10.0)
        assert per[name] == pytest.approx(
            -line["per_device_year"] if name in REVENUE_LINES else line["per_device_year"]
        )
    assert per["truck_rolls"] == 60.0
    assert per["consumable_sales"] == -1.5
    assert per["net"] == pytest.approx(sum(v for k, v in per.items() if k != "net"))
    assert per["net"] == ledger["net_per_device_year"]


def test_monitoring_is_charged_for_the_proactive_service_only() -> None:
    proactive, reactive = cost_ledger(run("proactive")), cost_ledger(run("reactive"))
    assert proactive["lines"]["monitoring"]["amount"] == pytest.approx(60.0)
    assert reactive["lines"]["monitoring"] == {
        "kind": "cost",
        "charged": False,
        "device_years": 0.0,
        "price": 6.0,
        "amount": 0.0,
        "per_device_year": 0.0,
    }
    assert proactive["total"] - reactive["total"] == pytest.approx(60.0)


def test_the_warm_up_is_left_out_and_device_years_count_the_rest() -> None:
    # The engine's breaches after the 2-day warm-up: c1's resolution (its first response breached at
    # day 1: warm-up), c2's resolution, and c3's two clocks; the counters cannot be split at day 2.
    breaches = [
        *BREACHES,
        SlaBreachRow("c3", "first_response", 4 * DAY + H),
        SlaBreachRow("c3", "resolution", 5 * DAY),
    ]
    ledger = cost_ledger(run(start_s=2.0 * DAY, engine=EngineLog(sla_breaches=breaches)))
    lines = ledger["lines"]
    assert ledger["device_years"] == pytest.approx(8.0)
    # the incident at day 1 (250) and the job created at day 1 are before the warm-up's end
    assert lines["downtime"]["amount"] == pytest.approx(561.0 - 250.0)
    assert (lines["truck_rolls"]["visits"], lines["technician_time"]["labour_h"]) == (2, 4.0)
    assert lines["parts"]["amount"] == 90.0
    assert lines["agent_time"]["contacts"] == 3  # the phone call at day 1.1 is left out
    assert lines["agent_time"]["agent_h"] == pytest.approx(0.3)
    sla = lines["sla_penalties"]
    assert (sla["first_response"], sla["resolution"], sla["counted_from"]) == (1, 3, "engine sla_breaches")
    assert lines["churn"]["churned_owners"] == 2
    assert lines["monitoring"]["amount"] == pytest.approx(8.0 * 6.0)
    assert lines["consumable_sales"]["refills"] == 4
    assert ledger["net_per_device_year"] == pytest.approx(ledger["total"] / 8.0)


def test_the_breaches_are_the_engines_own_record_and_agree_with_its_counters(tmp_path: Path) -> None:
    config = EngineConfig(
        policy="proactive",
        issues={"cooling": IssueType(skill="refrigeration")},
        symptoms={"not_cooling": "cooling"},
        sla=Sla(first_response_s=H, resolution_s=6 * H),
    )
    engine = Engine(config)
    storage = Storage(tmp_path / "engine.sqlite")
    orders = []
    for n, t in enumerate([0.0, 2 * H, 3 * DAY]):
        call = Contact(
            contact_id=f"call-{n}",
            owner_id=f"o-{n}",
            device_id=f"shop-{n:06d}",
            channel="app",
            ts=t,
            symptom="not_cooling",
        )
        actions = engine.handle(call, t)
        storage.apply(actions)
        orders += [a.message.work_order_id for a in actions if isinstance(a, CreateWorkOrder)]
    # shop-0's technician takes the job in time: only its resolution clock breaches (at 6 h); shop-1
    # breaches both (at 3 h and 8 h); shop-2 both, on day 3. Nobody resolves anything.
    storage.apply(engine.handle(status(orders[0], "shop-000000", "accepted", 0.5 * H, 1), 0.5 * H))
    for hour in range(1, 5 * 24):
        storage.apply(engine.advance(hour * H))
    storage.set_counters(engine.stats)
    storage.commit()
    storage.close()
    log = read_engine_log(tmp_path / "engine.sqlite")
    assert [(b.case_id, b.clock, b.ts) for b in log.sla_breaches] == [
        ("case-0000002", "first_response", 3 * H),
        ("case-0000001", "resolution", 6 * H),
        ("case-0000002", "resolution", 8 * H),
        ("case-0000003", "first_response", 3 * DAY + H),
        ("case-0000003", "resolution", 3 * DAY + 6 * H),
    ]

    sla = cost_ledger(run(engine=log, stats=dict(engine.stats)))["lines"]["sla_penalties"]
    assert (sla["first_response"], sla["resolution"]) == (2, 3)
    assert (sla["first_response"], sla["resolution"], sla["breaches"]) == (
        engine.stats["sla_breaches_first_response"],
        engine.stats["sla_breaches_resolution"],
        engine.stats["sla_breaches"],
    )
    # From 4 h on: shop-1's first response (3 h) is left out, its resolution (8 h) counts although
    # the case opened in the warm-up.
    warm = cost_ledger(run(engine=log, stats=dict(engine.stats), start_s=4 * H))["lines"]["sla_penalties"]
    assert (warm["first_response"], warm["resolution"]) == (1, 3)


def test_every_line_is_present_and_zero_for_an_empty_run() -> None:
    ledger = cost_ledger(run(records=Records(), engine=EngineLog(), stats={}, policy="reactive"))
    assert list(ledger["lines"]) == list(LINES)
    assert all(line["amount"] == 0.0 and line["per_device_year"] == 0.0 for line in ledger["lines"].values())
    assert (ledger["cost"], ledger["revenue"], ledger["total"], ledger["net_per_device_year"]) == (0.0, 0.0, 0.0, 0.0)


def test_without_the_new_prices_the_ledger_agrees_with_the_kpis_cost() -> None:
    plain = scenario(agent_per_hour=0.0)
    data = run(scenario=plain)
    kpis = compute_kpis(plain, data.records, data.stats, data.end_s)["cost"]
    lines = cost_ledger(data)["lines"]
    assert lines["downtime"]["amount"] == pytest.approx(kpis["downtime"])
    assert lines["truck_rolls"]["amount"] + lines["technician_time"]["amount"] == pytest.approx(kpis["field"])
    assert lines["agent_time"]["amount"] == pytest.approx(kpis["contact_centre"])
    assert lines["parts"]["amount"] == pytest.approx(kpis["parts"])


def test_the_new_prices_default_to_zero_and_freezers_prices_them() -> None:
    costs = load(ROOT / "scenarios" / "freezers.yaml").costs
    assert costs.churned_owner > 0 and costs.monitoring_per_device_year > 0 and costs.sla_penalty > 0
    default = validate_data(
        {
            "name": "bare",
            "duration_days": 1,
            "fleets": [{"name": "f", "product": "freezer", "count": 1}],
            "contact_centre": {"agents": 1},
            "technicians": {"count": 1},
        }
    )[0]
    assert default is not None
    c = default.costs
    assert (c.agent_per_hour, c.sla_penalty, c.churned_owner, c.monitoring_per_device_year, c.refill_margin) == (
        0.0,
        0.0,
        0.0,
        0.0,
        {},
    )


def test_contact_stream_contacts_are_charged_with_their_streams_handling_time() -> None:
    """Questions (billing, how-to) take agents too: each answered one costs a contact and its stream's
    mean handling time; self-service ones and those given up in the queue cost no agent time."""
    data = {
        "name": "questions",
        "duration_days": 10,
        "fleets": [
            {
                "name": "shop",
                "product": "freezer",
                "count": 365,
                "contact_streams": {
                    "billing": {"per_device_day": 0.01, "handle_time_s": {"dist": "fixed", "value": 1800}},
                    "how_to": {"per_device_day": 0.01},
                },
            }
        ],
        "contact_centre": {"agents": 2, "handle_time_s": {"dist": "fixed", "value": 360}},
        "technicians": {"count": 2},
        "costs": {k: v for k, v in PRICES.items() if k != "refill_margin"},
    }
    questions, problems = validate_data(data)
    assert questions is not None, problems
    r = Records()
    r.enquiries = [
        Enquiry("shop-000001", "shop", "billing", "phone", 1 * DAY, 0, answered=True, resolved=True),
        Enquiry("shop-000002", "shop", "how_to", "chat", 2 * DAY, 0, answered=True, resolved=False),
        Enquiry("shop-000002", "shop", "how_to", "self_service", 3 * DAY, 1, answered=True, resolved=True),
        Enquiry("shop-000003", "shop", "billing", "phone", 4 * DAY, 0, abandoned=True),
        Enquiry("shop-000004", "shop", "billing", "phone", 0.5 * DAY, 0, answered=True, resolved=True),  # warm-up
    ]
    lines = cost_ledger(run(scenario=questions, records=r, start_s=0.75 * DAY))["lines"]
    agent = lines["agent_time"]
    assert (agent["contacts"], agent["enquiries"]) == (0, 3)
    assert agent["enquiry_agent_h"] == pytest.approx(0.5 + 0.1)  # billing's own 30 min; how-to the centre's 6
    assert agent["amount"] == pytest.approx(3 * 8.0 + 0.6 * 50.0)
    kpis = compute_kpis(questions, r, {}, 10 * DAY, start_s=0.75 * DAY)
    assert kpis["contact_streams"]["contacts"] == agent["enquiries"]
