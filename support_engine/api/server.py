"""The app served by uvicorn on a thread of the engine process.

The server thread installs no signal handlers (uvicorn only does so on the main thread), so
SIGTERM still reaches the engine, which stops the server on its way out.
"""

from __future__ import annotations

import logging
import math
import socket
import threading

import uvicorn
from fastapi import FastAPI

__all__ = ["HttpApi"]

log = logging.getLogger("sot.engine")
_STOP_GRACE_S = 3.0


def _bind(host: str, port: int) -> socket.socket:
    """A listening socket on ``host:port`` (0: any free port), so that a busy port fails at start."""
    family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(128)
    except OSError:
        sock.close()
        raise
    return sock


class HttpApi:
    """``app`` served by uvicorn on a daemon thread; :meth:`stop` ends it (the engine calls it on its way out).

    The socket is bound in the constructor, which raises :class:`OSError` if it cannot be.
    """

    def __init__(self, app: FastAPI, *, host: str = "127.0.0.1", port: int = 0) -> None:
        self._sock = _bind(host, port)
        bound_host, self.port = self._sock.getsockname()[:2]
        self.url = f"http://{f'[{bound_host}]' if ':' in bound_host else bound_host}:{self.port}"
        config = uvicorn.Config(
            app,
            log_config=None,  # logs go through the engine's handlers
            access_log=False,
            lifespan="off",
            server_header=False,
            timeout_graceful_shutdown=math.ceil(_STOP_GRACE_S),
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._serve, name="sot-http", daemon=True)

    def _serve(self) -> None:
        try:
            self._server.run(sockets=[self._sock])
        except BaseException:  # the engine goes on without its API; say why
            log.exception("the HTTP API stopped")

    def start(self) -> None:
        self._thread.start()
        log.info("HTTP API on %s", self.url, extra={"http_url": self.url})

    def stop(self) -> None:
        """Ask the server to finish; force it after a grace period."""
        self._server.should_exit = True
        if self._thread.ident is None:  # never started
            self._sock.close()
            return
        self._thread.join(_STOP_GRACE_S + 1)
        if self._thread.is_alive():
            self._server.force_exit = True
            self._thread.join(_STOP_GRACE_S)
        self._sock.close()
