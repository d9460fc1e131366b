"""Locust as processes: a single one, or a master and its workers, each in its own session.

The runner never imports Locust (importing it patches the standard library through gevent); it
starts ``python -m locust`` on the locustfile and reads the statistics the master writes.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from harness.broker import PASSWORD_ENV, BrokerUrl
from loadtest.fleet import FleetMix
from loadtest.options import LOCUSTFILE, LoadTestOptions
from loadtest.witnesses import free_port

__all__ = ["TIMELINE_FILE", "Swarm", "locust_args", "start_swarm"]

TIMELINE_FILE = "locust_timeline.json"  # the locustfile's response times per interval

_ROOT = Path(__file__).resolve().parents[1]


class Swarm:
    """``python -m locust`` as a single process, or a master and its workers, each in its own session."""

    def __init__(self, out_dir: Path) -> None:
        self.out_dir = out_dir
        self._procs: list[tuple[str, subprocess.Popen[bytes]]] = []

    def spawn(self, role: str, args: list[str], env: dict[str, str]) -> None:
        # Locust runs in the output directory: put this tree first on its path, so that the locustfile
        # imports the contracts and helpers the runner itself uses, whatever is installed.
        path = os.pathsep.join(filter(None, [str(_ROOT), os.environ.get("PYTHONPATH", "")]))
        with open(self.out_dir / f"locust-{role}.log", "wb") as output:
            proc = subprocess.Popen(
                [sys.executable, "-m", "locust", *args],
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
                env={**os.environ, **env, "PYTHONPATH": path},
                start_new_session=True,
                cwd=self.out_dir,
            )
        self._procs.append((role, proc))

    @property
    def main(self) -> subprocess.Popen[bytes]:
        return self._procs[0][1]

    def died(self, ending: bool) -> str | None:
        """The role of a worker that failed, or exited before the run was ``ending`` (told to quit), or None."""
        for role, proc in self._procs[1:]:
            code = proc.poll()
            if code is not None and (code != 0 or not ending):
                return role
        return None

    def tail(self, role: str, lines: int = 25) -> str:
        try:
            text = (self.out_dir / f"locust-{role}.log").read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.rstrip().splitlines()[-lines:])

    def stop(self, grace_s: float = 15.0) -> None:
        """Let the workers follow their master out, then SIGTERM and SIGKILL whatever is left."""
        deadline = time.monotonic() + grace_s
        for _, proc in self._procs:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(max(0.0, deadline - time.monotonic()))
        for _, proc in self._procs:
            for sig in (signal.SIGTERM, signal.SIGKILL):
                if proc.poll() is not None:
                    break
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, sig)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(5.0)


def locust_args(options: LoadTestOptions, url: BrokerUrl, speed: float, out_dir: Path) -> list[str]:
    """The master's (or the single process's) options: the test, the reports, the fleet's knobs."""
    args = [
        "-f", str(options.locustfile.resolve()), "-H", str(url),
        "-u", str(options.users), "-r", f"{options.spawn_rate:g}", "-t", f"{options.run_time_s}s",
        "--csv", str(out_dir / "locust"), "--html", str(out_dir / "locust.html"),
        "--json-file", str(out_dir / "locust"), "--exit-code-on-error", "0", "--only-summary",
        "--sot-prefix", options.prefix, "--sot-speed", repr(speed), "--sot-jitter", repr(options.jitter),
        "--sot-event-share", repr(options.event_share), "--sot-ack-every", str(options.ack_every),
        "--sot-qos", str(options.qos), "--sot-shape", options.shape, "--sot-drain", repr(options.drain_s),
        "--sot-receipt-timeout", repr(options.receipt_timeout_s), "--sot-warmup", repr(options.warmup_s),
        "--sot-outbox", options.outbox, "--sot-outbox-size", str(options.outbox_size),
        "--sot-timeline", str(out_dir / TIMELINE_FILE), "--sot-timeline-step", repr(options.timeline_step_s()),
    ]  # fmt: skip
    if options.ui:
        args += ["--autostart", "--autoquit", "30", "--web-host", "127.0.0.1", "--web-port", str(options.ui_port)]
    else:
        args += ["--headless"]
    return args


def start_swarm(
    locust: Swarm, options: LoadTestOptions, mix: FleetMix, url: BrokerUrl, speed: float, workers: int, out_dir: Path
) -> None:
    """Start Locust for ``options`` on ``mix``: one process when ``workers`` is 0, else a master and workers."""
    env = {"SOT_LOADTEST_FLEET": mix.encode(), "PYTHONUNBUFFERED": "1"}
    if url.password is not None:  # `-H` carries the URL without it: never a password on a command line
        env[PASSWORD_ENV] = url.password
    # The project's locustfile has both kinds of user: name the one wanted. A locustfile of your own
    # runs every user class it has.
    default = options.locustfile.resolve() == LOCUSTFILE.resolve()
    classes = [("DeviceUser" if options.kind == "device" else "GatewayUser")] if default else []
    args = locust_args(options, url, speed, out_dir)
    if workers == 0:
        locust.spawn("master", [*args, *classes], env)
        return
    port = free_port()
    master = ["--master", "--master-bind-host", "127.0.0.1", "--master-bind-port", str(port)]
    master += ["--expect-workers", str(workers), "--expect-workers-max-wait", "60"]
    locust.spawn("master", [*args, *master, *classes], env)
    for i in range(workers):
        worker = ["-f", str(options.locustfile.resolve()), "--worker", "--master-host", "127.0.0.1"]
        locust.spawn(f"worker-{i}", [*worker, "--master-port", str(port), *classes], env)
