"""The project's devices, one of which sends two messages the engine never takes in: one to a topic the
engine does not subscribe (a typo in a firmware's topic template), and one whose payload names another
device than its topic (the engine rejects it as ``device_mismatch``). Both are acknowledged by the
broker, so Locust counts them as published: the reconciliation must find one lost and one rejected."""

from __future__ import annotations

import time

from locust import task

import loadtest.locustfile as base
from contracts import codec
from contracts.messages import Telemetry

SotShape = base.SotShape  # the shape class must be in this module's namespace for Locust to find it

_SABOTAGED: list[str] = []  # the device that did it (one per process: these tests run Locust in one)


class SaboteurDevice(base.DeviceUser):
    @task
    def tick(self) -> None:
        if not _SABOTAGED:
            _SABOTAGED.append(self.source)
            prefix = self.state.topics.prefix
            reading = Telemetry(device_id=self.source, ts=time.time(), boot_id=self.boot_id, seq=0, values={"x": 1.0})
            self.client.publish(f"{prefix}/devices/{self.source}/telemetry", codec.encode(reading), qos=1)
            stranger = Telemetry(device_id="someone-else", ts=time.time(), boot_id=1, seq=1, values={"x": 1.0})
            self.client.publish(self.state.topics.telemetry(self.source), codec.encode(stranger), qos=1)
        super().tick()
