"""The console's pages: server-rendered HTML over the API's reads, one route per page.

Each page is complete on its own (it works with JavaScript off); ``static/console.js`` refetches it
every few seconds and swaps its live sections in, and ticks the SLA countdowns. Filters are plain
GET forms and links, with the API's names; an empty field means "any". A page takes only the
parameters it declares (422 otherwise, as the API does).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

from support_engine import schema
from support_engine.api.fleet import DeviceFilter, fleet_and_devices
from support_engine.api.models import ORIGINS
from support_engine.api.queries import OPEN_STATES, CaseFilter, Reader
from support_engine.api.routes import clock_info
from support_engine.api.timeline import case_detail
from support_engine.console.render import environment, href_for

__all__ = ["PAGE_SIZE", "REFRESH_S", "STATIC", "Console", "is_page"]

STATIC = "/console/static"
PAGE_SIZE = 50
REFRESH_S = 5
CASE_STATES = ("open", "in_progress", "resolved", "closed")
WORK_ORDER_STATES = ("created", "accepted", "on_site", "awaiting_part", "done", "closed", "cancelled")
_CHART_DAYS = 60
_DAY_S = 86400


def is_page(path: str) -> bool:
    """Whether ``path`` is the console's (its errors are answered as a page)."""
    return path == "/" or (path.startswith("/console/") and not path.startswith(STATIC + "/"))


# -- reading the forms ---------------------------------------------------------------------------------
def _text(value: str | None) -> str | None:
    value = (value or "").strip()
    return value or None


def _flag(name: str, value: str | None) -> bool | None:
    given = (_text(value) or "").lower()
    if not given:
        return None
    if given in ("true", "yes", "1"):
        return True
    if given in ("false", "no", "0"):
        return False
    raise HTTPException(422, f"{name} must be true or false, not {value!r}")


def _choice(name: str, value: str | None, allowed: Sequence[str]) -> str | None:
    given = _text(value)
    if given is not None and given not in allowed:
        raise HTTPException(422, f"{name} must be one of {', '.join(allowed)}, not {value!r}")
    return given


def _number(name: str, value: str | None, low: int, high: int) -> int | None:
    given = _text(value)
    if given is None:
        return None
    try:
        number = int(given)
    except ValueError:
        number = low - 1
    if not low <= number <= high:
        raise HTTPException(422, f"{name} must be a whole number from {low} to {high}, not {value!r}")
    return number


def _offset(value: str | None) -> int:
    return _number("offset", value, 0, 10**12) or 0


class Console:
    """The pages of one engine's console over ``reader``."""

    def __init__(self, reader: Reader) -> None:
        self.reader = reader
        self.env = environment(reader.time)

    def render(self, request: Request, template: str, *, nav: str, status: int = 200, **context: Any) -> HTMLResponse:
        base: str = request.scope.get("root_path", "")
        clock = clock_info(self.reader)
        html = self.env.get_template(template).render(
            base=base,
            href=href_for(base),
            static=f"{base}{STATIC}",
            clock=clock,
            now_s=clock.now_s,
            nav=nav,
            refresh_s=REFRESH_S,
            **context,
        )
        return HTMLResponse(html, status_code=status, headers={"Cache-Control": "no-store"})

    def error(self, request: Request, status: int, messages: list[str]) -> HTMLResponse:
        """An error as a page of the console."""
        return self.render(request, "error.html", nav="", status=status, status_code=status, messages=messages)

    # -- figures -------------------------------------------------------------------------------------
    def _charts(self) -> tuple[str, str]:
        from support_engine.console import charts  # matplotlib loads with the first overview

        time = self.reader.time
        with self.reader.connect() as db:
            c = schema.cases.c
            opened = db.rows(sa.select(c.opened_s, c.origin))
            open_now = db.rows(
                sa.select(c.priority, c.state, sa.func.count())
                .where(c.state.in_(OPEN_STATES))
                .group_by(c.priority, c.state)
            )
        zero = time.moment(0.0)
        scale = 1.0 if time.simulated else 1.0 / time.speed
        first_chart = ""
        if opened and zero is not None:
            base = zero.timestamp()
            tally = Counter((int((base + float(s) * scale) // _DAY_S), str(o)) for s, o in opened)
            last = max(day for day, _ in tally)
            span = range(max(min(day for day, _ in tally), last - _CHART_DAYS + 1), last + 1)
            days = tuple(datetime.fromtimestamp(d * _DAY_S, UTC).date().isoformat() for d in span)
            origins = [o for o in ORIGINS if any(k[1] == o for k in tally)]
            origins += sorted({o for _, o in tally} - set(origins))
            series = tuple((o, tuple(tally.get((d, o), 0) for d in span)) for o in origins)
            title = "Cases opened per day" + (" (simulated days)" if time.simulated else " (UTC)")
            first_chart = charts.opened_per_day(days, series, title)
        second_chart = ""
        if open_now:
            counts = {(int(p), str(st)): int(n) for p, st, n in open_now}
            priorities = tuple(range(1, 6))
            by_state = tuple((st, tuple(counts.get((p, st), 0) for p in priorities)) for st in OPEN_STATES)
            second_chart = charts.open_by_priority(priorities, by_state, "Open cases by priority")
        return first_chart, second_chart

    # -- routes ----------------------------------------------------------------------------------------
    def add_to(self, app: FastAPI) -> None:
        """Add the pages and their static files to ``app``."""
        reader = self.reader
        app.mount(STATIC, StaticFiles(directory=Path(__file__).parent / "static"), name="console-static")

        @app.get("/", include_in_schema=False, response_class=HTMLResponse)
        def overview(request: Request) -> HTMLResponse:
            opened_svg, priority_svg = self._charts()
            urgent = reader.cases(CaseFilter(states=OPEN_STATES), 0, 8, sort="priority")
            return self.render(
                request,
                "overview.html",
                nav="overview",
                kpis=reader.kpis(),
                urgent=urgent,
                opened_svg=opened_svg,
                priority_svg=priority_svg,
            )

        @app.get("/console/fleet", include_in_schema=False, response_class=HTMLResponse)
        def fleet(
            request: Request,
            product: str | None = None,
            offline: str | None = None,
            quarantined: str | None = None,
            in_sync: str | None = None,
            offset: str | None = None,
        ) -> HTMLResponse:
            wanted = DeviceFilter(
                _text(product), _flag("offline", offline), _flag("quarantined", quarantined), _flag("in_sync", in_sync)
            )
            summary, devices = fleet_and_devices(reader, wanted, _offset(offset), PAGE_SIZE)
            params = {
                "product": wanted.product,
                "offline": wanted.offline,
                "quarantined": wanted.quarantined,
                "in_sync": wanted.in_sync,
            }
            return self.render(request, "fleet.html", nav="fleet", summary=summary, devices=devices, params=params)

        @app.get("/console/cases", include_in_schema=False, response_class=HTMLResponse)
        def cases(
            request: Request,
            state: str | None = None,
            device: str | None = None,
            issue: str | None = None,
            product: str | None = None,
            region: str | None = None,
            origin: str | None = None,
            priority: str | None = None,
            sort: str | None = None,
            offset: str | None = None,
        ) -> HTMLResponse:
            shown = _choice("state", state, ("active", "all", *CASE_STATES)) or "active"
            states = OPEN_STATES if shown == "active" else () if shown == "all" else (shown,)
            order = _choice("sort", sort, ("recent", "priority")) or ("priority" if shown == "active" else "recent")
            wanted = CaseFilter(
                states,
                _text(device),
                _text(issue),
                _text(product),
                _text(region),
                _choice("origin", origin, ORIGINS),
                _number("priority", priority, 1, 5),
            )
            found = reader.cases(wanted, _offset(offset), PAGE_SIZE, sort=order)
            params = {
                "state": shown,
                "device": wanted.device,
                "issue": wanted.issue,
                "product": wanted.product,
                "region": wanted.region,
                "origin": wanted.origin,
                "priority": wanted.priority,
                "sort": _text(sort),
            }
            return self.render(
                request,
                "cases.html",
                nav="cases",
                cases=found,
                params=params,
                facets=reader.facets(),
                states=("active", "all", *CASE_STATES),
                sla_known=reader.config is not None,
            )

        @app.get("/console/cases/{case_id}", include_in_schema=False, response_class=HTMLResponse)
        def case(request: Request, case_id: str) -> HTMLResponse:
            found = case_detail(reader, case_id)
            if found is None:
                raise HTTPException(404, f"no case {case_id!r}")
            return self.render(request, "case.html", nav="cases", case=found, sla_known=reader.config is not None)

        @app.get("/console/work-orders", include_in_schema=False, response_class=HTMLResponse)
        def work_orders(
            request: Request, state: str | None = None, technician: str | None = None, offset: str | None = None
        ) -> HTMLResponse:
            wanted_state = _choice("state", state, WORK_ORDER_STATES)
            found = reader.work_orders(wanted_state, _text(technician), None, _offset(offset), PAGE_SIZE)
            return self.render(
                request,
                "work_orders.html",
                nav="work-orders",
                orders=found,
                technicians=reader.technicians(0, 10_000),
                params={"state": wanted_state, "technician": _text(technician)},
                states=WORK_ORDER_STATES,
                named=reader.distinct("work_orders", "technician_id"),
            )

        @app.get("/console/campaigns", include_in_schema=False, response_class=HTMLResponse)
        def campaigns(request: Request, offset: str | None = None) -> HTMLResponse:
            return self.render(
                request,
                "campaigns.html",
                nav="campaigns",
                campaigns=reader.campaigns(_offset(offset), PAGE_SIZE),
                rollouts=reader.rollouts(0, 10_000),
                params={},
            )

        @app.get("/console/alerts", include_in_schema=False, response_class=HTMLResponse)
        def alerts(
            request: Request,
            device: str | None = None,
            rule: str | None = None,
            active: str | None = None,
            flapping: str | None = None,
            offset: str | None = None,
        ) -> HTMLResponse:
            wanted = (_text(device), _text(rule), _flag("active", active), _flag("flapping", flapping))
            found = reader.alerts(*wanted, _offset(offset), PAGE_SIZE)
            params = dict(zip(("device", "rule", "active", "flapping"), wanted, strict=True))
            return self.render(
                request,
                "alerts.html",
                nav="alerts",
                alerts=found,
                params=params,
                rules=reader.distinct("alerts", "rule"),
            )

        @app.get("/console/dead-letters", include_in_schema=False, response_class=HTMLResponse)
        def dead_letters(request: Request, reason: str | None = None, offset: str | None = None) -> HTMLResponse:
            found = reader.dead_letters(_text(reason), _offset(offset), PAGE_SIZE)
            return self.render(
                request,
                "dead_letters.html",
                nav="dead-letters",
                letters=found,
                reasons=reader.reasons(0, 10_000),
                params={"reason": _text(reason)},
            )
