"""Alerting: alerts from the twins' rules, one per device and rule, correlated into cases; flapping."""

from __future__ import annotations

from support_engine.core.actions import Action, AlertFlapping, ClearAlert, RaiseAlert
from support_engine.core.base import EngineBase

__all__ = ["Alerting"]


class Alerting(EngineBase):
    """Rule state changes become alerts and cases; a flapping alert is held."""

    def _alerts(
        self, raised: list[tuple[int, int, float, float]], cleared: list[tuple[int, int, float]]
    ) -> list[Action]:
        actions: list[Action] = []
        # In time order: a batch spanning several timestamps may raise an alert and clear it again.
        changes = [(t, 0, self.twins.ids[slot], r, 0.0) for slot, r, t in cleared]
        changes += [(t, 1, self.twins.ids[slot], r, value) for slot, r, t, value in raised]
        for t, up, device, r, value in sorted(changes):
            rule = self.twins.rules[r]
            key = (device, rule.name)
            if key in self.flapping:
                self.flapping[key] = t  # a flapping alert stays raised: its changes are noted, not acted on
                continue
            flapping = self._flapped(key, t)
            if not up:
                alert_id = self.alert_of.get(key)
                if alert_id is None:
                    continue
                if flapping:
                    actions.append(AlertFlapping(alert_id, device, rule.name, t, True))
                    continue
                del self.alert_of[key]
                actions.append(ClearAlert(alert_id, device, rule.name, t))
                continue
            if key in self.alert_of:
                continue  # one active alert per device and rule
            self.stats["alerts"] += 1
            alert_id = self._next_id("alert")
            self.alert_of[(device, rule.name)] = alert_id
            case, opened = self._case_for(device, rule.issue, t, "telemetry")
            case.alerts.append(alert_id)
            actions.append(RaiseAlert(alert_id, device, rule.name, t, value, case.case_id))
            if opened:
                actions += self._open(case, t, f"We detected {rule.name.replace('_', ' ')} on your device.")
        return actions

    def _flapped(self, key: tuple[str, str], t: float) -> bool:
        """Record a rule's state change; True when its active alert has changed too often and now flaps."""
        window = self.config.alerting.flap_window_s
        changes = [c for c in self._changes.get(key, []) if c > t - window]
        changes.append(t)
        self._changes[key] = changes
        alert_id = self.alert_of.get(key)
        if len(changes) < self.config.alerting.flap_changes or alert_id is None:
            return False
        self.flapping[key] = t
        self.stats["alerts_flapping"] += 1
        return True

    def _unflap(self, now: float) -> list[Action]:
        """Alerts quiet for a flap window stop flapping; one whose rule no longer fires clears."""
        actions: list[Action] = []
        window = self.config.alerting.flap_window_s
        for key, last in sorted(self.flapping.items()):
            if now - last < window:
                continue
            del self.flapping[key]
            self._changes.pop(key, None)
            alert_id = self.alert_of.get(key)
            if alert_id is None:
                continue
            device, rule = key
            t = last + window
            actions.append(AlertFlapping(alert_id, device, rule, t, False))
            slot = self.twins.slot_of.get(device)
            if slot is None or not self.twins.alerting[self._rule_index[rule], slot]:
                del self.alert_of[key]
                actions.append(ClearAlert(alert_id, device, rule, t))
        return actions

    def _rearm(self, device: str) -> None:
        """Forget a resolved device's alerts so that a problem still present raises a new one.

        The rules' own state is reset once the message is fully handled: a batch may still raise an
        alert of the same device at a later reading, and that alert must keep its rule's state.
        """
        for rule in self.twins.rules:
            self.alert_of.pop((device, rule.name), None)
            self.flapping.pop((device, rule.name), None)
            self._changes.pop((device, rule.name), None)
        self._rearmed.add(device)

    def _forget_rearmed(self) -> None:
        for device in sorted(self._rearmed):
            slot = self.twins.slot_of.get(device)
            if slot is None:
                continue
            for r, rule in enumerate(self.twins.rules):
                if (device, rule.name) not in self.alert_of:
                    self.twins.forget(slot, r)
        self._rearmed.clear()
