"""The HTTP API's bearer token, and the engine's refusal to serve beyond loopback without one.

Requests go straight into the ASGI app (no socket, no HTTP client library)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import MutableMapping
from pathlib import Path
from typing import Any

import pytest
import typer
from fastapi import FastAPI

from support_engine.__main__ import _broker, _check_http_host
from support_engine.http_api import create_app
from support_engine.metrics import EngineMetrics
from support_engine.storage import Storage

TOKEN = "t0ken-with-enough-entropy"


@pytest.fixture
def database(tmp_path: Path) -> str:
    where = str(tmp_path / "engine.sqlite")
    Storage(where).close()
    return where


class Answer:
    def __init__(self, status_code: int, headers: dict[str, str], body: bytes) -> None:
        self.status_code, self.headers, self.body = status_code, headers, body

    def json(self) -> Any:
        return json.loads(self.body)


class Client:
    """GET requests (``path?query``) into an ASGI app, answered in this thread."""

    def __init__(self, app: FastAPI) -> None:
        self.app = app

    def get(self, path: str, headers: dict[str, str] | None = None) -> Answer:
        return asyncio.run(self._get(path, headers or {}))

    async def _get(self, target: str, headers: dict[str, str]) -> Answer:
        path, _, query = target.partition("?")
        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": "GET",
            "scheme": "http",
            "path": path,
            "raw_path": path.encode(),
            "query_string": query.encode(),
            "root_path": "",
            "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()],
            "client": ("127.0.0.1", 50000),
            "server": ("127.0.0.1", 80),
        }
        sent: list[MutableMapping[str, Any]] = []
        asked: list[bool] = []
        done = asyncio.Event()

        async def receive() -> dict[str, Any]:
            if not asked:  # the request, once; then the client stays until the whole answer is in
                asked.append(True)
                return {"type": "http.request", "body": b"", "more_body": False}
            await done.wait()
            return {"type": "http.disconnect"}

        async def send(message: MutableMapping[str, Any]) -> None:
            sent.append(message)
            if message["type"] == "http.response.body" and not message.get("more_body", False):
                done.set()

        await self.app(scope, receive, send)
        start = next(m for m in sent if m["type"] == "http.response.start")
        body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
        return Answer(start["status"], {k.decode(): v.decode() for k, v in start["headers"]}, body)


def client(database: str, token: str | None) -> Client:
    return Client(create_app(database, EngineMetrics(clock="event"), connected=lambda: True, token=token))


@pytest.mark.parametrize(
    "path",
    [
        "/cases",
        "/devices",
        "/kpis",
        "/clock",
        "/metrics",
        "/openapi.json",
        "/no-such-route",
        "/",
        "/console/cases",
        "/console/static/console.js",
        "/docs",
        "/docs/assets/swagger-ui-bundle.js",
    ],
)
def test_every_route_needs_the_token(database: str, path: str) -> None:
    api = client(database, TOKEN)
    assert api.get(path).status_code == 401
    assert api.get(path, headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert api.get(path, headers={"Authorization": TOKEN}).status_code == 401
    refused = api.get(path)
    assert refused.headers["www-authenticate"] == "Bearer" and refused.json()["detail"]
    assert api.get(path, headers={"Authorization": f"Bearer {TOKEN}"}).status_code != 401


def test_healthz_answers_without_the_token(database: str) -> None:
    assert client(database, TOKEN).get("/healthz").status_code == 200


def test_without_a_token_the_api_is_open_as_before(database: str) -> None:
    api = client(database, None)
    assert api.get("/cases").json() == {"items": [], "total": 0, "offset": 0, "limit": 100, "next_offset": None}
    assert api.get("/console/cases").status_code == 200


def test_with_the_token_the_console_and_its_files_are_served(database: str) -> None:
    api = client(database, TOKEN)
    given = {"Authorization": f"Bearer {TOKEN}"}
    page = api.get("/console/cases", headers=given)
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    script = api.get("/console/static/console.js", headers=given)
    assert script.status_code == 200 and b"data-live" in script.body
    assert api.get("/docs/assets/swagger-ui.css", headers=given).status_code == 200


def test_an_empty_token_is_refused(database: str) -> None:
    with pytest.raises(ValueError, match="empty"):
        client(database, "")


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.168.1.10", "engine.example.com"])
def test_beyond_loopback_needs_a_token(host: str) -> None:
    with pytest.raises(typer.BadParameter, match="not a loopback address"):
        _check_http_host(host, None)
    _check_http_host(host, TOKEN)


@pytest.mark.parametrize("host", ["127.0.0.1", "::1", "localhost"])
def test_loopback_needs_no_token(host: str) -> None:
    _check_http_host(host, None)


def test_the_engine_reads_its_broker_login(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ca, secret = tmp_path / "ca.crt", tmp_path / "engine.password"
    ca.write_text("x")
    secret.write_text("from-file\n")
    host, port, login = _broker(f"mqtts://engine@127.0.0.1?ca={ca}", secret)
    assert (host, port, login.username, login.password, login.tls, login.ca) == (
        "127.0.0.1",
        8883,
        "engine",
        "from-file",
        True,
        ca,
    )
    monkeypatch.setenv("SOT_MQTT_PASSWORD", "from-env")
    assert _broker("mqtt://engine@127.0.0.1:1884")[2].password == "from-env"
    assert _broker("mqtt://engine:in-url@127.0.0.1:1884")[2].password == "in-url"
    for bad in ("mqtt://127.0.0.1:99999", "mqtt://127.0.0.1?ca=x", f"mqtts://h?cert={ca}", "tcp://h"):
        with pytest.raises(typer.BadParameter):
            _broker(bad)
