"""Run a real gateway (uvicorn + SIP + RTP on 127.0.0.1, free ports) inside the test's event loop,
and talk to it like a GWS client does (Basic auth, JSESSIONID cookie, CSRF token)."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import uvicorn

from gateway.app import create_app
from gateway.config import Settings, load_settings
from gateway.telephony.service import Telephony

__all__ = ["GatewayHandle", "GwsClient", "gateway_settings", "running_gateway"]

DEFAULT_DEVICES = [
    {"number": n, "sip_user": n, "sip_password": f"pw{n}", "display_name": f"Line {n}"}
    for n in ("1001", "1002", "1003", "1004")
]
DEFAULT_USERS = [
    {"username": "agent1", "password": "agent1pw", "roles": ["agent"], "devices": ["1001"]},
    {"username": "agent2", "password": "agent2pw", "roles": ["agent"], "devices": ["1002"]},
    {"username": "agent3", "password": "agent3pw", "roles": ["agent"], "devices": ["1003"]},
    {"username": "supervisor1", "password": "supervisor1pw", "roles": ["agent", "supervisor"], "devices": ["1004"]},
]


def gateway_settings(tmp: Path, *, devices: list[dict[str, Any]] | None = None,
                     users: list[dict[str, Any]] | None = None, sip: dict[str, Any] | None = None,
                     http: dict[str, Any] | None = None, media: dict[str, Any] | None = None) -> Settings:
    """Embedded defaults, but every port free (0) and every file under ``tmp``."""
    overrides: dict[str, Any] = {
        "http": {"host": "127.0.0.1", "port": 0, **(http or {})},
        "sip": {"host": "127.0.0.1", "port": 0, **(sip or {})},
        "media": {"rtp_port_min": 0, "rtp_port_max": 0, "recordings_dir": str(tmp / "recordings"),
                  "audio_dir": str(tmp / "audio"), **(media or {})},
        "storage": {"data_dir": str(tmp / "data")},
        "devices": devices if devices is not None else DEFAULT_DEVICES,
        "users": users if users is not None else DEFAULT_USERS,
    }
    return load_settings(None, env={}, overrides=overrides)


@dataclass
class GatewayHandle:
    settings: Settings
    app: Any
    http_port: int

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def telephony(self) -> Telephony:
        return self.app.state.telephony  # type: ignore[no-any-return]

    @property
    def sip_port(self) -> int:
        return self.telephony.sip_ports["udp"]

    def line_uri(self, number: str) -> str:
        return f"sip:{number}@127.0.0.1:{self.sip_port}"

    def client(self, username: str, password: str | None = None) -> GwsClient:
        return GwsClient(self.base_url, username, password or f"{username}pw")


@contextlib.asynccontextmanager
async def running_gateway(settings: Settings) -> AsyncIterator[GatewayHandle]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)  # so asyncio sets TCP_NODELAY
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    sock.setblocking(False)
    port = sock.getsockname()[1]
    app = create_app(settings, http_port=port)
    server = uvicorn.Server(uvicorn.Config(app, log_config=None, lifespan="on", ws="websockets-sansio",
                                           timeout_graceful_shutdown=2))
    server.install_signal_handlers = lambda: None  # type: ignore[method-assign]
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        while not server.started:
            if task.done():
                task.result()
                raise RuntimeError("gateway exited during startup")
            await asyncio.sleep(0.01)
        yield GatewayHandle(settings=settings, app=app, http_port=port)
    finally:
        server.should_exit = True
        with contextlib.suppress(Exception):
            await asyncio.wait_for(task, 15)
        sock.close()


class GwsClient:
    """A GWS Voice API client the way agent desktops behave: Basic auth, cookie, CSRF token."""

    def __init__(self, base_url: str, username: str, password: str) -> None:
        self.username = username
        self.http = httpx.AsyncClient(base_url=base_url, auth=(username, password), timeout=10)
        self.csrf: str | None = None

    async def __aenter__(self) -> GwsClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.http.aclose()

    async def get(self, path: str, **params: Any) -> httpx.Response:
        r = await self.http.get(path, params=params or None)
        token = r.headers.get("X-CSRF-TOKEN")
        if token:
            self.csrf = token
        return r

    async def post(self, path: str, body: dict[str, Any]) -> httpx.Response:
        if self.csrf is None:
            await self.get("/api/v2/me")
        headers = {"X-CSRF-TOKEN": self.csrf or ""}
        return await self.http.post(path, json=body, headers=headers)

    async def op(self, path: str, operation: str, **params: Any) -> dict[str, Any]:
        """POST an operation and require success."""
        r = await self.post(path, {"operationName": operation, **params})
        assert r.status_code == 200, f"{operation} on {path}: HTTP {r.status_code} {r.text}"
        body = r.json()
        assert body.get("statusCode") == 0, f"{operation} on {path}: {body}"
        return body  # type: ignore[no-any-return]

    async def start_session(self) -> None:
        await self.op("/api/v2/me", "StartContactCenterSession", channels=["voice"])

    async def device_id(self, index: int = 0) -> str:
        r = await self.get("/api/v2/me/devices", fields="*")
        return r.json()["devices"][index]["id"]  # type: ignore[no-any-return]

    async def calls(self) -> list[dict[str, Any]]:
        r = await self.get("/api/v2/me/calls", fields="*")
        assert r.status_code == 200, r.text
        return r.json()["calls"]  # type: ignore[no-any-return]
