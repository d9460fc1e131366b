"""Fleet campaigns: find cohorts that fail more than the rest of the fleet, and roll a fix out in stages.

:func:`cohort_excess` compares the case rate of every cohort value (a firmware version, a
manufacturing batch) with the rest of the fleet. Conditional on the total, a cohort's cases are
binomial under equal rates, so the test is exact and needs no rate estimate; Bonferroni keeps the
fleet-wide false alarm rate at ``alpha`` however many cohorts there are.

A :class:`Campaign` is what a significant excess opens: an OTA update or a recall sent to the
cohort in cumulative stages, in a hashed order so that a stage is a spread sample rather than a run
of consecutive serial numbers. After each stage's wait, too many failures among the devices reached
abort it. The campaign holds no clock and sends nothing: the caller asks :meth:`Campaign.due`, sends,
and reports back with :meth:`Campaign.mark_sent` and :meth:`Campaign.record_failure`.

Rules of :data:`CAMPAIGN`: a campaign is ``running`` until its last stage passes review
(``completed``) or a review finds too many failures (``aborted``); both are final.
"""

from __future__ import annotations

import hashlib
import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal, NamedTuple

import numpy as np
import numpy.typing as npt

from contracts.engine_config import CampaignRule
from support_engine.core.lifecycle import Lifecycle

__all__ = ["CAMPAIGN", "Campaign", "Excess", "Review", "cohort_excess", "open_campaign", "rollout_order"]

CAMPAIGN = Lifecycle(
    "campaign",
    {"running": {"completed", "aborted"}, "completed": set(), "aborted": set()},
    initial="running",
)

Review = Literal["wait", "advance", "complete", "abort", "done"]


class Excess(NamedTuple):
    """A cohort whose case rate exceeds the rest of the fleet's, significantly."""

    cohort: str  # the cohort value, e.g. "8.0" or "B-2024-07"
    devices: int  # devices in the cohort
    cases: int  # qualifying cases of those devices
    rest_devices: int
    rest_cases: int
    p_value: float  # one-sided: P(cohort cases >= observed | rates equal)


def cohort_excess(
    cohort_of: Sequence[str | None], cases: npt.NDArray[np.int64], *, min_cases: int, alpha: float
) -> list[Excess]:
    """Return the cohorts whose case rate significantly exceeds the rest of the fleet's, most significant first.

    ``cohort_of[i]`` is device i's cohort value (None: unknown, left out of the comparison) and
    ``cases[i]`` its qualifying cases in the window. Under equal rates, conditional on the total,
    a cohort's cases are Binomial(k_c + k_rest, n_c / (n_c + n_rest)). A cohort is significant when
    it has at least ``min_cases``, its rate exceeds the rest's, and p < ``alpha`` / (cohort values
    compared). Ties in p go by cohort name.
    """
    if len(cohort_of) != len(cases):
        raise ValueError(f"{len(cohort_of)} cohort values for {len(cases)} case counts")
    if min_cases < 1 or not 0.0 < alpha < 1.0:
        raise ValueError(f"need min_cases >= 1 and 0 < alpha < 1, not {min_cases} and {alpha}")
    counts = np.asarray(cases, dtype=np.int64)
    if (counts < 0).any():
        raise ValueError("case counts must not be negative")
    cohorts = np.asarray(cohort_of, dtype=object)
    known = np.not_equal(cohorts, np.array(None, dtype=object))
    if not known.any():
        return []
    names, which = np.unique(cohorts[known].astype(str), return_inverse=True)
    devices = np.bincount(which, minlength=len(names)).astype(np.int64)
    failures = np.bincount(which, weights=counts[known], minlength=len(names)).round().astype(np.int64)
    rest_devices = devices.sum() - devices
    rest_failures = failures.sum() - failures
    from scipy.stats import binom  # scipy.stats takes ~0.5 s to import: engines without campaigns never pay it

    p = binom.sf(failures - 1, failures + rest_failures, devices / (devices + rest_devices))
    higher = failures * rest_devices > rest_failures * devices  # rate above the rest's, in exact integers
    significant = np.flatnonzero((failures >= min_cases) & higher & (p < alpha / len(names)))
    found = [
        Excess(
            str(names[i]), int(devices[i]), int(failures[i]), int(rest_devices[i]), int(rest_failures[i]), float(p[i])
        )
        for i in significant
    ]
    return sorted(found, key=lambda e: (e.p_value, e.cohort))


def rollout_order(devices: Sequence[str], key: str) -> list[str]:
    """Order ``devices`` by a keyed stable hash (ties by id), so that stages spread over the cohort.

    blake2b rather than ``hash()``: the order must be the same in every process, across restarts.
    """

    def rank(device: str) -> tuple[bytes, str]:
        return hashlib.blake2b(f"{key}/{device}".encode(), digest_size=8).digest(), device

    return sorted(devices, key=rank)


@dataclass
class Campaign:
    """A staged OTA rollout or recall over one cohort; plain fields, so msgspec snapshots it as JSON."""

    campaign_id: str
    rule: str  # CampaignRule.name
    action: str  # "ota" | "recall"
    cohort: str  # "by=value", e.g. "firmware=8.0"
    targets: list[str]  # every device of the cohort, in rollout order
    stages: list[float]  # cumulative fractions of the targets (from the rule)
    opened_s: float
    version: str | None = None  # ota
    stage: int = 0  # index into stages of the stage running
    stage_started_s: float = 0.0
    state: str = CAMPAIGN.initial
    sent: list[str] = field(default_factory=list)  # devices reached so far (command sent / recall case opened)
    failed: list[str] = field(default_factory=list)  # devices counted as failures, each once
    reason: str = ""  # why it ended

    def __post_init__(self) -> None:
        if self.action not in ("ota", "recall"):
            raise ValueError(f"campaign {self.campaign_id}: action must be 'ota' or 'recall', not {self.action!r}")
        if not self.stages or self.stages[-1] != 1.0 or any(not 0.0 < f <= 1.0 for f in self.stages):
            raise ValueError(f"campaign {self.campaign_id}: stages must be fractions ending at 1.0, not {self.stages}")
        if any(b <= a for a, b in itertools.pairwise(self.stages)):
            raise ValueError(f"campaign {self.campaign_id}: stages must rise strictly, not {self.stages}")
        if not 0 <= self.stage < len(self.stages):
            raise ValueError(f"campaign {self.campaign_id}: no stage {self.stage} of {len(self.stages)}")
        if self.state not in CAMPAIGN.table:
            raise ValueError(f"campaign {self.campaign_id}: unknown state {self.state!r}")
        if len(set(self.targets)) != len(self.targets):
            raise ValueError(f"campaign {self.campaign_id}: a device appears twice among the targets")

    def reach(self, stage: int | None = None) -> int:
        """How many targets ``stage`` (default: the current one) covers, cumulatively; at least one."""
        n = len(self.targets)
        fraction = self.stages[self.stage if stage is None else stage]
        # round() first: 0.07 * 100 is 7.000000000000001, and its ceiling must still be 7.
        return min(n, max(1, math.ceil(round(fraction * n, 9)))) if n else 0

    def due(self) -> list[str]:
        """Devices of the current stage not sent yet, in rollout order (none unless running)."""
        if self.state != "running":
            return []
        sent = self._sent()
        return [d for d in self.targets[: self.reach()] if d not in sent]

    def mark_sent(self, devices: Sequence[str], now: float) -> None:
        """Record that ``devices`` (from :meth:`due`) were reached at ``now``; the stage's clock starts
        with its first devices. Raises ValueError for a device that was not due (our misuse)."""
        due = self.due()
        wanted = set(devices)
        if len(wanted) != len(devices) or not wanted <= set(due):
            raise ValueError(f"campaign {self.campaign_id}: not due or given twice: {sorted(wanted - set(due))}")
        if not devices:
            return
        earlier = self.reach(self.stage - 1) if self.stage else 0
        sent = self._sent()
        if not any(d in sent for d in self.targets[earlier : self.reach()]):
            self.stage_started_s = now
        self.sent += [d for d in due if d in wanted]  # rollout order, whatever order they came in
        sent.update(wanted)

    def record_failure(self, device: str) -> bool:
        """Count ``device`` as failed (its update did not take, or it had a new case after it).

        Return False, counting nothing, if it is not a target, was not sent, or was counted already.
        """
        failed = self._failed()
        if device not in self._sent() or device in failed:
            return False
        self.failed.append(device)
        failed.add(device)
        return True

    def review(self, now: float, *, stage_wait_s: float, abort_failure_rate: float) -> Review:
        """Judge the current stage once ``stage_wait_s`` has passed since it started.

        More than ``abort_failure_rate`` of the devices sent so far failed: ``abort``. Otherwise the
        next stage that reaches more devices starts at ``now`` (``advance``), or there is none left
        (``complete``). An empty cohort completes at once. ``wait`` before the time; ``done`` once ended.
        """
        if self.state != "running":
            return "done"
        if not self.targets:
            self._end("completed", "no devices in the cohort")
            return "complete"
        if now - self.stage_started_s < stage_wait_s:
            return "wait"
        rate = len(self.failed) / len(self.sent) if self.sent else 0.0
        tally = f"{len(self.failed)} of {len(self.sent)} devices reached failed ({rate:.1%})"
        if rate > abort_failure_rate:
            self._end("aborted", f"{tally}, more than the abort threshold {abort_failure_rate:.1%}")
            return "abort"
        reached = self.reach()
        later = [k for k in range(self.stage + 1, len(self.stages)) if self.reach(k) > reached]
        if not later:
            self._end("completed", f"all {len(self.targets)} devices reached; {tally}")
            return "complete"
        self.stage, self.stage_started_s = later[0], now
        return "advance"

    def _end(self, state: str, reason: str) -> None:
        self.state = CAMPAIGN.check(self.state, state, self.campaign_id)
        self.reason = reason

    # Membership sets for large cohorts, kept outside the dataclass fields (so neither compared nor
    # serialised) and rebuilt if the list was replaced or changed behind our back.
    def _sent(self) -> set[str]:
        return self._index("_sent_index", self.sent)

    def _failed(self) -> set[str]:
        return self._index("_failed_index", self.failed)

    def _index(self, name: str, items: list[str]) -> set[str]:
        cached: tuple[list[str], set[str]] | None = self.__dict__.get(name)
        if cached is None or cached[0] is not items or len(cached[1]) != len(items):
            cached = self.__dict__[name] = (items, set(items))
        return cached[1]


def open_campaign(campaign_id: str, rule: CampaignRule, cohort: str, devices: Sequence[str], now: float) -> Campaign:
    """Open ``rule``'s campaign over the devices of one cohort value; its first stage starts at ``now``."""
    return Campaign(
        campaign_id=campaign_id,
        rule=rule.name,
        action=rule.action,
        cohort=f"{rule.by}={cohort}",
        targets=rollout_order(sorted(set(devices)), campaign_id),
        stages=list(rule.stages),
        opened_s=now,
        version=rule.ota_version if rule.action == "ota" else None,
        stage_started_s=now,
    )
