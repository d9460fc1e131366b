"""Lifecycles of cases and work orders as transition tables.

Rules: a case opens ``open``; a dispatched work order moves it to ``in_progress``; the last work
order closing resolves it; ``resolved`` may reopen when the owner reports the problem again.
A work order is ``created`` → ``accepted`` → ``on_site`` → ``done`` → ``closed``; a visit without
the right part goes ``on_site`` → ``awaiting_part`` → ``accepted`` for the second visit.
"""

from __future__ import annotations

from collections.abc import Mapping

from support_engine.errors import IllegalTransition

__all__ = ["CASE", "FIELD_STATES", "WORK_ORDER", "Lifecycle"]


class Lifecycle:
    """A named transition table; :meth:`check` raises :class:`IllegalTransition` for moves it lacks."""

    def __init__(self, name: str, table: Mapping[str, set[str]], initial: str) -> None:
        self.name = name
        self.table = {state: frozenset(targets) for state, targets in table.items()}
        self.initial = initial
        unknown = {t for targets in self.table.values() for t in targets} - set(self.table)
        if unknown:
            raise ValueError(f"{name}: targets without a row: {sorted(unknown)}")

    def check(self, current: str, wanted: str, entity: str = "") -> str:
        """Return ``wanted`` if the move is allowed, else raise."""
        allowed = self.table[current]
        if wanted not in allowed:
            raise IllegalTransition(f"{self.name} {entity}".strip(), current, wanted, allowed)
        return wanted

    def is_terminal(self, state: str) -> bool:
        return not self.table[state]


CASE = Lifecycle(
    "case",
    {
        "open": {"in_progress", "resolved"},
        "in_progress": {"resolved"},
        "resolved": {"closed", "open"},
        "closed": set(),
    },
    initial="open",
)

WORK_ORDER = Lifecycle(
    "work order",
    {
        "created": {"accepted", "cancelled"},
        "accepted": {"on_site", "cancelled"},
        "on_site": {"done", "awaiting_part"},
        "awaiting_part": {"accepted", "closed"},  # closed: the field gives up (no one has the skill)
        "done": {"closed"},
        "closed": set(),
        "cancelled": set(),
    },
    initial="created",
)

FIELD_STATES: Mapping[str, str] = {
    "accepted": "accepted",
    "arrived": "on_site",
    "fixed": "done",
    "no_fault_found": "done",
    "part_missing": "awaiting_part",
    "incomplete": "awaiting_part",
    "closed": "closed",
}
"""The work-order state each field status (``WorkOrderStatus.status``) moves an order to."""
