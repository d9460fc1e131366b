"""The engine core: lifecycles, twins and rules, cases and work orders, SLA clocks, de-duplication keys."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

import msgspec
import numpy as np
import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from contracts import (
    BatchView,
    Contact,
    DeviceRecord,
    EngineConfig,
    IssueType,
    Sla,
    Telemetry,
    ThresholdRule,
    WorkOrderStatus,
    decode_batch,
    encode_batch,
)
from support_engine.core.actions import (
    CaseChanged,
    ClearAlert,
    CreateWorkOrder,
    Notify,
    RaiseAlert,
    SlaBreached,
    SlaWarned,
    WorkOrderChanged,
)
from support_engine.core.engine import Engine
from support_engine.core.ledger import Ledger, key_of
from support_engine.core.lifecycle import CASE, WORK_ORDER, Lifecycle
from support_engine.core.twins import Fired, Twins
from support_engine.errors import EngineError, IllegalTransition
from tests.messages import status

HOUR = 3600.0
DAY = 86400.0
HOT = ThresholdRule(name="hot", sensor="temp", above=10.0, for_s=600.0, issue="cooling")
FROZEN = ThresholdRule(name="frozen", sensor="temp", below=-40.0, for_s=0.0, issue="cooling")
OVERWORK = ThresholdRule(name="overwork", sensor="duty", above=0.8, for_s=3 * HOUR, issue="compressor")


def config(policy: str = "proactive") -> EngineConfig:
    return EngineConfig(
        policy=policy,  # type: ignore[arg-type]
        rules=[OVERWORK, HOT],
        issues={
            "compressor": IssueType(skill="refrigeration", parts=["compressor"], duration_s=10800.0, priority=1),
            "cooling": IssueType(skill="refrigeration", parts=["compressor", "control_board"], priority=1),
            "door_seal": IssueType(skill="general", parts=["door_seal"], priority=3),
        },
        symptoms={"not_cooling": "cooling", "frost_and_warm": "door_seal"},
        default_issue="cooling",
        sla=Sla(first_response_s=4 * HOUR, resolution_s=24 * HOUR),
    )


def batch(
    readings: Sequence[tuple[str, float, float]], *, sensor: str = "duty", gateway: str = "gw1", seq: int = 1
) -> BatchView:
    """A decoded gateway batch of (device, ts, value) readings of one sensor."""
    roster = sorted({d for d, _, _ in readings})
    return decode_batch(
        encode_batch(
            gateway_id=gateway,
            ts=max(t for _, t, _ in readings),
            boot_id=0,
            seq=seq,
            devices=roster,
            index=[roster.index(d) for d, _, _ in readings],
            reading_ts=[t for _, t, _ in readings],
            reading_seq=list(range(1, len(readings) + 1)),
            values={sensor: [v for _, _, v in readings]},
        )
    )


def contact(device: str, ts: float, symptom: str = "not_cooling", n: int = 1) -> Contact:
    return Contact(contact_id=f"c{n}", owner_id=f"o-{device}", device_id=device, channel="app", ts=ts, symptom=symptom)


def of(actions: list[object], kind: type) -> list:  # type: ignore[type-arg]
    return [a for a in actions if isinstance(a, kind)]


def overwork(engine: Engine, device: str, hours: int, start: float = 0.0) -> list[object]:
    """Hourly duty readings of 0.95 for ``hours`` hours, one batch per hour."""
    actions: list[object] = []
    for h in range(hours + 1):
        t = start + h * HOUR
        actions += engine.handle(batch([(device, t, 0.95)], seq=h + 1), t)
    return actions


# -- lifecycles ---------------------------------------------------------------------------------


def test_illegal_transition_names_current_and_allowed_states() -> None:
    with pytest.raises(IllegalTransition) as info:
        WORK_ORDER.check("created", "done", "wo-1")
    err = info.value
    assert isinstance(err, ValueError) and isinstance(err, EngineError)
    assert (err.current, err.wanted, err.allowed) == ("created", "done", frozenset({"accepted", "cancelled"}))
    assert "wo-1" in str(err) and "'created'" in str(err) and "['accepted', 'cancelled']" in str(err)


def test_a_terminal_state_allows_nothing() -> None:
    assert [s for s in CASE.table if CASE.is_terminal(s)] == ["closed"]
    assert sorted(s for s in WORK_ORDER.table if WORK_ORDER.is_terminal(s)) == ["cancelled", "closed"]
    with pytest.raises(ValueError, match="allowed from 'closed': none"):
        CASE.check("closed", "open")


def test_legal_moves_return_the_new_state() -> None:
    assert CASE.check("open", "in_progress") == "in_progress"
    assert WORK_ORDER.check("on_site", "awaiting_part") == "awaiting_part"
    assert WORK_ORDER.check("awaiting_part", "accepted") == "accepted"


def test_a_table_with_a_target_without_a_row_is_refused() -> None:
    with pytest.raises(ValueError, match="targets without a row"):
        Lifecycle("broken", {"a": {"b"}}, initial="a")


# -- twins --------------------------------------------------------------------------------------


def feed(twins: Twins, device: str, t: float, temp: float) -> tuple[list[float], list[float]]:
    """Ingest one reading; return the times of alerts raised and cleared."""
    fired = twins.ingest(np.array([twins.slot(device)]), np.array([t]), np.array([1]), {"temp": np.array([temp])})
    return [x[2] for x in fired.raised], [x[2] for x in fired.cleared]


def test_a_rule_fires_only_after_for_s_of_continuous_breach_and_once() -> None:
    twins = Twins([HOT])
    assert feed(twins, "d", 0.0, 20.0) == ([], [])
    assert feed(twins, "d", 599.0, 20.0) == ([], [])
    assert feed(twins, "d", 600.0, 20.0) == ([600.0], [])
    assert feed(twins, "d", 1200.0, 25.0) == ([], [])  # still alerting: not raised again


def test_a_break_in_the_breach_restarts_the_persistence_clock() -> None:
    twins = Twins([HOT])
    feed(twins, "d", 0.0, 20.0)
    feed(twins, "d", 300.0, 5.0)
    assert feed(twins, "d", 600.0, 20.0) == ([], [])
    assert feed(twins, "d", 1200.0, 20.0) == ([1200.0], [])


def test_an_alert_clears_when_the_value_returns_and_fires_again_later() -> None:
    twins = Twins([HOT])
    feed(twins, "d", 0.0, 20.0)
    feed(twins, "d", 600.0, 20.0)
    assert feed(twins, "d", 700.0, 5.0) == ([], [700.0])
    assert feed(twins, "d", 800.0, 5.0) == ([], [])  # cleared once
    assert feed(twins, "d", 900.0, 20.0) == ([], [])
    assert feed(twins, "d", 1500.0, 20.0) == ([1500.0], [])


def test_a_below_rule_fires_on_low_values_only() -> None:
    twins = Twins([FROZEN])
    assert feed(twins, "d", 0.0, -18.0) == ([], [])
    assert feed(twins, "d", 60.0, -45.0) == ([60.0], [])
    assert feed(twins, "d", 120.0, -18.0) == ([], [120.0])


def test_a_batch_is_applied_in_time_order() -> None:
    twins = Twins([HOT])
    slot = twins.slot("d")
    fired = twins.ingest(
        np.array([slot, slot, slot]),
        np.array([1200.0, 0.0, 600.0]),
        np.array([3, 1, 2]),
        {"temp": np.array([5.0, 20.0, 20.0])},
    )
    assert [(x[2], x[3]) for x in fired.raised] == [(600.0, 20.0)]
    assert [x[2] for x in fired.cleared] == [1200.0]
    assert twins.values["temp"][slot] == 5.0 and twins.last_seen[slot] == 1200.0 and twins.last_seq[slot] == 3


def test_within_one_timestamp_a_devices_last_reading_wins_for_its_rules_too() -> None:
    twins = Twins([FROZEN])
    slot = twins.slot("d")

    def ingest(temps: list[float]) -> Fired:
        n = len(temps)
        return twins.ingest(np.full(n, slot), np.zeros(n), np.ones(n), {"temp": np.array(temps)})

    assert ingest([-50.0, 0.0]) == ([], [], [])
    assert not twins.alerting.any() and twins.values["temp"][slot] == 0.0
    assert ingest([0.0, -50.0]).raised == [(slot, 0, 0.0, -50.0)]


def test_a_late_reading_does_not_rewind_a_twin() -> None:
    twins = Twins([HOT])
    feed(twins, "d", 1000.0, 5.0)
    assert feed(twins, "d", 100.0, 50.0) == ([], [])
    slot = twins.slot_of["d"]
    assert twins.values["temp"][slot] == 5.0 and twins.last_seen[slot] == 1000.0
    assert np.isnan(twins.breach_since[0, slot])


def test_slots_grow_past_the_initial_capacity_keeping_values() -> None:
    twins = Twins([HOT], capacity=1024)
    devices = [f"d{i:05d}" for i in range(3000)]
    for lo, hi in [(0, 1024), (1024, 1025), (1025, 3000)]:  # readings land just before and after each growth
        slots = twins.slots(f"gw{lo}", devices[lo:hi])
        n = hi - lo
        twins.ingest(slots, np.zeros(n), np.ones(n, dtype=np.int64), {"temp": np.arange(lo, hi, dtype=np.float64)})
    assert len(twins) == 3000 and twins.breach_since.shape[1] >= 3000
    assert [twins.slot_of[d] for d in devices] == list(range(3000))
    np.testing.assert_array_equal(twins.values["temp"][:3000], np.arange(3000.0))
    assert np.isnan(twins.breach_since[0, :11]).all() and (twins.breach_since[0, 11:3000] == 0.0).all()
    assert twins.slots("gw0", devices[:1024]) is twins.slots("gw0", devices[:1024])  # cached roster


# -- engine: proactive and reactive -------------------------------------------------------------


def test_proactive_a_persistent_breach_opens_a_case_and_dispatches_a_work_order() -> None:
    engine = Engine(config())
    assert overwork(engine, "fz-1", hours=2) == []  # 2 h < for_s
    actions = engine.handle(batch([("fz-1", 3 * HOUR, 0.95)]), 3 * HOUR)
    (alert,) = of(actions, RaiseAlert)
    (changed,) = of(actions, CaseChanged)
    (order,) = of(actions, CreateWorkOrder)
    (note,) = of(actions, Notify)
    assert (alert.device_id, alert.rule, alert.ts, alert.value) == ("fz-1", "overwork", 3 * HOUR, 0.95)
    assert (changed.state, changed.origin, changed.case_id) == ("in_progress", "telemetry", alert.case_id)
    wo = order.message
    assert (wo.device_id, wo.case_id, wo.issue, wo.skill, wo.parts, wo.priority) == (
        "fz-1",
        alert.case_id,
        "compressor",
        "refrigeration",
        ["compressor"],
        1,
    )
    assert (note.message.kind, note.message.case_id, note.message.device_id) == ("case_opened", alert.case_id, "fz-1")
    assert engine.open_case_of == {"fz-1": alert.case_id}
    assert overwork(engine, "fz-1", hours=3, start=4 * HOUR) == []  # one active alert per device and rule


def test_an_alert_clears_when_the_reading_returns_to_normal() -> None:
    engine = Engine(config())
    (alert,) = of(overwork(engine, "fz-1", hours=3), RaiseAlert)
    actions = engine.handle(batch([("fz-1", 4 * HOUR, 0.4)]), 4 * HOUR)
    assert actions == [ClearAlert(alert.alert_id, "fz-1", "overwork", 4 * HOUR)]
    assert engine.alert_of == {}


def test_single_telemetry_messages_feed_the_same_rules() -> None:
    engine = Engine(config())
    actions: list[object] = []
    for n, t in enumerate([0.0, 300.0, 600.0]):
        msg = Telemetry(device_id="fz-1", ts=t, boot_id=1, seq=n + 1, values={"temp": 12.0})
        actions += engine.handle(msg, t)
    assert [(a.rule, a.ts) for a in of(actions, RaiseAlert)] == [("hot", 600.0)]


def test_an_alert_raised_and_cleared_inside_one_batch_leaves_no_active_alert() -> None:
    engine = Engine(config())
    readings = [("fz-1", h * HOUR, 0.95) for h in range(4)] + [("fz-1", 4 * HOUR, 0.4)]
    actions = engine.handle(batch(readings), 4 * HOUR)
    (alert,) = of(actions, RaiseAlert)
    assert of(actions, ClearAlert) == [ClearAlert(alert.alert_id, "fz-1", "overwork", 4 * HOUR)]
    assert engine.alert_of == {}


def test_reactive_the_same_telemetry_raises_nothing() -> None:
    engine = Engine(config("reactive"))
    assert overwork(engine, "fz-1", hours=6) == []
    assert engine.cases == {} and engine.stats["readings"] == 7


def test_a_contact_opens_a_case_mapped_by_its_symptom() -> None:
    engine = Engine(config("reactive"))
    actions = engine.handle(contact("fz-1", 100.0, "frost_and_warm"), 100.0)
    (changed,) = of(actions, CaseChanged)
    (order,) = of(actions, CreateWorkOrder)
    assert (changed.issue, changed.origin, changed.opened_s) == ("door_seal", "contact", 100.0)
    assert (order.message.skill, order.message.parts) == ("general", ["door_seal"])
    assert of(actions, Notify)[0].message.kind == "case_opened"


def test_an_unknown_symptom_falls_back_to_the_default_issue() -> None:
    engine = Engine(config("reactive"))
    (order,) = of(engine.handle(contact("fz-1", 0.0, "strange_noise"), 0.0), CreateWorkOrder)
    assert order.message.issue == "cooling"


def test_a_second_contact_for_the_same_device_joins_the_open_case() -> None:
    engine = Engine(config("reactive"))
    first = engine.handle(contact("fz-1", 0.0, n=1), 0.0)
    case_id = of(first, CaseChanged)[0].case_id
    second = engine.handle(contact("fz-1", 3600.0, n=2), 3600.0)
    (note,) = second
    assert isinstance(note, Notify) and (note.message.kind, note.message.case_id) == ("visit_scheduled", case_id)
    assert engine.stats["work_orders"] == 1 and engine.stats["contacts_joined"] == 1
    assert engine.cases[case_id].contacts == 2 and len(engine.cases) == 1


def test_a_contact_after_an_alert_joins_the_alerts_case() -> None:
    engine = Engine(config())
    (alert,) = of(overwork(engine, "fz-1", hours=3), RaiseAlert)
    (note,) = engine.handle(contact("fz-1", 4 * HOUR), 4 * HOUR)
    assert isinstance(note, Notify) and note.message.case_id == alert.case_id


# -- engine: the field --------------------------------------------------------------------------


def open_by_contact(engine: Engine, device: str = "fz-1") -> tuple[str, str]:
    (order,) = of(engine.handle(contact(device, 0.0), 0.0), CreateWorkOrder)
    return order.message.case_id, order.message.work_order_id


def test_a_work_order_closing_resolves_the_case_and_tells_the_owner() -> None:
    engine = Engine(config())
    case_id, wo = open_by_contact(engine)
    states = []
    for seq, what in enumerate(["accepted", "arrived", "fixed"], start=1):
        changed, *rest = engine.handle(status(wo, "fz-1", what, seq * HOUR, seq), seq * HOUR)
        states.append(changed.state)
        if what == "accepted":  # the technician taking the job is the case's first response
            assert [(type(a), a.first_response_s) for a in rest] == [(CaseChanged, HOUR)]
        else:
            assert rest == []
    assert states == ["accepted", "on_site", "done"]
    assert engine.cases[case_id].first_response_s == HOUR
    actions = engine.handle(status(wo, "fz-1", "closed", 4 * HOUR, 4), 4 * HOUR)
    assert [type(a) for a in actions] == [WorkOrderChanged, CaseChanged, Notify]
    assert actions[1].state == "resolved" and actions[2].message.kind == "resolved"
    case = engine.cases[case_id]
    assert (case.state, case.resolved_s) == ("resolved", 4 * HOUR)
    assert engine.open_case_of == {}
    assert engine.stats["cases_resolved"] == engine.stats["cases_resolved_within_sla"] == 1


def test_a_missing_part_means_a_second_visit() -> None:
    engine = Engine(config())
    case_id, wo = open_by_contact(engine)
    sequence = [("accepted", 1), ("arrived", 1), ("part_missing", 1), ("accepted", 2), ("arrived", 2), ("fixed", 2)]
    for seq, (what, visit) in enumerate(sequence, start=1):
        engine.handle(status(wo, "fz-1", what, seq * HOUR, seq, visit), seq * HOUR)
    assert (engine.work_orders[wo].state, engine.work_orders[wo].visit) == ("done", 2)
    engine.handle(status(wo, "fz-1", "closed", 10 * HOUR, 10, 2), 10 * HOUR)
    assert engine.cases[case_id].state == "resolved"
    assert engine.stats["second_visits"] == 1


def test_a_repeated_status_changes_nothing() -> None:
    engine = Engine(config())
    _, wo = open_by_contact(engine)
    assert [type(a) for a in engine.handle(status(wo, "fz-1", "accepted", 1.0, 1), 1.0)] == [
        WorkOrderChanged,
        CaseChanged,  # the first response
    ]
    assert engine.handle(status(wo, "fz-1", "accepted", 1.0, 1), 1.0) == []


def test_a_status_for_an_unknown_work_order_is_counted_not_raised() -> None:
    engine = Engine(config())
    assert engine.handle(status("wo-nobody", "fz-1", "fixed", 1.0, 1), 1.0) == []
    assert engine.stats["unknown_work_order_status"] == 1


def test_a_resolved_device_that_still_breaches_raises_a_new_alert_and_case() -> None:
    engine = Engine(config())
    actions = overwork(engine, "fz-1", hours=3)
    (wo,) = [a.message.work_order_id for a in of(actions, CreateWorkOrder)]
    for seq, what in enumerate(["accepted", "arrived", "fixed", "closed"], start=1):
        engine.handle(status(wo, "fz-1", what, 3 * HOUR + seq, seq), 3 * HOUR + seq)
    again = overwork(engine, "fz-1", hours=3, start=4 * HOUR)
    assert len(of(again, RaiseAlert)) == 1 and len(engine.cases) == 2


# -- engine: SLA clocks -------------------------------------------------------------------------


def test_an_sla_resolution_breach_is_reported_once_per_case() -> None:
    engine = Engine(config())
    case_id, wo = open_by_contact(engine)
    engine.handle(status(wo, "fz-1", "accepted", 1.0, 1), 1.0)  # first response: that clock stops
    assert engine.advance(19 * HOUR) == []  # not late yet
    warned = engine.advance(20 * HOUR)
    assert [(type(a), a.ts) for a in warned] == [(SlaWarned, 0.8 * DAY), (CaseChanged, 0.8 * DAY)]
    assert engine.advance(24 * HOUR) == []
    (breach, escalated) = engine.advance(25 * HOUR)
    assert breach == SlaBreached(case_id, "fz-1", "resolution", 24 * HOUR)
    assert isinstance(escalated, CaseChanged) and escalated.escalation == 2
    assert engine.advance(48 * HOUR) == []
    assert engine.stats["sla_breaches"] == engine.stats["sla_breaches_resolution"] == 1
    assert engine.stats["sla_warnings"] == engine.stats["sla_warnings_resolution"] == 1


def test_sla_clocks_escalate_a_case_and_a_contract_sets_its_own_targets() -> None:
    gold = Sla(first_response_s=HOUR, resolution_s=4 * HOUR, warn_at=0.5)
    engine = Engine(msgspec.structs.replace(config(), contracts={"gold": gold}))
    engine.provision([DeviceRecord(device_id="fz-1", contract="gold")])
    case_id, _ = open_by_contact(engine)
    case = engine.cases[case_id]
    priority = case.priority
    actions = engine.advance(2.5 * HOUR)  # no technician has accepted: first response warned and breached
    assert [(type(a).__name__, getattr(a, "clock", None), a.ts) for a in actions if not isinstance(a, CaseChanged)] == [
        ("SlaWarned", "first_response", 0.5 * HOUR),
        ("SlaBreached", "first_response", HOUR),
        ("SlaWarned", "resolution", 2 * HOUR),
    ]
    assert case.escalation == 3 and case.priority == max(1, priority - 3)
    assert engine.advance(5 * HOUR)[0] == SlaBreached(case_id, "fz-1", "resolution", 4 * HOUR)
    other = Engine(config())  # the default SLA: nothing is late after two hours
    open_by_contact(other)
    assert other.advance(2 * HOUR) == []


def test_a_resolved_case_runs_no_clock() -> None:
    engine = Engine(config())
    _, wo = open_by_contact(engine)
    for seq, what in enumerate(["accepted", "arrived", "fixed", "closed"], start=1):
        engine.handle(status(wo, "fz-1", what, float(seq), seq), float(seq))
    assert engine.advance(100 * HOUR) == []


# -- the engine as a state machine --------------------------------------------------------------

DEVICES = ["d0", "d1", "d2"]
NEXT_STATUS = {
    "created": ["accepted"],
    "accepted": ["arrived"],
    "on_site": ["fixed", "part_missing", "no_fault_found"],
    "awaiting_part": ["accepted"],
    "done": ["closed"],
}


class EngineMachine(RuleBasedStateMachine):
    """Random telemetry, contacts, field reports and timer runs; the engine's books must stay straight."""

    @initialize(policy=st.sampled_from(["proactive", "reactive"]))
    def start(self, policy: str) -> None:
        self.engine = Engine(
            EngineConfig(
                policy=policy,  # type: ignore[arg-type]
                rules=[HOT, FROZEN],
                issues={"cooling": IssueType(skill="refrigeration", parts=["compressor"])},
                symptoms={"not_cooling": "cooling"},
                default_issue="cooling",
                sla=Sla(first_response_s=HOUR, resolution_s=6 * HOUR),
            )
        )
        self.now = 0.0
        self.seq = 0
        self.raised: set[str] = set()

    def _tick(self, dt: float) -> float:
        self.now += dt
        self.seq += 1
        return self.now

    def _take(self, actions: list[object]) -> None:
        for a in actions:
            if isinstance(a, RaiseAlert):
                assert a.alert_id not in self.raised
                self.raised.add(a.alert_id)
            elif isinstance(a, ClearAlert):
                assert a.alert_id in self.raised
            elif isinstance(a, CreateWorkOrder):
                assert a.message.work_order_id in self.engine.work_orders
                assert a.message.case_id in self.engine.cases

    @rule(
        temps=st.lists(st.sampled_from([-50.0, 0.0, 5.0, 20.0]), min_size=1, max_size=4),
        device=st.sampled_from(DEVICES),
        step=st.sampled_from([0.0, 300.0, 600.0]),
    )
    def readings(self, temps: list[float], device: str, step: float) -> None:
        """One device's readings, one or several timestamps in one batch."""
        start = self._tick(0.0)
        readings = [(device, start + i * step, v) for i, v in enumerate(temps)]
        self.now = readings[-1][1]
        self._take(self.engine.handle(batch(readings, sensor="temp", seq=self.seq), self.now))

    @rule(hot=st.lists(st.booleans(), min_size=len(DEVICES), max_size=len(DEVICES)), dt=st.sampled_from([60.0, 600.0]))
    def fleet_tick(self, hot: list[bool], dt: float) -> None:
        t = self._tick(dt)
        readings = [(d, t, 20.0 if h else 0.0) for d, h in zip(DEVICES, hot, strict=True)]
        self._take(self.engine.handle(batch(readings, sensor="temp", seq=self.seq), t))

    @rule(device=st.sampled_from(DEVICES), symptom=st.sampled_from(["not_cooling", "odd_smell"]))
    def owner_calls(self, device: str, symptom: str) -> None:
        t = self._tick(60.0)
        self._take(self.engine.handle(contact(device, t, symptom, n=self.seq), t))

    @precondition(lambda self: any(wo.state in NEXT_STATUS for wo in self.engine.work_orders.values()))
    @rule(data=st.data())
    def technician_reports(self, data: st.DataObject) -> None:
        live = sorted(w for w, wo in self.engine.work_orders.items() if wo.state in NEXT_STATUS)
        wo = self.engine.work_orders[data.draw(st.sampled_from(live))]
        what = data.draw(st.sampled_from(NEXT_STATUS[wo.state]))
        t = self._tick(data.draw(st.sampled_from([0.0, 1800.0, 4 * HOUR])))
        visit = wo.visit + (1 if wo.state == "awaiting_part" else 0)
        self._take(self.engine.handle(status(wo.work_order_id, wo.device_id, what, t, self.seq, visit), t))

    @rule(dt=st.sampled_from([0.0, HOUR, 8 * HOUR]))
    def timers(self, dt: float) -> None:
        actions = self.engine.advance(self._tick(dt))
        assert not any(isinstance(a, RaiseAlert) for a in actions)  # timers never raise: clocks, flapping ends
        events = [(type(a), a.case_id, a.clock) for a in actions if isinstance(a, (SlaBreached, SlaWarned))]
        assert len(set(events)) == len(events)

    @invariant()
    def cases_are_in_known_states(self) -> None:
        for case in self.engine.cases.values():
            assert case.state in CASE.table
        for wo in self.engine.work_orders.values():
            assert wo.state in WORK_ORDER.table

    @invariant()
    def every_work_order_belongs_to_an_existing_case(self) -> None:
        for wo_id, wo in self.engine.work_orders.items():
            case = self.engine.cases[wo.case_id]
            assert wo_id in case.work_orders and case.device_id == wo.device_id

    @invariant()
    def at_most_one_open_case_per_device(self) -> None:
        open_cases = [c for c in self.engine.cases.values() if c.state in ("open", "in_progress")]
        assert max(Counter(c.device_id for c in open_cases).values(), default=0) <= 1
        assert {c.device_id: c.case_id for c in open_cases} == self.engine.open_case_of

    @invariant()
    def sla_breaches_at_most_two_per_case(self) -> None:
        breaches = [len(c.breached) for c in self.engine.cases.values()]
        assert all(n <= 2 for n in breaches)
        assert self.engine.stats["sla_breaches"] == sum(breaches)

    @invariant()
    def cases_opened_are_counted(self) -> None:
        assert self.engine.stats["cases_opened"] == len(self.engine.cases)

    @invariant()
    def active_alerts_agree_with_the_twins(self) -> None:
        twins = self.engine.twins
        alerting = {(twins.ids[s], twins.rules[r].name) for r, s in zip(*np.nonzero(twins.alerting), strict=True)}
        held = set(self.engine.flapping)  # a flapping alert stays raised whatever its rule does
        assert set(self.engine.alert_of) - held == alerting - held
        assert held <= set(self.engine.alert_of)
        for device, _ in self.engine.alert_of:
            assert device in self.engine.open_case_of


EngineMachine.TestCase.settings = settings(
    max_examples=60, stateful_step_count=30, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
TestEngineMachine = EngineMachine.TestCase


# -- de-duplication keys ------------------------------------------------------------------------


def reading(boot_id: int, seq: int, temp: float = -18.0) -> Telemetry:
    return Telemetry(device_id="fz-1", ts=float(seq), boot_id=boot_id, seq=seq, values={"temp": temp})


def test_the_same_device_boot_and_seq_is_a_duplicate() -> None:
    ledger = Ledger()
    assert ledger.add(key_of(reading(1, 1)))  # type: ignore[arg-type]
    assert ledger.add(key_of(reading(1, 2)))  # type: ignore[arg-type]
    assert not ledger.add(key_of(reading(1, 2, temp=99.0)))  # type: ignore[arg-type]
    assert ledger.add(key_of(reading(2, 1)))  # type: ignore[arg-type]  # rebooted: counting starts again
    assert len(ledger) == 2  # streams: one per (device, boot)
    assert key_of(reading(2, 1)) in Ledger([key_of(reading(2, 1))])  # type: ignore[list-item]


def test_keys_name_their_source() -> None:
    view = batch([("fz-1", 0.0, 0.4)], gateway="gw-7", seq=42)
    assert key_of(view) == ("batch", "gw-7", 0, 42)
    assert key_of(contact("fz-1", 0.0, n=5)) == ("contact", "c5", 0, 0)
    assert key_of(status("wo-1", "fz-1", "fixed", 0.0, 3)) == ("status", "wo-1", 0, 3)


def test_a_field_status_that_does_not_fit_the_order_is_counted_not_raised() -> None:
    """A 'closed' report for an order nobody accepted is remote input: counted, state kept."""
    config = EngineConfig(
        policy="reactive",
        issues={"fix": IssueType(skill="general", parts=["p"])},
        symptoms={"broken": "fix"},
    )
    engine = Engine(config)
    engine.handle(
        Contact(contact_id="c1", owner_id="o1", device_id="d1", channel="phone", ts=10.0, symptom="broken"), 10.0
    )
    (wo_id,) = engine.work_orders
    actions = engine.handle(
        WorkOrderStatus(work_order_id=wo_id, device_id="d1", ts=20.0, seq=1, status="closed", technician_id="t1"), 20.0
    )
    assert actions == []
    assert engine.work_orders[wo_id].state == "created"
    assert engine.stats["field_status_out_of_order"] == 1
    assert engine.open_case_of["d1"]
