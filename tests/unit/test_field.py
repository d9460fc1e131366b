"""Field service and parts depots: Palm's theorem, routing, shifts, vans, second visits, Little's law."""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import msgspec
import numpy as np
import pytest
import simpy
from scipy import stats

from contracts.messages import WorkOrder, WorkOrderStatus
from contracts.topics import Topics
from sim.depots import Depots
from sim.distributions import Distribution, Exponential, Fixed, Lognormal
from sim.field import Fault, FieldService, on_shift_intervals
from sim.records import Records
from sim.scenario import Crew, Depot, Shift, Technicians

HOUR = 3600.0
DAY = 86400.0


# -- a world double ---------------------------------------------------------------------------------


@dataclass
class Staffing:
    technicians: Technicians
    depots: list[Depot] = field(default_factory=list)


class FakeWorld:
    """Devices ``d0``, ``d1``, ... with faults set by the test; status messages are kept decoded."""

    def __init__(self, technicians: Technicians, depots: Sequence[Depot] = (), regions: dict[int, str] | None = None):
        self.env = simpy.Environment()
        self.scenario = Staffing(technicians, list(depots))
        self.records = Records()
        self.topics = Topics()
        self.regions = regions or {}
        self.broken: dict[int, dict[int, Fault]] = defaultdict(dict)
        self.visits: Counter[int] = Counter()
        self.sent: list[WorkOrderStatus] = []

    def shard(self, device: int) -> int:
        return 0

    def emit(self, topic: str, message: Any, shard: int = 0) -> None:
        assert topic == self.topics.field_status(message.work_order_id, shard)
        # through the wire format, so that a status the contract does not know fails here
        self.sent.append(msgspec.json.decode(msgspec.json.encode(message), type=WorkOrderStatus))

    def index_of(self, device_id: str) -> int:
        return int(device_id.removeprefix("d"))

    def region_of(self, device: int) -> str | None:
        return self.regions.get(device)

    def faults(self, device: int) -> list[Fault]:
        return list(self.broken[device].values())

    def repair(self, device: int, mode: int) -> None:
        del self.broken[device][mode]

    def on_visit(self, device: int) -> None:
        self.visits[device] += 1

    def breaks(self, device: int, mode: int = 0, skill: str = "general", part: str | None = None, hours: float = 2.0):
        self.broken[device][mode] = Fault(mode, skill, part, Fixed(value=hours))

    def at(self, t_h: float, action: Callable[[], None]) -> None:
        def later() -> Any:
            yield self.env.timeout(t_h * HOUR)
            action()

        self.env.process(later())

    def story(self, work_order_id: str) -> list[tuple[str, str, float, int, str]]:
        """(status, technician, hour, visit, note) of one order."""
        sent = [m for m in self.sent if m.work_order_id == work_order_id]
        assert [m.seq for m in sent] == list(range(1, len(sent) + 1))
        return [(m.status, m.technician_id, round(m.ts / HOUR, 6), m.visit, m.note) for m in sent]


def techs(**kw: Any) -> Technicians:
    fixed = {"travel_h": Fixed(value=1.0), "travel_h_other_region": Fixed(value=3.0)}
    return Technicians(**{**fixed, "part_lead_time_h": Fixed(value=24.0), **kw})


def order(n: int, device: int, skill: str = "general", parts: Sequence[str] = (), priority: int = 3) -> WorkOrder:
    return WorkOrder(
        work_order_id=f"wo-{n}",
        case_id=f"case-{n}",
        device_id=f"d{device}",
        ts=0.0,
        issue="trouble",
        skill=skill,
        parts=list(parts),
        duration_s=7200.0,
        priority=priority,
    )


# -- depots: Palm's theorem ------------------------------------------------------------------------

S, RATE_PER_H, LEAD_H = 6, 1.0, 3.0  # mean pipeline λL = 3


def palm_replication(lead_h: Distribution, seed: int, horizon_h: float = 3000.0) -> tuple[float, float, float, float]:
    """Poisson demand on one part at one depot; (fill rate, mean backorders, demand rate * mean delay, mean on hand)."""
    env = simpy.Environment()
    depots = Depots(env, [Depot(name="hub", stock={"p": S}, replenish_h=lead_h)], replenish_seed=seed)
    gaps = np.random.default_rng(seed).exponential(HOUR / RATE_PER_H, size=int(2 * horizon_h * RATE_PER_H))

    def demand() -> Any:
        for i, gap in enumerate(gaps):
            yield env.timeout(gap)
            if env.now > horizon_h * HOUR:
                return
            assert depots.take("p", None, (0, i)) is not None

    env.process(demand())
    env.run(until=horizon_h * HOUR)
    st = depots.stats["hub", "p"]
    rate_per_s = st.demands / env.now
    return st.fill_rate, st.mean_backorders(env.now), rate_per_s * st.mean_backorder_delay_s, st.mean_on_hand(env.now)


def ci99(xs: Sequence[float]) -> tuple[float, float]:
    a = np.asarray(xs)
    half = stats.t.ppf(0.995, len(a) - 1) * a.std(ddof=1) / np.sqrt(len(a))
    return float(a.mean() - half), float(a.mean() + half)


@pytest.mark.parametrize(
    "lead_h",
    [Exponential(mean_=LEAD_H), Lognormal(mean_=LEAD_H, sd=1.5)],
    ids=["exponential", "lognormal"],
)
def test_base_stock_fill_rate_follows_palms_theorem_whatever_the_lead_time_distribution(lead_h: Distribution) -> None:
    runs = [palm_replication(lead_h, seed) for seed in range(20)]
    fill, backorders, little, on_hand = (list(x) for x in zip(*runs, strict=True))
    pipeline = stats.poisson(RATE_PER_H * LEAD_H)
    theory_fill = pipeline.cdf(S - 1)  # 0.9161
    theory_backorders = sum((x - S) * pipeline.pmf(x) for x in range(S + 1, 60))  # 0.0507
    lo, hi = ci99(fill)
    assert lo <= theory_fill <= hi, (lo, theory_fill, hi)
    lo, hi = ci99(backorders)
    assert lo <= theory_backorders <= hi, (lo, theory_backorders, hi)
    lo, hi = ci99(on_hand)  # E[on hand] = S - λL + E[backorders]
    assert lo <= S - RATE_PER_H * LEAD_H + theory_backorders <= hi
    # Little's law on backorders: mean backorders = demand rate * mean delay per demand
    assert sum(little) == pytest.approx(sum(backorders), rel=0.02)


def test_a_depot_serves_its_region_first_and_fills_the_oldest_backorder_first() -> None:
    env = simpy.Environment()
    specs = [
        Depot(name="north", region="north", stock={"p": 1}, replenish_h=Fixed(value=10.0)),
        Depot(name="south", region="south", stock={"p": 1, "q": 0}, replenish_h=Fixed(value=10.0)),
    ]
    depots = Depots(env, specs, replenish_seed=0)
    assert depots.take("r", "north", (0, 0)) is None and not depots.stocks("r")
    first = depots.take("p", "south", (0, 0))
    assert first is not None and first.triggered
    assert depots.stats["south", "p"].on_hand == 0 and depots.stats["north", "p"].on_hand == 1
    assert not depots.try_take("q", None, (0, 1))  # only the south depot stocks q, and it has none
    assert depots.stats["south", "q"].backorders == 0 and depots.stats["south", "q"].lost == 1
    later = [depots.take("q", "north", (0, k)) for k in range(2, 4)]
    assert all(e is not None and not e.triggered for e in later)
    env.run(until=10 * HOUR + 1)
    assert [e.triggered for e in later if e is not None] == [True, True]
    st = depots.stats["south", "q"]
    assert (st.demands, st.filled_immediately, st.backorders, st.backordered) == (2, 0, 2, 0)
    assert st.mean_backorder_delay_s == pytest.approx(10 * HOUR) and st.fill_rate == 0.0
    assert depots.stats["south", "p"].on_hand == 1  # replenished
    summary = depots.summary()
    assert summary["fill_rate_by_part"] == {"p": 1.0, "q": 0.0} and summary["fill_rate"] == pytest.approx(1 / 4)


# -- field service ------------------------------------------------------------------------------------


def test_a_job_goes_to_a_skilled_technician_of_the_region_then_to_any_skilled_one() -> None:
    crews = [
        Crew(name="north-elec", count=1, skills=["electrical"], region="north"),
        Crew(name="south-elec", count=1, skills=["electrical"], region="south"),
        Crew(name="mech", count=1, skills=["mechanical"], region="north"),
    ]
    world = FakeWorld(techs(crews=crews), regions={0: "south", 1: "north", 2: "south"})
    field = FieldService(world, seed=1)
    world.breaks(0, skill="electrical")
    world.breaks(1, skill="mechanical")
    world.breaks(2, skill="electrical")
    for o in (order(1, 0, "electrical"), order(2, 2, "electrical"), order(3, 1, "mechanical")):
        field.dispatch(o)
    world.env.run()
    # the south device gets the south technician although "north-elec-01" sorts first; the next
    # southern job takes the only skilled one left and drives from the other region
    assert world.story("wo-1")[1][:3] == ("arrived", "south-elec-01", 1.0)
    assert world.story("wo-2")[1][:3] == ("arrived", "north-elec-01", 3.0)
    assert world.story("wo-3")[1][:3] == ("arrived", "mech-01", 1.0)
    assert all(world.story(f"wo-{n}")[-2][0] == "fixed" for n in (1, 2, 3))
    assert world.records.jobs["wo-2"].labour_h == 5.0  # 3 h on the road, 2 h on site
    assert field.summary(world.env.now)["mean_response_h"] == pytest.approx(5 / 3)


def test_a_job_logged_at_night_waits_for_the_morning_crew_who_finish_it_past_their_shift() -> None:
    weekdays = Shift(start_h=8.0, end_h=16.0, days=[0, 1, 2, 3, 4])
    world = FakeWorld(techs(crews=[Crew(name="day", count=1, shifts=[weekdays])]))
    field = FieldService(world, seed=1)
    world.breaks(0, hours=10.0)
    world.breaks(1)
    world.at(2.0, lambda: field.dispatch(order(1, 0)))  # Monday 02:00
    world.at(4 * 24 + 20.0, lambda: field.dispatch(order(2, 1)))  # Friday 20:00
    world.env.run(until=8 * DAY)
    assert world.story("wo-1")[0][:3] == ("accepted", "day-01", 8.0)
    assert world.story("wo-1")[2][:3] == ("fixed", "day-01", 19.0)  # 9:00 + 10 h, past 16:00
    assert world.story("wo-2")[0][:3] == ("accepted", "day-01", 7 * 24 + 8.0)  # next Monday 08:00
    summary = field.summary(8 * DAY)
    on_shift_h = 6 * 8.0  # five weekdays and the second Monday
    assert summary["utilisation"] == pytest.approx((8 + 3) / on_shift_h)  # 08-16 Monday, 08-11 next Monday
    assert summary["overtime_h"] == pytest.approx(3.0)
    assert on_shift_intervals([Shift(start_h=22.0, end_h=6.0, days=[6])], 0.0, 8 * DAY) == [
        (0.0, 6 * HOUR),  # Sunday's night shift runs into Monday
        (6 * DAY + 22 * HOUR, 7 * DAY + 6 * HOUR),
    ]


def test_a_part_from_the_van_is_used_and_the_van_is_restocked_from_the_depot() -> None:
    depot = Depot(name="hub", stock={"seal": 1}, replenish_h=Fixed(value=5.0))
    world = FakeWorld(techs(crews=[Crew(name="van", count=1, van_stock={"seal": 1})]), [depot])
    field = FieldService(world, seed=1)
    world.breaks(0, part="seal")
    field.dispatch(order(1, 0))  # the engine predicted nothing
    van = field.technicians[0].van
    world.env.run(until=26 * HOUR)
    assert [s[0] for s in world.story("wo-1")] == ["accepted", "arrived", "fixed", "closed"]
    assert world.records.jobs["wo-1"].parts_used == ["seal"] and van["seal"] == 0
    world.env.run(until=28 * HOUR)  # picked at the depot at 3 h, on the van 24 h later
    assert van["seal"] == 1
    assert depots_row(field, "hub", "seal") == (1, 1, 0)


def depots_row(field: FieldService, depot: str, part: str) -> tuple[int, int, int]:
    st = field.depots.stats[depot, part]
    return st.demands, st.filled_immediately, st.backorders


def test_a_wrong_predicted_part_means_part_missing_then_a_second_visit_that_fixes() -> None:
    world = FakeWorld(techs(count=1))
    field = FieldService(world, seed=1)
    world.breaks(0, part="seal")
    field.dispatch(order(1, 0, parts=["board"]))
    world.env.run()
    assert world.story("wo-1") == [
        ("accepted", "tech-01", 0.0, 1, ""),
        ("arrived", "tech-01", 1.0, 1, ""),
        ("part_missing", "tech-01", 1.5, 1, "seal"),
        ("accepted", "tech-01", 25.5, 2, ""),  # the seal reached the site after the part lead time
        ("arrived", "tech-01", 26.5, 2, ""),
        ("fixed", "tech-01", 28.5, 2, ""),
        ("closed", "tech-01", 28.5, 2, ""),
    ]
    job = world.records.jobs["wo-1"]
    assert (job.visits, job.second_visit_causes, job.parts_used, job.outcome) == (2, ["part"], ["seal"], "fixed")
    assert job.labour_h == pytest.approx(1.5 + 3.0)
    assert field.technicians[0].van == Counter({"board": 1})  # the unused board stays on the van
    assert field.summary(world.env.now)["second_visits"] == {"part": 1}
    assert world.visits[0] == 2


def test_a_skill_mismatch_is_incomplete_then_a_skilled_technician_comes() -> None:
    crews = [Crew(name="gen", count=1, skills=["general"]), Crew(name="elec", count=1, skills=["electrical"])]
    world = FakeWorld(techs(crews=crews))
    field = FieldService(world, seed=1)
    world.breaks(0, mode=0, skill="electrical", part="board")
    world.breaks(0, mode=1, skill="general")
    field.dispatch(order(1, 0, skill="general", parts=["board"]))
    world.env.run()
    assert [s[:3] for s in world.story("wo-1")] == [
        ("accepted", "gen-01", 0.0),
        ("arrived", "gen-01", 1.0),
        ("incomplete", "gen-01", 3.0),  # fixed what it could (mode 1)
        ("accepted", "elec-01", 3.0),
        ("arrived", "elec-01", 4.0),
        ("fixed", "elec-01", 6.0),
        ("closed", "elec-01", 6.0),
    ]
    assert world.story("wo-1")[2][4] == "skill:electrical"
    job = world.records.jobs["wo-1"]
    assert job.second_visit_causes == ["skill"] and job.parts_used == ["board"]
    assert field.technicians[0].van == Counter({"board": 1})  # gen-01 could not fit the board it brought


def test_a_predicted_part_out_of_stock_is_not_waited_for() -> None:
    depot = Depot(name="hub", stock={"board": 0}, replenish_h=Fixed(value=48.0))
    world = FakeWorld(techs(count=1), [depot])
    field = FieldService(world, seed=1)
    world.breaks(0, part="board")
    field.dispatch(order(1, 0, parts=["board"]))
    world.env.run(until=2 * HOUR)
    assert [s[:3] for s in world.story("wo-1")][1:] == [("arrived", "tech-01", 1.0), ("part_missing", "tech-01", 1.5)]
    st = field.depots.stats["hub", "board"]
    # the pick was declined (lost), not backordered; the one demand is the shipment for the second visit
    assert (st.lost, st.demands, st.backorders) == (1, 1, 1)
    world.env.run()
    # for the second visit the board is backordered: 48 h at the depot, then 24 h to the site
    assert world.story("wo-1")[3][:3] == ("accepted", "tech-01", 1.5 + 48 + 24)
    assert world.story("wo-1")[-1][0] == "closed" and world.records.jobs["wo-1"].outcome == "fixed"
    assert (st.demands, st.backorders, st.backorder_delay_s) == (1, 1, 48 * HOUR)


def busy_field(seed: int, n: int = 300, field_seed: int = 1) -> tuple[FakeWorld, FieldService, float]:
    """Two technicians, Poisson orders at 0.5 an hour of about 3 h each (load about 0.75), random priorities."""
    world = FakeWorld(techs(count=2, travel_h=Lognormal(mean_=1.0, sd=0.5)))
    field = FieldService(world, seed=field_seed)
    rng = np.random.default_rng(seed)
    arrivals_h = np.cumsum(rng.exponential(2.0, size=n))
    for k, t in enumerate(arrivals_h):
        world.breaks(k, hours=float(rng.uniform(1.0, 3.0)))

        def send(k: int = k) -> None:
            field.dispatch(order(k, k, priority=int(rng.integers(1, 6))))

        world.at(float(t), send)
    return world, field, float(arrivals_h[-1]) * HOUR


def test_littles_law_holds_on_the_work_order_queue() -> None:
    world, field, horizon = busy_field(seed=3)
    world.env.run(until=horizon)
    mid = field.summary(horizon)
    assert mid["queue_mean_waiting"] > 0.1
    assert mid["queue_mean_waiting"] == pytest.approx(
        mid["queue_arrival_rate_per_h"] * mid["queue_mean_wait_h"], rel=0.05
    )
    world.env.run()
    end = field.summary(world.env.now)
    assert end["waiting_now"] == 0 and end["queue_arrivals"] == 300
    assert end["queue_mean_waiting"] == pytest.approx(end["queue_arrival_rate_per_h"] * end["queue_mean_wait_h"])
    assert 0.6 < end["utilisation"] < 0.9
    assert all(job.outcome == "fixed" for job in world.records.jobs.values())


def test_the_same_seed_gives_the_same_field_and_another_seed_another() -> None:
    def run(field_seed: int) -> list[WorkOrderStatus]:
        world, _, _ = busy_field(seed=5, n=60, field_seed=field_seed)
        world.env.run()
        return world.sent

    assert run(1) == run(1)
    assert run(1) != run(2)  # the same orders, other travel times
