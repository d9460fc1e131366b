"""Preventive maintenance: the plans' visits, scheduled device by device and sent as work orders.

Each plan (:class:`~contracts.engine_config.MaintenancePlan`) covers the registered devices of its
products and cohorts. At most once a minute of engine time (every step in event time) the engine
looks for the devices whose next visit has come (:mod:`support_engine.core.schedule`) and sends
each a preventive work order: the plan's skill, parts, duration and priority, and
``maintenance`` naming the plan and the failure modes to service. No case is opened (nothing is
wrong that a case could resolve, and the owner is not told of trouble); the order's field statuses
move it through the work-order lifecycle like any other, and it is forgotten once closed. A
device whose previous visit of the plan is still open gets no second one: that grid point is
passed over. Plans run under both policies: a calendar or a counter is not a prediction.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from contracts.engine_config import MaintenancePlan
from contracts.messages import DeviceRecord, PreventiveVisit, WorkOrder, WorkOrderStatus
from support_engine.core.actions import Action, CreateWorkOrder
from support_engine.core.base import EngineBase
from support_engine.core.lifecycle import FIELD_STATES, WORK_ORDER
from support_engine.core.schedule import PlanClock, PlanScope, PreventiveOrder, crossed, phases

__all__ = ["CHECK_EVERY_S", "Maintenance", "in_scope"]

CHECK_EVERY_S = 60.0
"""How often (engine time) the plans' schedules are checked; a visit due meanwhile goes out at the next check."""

Floats = npt.NDArray[np.float64]


def in_scope(plan: MaintenancePlan, record: DeviceRecord) -> bool:
    """Whether ``plan`` covers the device of ``record``: one of its products, one of its cohort values."""
    if plan.products and record.product not in plan.products:
        return False
    return all(record.cohorts.get(dim) in values for dim, values in plan.cohorts.items())


class Maintenance(EngineBase):
    """Preventive work orders from maintenance plans, and their field statuses."""

    def _maintenance(self, now: float) -> list[Action]:
        """Send the preventive work orders that have fallen due since the last check."""
        actions: list[Action] = []
        for plan in self.config.maintenance:
            clock = self.plan_clocks.get(plan.name)
            if clock is None:
                clock = self.plan_clocks[plan.name] = PlanClock(plan.name, now, now)
                if plan.calendar:
                    continue  # the grid starts now; a usage plan reads its counters at once
            elif now - clock.checked_s < CHECK_EVERY_S:
                continue
            scope = self._plan_scope(plan)
            if plan.calendar:
                n = len(scope.ids)
                before, after = np.full(n, clock.checked_s - clock.epoch_s), np.full(n, now - clock.epoch_s)
                due = crossed(before, after, plan.interval, scope.phase)
            else:
                counters = self._counters(plan, scope)
                due = crossed(scope.seen, counters, plan.interval, scope.phase)
                scope.seen = np.where(np.isnan(counters), scope.seen, counters)
            clock.checked_s = now
            for i in np.flatnonzero(due).tolist():
                actions += self._preventive(plan, scope.ids[i], now)
        return actions

    def _plan_scope(self, plan: MaintenancePlan) -> PlanScope:
        """The plan's devices as the registry has them now (kept until the registry changes)."""
        scope = self._scopes.get(plan.name)
        if scope is not None and scope.registry == self.registry_version:
            return scope
        ids = sorted(d for d, record in self.devices.items() if in_scope(plan, record))
        fresh = PlanScope(self.registry_version, ids, phases(plan.name, ids))
        if not plan.calendar:  # carry the counters over, from the old scope or a restored snapshot
            known = self.usage_seen.pop(plan.name, {})
            if scope is not None:
                known.update(zip(scope.ids, scope.seen.tolist(), strict=True))
            fresh.seen = np.array([known.get(d, np.nan) for d in ids], dtype=np.float64)
        self._scopes[plan.name] = fresh
        return fresh

    def _counters(self, plan: MaintenancePlan, scope: PlanScope) -> Floats:
        """The latest reading of the plan's usage counter for each device of its scope (NaN: none yet)."""
        if scope.twins != len(self.twins):
            scope.slots = np.fromiter(
                (self.twins.slot_of.get(d, -1) for d in scope.ids), dtype=np.int64, count=len(scope.ids)
            )
            scope.twins = len(self.twins)
        column = self.twins.values.get(plan.usage_sensor or "")
        counters = np.full(len(scope.ids), np.nan)
        if column is not None:
            known = scope.slots >= 0
            counters[known] = column[scope.slots[known]]
        return counters

    def _usage_state(self) -> dict[str, dict[str, float]]:
        """Each usage plan's counters as last checked, by device (for the snapshot)."""
        state = {plan: dict(counters) for plan, counters in self.usage_seen.items()}  # restored, not yet used
        for plan in self.config.maintenance:
            scope = self._scopes.get(plan.name)
            if plan.calendar or scope is None:
                continue
            counters = state.setdefault(plan.name, {})
            for device, value in zip(scope.ids, scope.seen.tolist(), strict=True):
                if not np.isnan(value):
                    counters[device] = value
        return {plan: dict(sorted(c.items())) for plan, c in sorted(state.items()) if c}

    def _preventive(self, plan: MaintenancePlan, device: str, now: float) -> list[Action]:
        """A preventive work order for ``device``, unless its last visit of ``plan`` is still open."""
        if (plan.name, device) in self.preventive_of:
            return []
        visit_id = self._next_id("pm")
        wo_id = self._next_id("wo")
        technician = self._assign(plan.skill, device)
        self.preventive[wo_id] = PreventiveOrder(wo_id, visit_id, plan.name, device, now, technician_id=technician)
        self.preventive_of[(plan.name, device)] = wo_id
        self.stats["work_orders"] += 1
        order = WorkOrder(
            work_order_id=wo_id,
            case_id=visit_id,
            device_id=device,
            ts=now,
            issue=plan.name,
            skill=plan.skill,
            parts=list(plan.parts),
            duration_s=plan.duration_s,
            priority=plan.priority,
            technician_id=technician,
            maintenance=PreventiveVisit(plan=plan.name, services=list(plan.services)),
        )
        return [CreateWorkOrder(order)]

    def _preventive_status(self, order: PreventiveOrder, status: WorkOrderStatus) -> list[Action]:
        """A field status of a preventive work order: its lifecycle, as a corrective order's; no case."""
        wanted = FIELD_STATES[status.status]
        if wanted == order.state:
            return []
        if wanted not in WORK_ORDER.table[order.state]:
            self.stats["field_status_out_of_order"] += 1  # remote input out of turn: counted, not applied
            return []
        order.state = WORK_ORDER.check(order.state, wanted, order.work_order_id)
        order.visit = status.visit
        if status.status in ("part_missing", "incomplete"):
            self.stats["second_visits"] += 1
            self.stats[f"second_visits_{status.status}"] += 1
        if WORK_ORDER.is_terminal(order.state):
            if order.technician_id is not None:
                self.tech_load[order.technician_id] -= 1
            del self.preventive[order.work_order_id]
            del self.preventive_of[(order.plan, order.device_id)]
        return []
