"""Fleet patterns: cohort comparisons that open staged OTA or recall campaigns, and running them."""

from __future__ import annotations

import numpy as np

from contracts.engine_config import CampaignRule
from contracts.messages import Command
from support_engine.core.actions import Action, CampaignChanged, SendCommand
from support_engine.core.base import EngineBase
from support_engine.core.campaigns import Campaign, cohort_excess, open_campaign

__all__ = ["FleetPatterns"]


class FleetPatterns(EngineBase):
    """Campaigns opened by a cohort's excess of cases, reviewed stage by stage."""

    def _fleet_patterns(self, now: float) -> list[Action]:
        """Compare cohorts every ``check_every_s`` and open campaigns; review running campaigns' stages."""
        actions: list[Action] = []
        if not self.proactive:
            return actions  # campaigns are proactive service
        for rule in self.config.campaigns:
            last = self.cohorts_checked.get(rule.name)
            if last is not None and now - last < rule.check_every_s:
                continue
            self.cohorts_checked[rule.name] = now
            actions += self._compare_cohorts(rule, now)
        for campaign_id in sorted(self.campaigns):
            campaign = self.campaigns[campaign_id]
            found = self._campaign_rules.get(campaign.rule)
            if found is None:
                continue  # its rule left the configuration: it stays as it was
            verdict = campaign.review(now, stage_wait_s=found.stage_wait_s, abort_failure_rate=found.abort_failure_rate)
            if verdict == "advance":
                actions += self._campaign_stage(campaign, found, now)
            elif verdict in ("complete", "abort"):
                self.stats[f"campaigns_{campaign.state}"] += 1
                actions.append(self._campaign_changed(campaign, now))
                del self.campaigns[campaign_id]
        return actions

    def _cohort(self, device: str, by: str) -> str | None:
        if by == "firmware":
            return self.reported.get(device, {}).get("firmware")
        record = self.devices.get(device)
        return record.cohorts.get(by) if record is not None else None

    def _compare_cohorts(self, rule: CampaignRule, now: float) -> list[Action]:
        """Count each device's cases of the rule's issues within its window; open a campaign for every
        cohort whose excess is significant and that has not had one."""
        devices = self.twins.ids
        cohort_of = [self._cohort(d, rule.by) for d in devices]
        cases = np.zeros(len(devices), dtype=np.int64)
        for case in self.cases.values():
            counted = not rule.issues or case.issue in rule.issues
            slot = self.twins.slot_of.get(case.device_id)  # a device only heard of by phone is in no cohort
            if counted and slot is not None and case.origin != "campaign" and now - case.opened_s <= rule.window_s:
                cases[slot] += 1
        actions: list[Action] = []
        for excess in cohort_excess(cohort_of, cases, min_cases=rule.min_cases, alpha=rule.alpha):
            label = f"{rule.by}={excess.cohort}"
            if (rule.name, label) in self.campaigned:
                continue
            members = [d for d, c in zip(devices, cohort_of, strict=True) if c == excess.cohort]
            campaign = open_campaign(self._next_id("campaign"), rule, excess.cohort, members, now)
            campaign.reason = (
                f"{excess.cases} cases on {excess.devices} devices against {excess.rest_cases} on "
                f"{excess.rest_devices} for the rest of the fleet (p = {excess.p_value:.2g})"
            )
            self.campaigns[campaign.campaign_id] = campaign
            self.campaigned.add((rule.name, label))
            self.stats["campaigns_opened"] += 1
            actions += [self._campaign_changed(campaign, now), *self._campaign_stage(campaign, rule, now)]
        return actions

    def _campaign_stage(self, campaign: Campaign, rule: CampaignRule, now: float) -> list[Action]:
        """Reach the devices of the campaign's current stage: an update each, or a recall visit each."""
        actions: list[Action] = []
        due = campaign.due()
        for device in due:
            if campaign.action == "ota":
                command = Command(
                    command_id=self._next_id("cmd"), device_id=device, ts=now, action="ota", version=campaign.version
                )
                self.campaign_commands[command.command_id] = (campaign.campaign_id, device)
                self.stats["campaign_commands"] += 1
                actions += [SendCommand(command), self._want_firmware(device, campaign.version, now)]
            elif rule.recall_issue is not None:
                case, opened = self._case_for(device, rule.recall_issue, now, "campaign")
                self.stats["campaign_recalls"] += 1
                if opened:
                    actions += self._open(case, now, "Your device is part of a recall.")
        campaign.mark_sent(due, now)
        if due:
            actions.append(self._campaign_changed(campaign, now))
        return actions

    def _campaign_changed(self, campaign: Campaign, t: float) -> CampaignChanged:
        return CampaignChanged(
            campaign.campaign_id,
            campaign.rule,
            campaign.action,
            campaign.cohort,
            campaign.state,
            campaign.stage,
            len(campaign.targets),
            len(campaign.sent),
            len(campaign.failed),
            campaign.opened_s,
            t,
            campaign.reason,
        )

    def _campaign_failure(self, device: str) -> None:
        """A device a running campaign reached failed (a new case after it, or an update that did not install)."""
        for campaign in self.campaigns.values():
            if campaign.record_failure(device):
                self.stats["campaign_failures"] += 1
