"""Faults to inject into a run: a schedule read from ``--fault`` options, and a TCP proxy that can cut
a client off its broker.

A fault happens at a *simulated* time (the first sync step at or after it, once the step's messages
are out and before its clock, so that the step is in flight) and may last a *wall* duration:

    broker-kill@2d        SIGKILL the broker at simulated day 2, start it again at once
    broker-kill@2d+5s     ... and leave it down for 5 wall seconds first
    broker-restart@12h    stop the broker cleanly (it saves its state) and start it again
    engine-kill@36h       SIGKILL the engine (every partition; engine-kill:1@36h: partition 1 only)
                          and start it again, on the same database and session
    engine-pause@36h+5s   freeze the engine (SIGSTOP; engine-pause:1@...: partition 1 only) for 5
                          wall seconds, then SIGCONT; it strikes before the step's messages go out,
                          so the whole step meets a frozen engine: its broker queues meanwhile, and
                          drops past its queue limit
    partition:engine@3d+15s   cut the engine off the broker for 15 wall seconds (connections reset,
                              new ones refused), then let it back

Times take ``s``, ``m``, ``h`` or ``d``. :class:`FaultProxy` is the cut: the engine connects to the
proxy, the proxy to the broker.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import socket
import threading
from dataclasses import dataclass
from typing import Literal

from harness.errors import HarnessError

__all__ = ["Fault", "FaultProxy", "parse_duration"]

FaultKind = Literal["broker-kill", "broker-restart", "engine-kill", "engine-pause", "partition"]
_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_DURATION = re.compile(r"^(\d+(?:\.\d+)?)([smhd])$")
_FAULT = re.compile(
    r"^(broker-kill|broker-restart|engine-(?:kill|pause)(?::(\d+))?|partition:engine)@([^+]+)(?:\+(.+))?$"
)
_HELP = (
    "expected KIND@TIME[+DURATION]: broker-kill@2d, broker-restart@12h, engine-kill@36h, engine-kill:1@36h, "
    "engine-pause@1d+5s, partition:engine@3d+15s (TIME simulated, DURATION wall; units s, m, h, d)"
)


def parse_duration(text: str) -> float:
    """``90s``, ``15m``, ``12h``, ``2d`` in seconds."""
    match = _DURATION.fullmatch(text.strip())
    if match is None:
        raise HarnessError(f"{text!r} is not a duration: a number and a unit, s, m, h or d (90s, 2d)")
    return float(match[1]) * _UNITS[match[2]]


@dataclass(frozen=True)
class Fault:
    """One fault: what, at what simulated time, for how long (wall seconds), on which partition."""

    kind: FaultKind
    at_s: float
    for_s: float = 0.0
    partition: int | None = None  # engine-kill, engine-pause: one partition (None: every one)

    @classmethod
    def parse(cls, text: str) -> Fault:
        match = _FAULT.fullmatch(text.strip())
        if match is None:
            raise HarnessError(f"--fault {text!r}: {_HELP}")
        name, partition, at, lasting = match.groups()
        kind: FaultKind = "partition" if name == "partition:engine" else name.split(":")[0]  # type: ignore[assignment]
        try:
            at_s = parse_duration(at)
            for_s = parse_duration(lasting) if lasting else 0.0
        except HarnessError as exc:
            raise HarnessError(f"--fault {text!r}: {exc}") from exc
        if kind in ("partition", "engine-pause") and for_s <= 0:
            example = "partition:engine@3d+15s" if kind == "partition" else "engine-pause@1d+5s"
            raise HarnessError(f"--fault {text!r}: {kind} needs how long it lasts ({example})")
        if kind in ("broker-restart", "engine-kill") and lasting:
            raise HarnessError(f"--fault {text!r}: {kind} takes no duration")
        return cls(kind, at_s, for_s, None if partition is None else int(partition))

    def __str__(self) -> str:
        name = {"partition": "partition:engine"}.get(self.kind, self.kind)
        if self.partition is not None:
            name += f":{self.partition}"
        return f"{name}@{self.at_s:g}s" + (f"+{self.for_s:g}s" if self.for_s else "")


class FaultProxy:
    """A TCP proxy on 127.0.0.1 in front of ``(host, port)``, in a thread of its own.

    :meth:`cut` resets every connection and refuses new ones (a network partition as the client
    sees it: a dropped connection, then nothing); :meth:`heal` lets connections through again.
    """

    def __init__(self, host: str, port: int) -> None:
        self.upstream = (host, port)
        self.cut_off = False
        self.connections = 0  # accepted (and passed through) so far
        self.refused = 0
        self._writers: set[asyncio.StreamWriter] = set()
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._server: asyncio.Server | None = None
        self.port = 0
        self._thread = threading.Thread(target=self._run, name="fault-proxy", daemon=True)
        self._thread.start()
        if not self._ready.wait(5.0) or self._server is None:
            raise HarnessError("the fault proxy did not start")

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._server = self._loop.run_until_complete(asyncio.start_server(self._client, "127.0.0.1", 0))
        self.port = self._server.sockets[0].getsockname()[1]
        self._ready.set()
        self._loop.run_forever()

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.cut_off:
            self.refused += 1
            _reset(writer)
            return
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.upstream)
        except OSError:
            _reset(writer)
            return
        self.connections += 1
        self._writers |= {writer, up_writer}
        await asyncio.gather(self._pipe(reader, up_writer), self._pipe(up_reader, writer))
        self._writers -= {writer, up_writer}

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                if self.cut_off:
                    break
                writer.write(data)
                await writer.drain()
        except (OSError, asyncio.IncompleteReadError):
            pass
        finally:
            _reset(writer)

    def cut(self) -> None:
        """Reset every connection through the proxy and refuse new ones until :meth:`heal`."""

        def now() -> None:
            self.cut_off = True
            for writer in list(self._writers):
                _reset(writer)

        self._call(now)

    def heal(self) -> None:
        self._call(lambda: setattr(self, "cut_off", False))

    def _call(self, fn: object) -> None:
        done = threading.Event()

        def run() -> None:
            try:
                fn()  # type: ignore[operator]
            finally:
                done.set()

        self._loop.call_soon_threadsafe(run)
        done.wait(5.0)

    def close(self) -> None:
        def stop() -> None:
            for writer in list(self._writers):
                _reset(writer)
            if self._server is not None:
                self._server.close()
            self._loop.stop()

        if self._loop.is_running():
            self._loop.call_soon_threadsafe(stop)
            self._thread.join(5.0)
        with contextlib.suppress(RuntimeError):
            self._loop.close()

    def __enter__(self) -> FaultProxy:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _reset(writer: asyncio.StreamWriter) -> None:
    """Close with a TCP reset (SO_LINGER 0), as a dropped link looks to the other end."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    with contextlib.suppress(Exception):
        writer.close()
