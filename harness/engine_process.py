"""The support engine as its own process: started, watched and always stopped by the harness."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from harness.errors import HarnessError

__all__ = ["EngineHttp", "EngineProcess"]

_TOKEN_ENV = "SOT_HTTP_TOKEN"  # the engine reads its token from there: never on a command line others can see


@dataclass(frozen=True, slots=True)
class EngineHttp:
    """The HTTP API and console an engine process serves (``sot run --http``)."""

    port: int  # 0: any free port
    host: str = "127.0.0.1"
    token: str | None = None


class EngineProcess:
    """``python -m support_engine`` in its own session, logging to a file; serving ``http`` if given."""

    def __init__(self, args: list[str], log_path: Path, http: EngineHttp | None = None) -> None:
        self.log_path = log_path
        self.args = args
        self.http = http
        self.url_file = log_path.with_suffix(".url")  # where the engine writes its API's URL once it listens
        if http is not None:
            self.args = [
                *args,
                "--http",
                str(http.port),
                "--http-host",
                http.host,
                "--http-url-file",
                str(self.url_file),
            ]
        self.starts = 0  # times started (a restart after a kill adds one)
        self._start()

    def _start(self) -> None:
        env = None
        if self.http is not None:
            self.url_file.unlink(missing_ok=True)  # a URL left by an earlier process is not this one's
            env = {k: v for k, v in os.environ.items() if k != _TOKEN_ENV}
            if self.http.token:
                env[_TOKEN_ENV] = self.http.token
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "support_engine", *self.args],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            env=env,
        )
        self.starts += 1

    def url(self, timeout_s: float = 30.0) -> str:
        """The URL of the engine's HTTP API, once it listens (it writes it to :attr:`url_file`)."""
        if self.http is None:
            raise RuntimeError("this engine serves no HTTP API")
        deadline = time.monotonic() + timeout_s
        while not self.url_file.exists():
            if not self.alive():
                raise HarnessError(f"the engine exited before serving HTTP; its log ends with:\n{self.log_tail()}")
            if time.monotonic() > deadline:
                raise HarnessError(f"the engine did not serve HTTP within {timeout_s:g} s:\n{self.log_tail()}")
            time.sleep(0.05)
        return self.url_file.read_text(encoding="utf-8").strip()

    def pause(self) -> None:
        """SIGSTOP (for fault tests): the process is frozen, its connections idle."""
        os.killpg(self._proc.pid, signal.SIGSTOP)

    def resume(self) -> None:
        """SIGCONT after :meth:`pause`."""
        os.killpg(self._proc.pid, signal.SIGCONT)

    def restart(self) -> None:
        """Start the engine again with the same arguments (same database, same session), once it has exited."""
        if self.alive():
            raise RuntimeError("the engine is still running: stop or kill it first")
        self._log.close()
        self._start()

    @property
    def pid(self) -> int:
        return self._proc.pid

    def alive(self) -> bool:
        return self._proc.poll() is None

    def kill(self) -> None:
        """SIGKILL (for fault tests)."""
        if self.alive():
            os.killpg(self._proc.pid, signal.SIGKILL)
            self._proc.wait()

    def stop(self, timeout_s: float = 10.0) -> int | None:
        """SIGTERM, then SIGKILL after ``timeout_s``; return the exit code."""
        if self.alive():
            try:
                os.killpg(self._proc.pid, signal.SIGTERM)
                self._proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                os.killpg(self._proc.pid, signal.SIGKILL)
                self._proc.wait()
            except ProcessLookupError:
                pass
        self._log.close()
        self.url_file.unlink(missing_ok=True)  # the API is gone with the process
        return self._proc.returncode

    def log_tail(self, lines: int = 20) -> str:
        try:
            text = self.log_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])
