"""The API's filters, paging, ISO times and case details, over a database the engine core filled.

One story runs through the real engine core and :class:`~support_engine.storage.Storage`: two
freezers and two coffee machines in two regions, a quarantined stray, a technician per region.

====  ======  =========  ==========  ==========  ======  ===================================
case  device  origin     issue       product     region  what happens
====  ======  =========  ==========  ==========  ======  ===================================
A     fz-1    telemetry  cooling     freezer     north   a visit by tech-north fixes it
B     cm-1    device     brew        coffee      north   a remote reset fixes it
C     fz-2    contact    cooling     freezer     south   a visit waits; its SLA clocks run out
D     cm-2    contact    brew        coffee      south   an OTA update is sent, no answer yet
====  ======  =========  ==========  ==========  ======  ===================================

fz-3 (freezer, north) falls silent and goes offline. Requests go straight into the ASGI app.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from typing import Any

import pytest

from contracts.engine_config import EngineConfig, IssueType, Offline, Sla, Technician, ThresholdRule
from contracts.messages import Contact, DeviceEvent, DeviceRecord, Telemetry
from support_engine.core.actions import Action, AlertFlapping, Quarantined, RaiseAlert, SendCommand
from support_engine.core.engine import Engine
from support_engine.http_api import create_app
from support_engine.metrics import EngineMetrics
from support_engine.storage import Storage
from tests.messages import status
from tests.unit.test_http_token import Client

HOUR = 3600.0
END = 5 * HOUR  # the story's last timer run
CONFIG = EngineConfig(
    rules=[
        ThresholdRule(name="cabinet_hot", sensor="cabinet_temp_c", above=-5.0, issue="cooling"),
        ThresholdRule(name="brew_errors_high", sensor="brew_errors", above=2.0, issue="brew"),
    ],
    issues={
        "cooling": IssueType(skill="refrigeration", parts=["compressor"], priority=1),
        "brew": IssueType(skill="general", priority=2, remote="reset"),
        "brew_update": IssueType(skill="general", priority=2, remote="ota", ota_version="2.0"),
    },
    symptoms={"not_cooling": "cooling", "no_coffee": "brew_update"},
    fault_codes={"brew_error": "brew"},
    sla=Sla(first_response_s=4 * HOUR, resolution_s=24 * HOUR),
    offline=Offline(min_s=300.0),
    technicians=[
        Technician(id="tech-north", skills=["refrigeration"], region="north"),
        Technician(id="tech-south", skills=["refrigeration"], region="south"),
    ],
)
RECORDS = [
    DeviceRecord(device_id="fz-1", product="freezer", owner_id="o-1", region="north", interval_s=900.0),
    DeviceRecord(device_id="fz-2", product="freezer", owner_id="o-2", region="south", interval_s=900.0),
    DeviceRecord(device_id="fz-3", product="freezer", owner_id="o-5", region="north", interval_s=900.0),
    DeviceRecord(device_id="cm-1", product="coffee", owner_id="o-3", region="north", interval_s=900.0),
    DeviceRecord(device_id="cm-2", product="coffee", owner_id="o-4", region="south", interval_s=900.0),
]
EPOCH = "2026-01-01T00:00:00Z"


def cold(device: str, t: float, seq: int, temp: float = -18.0) -> Telemetry:
    return Telemetry(device_id=device, ts=t, boot_id=1, seq=seq, values={"cabinet_temp_c": temp})


def brewing(device: str, t: float, seq: int, errors: float) -> Telemetry:
    return Telemetry(device_id=device, ts=t, boot_id=1, seq=seq, values={"brew_errors": errors})


def call(device: str, owner: str, t: float, symptom: str) -> Contact:
    return Contact(
        contact_id=f"call-{device}", owner_id=owner, device_id=device, channel="phone", ts=t, symptom=symptom
    )


def story(storage: Storage) -> dict[str, str]:
    """Run the story through the engine core into ``storage``; the case id of each device."""
    engine = Engine(CONFIG)
    storage.apply(engine.provision(RECORDS))
    sent: list[SendCommand] = []
    raised: list[RaiseAlert] = []

    def at(t: float, message: Any = None) -> list[Action]:
        actions = engine.handle(message, t) if message is not None else engine.advance(t)
        sent.extend(a for a in actions if isinstance(a, SendCommand))
        raised.extend(a for a in actions if isinstance(a, RaiseAlert))
        storage.apply(actions)
        return actions

    at(50.0, cold("fz-3", 50.0, 1))
    at(100.0, cold("fz-1", 100.0, 1, temp=2.0))  # too warm: case A
    at(200.0, DeviceEvent(device_id="cm-1", ts=200.0, boot_id=1, seq=1, kind="fault", code="brew_error"))  # B
    at(250.0, brewing("cm-1", 250.0, 1, errors=5.0))  # an alert, joined to case B
    at(300.0, call("fz-2", "o-2", 300.0, "not_cooling"))  # C
    at(400.0, call("cm-2", "o-4", 400.0, "no_coffee"))  # D
    (reset,) = [c.message for c in sent if c.message.device_id == "cm-1"]
    answer = DeviceEvent(
        device_id="cm-1", ts=1000.0, boot_id=1, seq=2, kind="command_result", code="fixed", command_id=reset.command_id
    )
    at(1000.0, answer)
    order = next(wo for wo in engine.work_orders.values() if wo.device_id == "fz-1")
    for seq, (what, t) in enumerate([("accepted", 1500.0), ("arrived", 3000.0), ("fixed", 4000.0)], start=1):
        at(t, status(order.work_order_id, "fz-1", what, t, seq))
    at(2000.0, cold("fz-1", 2000.0, 2))  # cold again: the alert clears
    at(5000.0, status(order.work_order_id, "fz-1", "closed", 5000.0, 4))
    at(17000.0, cold("fz-1", 17000.0, 3))
    at(17000.0, brewing("cm-1", 17000.0, 2, errors=0.0))
    at(END)  # fz-2's clocks warn and breach, fz-3 is silent: offline
    (alert,) = [a.alert_id for a in raised if a.device_id == "cm-1"]
    storage.apply(
        [
            AlertFlapping(alert_id=alert, device_id="cm-1", rule="brew_errors_high", ts=END, flapping=True),
            Quarantined(device_id="stray-1", ts=END),
        ]
    )
    storage.dead_letter("sot/v1/dev/fz-1/telemetry", "json", "JSON is malformed", b"{not json")
    storage.dead_letter("sot/v1/dev/fz-1/telemetry", "json", "JSON is malformed", b"[")
    storage.dead_letter("sot/v1/dev/x/event", "schema", "Expected `str`", b'{"kind": 1}')
    storage.set_counters({**engine.stats, "msg_rejected_json": 2, "msg_rejected_schema": 1, "msg_rejected": 3})
    storage.commit()
    return {c.device_id: c.case_id for c in engine.cases.values()}


@pytest.fixture(scope="module")
def filled(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, dict[str, str]]:
    where = str(tmp_path_factory.mktemp("api") / "engine.sqlite")
    storage = Storage(where)
    try:
        cases = story(storage)
    finally:
        storage.close()
    return where, cases


@pytest.fixture(scope="module")
def api(filled: tuple[str, dict[str, str]]) -> Client:
    return Client(create_app(filled[0], EngineMetrics(clock="event"), connected=lambda: True, engine_config=CONFIG))


@pytest.fixture(scope="module")
def case_of(filled: tuple[str, dict[str, str]]) -> dict[str, str]:
    return filled[1]


def body(api: Client, path: str) -> Any:
    answer = api.get(path)
    assert answer.status_code == 200, (path, answer.body[:500])
    return answer.json()


def devices_of(api: Client, path: str) -> set[str]:
    page = body(api, path)
    assert page["total"] == len(page["items"]) and page["next_offset"] is None
    return {row["device_id"] for row in page["items"]}


# -- filters -------------------------------------------------------------------------------------------
def test_the_story_made_the_four_cases(api: Client, case_of: dict[str, str]) -> None:
    assert devices_of(api, "/cases") == {"fz-1", "cm-1", "fz-2", "cm-2"} == set(case_of)


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("state=resolved", {"fz-1", "cm-1"}),
        ("state=in_progress", {"fz-2", "cm-2"}),
        ("state=open&state=resolved", {"fz-1", "cm-1"}),
        ("device=cm-1", {"cm-1"}),
        ("issue=cooling", {"fz-1", "fz-2"}),
        ("product=coffee", {"cm-1", "cm-2"}),
        ("region=south", {"fz-2", "cm-2"}),
        ("origin=contact", {"fz-2", "cm-2"}),
        ("origin=device", {"cm-1"}),
        ("origin=telemetry", {"fz-1"}),
        ("priority=1", {"fz-1", "fz-2"}),
        ("priority=2", {"cm-1", "cm-2"}),
        ("issue=cooling&region=north", {"fz-1"}),
        ("product=freezer&state=in_progress", {"fz-2"}),
        ("issue=nothing", set()),
    ],
)
def test_each_case_filter_narrows_the_list(api: Client, query: str, expected: set[str]) -> None:
    assert devices_of(api, f"/cases?{query}") == expected


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("", {"fz-1", "fz-2"}),
        ("state=closed", {"fz-1"}),
        ("state=created", {"fz-2"}),
        ("technician=tech-south", {"fz-2"}),
        ("technician=tech-north", {"fz-1"}),
        ("technician=nobody", set()),
    ],
)
def test_each_work_order_filter_narrows_the_list(api: Client, query: str, expected: set[str]) -> None:
    assert devices_of(api, f"/work-orders?{query}") == expected


def test_work_orders_filter_by_case(api: Client, case_of: dict[str, str]) -> None:
    assert devices_of(api, f"/work-orders?case={case_of['fz-2']}") == {"fz-2"}
    assert devices_of(api, f"/work-orders?case={case_of['cm-1']}") == set()


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("", {"fz-1", "cm-1"}),
        ("device=cm-1", {"cm-1"}),
        ("rule=cabinet_hot", {"fz-1"}),
        ("active=true", {"cm-1"}),
        ("active=false", {"fz-1"}),
        ("flapping=true", {"cm-1"}),
        ("flapping=false", {"fz-1"}),
        ("rule=cabinet_hot&active=true", set()),
    ],
)
def test_each_alert_filter_narrows_the_list(api: Client, query: str, expected: set[str]) -> None:
    assert devices_of(api, f"/alerts?{query}") == expected


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("", {"fz-1", "fz-2", "fz-3", "cm-1", "cm-2", "stray-1"}),
        ("product=freezer", {"fz-1", "fz-2", "fz-3"}),
        ("offline=true", {"fz-3"}),
        ("offline=false&product=coffee", {"cm-1", "cm-2"}),
        ("quarantined=true", {"stray-1"}),
        ("in_sync=false", {"cm-2"}),  # its OTA update is out, not yet reported back
        ("in_sync=true&product=coffee", {"cm-1"}),
    ],
)
def test_each_device_filter_narrows_the_list(api: Client, query: str, expected: set[str]) -> None:
    assert devices_of(api, f"/devices?{query}") == expected


def test_devices_say_their_state(api: Client, case_of: dict[str, str]) -> None:
    rows = {d["device_id"]: d for d in body(api, "/devices")["items"]}
    assert {k: d["state"] for k, d in rows.items()} == {
        "fz-1": "ok",
        "fz-2": "case",
        "fz-3": "offline",
        "cm-1": "ok",
        "cm-2": "case",
        "stray-1": "quarantined",
    }
    assert rows["fz-2"]["open_case"] == case_of["fz-2"] and rows["fz-2"]["owner_id"] == "o-2"
    assert rows["stray-1"]["registered"] is False and rows["fz-1"]["registered"] is True
    fleet = {r["product"]: r for r in body(api, "/fleet")["by_product"]}
    assert (fleet["freezer"]["devices"], fleet["freezer"]["offline"], fleet["freezer"]["case"]) == (3, 1, 1)
    assert (fleet["coffee"]["in_sync"], fleet["coffee"]["out_of_sync"]) == (1, 1)
    assert fleet[None]["quarantined"] == 1


def test_dead_letters_filter_by_reason_and_count_by_reason(api: Client) -> None:
    assert body(api, "/dead-letters")["total"] == 3
    letters = body(api, "/dead-letters?reason=json")["items"]
    assert [d["payload_hex"] for d in letters] == [b"[".hex(), b"{not json".hex()]  # newest first
    assert letters[1]["payload_bytes"] == len(b"{not json")
    assert body(api, "/dead-letters/reasons")["items"] == [
        {"reason": "json", "dead_letters": 2, "rejected": 2},
        {"reason": "schema", "dead_letters": 1, "rejected": 1},
    ]


def test_technicians_count_their_work_orders(api: Client) -> None:
    rows = {t["technician_id"]: t for t in body(api, "/technicians")["items"]}
    assert set(rows) == {"tech-north", "tech-south"}
    assert (rows["tech-north"]["work_orders"], rows["tech-north"]["open"]) == ({"closed": 1}, 0)
    assert (rows["tech-south"]["work_orders"], rows["tech-south"]["open"]) == ({"created": 1}, 1)
    assert rows["tech-south"]["region"] == "south" and rows["tech-south"]["skills"] == ["refrigeration"]


@pytest.mark.parametrize(
    ("path", "given"),
    [
        ("/cases?issu=cooling", "issu"),
        ("/cases?state=open&colour=red", "colour"),
        ("/work-orders?tech=tech-north", "tech"),
        ("/alerts?active=true&flaping=true", "flaping"),
        ("/devices?region=north", "region"),
        ("/dead-letters?topic=x", "topic"),
        ("/kpis?since=0", "since"),
        ("/cases/CASE?verbose=1", "verbose"),
        ("/console/cases?isue=cooling", "isue"),
    ],
)
def test_an_unknown_query_parameter_is_refused_naming_it(
    api: Client, case_of: dict[str, str], path: str, given: str
) -> None:
    answer = api.get(path.replace("CASE", case_of["fz-1"]))
    assert answer.status_code == 422
    text = answer.body.decode()
    assert f"unknown query parameter &#39;{given}&#39;" in text or f"unknown query parameter '{given}'" in text
    if not path.startswith("/console"):
        (error,) = answer.json()["detail"]
        assert error["loc"] == ["query", given] and "takes" in error["msg"]


def test_a_bad_filter_value_is_refused(api: Client) -> None:
    for path in ("/cases?origin=mail", "/cases?priority=9", "/alerts?active=maybe", "/cases?limit=0"):
        assert api.get(path).status_code == 422, path


# -- paging -------------------------------------------------------------------------------------------
def test_pages_add_up_to_the_whole_list(api: Client) -> None:
    whole = body(api, "/cases")
    assert (whole["total"], whole["offset"], whole["limit"], whole["next_offset"]) == (4, 0, 100, None)
    seen, offset = [], 0
    while offset is not None:
        page = body(api, f"/cases?limit=3&offset={offset}")
        assert page["total"] == 4 and page["limit"] == 3 and page["offset"] == offset
        seen += [c["case_id"] for c in page["items"]]
        offset = page["next_offset"]
    assert seen == [c["case_id"] for c in whole["items"]]
    assert body(api, "/cases?limit=3")["next_offset"] == 3
    past = body(api, "/cases?offset=10")
    assert (past["items"], past["total"], past["next_offset"]) == ([], 4, None)
    assert body(api, "/devices?limit=2&offset=4")["items"][0]["device_id"] == "fz-3"  # devices by id
    assert body(api, "/devices?limit=2&offset=4")["next_offset"] is None


def test_every_list_route_answers_the_envelope(api: Client) -> None:
    for path in (
        "/cases",
        "/work-orders",
        "/alerts",
        "/devices",
        "/technicians",
        "/campaigns",
        "/rollouts",
        "/quarantine",
        "/dead-letters",
        "/dead-letters/reasons",
    ):
        page = body(api, f"{path}?limit=1")
        assert set(page) == {"items", "total", "offset", "limit", "next_offset"}, path
        assert page["limit"] == 1 and len(page["items"]) <= 1
        assert page["next_offset"] == (1 if page["total"] > 1 else None), path


# -- times --------------------------------------------------------------------------------------------
def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def test_event_time_reads_from_the_simulated_epoch(api: Client, case_of: dict[str, str]) -> None:
    case = body(api, f"/cases/{case_of['fz-1']}")
    assert (case["opened_s"], case["opened_at"]) == (100.0, "2026-01-01T00:01:40.000Z")
    assert case["updated_at"] == "2026-01-01T01:23:20.000Z"  # closed at 5000 s
    assert all(e["at"] is not None for e in case["timeline"])
    clock = body(api, "/clock")
    assert (clock["clock"], clock["simulated"], clock["sim_epoch"]) == ("event", True, EPOCH)
    assert clock["now_s"] == 300.0 + 4 * HOUR  # no live snapshot: the latest stored time (fz-2's breach)
    health = body(api, "/healthz")
    assert (health["clock"], health["sim_epoch"]) == ("event", EPOCH)


def test_another_simulated_epoch(filled: tuple[str, dict[str, str]]) -> None:
    app = create_app(
        filled[0], EngineMetrics(clock="event"), connected=lambda: True, sim_epoch="2030-06-01T12:00:00+02:00"
    )
    case = body(Client(app), f"/cases/{filled[1]['fz-1']}")
    assert case["opened_at"] == "2030-06-01T10:01:40.000Z"
    assert body(Client(app), "/clock")["sim_epoch"] == "2030-06-01T10:00:00Z"


@pytest.mark.parametrize(("origin", "speed"), [(0.0, 1.0), (1_800_000_000.0, 1.0), (1_800_000_000.0, 60.0)])
def test_wall_time_reads_as_unix_time(filled: tuple[str, dict[str, str]], origin: float, speed: float) -> None:
    metrics = EngineMetrics(clock="wall", speed=speed)
    api = Client(create_app(filled[0], metrics, connected=lambda: True, time_origin=origin))
    (alert,) = body(api, "/alerts?rule=cabinet_hot")["items"]
    assert alert["raised_at"] == iso(datetime.fromtimestamp(origin + 100.0 / speed, UTC))
    assert alert["cleared_at"] == iso(datetime.fromtimestamp(origin + 2000.0 / speed, UTC))
    clock = body(api, "/clock")
    assert (clock["clock"], clock["simulated"], clock["sim_epoch"], clock["time_origin_s"]) == (
        "wall",
        False,
        None,
        origin,
    )
    assert body(api, "/healthz")["sim_epoch"] is None


def test_every_time_has_its_iso_reading(api: Client) -> None:
    for path in ("/cases", "/work-orders", "/alerts", "/devices", "/quarantine"):
        for row in body(api, path)["items"]:
            for name, value in row.items():
                if name.endswith("_s") and name not in ("duration_s",):
                    at = row[name.removesuffix("_s") + "_at"]
                    assert (at is None) == (value is None), (path, name)
                    if value is not None:
                        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", at), at


def test_an_unreadable_epoch_is_refused(filled: tuple[str, dict[str, str]]) -> None:
    with pytest.raises(ValueError, match="sim_epoch"):
        create_app(filled[0], EngineMetrics(clock="event"), connected=lambda: True, sim_epoch="new year")


# -- one case in full ----------------------------------------------------------------------------------
def test_a_visit_case_has_owner_technician_notifications_and_its_timeline_in_order(
    api: Client, case_of: dict[str, str]
) -> None:
    case = body(api, f"/cases/{case_of['fz-1']}")
    assert (case["owner_id"], case["product"], case["region"]) == ("o-1", "freezer", "north")
    assert case["symptom"] == "cabinet_hot = 2"
    (order,) = case["work_orders"]
    assert (order["technician_id"], order["state"]) == ("tech-north", "closed")
    assert [n["kind"] for n in case["notifications"]] == ["case_opened", "resolved"]
    assert [(e["ts"], e["kind"], e["text"]) for e in case["timeline"]] == [
        (100.0, "case", "Case opened from telemetry: cabinet_hot = 2 (issue cooling)"),
        (100.0, "alert_raised", "Alert cabinet_hot raised at 2"),
        (100.0, "case", "Case in progress, priority 1"),
        (100.0, "work_order", f"Work order {order['work_order_id']} created: refrigeration, compressor; technician tech-north"),
        (100.0, "notification", "Owner told (case_opened): We detected cabinet hot on your device. A technician is on the way."),
        (1500.0, "work_order", f"Work order {order['work_order_id']} accepted, technician tech-north"),
        (2000.0, "alert_cleared", "Alert cabinet_hot cleared"),
        (3000.0, "work_order", f"Work order {order['work_order_id']} on site, technician tech-north"),
        (4000.0, "work_order", f"Work order {order['work_order_id']} done, technician tech-north"),
        (5000.0, "work_order", f"Work order {order['work_order_id']} closed, technician tech-north"),
        (5000.0, "case", "Case resolved"),
        (5000.0, "notification", "Owner told (resolved): Your device has been repaired. Thank you for your patience."),
    ]  # fmt: skip


def test_a_contact_case_shows_the_symptom_the_clocks_and_their_breaches(api: Client, case_of: dict[str, str]) -> None:
    case = body(api, f"/cases/{case_of['fz-2']}")
    assert (case["origin"], case["symptom"], case["owner_id"]) == ("contact", "not_cooling", "o-2")
    assert case["work_orders"][0]["technician_id"] == "tech-south"
    assert case["first_response_due_s"] == 300.0 + 4 * HOUR and case["resolution_due_s"] == 300.0 + 24 * HOUR
    kinds = [e["kind"] for e in case["timeline"]]
    assert kinds.index("sla_warning") < kinds.index("sla_breach")
    warned = next(e for e in case["timeline"] if e["kind"] == "sla_warning")
    assert warned["ts"] == 300.0 + 0.8 * 4 * HOUR
    assert [b["clock"] for b in case["sla_breaches"]] == ["first_response"]
    assert case["escalation"] == 2 and case["priority"] == 1  # already the most urgent


def test_commands_show_their_outcome(api: Client, case_of: dict[str, str]) -> None:
    fixed = body(api, f"/cases/{case_of['cm-1']}")
    assert fixed["symptom"] == "brew_error"
    ((command,),) = [fixed["commands"]]
    assert (command["action"], command["outcome"]) == ("reset", "We fixed your device remotely.")
    waiting = body(api, f"/cases/{case_of['cm-2']}")
    ((update,),) = [waiting["commands"]]
    assert (update["action"], update["version"], update["outcome"]) == ("ota", "2.0", "awaiting the device's answer")
    assert waiting["first_response_due_s"] is None  # the update is the first response
    assert "command" in [e["kind"] for e in waiting["timeline"]]


def test_without_the_engine_configuration_what_it_would_tell_is_left_out(filled: tuple[str, dict[str, str]]) -> None:
    api = Client(create_app(filled[0], EngineMetrics(clock="event"), connected=lambda: True))
    case = body(api, f"/cases/{filled[1]['fz-2']}")
    assert case["symptom"] == "not_cooling"  # the owner's own word, stored with the case: no configuration needed
    assert case["first_response_due_s"] is None and case["resolution_due_s"] is None
    assert body(api, f"/cases/{filled[1]['fz-1']}")["symptom"] == "cabinet_hot = 2"  # the alert is stored


# -- the console over the same story -------------------------------------------------------------------
def test_the_console_lists_filters_and_marks_simulated_times(api: Client, case_of: dict[str, str]) -> None:
    page = api.get("/console/cases?state=all&issue=cooling").body.decode()
    assert set(re.findall(r'data-case="([^"]+)"', page)) == {case_of["fz-1"], case_of["fz-2"]}
    stamps = page.count('<time class="ts"')
    assert stamps > 0 and page.count('<abbr class="sim"') == stamps + 1  # each time, and the header's note
    case = api.get(f"/console/cases/{case_of['fz-2']}").body.decode()
    assert "not_cooling" in case and "tech-south" in case and 'class="due' in case
    assert api.get("/console/cases/no-such-case").status_code == 404


def test_wall_clock_pages_have_no_simulated_mark(filled: tuple[str, dict[str, str]]) -> None:
    api = Client(create_app(filled[0], EngineMetrics(clock="wall"), connected=lambda: True, engine_config=CONFIG))
    page = api.get("/console/cases?state=all").body.decode()
    assert page.count('<time class="ts"') > 0 and 'class="sim"' not in page


@pytest.mark.parametrize(
    "path",
    [
        "/",
        "/console/fleet",
        "/console/fleet?product=freezer&offline=true",
        "/console/work-orders?technician=tech-north",
        "/console/campaigns",
        "/console/alerts?flapping=true",
        "/console/dead-letters?reason=json",
    ],
)
def test_every_console_page_renders(api: Client, path: str) -> None:
    answer = api.get(path)
    assert answer.status_code == 200 and answer.headers["content-type"].startswith("text/html")
    assert b"data-live" in answer.body and b"http://" not in answer.body and b"https://" not in answer.body


def test_the_docs_page_loads_swagger_ui_from_the_engine_and_an_openapi_30_spec(api: Client) -> None:
    page = api.get("/docs").body.decode()
    sources = re.findall(r'(?:src|href)="([^"]+)"', page)
    assert sources and all(s.startswith("/") for s in sources), sources
    assert "/docs/assets/swagger-ui-bundle.js" in sources and "/docs/openapi.json" in page
    assert api.get("/docs/assets/swagger-ui-bundle.js").status_code == 200
    spec = body(api, "/docs/openapi.json")
    assert spec["openapi"] == "3.0.3" and '"null"' not in json.dumps(spec)
    symptom = spec["components"]["schemas"]["CaseDetail"]["properties"]["symptom"]
    assert (symptom["type"], symptom["nullable"]) == ("string", True)
    assert body(api, "/openapi.json")["openapi"].startswith("3.1")  # FastAPI's own, as it was
    assert api.get("/redoc").status_code == 404
