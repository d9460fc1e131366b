"""Mosquitto configured for load tests: thousands of connections, no disk in the message path.

The harness broker (:func:`harness.broker.start_broker`) keeps persistence on, saved when it stops
and every few minutes. A load test measures the ingestion path, not the disk, and runs devices that
come and go by the thousand, so its broker keeps sessions in memory (``persistence false``), accepts as many connections as
its file-descriptor limit allows, sends small packets at once (``set_tcp_nodelay``), holds up to
``max_queued_messages`` per client instead of silently dropping past 1,000, and publishes ``$SYS``
counters every second for the reconciliation.
"""

from __future__ import annotations

import os
import pwd
from pathlib import Path

from harness.broker import RunningBroker, mosquitto_available, start_broker
from harness.errors import BrokerError

__all__ = ["mosquitto_conf", "start_load_broker"]

_MAX_QUEUED = 1_000_000


def mosquitto_conf(host: str, port: int, workdir: Path, max_queued_messages: int) -> str:
    """The Mosquitto 2.0 configuration of a load-test broker on ``host:port``."""
    user = pwd.getpwuid(os.geteuid()).pw_name
    return f"""\
# Written by loadtest.broker for one load test.
user {user}
listener {port} {host}
allow_anonymous true
# Sessions live in memory: the disk stays out of the message path.
persistence false
# As many connections as the file-descriptor limit allows (each costs Mosquitto one descriptor).
max_connections -1
# The engine's persistent session may queue a backlog: hold it rather than drop past 1,000.
max_queued_messages {max_queued_messages}
max_queued_bytes 0
# The engine acknowledges in group commits of up to about 1,000 messages.
max_inflight_messages 1000
set_tcp_nodelay true
sys_interval 1
log_dest file {workdir}/mosquitto.log
log_type error
log_type warning
log_type notice
# Ten thousand devices connecting are not news.
connection_messages false
log_timestamp_format %Y-%m-%dT%H:%M:%S
"""


def start_load_broker(workdir: Path) -> RunningBroker:
    """Start Mosquitto on a free loopback port with :func:`mosquitto_conf`; return it once it answers MQTT."""
    if not mosquitto_available():
        raise BrokerError(
            "a load test needs Mosquitto (apt-get install mosquitto), or an existing broker: --broker mqtt://host:port "
            "(the embedded amqtt broker is no load-test target: a few thousand messages a second at most)"
        )
    return start_broker("mosquitto", workdir=workdir, max_queued_messages=_MAX_QUEUED, mosquitto_conf=mosquitto_conf)
