"""Fixtures for the HTTP tests: an app built from ``build_api`` over a telephony, and agents.

The telephony comes from the ``telephony_factory`` fixture (the in-memory fake by default); a run
against the real facade overrides that one fixture. Tests assert HTTP/JSON behaviour only.
"""

from __future__ import annotations

import base64
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.testclient import TestClient

from gateway.api.routes import Api, build_api
from gateway.config import DeviceSettings, HttpSettings, Settings, UserSettings

from .fakes import FakeTelephony

PASSWORDS = {"alice": "alice-pw", "bob": "bob-pw", "sue": "sue-pw"}
NUMBERS = {"alice": "1001", "bob": "1002", "sue": "1003"}


def make_settings(**http: Any) -> Settings:
    return Settings(
        http=HttpSettings(**http),
        users=[
            UserSettings(username="alice", password=PASSWORDS["alice"], first_name="Alice", last_name="Archer",
                         email="alice@example.test", devices=["1001"]),
            UserSettings(username="bob", password=PASSWORDS["bob"], first_name="Bob", devices=["1002"]),
            UserSettings(username="sue", password=PASSWORDS["sue"], roles=["agent", "supervisor"], devices=["1003"]),
        ],
        devices=[DeviceSettings(number=n, sip_password="", wrap_up_seconds=0) for n in ("1001", "1002", "1003")],
    )


def basic(username: str, password: str | None = None) -> str:
    pw = PASSWORDS[username] if password is None else password
    return "Basic " + base64.b64encode(f"{username}:{pw}".encode()).decode()


def build_app(telephony: Any, settings: Settings, *,
              clock: Callable[[], float] = time.monotonic) -> tuple[Starlette, Api]:
    """What app.py does, plus a public /health and a stand-in CometD endpoint that uses the
    API's ``authenticate`` callable the way the real CometD server does."""
    api = build_api(telephony, settings, clock=clock)

    async def health(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def cometd(request: Request) -> Response:
        user = api.authenticate(request)
        return JSONResponse([{"channel": "/meta/handshake", "successful": user is not None,
                              "user": user.username if user else None}])

    routes = [
        *api.routes,
        Route("/health", health),
        Route("/api/v2/notifications", cometd, methods=["GET", "POST"]),
        Route("/api/v2/notifications/{kind:path}", cometd, methods=["GET", "POST"]),
    ]
    app = Starlette(routes=routes, middleware=api.middleware, exception_handlers=api.exception_handlers)
    return app, api


class Agent:
    """One browser-like client: logs in with Basic once, then lives on the cookie + CSRF token."""

    def __init__(self, app: Starlette, username: str, base_url: str = "http://testserver") -> None:
        self.username = username
        self.number = NUMBERS[username]
        self.http = TestClient(app, base_url=base_url)
        self.token: str | None = None

    def login(self) -> httpx.Response:
        r = self.http.get("/api/v2/me", headers={"Authorization": basic(self.username)})
        assert r.status_code == 200, r.text
        self.token = r.headers.get("X-CSRF-TOKEN")
        return r

    def get(self, path: str, **kw: Any) -> httpx.Response:
        return self.http.get(path, **kw)

    def post(self, path: str, body: Any = None, *, content: bytes | str | None = None,
             headers: dict[str, str] | None = None) -> httpx.Response:
        h = {"Content-Type": "application/json"}
        if self.token:
            h["X-CSRF-TOKEN"] = self.token
        h.update(headers or {})
        if content is not None:
            return self.http.post(path, content=content, headers=h)
        return self.http.post(path, json=body, headers=h)

    def op(self, path: str, operation: str, **params: Any) -> httpx.Response:
        return self.post(path, {"operationName": operation, **params})

    def start_session(self) -> None:
        r = self.op("/api/v2/me", "StartContactCenterSession", channels=["voice"])
        assert r.json() == {"statusCode": 0}, r.text

    @property
    def device_id(self) -> str:
        devices = self.get("/api/v2/me/devices?fields=*").json()["devices"]
        return str(devices[0]["id"])

    def device(self) -> dict[str, Any]:
        r = self.get(f"/api/v2/me/devices/{self.device_id}")
        assert r.status_code == 200, r.text
        return dict(r.json()["device"])

    def calls(self) -> list[dict[str, Any]]:
        return list(self.get("/api/v2/me/calls?fields=*").json()["calls"])

    def wait_for_call(self, state: str, timeout: float = 5.0) -> dict[str, Any]:
        """Poll (deadline, real condition) until a call in ``state`` is listed: the fake is
        synchronous, real telephony reaches the state after SIP round trips."""
        deadline = time.monotonic() + timeout
        while True:
            for call in self.calls():
                if call["state"] == state:
                    return call
            if time.monotonic() > deadline:
                raise AssertionError(f"{self.username}: no call in state {state}; calls: {self.calls()}")
            time.sleep(0.01)

    def dial(self, number: str) -> dict[str, Any]:
        r = self.op(f"/api/v2/me/devices/{self.device_id}/calls", "Dial", destination={"phoneNumber": number})
        assert r.json() == {"statusCode": 0}, r.text
        return self.wait_for_call("Dialing")


@pytest.fixture
def telephony_factory() -> Callable[[Settings], Any]:
    return FakeTelephony


@pytest.fixture
def settings() -> Settings:
    return make_settings()


@pytest.fixture
def telephony(telephony_factory: Callable[[Settings], Any], settings: Settings) -> Any:
    return telephony_factory(settings)


@pytest.fixture
def app(telephony: Any, settings: Settings) -> Starlette:
    return build_app(telephony, settings)[0]


@pytest.fixture
def client(app: Starlette) -> Iterator[TestClient]:
    yield TestClient(app)


@pytest.fixture
def agent(app: Starlette) -> Callable[[str], Agent]:
    """``agent("alice")``: logged in (cookie + token) and in a contact-center session."""

    def make(username: str) -> Agent:
        a = Agent(app, username)
        a.login()
        a.start_session()
        return a

    return make
