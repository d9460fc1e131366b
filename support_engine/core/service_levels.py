"""Service levels: SLA clocks of open cases, their warnings and breaches, and escalation."""

from __future__ import annotations

from support_engine.core.actions import Action, SlaBreached, SlaWarned
from support_engine.core.base import Case, EngineBase

__all__ = ["ServiceLevels"]


class ServiceLevels(EngineBase):
    """First-response and resolution clocks against the device's SLA."""

    def _sla_clocks(self, now: float) -> list[Action]:
        """Warnings and breaches of open cases' clocks up to ``now`` (replenishment cases have none)."""
        actions: list[Action] = []
        for case_id in sorted(self.open_case_of.values()):
            case = self.cases[case_id]
            if case.first_response_s is None:
                actions += self._clock_passed(case, "first_response", now)
            actions += self._clock_passed(case, "resolution", now)
        return actions

    def _sla_event(self, case: Case, clock: str, at: float, *, warning: bool) -> list[Action]:
        """A clock reached its warning level or its target: record it and escalate the case (its
        priority goes up by one, 1 being the most urgent)."""
        (case.warned if warning else case.breached).add(clock)
        kind = "sla_warnings" if warning else "sla_breaches"
        self.stats[kind] += 1
        self.stats[f"{kind}_{clock}"] += 1
        case.escalation += 1
        case.priority = max(1, case.priority - 1)
        self.stats["escalations"] += 1
        event: Action = (SlaWarned if warning else SlaBreached)(case.case_id, case.device_id, clock, at)
        return [event, self._case_changed(case, at)]

    def _clock_passed(self, case: Case, clock: str, t: float) -> list[Action]:
        """The warning and breach a running clock has passed by ``t`` and not yet recorded: the timers
        at ``t``, or the clock stopping at ``t`` between timer runs. A refill on its way is a delivery,
        not a service case against the SLA: it runs no clock."""
        if self._issue(case.issue).consumable is not None:
            return []
        sla = self._sla_of(case.device_id)
        target = sla.first_response_s if clock == "first_response" else sla.resolution_s
        actions: list[Action] = []
        if t - case.opened_s > sla.warn_at * target and clock not in case.warned:
            actions += self._sla_event(case, clock, case.opened_s + sla.warn_at * target, warning=True)
        if t - case.opened_s > target and clock not in case.breached:
            actions += self._sla_event(case, clock, case.opened_s + target, warning=False)
        return actions
