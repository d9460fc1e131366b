"""Owners of a device just fixed remotely, through ``sot run``: nobody reports ``other``, nobody is
sent to find nothing, and the engine's answers ("it is resolved") are true of the device.

tests/scenarios/runs/coffee_remote_fixes.yaml: brew units lock up often, report it, and the engine
resets them within minutes; owners notice within the hour and phone. Some are on the call when the
reset lands. The engine answers them from the case it just closed; the world scores every
"resolved" notice against the device's truth (a premature one fails checklist point 6).
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from tests.integration.cli import ROOT, sot

pytestmark = pytest.mark.integration

SCENARIO = ROOT / "tests" / "scenarios" / "runs" / "coffee_remote_fixes.yaml"


def test_owners_who_call_after_a_remote_fix_are_answered_from_the_closed_case(tmp_path: Path) -> None:
    done = sot("run", str(SCENARIO), "--out", str(tmp_path), "--quiet")
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads((tmp_path / "result.json").read_text(encoding="utf-8"))
    engine = result["engine"]
    with open(tmp_path / "events.csv", newline="", encoding="utf-8") as f:
        contacts = [row for row in csv.DictReader(f) if (row["actor"], row["kind"]) == ("owner", "contact")]
    assert contacts, "the scenario's owners reach support"
    assert all(row["detail"].startswith("phone: coffee_error_light") for row in contacts), contacts
    answered = engine["contacts_after_resolution"]
    assert answered > 0, "some owners called about a fault the reset had just fixed"
    # Those contacts opened no case and sent no technician: every visit found the fault it was sent for.
    assert engine["cases_opened_contact"] + answered + engine["contacts_joined"] == engine["contacts"]
    field = result["scorecard"]["field"]
    assert field["work_orders"] == engine["work_orders"] and field["no_fault_found_visits"] == 0
    # Each "resolved" the engine said was true of the device when the owner heard it.
    validation = result["checklist"]["points"]["instant_validation"]
    assert validation["details"]["premature"] == 0 and validation["numerator"] > 0
