"""Run the amqtt fallback broker until SIGTERM or SIGINT: ``python -m harness.amqtt_broker --port P``.

:mod:`harness.broker` starts this module as a subprocess (never in-process), so the broker
can be signalled, killed and restarted like Mosquitto, and its event loop never shares the GIL
with the harness.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from typing import Any

__all__ = ["broker_config", "main", "serve"]


def broker_config(host: str, port: int) -> dict[str, Any]:
    """Return an amqtt 0.12 broker config: one TCP listener, anonymous clients, no ``$SYS`` plugin.

    Passing ``plugins`` replaces amqtt's defaults (event and packet loggers, ``$SYS`` topics),
    so only the anonymous-auth plugin is loaded.
    """
    bind_host = f"[{host}]" if ":" in host else host
    return {
        "listeners": {"default": {"type": "tcp", "bind": f"{bind_host}:{port}"}},
        # Loopback harness broker: anonymous clients are the point.
        "plugins": {"amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True}},
    }


async def serve(host: str, port: int) -> None:
    """Serve MQTT on ``host:port`` until SIGTERM or SIGINT, then shut the broker down."""
    from amqtt.broker import Broker

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    broker = Broker(broker_config(host, port))
    await broker.start()
    print(f"amqtt broker listening on {host}:{port}", file=sys.stderr, flush=True)
    try:
        await stop.wait()
    finally:
        await broker.shutdown()
    print("amqtt broker stopped", file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    """Parse the command line, run the broker and return the process exit code."""
    parser = argparse.ArgumentParser(prog="python -m harness.amqtt_broker", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.WARNING, stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        asyncio.run(serve(args.host, args.port))
    except Exception as exc:
        print(f"amqtt broker failed: {exc}", file=sys.stderr, flush=True)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
