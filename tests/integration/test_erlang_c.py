"""A scenario with only an independent contact stream reproduces Erlang C through ``sot run``.

scenarios/contact_centre_mmc.yaml has no failure at all: one Poisson stream of questions, exponential
handling, ``c`` always-on agents, no abandonment, no repeat contacts: an M/M/c queue. Its figures are
read from the scenario, the Erlang C figures computed from them here, and each is compared with
what the run measured, within a 99 % confidence interval the test computes from the run's own
events (batch means over equal stretches of time after the warm-up, a t interval across the batches).
"""

from __future__ import annotations

import csv
import json
import math
import re
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from sim.distributions import Exponential
from sim.scenario_file import load
from tests.integration.cli import ROOT, processes_mentioning, sot

pytestmark = pytest.mark.integration

SCENARIO = ROOT / "scenarios" / "contact_centre_mmc.yaml"
BATCHES = 20
CONFIDENCE = 0.99
WAITED = re.compile(r"waited (\d+\.\d+) s")


def erlang_c(c: int, a: float) -> float:
    """P(wait) of M/M/c with offered load ``a`` erlangs: Erlang B by its recursion, then C from B."""
    b = 1.0
    for k in range(1, c + 1):
        b = a * b / (k + a * b)
    rho = a / c
    return b / (1.0 - rho + rho * b)


def batch_interval(values: np.ndarray, batch: np.ndarray) -> tuple[float, float]:
    """(overall mean, half-width) of ``values`` by batch means over the batches numbered in ``batch``."""
    means = np.array([values[batch == b].mean() for b in range(BATCHES)])
    half = float(stats.t.ppf(0.5 + CONFIDENCE / 2, BATCHES - 1)) * means.std(ddof=1) / math.sqrt(BATCHES)
    return float(values.mean()), half


def test_a_pure_contact_stream_reproduces_erlang_c_through_sot_run(tmp_path: Path) -> None:
    scenario = load(SCENARIO)
    (fleet,) = scenario.fleets
    ((_, stream),) = fleet.contact_streams.items()
    handle = stream.handle_time_s
    centre = scenario.contact_centre
    # The model the formulas need: Poisson arrivals, exponential service, c servers, no abandonment.
    assert not fleet.failure_modes and not fleet.consumables and not scenario.outages
    assert stream.daily_profile is None and stream.weekly_profile is None
    assert isinstance(handle, Exponential) and stream.first_contact_resolution == 1.0
    assert fleet.owners.patience_s is None and not centre.groups and set(fleet.owners.channels) == {"phone"}
    lam = fleet.count * stream.per_device_day / 86400.0  # arrivals per second
    mu, c = 1.0 / handle.mean, centre.agents
    p_wait = erlang_c(c, lam / mu)
    mean_wait = p_wait / (c * mu - lam)
    within = 1.0 - p_wait * math.exp(-(c * mu - lam) * centre.service_level_s)

    done = sot("run", str(SCENARIO), "--out", str(tmp_path), "--quiet")
    assert done.returncode == 0, done.stderr[-3000:]
    assert processes_mentioning(str(tmp_path)) == [], "broker or engine left running"
    result = json.loads((tmp_path / "result.json").read_text(encoding="utf-8"))

    start, end = scenario.warmup_s, scenario.duration_s
    t, waits = [], []
    with open(tmp_path / "events.csv", newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            if row["actor"] == "owner" and row["kind"] == "enquiry" and float(row["t_s"]) >= start:
                found = WAITED.search(row["detail"])
                assert found is not None, row
                t.append(float(row["t_s"]))
                waits.append(float(found.group(1)))
    at, wait = np.array(t), np.array(waits)
    batch = np.minimum(((at - start) / (end - start) * BATCHES).astype(int), BATCHES - 1)
    assert len(wait) > 40_000  # tens of thousands of contacts: a tight estimate

    measured_wait, wait_half = batch_interval(wait, batch)
    measured_p, p_half = batch_interval((wait > 0).astype(float), batch)
    measured_within, within_half = batch_interval((wait <= centre.service_level_s).astype(float), batch)
    figures = (
        f"mean wait {measured_wait:.2f} ± {wait_half:.2f} s (Erlang C {mean_wait:.2f}), "
        f"P(wait) {measured_p:.4f} ± {p_half:.4f} ({p_wait:.4f}), "
        f"within {centre.service_level_s:g} s {measured_within:.4f} ± {within_half:.4f} ({within:.4f})"
    )
    assert abs(measured_wait - mean_wait) <= wait_half, figures
    assert abs(measured_p - p_wait) <= p_half, figures
    assert abs(measured_within - within) <= within_half, figures
    assert wait_half < 0.3 * mean_wait and p_half < 0.1 * p_wait, figures  # tight enough to mean something

    # The arrivals were the stream's: Poisson at the rate the scenario says.
    expected = lam * (end - start)
    assert abs(len(wait) - expected) <= 4 * math.sqrt(expected) + 0.01 * expected

    # The KPIs say the same as the events (they count by arrival, the events by the end of the call).
    kpis = result["kpis"]
    block = kpis["contact_streams"]
    assert block["asa_s"] == pytest.approx(measured_wait, rel=0.01)
    assert block["p_wait"] == pytest.approx(measured_p, rel=0.01)
    assert block["abandoned"] == 0 and block["repeat_contacts"] == 0
    assert kpis["contact_centre"]["occupancy"] == pytest.approx(lam / (c * mu), rel=0.03)
    assert kpis["failures"] == 0 and kpis["work_orders"] == 0 and kpis["contacts_per_1000_devices"] == 0

    # Support heard of every contact (but the few still on a call at the end) and answered each on
    # the contact: no case, no visit.
    engine = result["engine"]
    assert 0 <= kpis["contact_centre"]["answered"] - engine["contacts"] <= c
    assert engine["cases_opened"] == 0 and engine["work_orders"] == 0
    assert result["messages"]["lost"] == 0
