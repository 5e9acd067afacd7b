"""Notifications caused by an operation go out after its HTTP response (spec §1.6, §6 #28), and the
error paths (500, client gone) neither leak a hold nor leak internals.

Driven at the ASGI level so the order of ``send`` calls and bus deliveries is observable exactly.
The failure-injection cases use the fake's ``fail_next`` hook.
"""

from __future__ import annotations

import json
import logging
from collections.abc import MutableMapping
from typing import Any

import pytest

from gateway.telephony.directory import User
from gateway.telephony.errors import (
    AlreadyInUse,
    PermissionDenied,
    ServiceUnavailable,
    TelephonyError,
)
from gateway.telephony.events import DeviceStateChanged

from .conftest import basic, build_app, make_settings
from .fakes import FakeTelephony


class Harness:
    def __init__(self) -> None:
        self.settings = make_settings(csrf=False)
        self.telephony = FakeTelephony(self.settings)
        self.app, self.api = build_app(self.telephony, self.settings)
        self.log: list[tuple[str, Any]] = []
        self.telephony.bus.subscribe(lambda ev: self.log.append(("event", ev.username)))

    async def request(self, method: str, path: str, body: Any = None, *, user: str = "alice",
                      disconnect: bool = False, headers: dict[str, str] | None = None) -> tuple[int, Any]:
        raw = b"" if body is None else json.dumps(body).encode()
        hdrs = {"host": "testserver", "authorization": basic(user), "content-type": "application/json",
                **(headers or {})}
        scope = {
            "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": method,
            "scheme": "http", "path": path, "raw_path": path.encode(), "query_string": b"", "root_path": "",
            "headers": [(k.encode(), v.encode()) for k, v in hdrs.items()],
            "client": ("127.0.0.1", 50000), "server": ("testserver", 80),
        }
        delivered = False

        async def receive() -> dict[str, Any]:
            nonlocal delivered
            if disconnect or delivered:
                return {"type": "http.disconnect"}
            delivered = True
            return {"type": "http.request", "body": raw, "more_body": False}

        status = 0
        chunks: list[bytes] = []

        async def send(message: MutableMapping[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                self.log.append(("start", status))
                self.last_headers = {k.decode().lower(): v.decode() for k, v in message.get("headers", [])}
            elif message["type"] == "http.response.body":
                chunks.append(message.get("body", b""))
                if not message.get("more_body", False):
                    self.log.append(("body-complete", None))

        await self.app(scope, receive, send)
        body_bytes = b"".join(chunks)
        return status, json.loads(body_bytes) if body_bytes else None

    def device_event(self, user: str = "alice") -> DeviceStateChanged:
        return DeviceStateChanged(username=user, device=self.telephony.device_views(self.user(user))[0])

    def user(self, name: str) -> User:
        found = self.telephony.directory.user(name)
        assert found is not None
        return found

    def kinds(self) -> list[str]:
        return [kind for kind, _ in self.log]


START = {"operationName": "StartContactCenterSession", "channels": ["voice"]}


async def test_events_of_an_operation_follow_its_response() -> None:
    h = Harness()
    status, body = await h.request("POST", "/api/v2/me", START)
    assert (status, body) == (200, {"statusCode": 0})
    kinds = h.kinds()
    assert "event" in kinds
    assert kinds.index("body-complete") < kinds.index("event")
    assert kinds[:2] == ["start", "body-complete"]


async def test_the_callers_events_follow_the_response_others_are_not_held() -> None:
    h = Harness()
    await h.request("POST", "/api/v2/me", START)
    await h.request("POST", "/api/v2/me", START, user="bob")
    dev = h.telephony.device_views(h.user("alice"))[0].id
    h.log.clear()
    status, _ = await h.request("POST", f"/api/v2/me/devices/{dev}/calls",
                                {"operationName": "Dial", "destination": "1002"})
    assert status == 200
    # holds are per user: bob's Ringing has no response to wait for; alice's Dialing waits for hers
    assert [entry for entry in h.log if entry != ("event", "bob")] == [
        ("start", 200), ("body-complete", None), ("event", "alice")]
    assert ("event", "bob") in h.log


async def test_without_a_request_events_flow_at_once() -> None:
    h = Harness()
    await h.request("GET", "/api/v2/me")
    h.log.clear()
    h.telephony.bus.publish(h.device_event())
    assert h.kinds() == ["event"]


async def test_unexpected_error_is_a_generic_500_and_releases_the_hold(caplog: pytest.LogCaptureFixture) -> None:
    h = Harness()
    await h.request("POST", "/api/v2/me", START)
    h.log.clear()
    h.telephony.fail_next = (RuntimeError("secret internals"), h.device_event())
    with caplog.at_level(logging.ERROR, logger="gateway.api"):
        status, body = await h.request("POST", "/api/v2/me/channels/voice", {"operationName": "Ready"},
                                       headers={"origin": "http://desktop.example"})
    assert (status, body) == (500, {"statusCode": 4, "statusMessage": "Internal error"})
    assert h.last_headers["access-control-allow-origin"] == "http://desktop.example"
    assert h.kinds() == ["start", "body-complete", "event"]
    logged = [r.exc_info[1] for r in caplog.records if r.levelno == logging.ERROR and r.exc_info]
    assert any(isinstance(e, RuntimeError) and str(e) == "secret internals" for e in logged)
    h.log.clear()
    h.telephony.bus.publish(h.device_event())
    assert h.kinds() == ["event"]  # no hold left behind


async def test_client_disconnect_releases_the_hold() -> None:
    h = Harness()
    await h.request("POST", "/api/v2/me", START)
    h.log.clear()
    status, _ = await h.request("POST", "/api/v2/me/channels/voice", {"operationName": "Ready"}, disconnect=True)
    assert status == 0  # nothing could be sent
    h.telephony.bus.publish(h.device_event())
    assert h.kinds() == ["event"]


@pytest.mark.parametrize("exc,http,code", [
    (ServiceUnavailable("Voice service is not available at this time"), 503, 4),
    (AlreadyInUse("Device '1001' is in use"), 409, 19),
    (PermissionDenied("Supervisor role required"), 403, 5),
    (TelephonyError("Device '5001' is not registered."), 500, 4),
])
async def test_telephony_errors_map_to_status_codes(exc: Exception, http: int, code: int) -> None:
    h = Harness()
    await h.request("POST", "/api/v2/me", START)
    h.telephony.fail_next = (exc, None)
    status, body = await h.request("POST", "/api/v2/me/channels/voice", {"operationName": "NotReady"})
    assert (status, body) == (http, {"statusCode": code, "statusMessage": str(exc)})
