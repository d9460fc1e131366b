"""Devices: the registry, quarantine, twins' reported and desired state, connectivity and gaps."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from contracts.messages import Command, DeviceEvent, DeviceRecord
from support_engine.core.actions import Action, DeviceChanged, Provisioned, Quarantined, SendCommand
from support_engine.core.base import EngineBase

__all__ = ["Devices"]

_SHARED_STATES = 4096  # distinct reported/desired states kept for sharing; past them, each device has its own


class Devices(EngineBase):
    """Registry entries, what devices report and should run, and whether they are heard from."""

    def provision(self, records: Sequence[DeviceRecord], ts: float = 0.0) -> list[Action]:
        """Register devices (or update their entries): product, owner, region, firmware, cohorts,
        contract, warranty, reporting interval. Their twins take the product's desired settings.
        An entry the engine holds already, unchanged, is no change (a restart reads its registry again)."""
        actions: list[Action] = []
        self.twins.reserve(len(records))
        for record in records:
            if self.devices.get(record.device_id) == record:
                continue
            self.devices[record.device_id] = record
            self.registry_version += 1
            slot = self.twins.slot(record.device_id)
            self.twins.set_product(slot, record.product)
            self.twins.expected_interval[slot] = np.nan if record.interval_s is None else record.interval_s
            if record.firmware is not None and "firmware" not in self.reported.get(record.device_id, {}):
                self._set(self.reported, record.device_id, {"firmware": record.firmware})
            settings = self.config.settings.get(record.product or "")
            if settings:
                self._set(self.desired, record.device_id, settings)
            self.stats["devices_provisioned"] += 1
            actions += [Provisioned(record), self._twin_changed(record.device_id, ts)]
        return actions

    def restore_twins(self, device: str, reported: dict[str, str], desired: dict[str, str], offline: bool) -> None:
        """Take up a twin's reported/desired state and connectivity as stored before a restart."""
        for state, stored in ((self.reported, reported), (self.desired, desired)):
            state.pop(device, None)
            if stored:
                self._set(state, device, stored)
        self.twins.offline[self.twins.slot(device)] = offline

    def _set(self, state: dict[str, dict[str, str]], device: str, changes: Mapping[str, str]) -> None:
        """Set ``changes`` in a device's reported or desired state: a new dict, as the old one may be
        other devices' too; the one devices in that same state already have, among the first
        ``_SHARED_STATES`` states seen (a device without state has no entry)."""
        new = {**state.get(device, {}), **changes}
        key = tuple(new.items())
        shared = self._states.get(key)
        if shared is None and len(self._states) < _SHARED_STATES:
            shared = self._states[key] = new
        state[device] = new if shared is None else shared

    def _twin_changed(self, device: str, ts: float) -> DeviceChanged:
        slot = self.twins.slot_of.get(device)
        offline = bool(self.twins.offline[slot]) if slot is not None else False
        return DeviceChanged(
            device, ts, dict(self.reported.get(device, {})), dict(self.desired.get(device, {})), offline
        )

    def _quarantine(self, device: str, ts: float) -> list[Action]:
        self.stats["quarantined_messages"] += 1
        return [Quarantined(device, ts)]

    def _reported(self, event: DeviceEvent) -> list[Action]:
        """A device reports its firmware or a setting: update the twin; a setting that differs from
        the desired one gets a ``configure`` command (one at a time per device)."""
        device = event.device_id
        name, value = ("firmware", event.code) if event.kind == "firmware" else (event.code, event.detail)
        self._set(self.reported, device, {name: value})
        actions: list[Action] = [self._twin_changed(device, event.ts)]
        want = self.desired.get(device, {}).get(name)
        if event.kind == "config" and want is not None and want != value and device not in self.twin_commands.values():
            self.stats["config_drift"] += 1
            command = Command(
                command_id=self._next_id("cmd"),
                device_id=device,
                ts=event.ts,
                action="configure",
                settings={name: want},
            )
            self.twin_commands[command.command_id] = device
            actions.append(SendCommand(command))
        return actions

    def _want_firmware(self, device: str, version: str | None, t: float) -> DeviceChanged:
        """An update is on its way: the twin's desired firmware is its version."""
        if version is not None:
            self._set(self.desired, device, {"firmware": version})
        return self._twin_changed(device, t)

    def _silent(self, now: float) -> list[Action]:
        """Devices silent for longer than their reporting allows go offline (and may open a case)."""
        spec = self.config.offline
        if spec is None:
            return []
        actions: list[Action] = []
        twins = self.twins
        for slot in twins.silent(now, spec.after_intervals, spec.min_s).tolist():
            device = twins.ids[slot]
            interval = twins.expected_interval[slot]
            interval = twins.interval[slot] if np.isnan(interval) else interval
            t = min(now, float(twins.last_seen[slot] + max(spec.after_intervals * interval, spec.min_s)))
            twins.offline[slot] = True
            self.stats["devices_offline"] += 1
            actions.append(self._twin_changed(device, t))
            if spec.issue is not None and self.proactive and not self._unknown(device):
                case, opened = self._case_for(device, spec.issue, t, "offline")
                if opened:
                    actions += self._open(case, t, "Your device stopped reporting.")
        return actions

    def _back_online(self, online: list[tuple[int, float]]) -> list[Action]:
        actions: list[Action] = []
        spec = self.config.offline
        for slot, t in online:
            device = self.twins.ids[slot]
            self.stats["devices_back_online"] += 1
            actions.append(self._twin_changed(device, t))
            case_id = self.open_case_of.get(device)
            case = self.cases.get(case_id) if case_id is not None else None
            if (
                case is not None
                and spec is not None
                and case.issue == spec.issue
                and case.origin == "offline"
                and not case.work_orders
                and case.case_id not in self.pending_commands.values()
            ):
                actions += self._resolve(case, t, "Your device is reporting again.")
        return actions

    def _gap_stats(self, missing: int, late: int) -> None:
        """Count readings missing by sequence gaps (some of them may still come, late) and late ones."""
        if self.twins.missing_total > missing:
            self.stats["readings_missing"] += self.twins.missing_total - missing
        if self.twins.late_total > late:
            self.stats["readings_late"] += self.twins.late_total - late
