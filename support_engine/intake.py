"""What the engine takes in from the network at most: the per-message limits and the engine-wide
budgets of sensor names and unregistered devices (the configuration's ``limits``).

Each check returns the reason and detail to refuse a device message for, or None when it is within
bounds; the service refuses, counts, dead-letters and acknowledges what they refuse.
"""

from __future__ import annotations

from contracts.codec import BatchView
from contracts.engine_config import EngineConfig, Limits
from contracts.messages import Message, Telemetry
from support_engine.core.engine import Engine

__all__ = ["Budgets", "over_limits"]

Refusal = tuple[str, str]


def over_limits(limits: Limits, message: Message | BatchView, ahead_s: float | None, speed: float) -> Refusal | None:
    """The per-message limits: sensors in a message, devices in a roster, and (wall clock, ``ahead_s``
    the message's time less the engine's) how far ahead of the engine's clock it may be stamped."""
    values = message.values if isinstance(message, (Telemetry, BatchView)) else None
    if values is not None and len(values) > limits.max_sensors:
        return "too_many_sensors", f"{len(values)} sensors > {limits.max_sensors}"
    if isinstance(message, BatchView) and len(message.devices) > limits.max_roster:
        return "roster_too_large", f"{len(message.devices)} devices > {limits.max_roster}"
    # In engine seconds: a live run's world runs `speed` times faster than the wall clock.
    if ahead_s is not None and limits.max_future_s is not None and ahead_s > limits.max_future_s * max(speed, 1.0):
        return "future_ts", f"stamped {ahead_s:.0f} s ahead of the engine's clock"
    return None


class Budgets:
    """The engine-wide budgets: distinct sensor names (the rules' and usage plans' always count) and devices heard
    from without a registry entry. Taken up in arrival order; relearned after a restart, as the twins are."""

    def __init__(self, core: Engine, config: EngineConfig) -> None:
        self.core = core
        self.limits = config.limits
        self.sensors = {rule.sensor for rule in config.all_rules}  # sensor names taken in
        self.sensors |= {plan.usage_sensor for plan in config.maintenance if plan.usage_sensor is not None}
        self.new_devices: set[str] = set()  # unregistered devices taken in since the last step: no twin yet

    def take(self, message: Message | BatchView) -> Refusal | None:
        """Refuse ``message`` if it goes beyond a budget; else take what it names into them."""
        limits = self.limits
        values = message.values if isinstance(message, (Telemetry, BatchView)) else None
        sensors = self.sensors
        new_sensors = [] if values is None or sensors.issuperset(values) else sorted(set(values) - sensors)
        if len(sensors) + len(new_sensors) > max(limits.max_sensor_names, len(sensors)):
            return "unknown_sensor", f"{new_sensors[:5]} beyond the budget of {limits.max_sensor_names} sensor names"
        core, twins = self.core, self.core.twins
        new_devices: list[str] = []
        if isinstance(message, BatchView):
            if not twins.has_roster(message.gateway_id, message.devices):
                known, taken = twins.slot_of, self.new_devices
                new_devices = [x for x in dict.fromkeys(message.devices) if x not in known and x not in taken]
        elif isinstance(message, Telemetry) and core.config.provisioning == "open":  # else: quarantined, no twin
            x = message.device_id
            if x not in twins.slot_of and x not in self.new_devices:
                new_devices = [x]
        if new_devices:
            unregistered = len(twins) - len(core.devices) + len(self.new_devices)
            if unregistered + len(new_devices) > limits.max_unregistered_devices:
                detail = f"{len(new_devices)} new devices beyond the budget of {limits.max_unregistered_devices}"
                return "device_budget", f"{detail} unregistered ({new_devices[0]!r}, ...)"
        sensors.update(new_sensors)
        self.new_devices.update(new_devices)
        return None

    def step_done(self) -> None:
        """The step is handled: the devices it took in have their twins now."""
        self.new_devices.clear()
