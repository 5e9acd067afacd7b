"""The issue's bad-input list against a real gateway (real SIP over loopback, real RTP legs):
each request gets the spec's HTTP status + statusCode + a message naming the field, and changes nothing."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.gateway import GatewayHandle, GwsClient, gateway_settings, running_gateway
from tests.support.waiting import until


def error(r: httpx.Response, http: int, code: int) -> str:
    assert r.status_code == http, r.text
    body = r.json()
    assert body["statusCode"] == code, body
    assert set(body) == {"statusCode", "statusMessage"}
    return str(body["statusMessage"])


@pytest.fixture
async def gw(tmp_path: Path) -> AsyncIterator[GatewayHandle]:
    async with running_gateway(gateway_settings(tmp_path)) as handle:
        yield handle


@pytest.fixture
async def call_pair(gw: GatewayHandle) -> AsyncIterator[tuple[GwsClient, GwsClient, str, str]]:
    """agent1 has dialled agent2 (real INVITE over loopback); agent2's call is Ringing."""
    async with gw.client("agent1") as a1, gw.client("agent2") as a2:
        await a1.start_session()
        await a2.start_session()
        d1 = await a1.device_id()
        await a1.op(f"/api/v2/me/devices/{d1}/calls", "Dial", destination={"phoneNumber": "1002"})
        ringing = await until(lambda: _calls_in(a2, "Ringing"))
        (c1,) = await a1.calls()
        yield a1, a2, c1["id"], ringing[0]["id"]


async def _calls_in(client: GwsClient, state: str) -> list[dict[str, Any]]:
    return [c for c in await client.calls() if c["state"] == state]


async def test_unknown_operation_missing_parameter_and_malformed_json(gw: GatewayHandle) -> None:
    async with gw.client("agent1") as a1:
        await a1.start_session()
        dev = await a1.device_id()
        before = (await a1.get(f"/api/v2/me/devices/{dev}")).json()["device"]
        msg = error(await a1.post("/api/v2/me/channels/voice", {"operationName": "Dance"}), 400, 2)
        assert "Dance" in msg
        assert "operationName" in error(await a1.post("/api/v2/me/channels/voice", {"state": "Ready"}), 400, 1)
        assert "destination" in error(await a1.post(f"/api/v2/me/devices/{dev}/calls", {"operationName": "Dial"}),
                                      400, 1)
        r = await a1.http.post("/api/v2/me/channels/voice", content=b'{"operationName": "Ready",',
                               headers={"X-CSRF-TOKEN": a1.csrf or "", "Content-Type": "application/json"})
        assert "JSON" in error(r, 400, 10)
        assert (await a1.get(f"/api/v2/me/devices/{dev}")).json()["device"] == before
        assert gw.telephony.stats()["calls"] == 0


async def test_wrong_call_id_and_another_users_call(gw: GatewayHandle, call_pair: Any) -> None:
    a1, a2, caller_call, callee_call = call_pair
    assert "not found" in error(await a2.post("/api/v2/me/calls/NOPE", {"operationName": "Answer"}), 404, 6)
    # agent1 cannot answer, hang up or even see agent2's call: it does not exist for them
    error(await a1.post(f"/api/v2/me/calls/{callee_call}", {"operationName": "Answer"}), 404, 6)
    error(await a1.post(f"/api/v2/me/calls/{callee_call}", {"operationName": "Hangup"}), 404, 6)
    assert (await a1.get(f"/api/v2/me/calls/{callee_call}")).status_code == 404
    async with gw.client("agent3") as a3:
        error(await a3.post(f"/api/v2/me/calls/{caller_call}", {"operationName": "Hangup"}), 404, 6)
        assert (await a3.calls()) == []
    # nothing changed: agent2 still rings, agent1 still dials
    assert [c["state"] for c in await a2.calls()] == ["Ringing"]
    assert [c["state"] for c in await a1.calls()] == ["Dialing"]


async def test_operation_invalid_in_state_gets_2_and_changes_nothing(gw: GatewayHandle, call_pair: Any) -> None:
    a1, a2, caller_call, callee_call = call_pair
    # the caller's call is Dialing: Answer is not a capability of it
    msg = error(await a1.post(f"/api/v2/me/calls/{caller_call}", {"operationName": "Answer"}), 400, 2)
    assert "Answer" in msg and "Dialing" in msg
    error(await a2.post(f"/api/v2/me/calls/{callee_call}", {"operationName": "StopCallRecording"}), 400, 2)
    await a2.op(f"/api/v2/me/calls/{callee_call}", "Answer")
    await until(lambda: _calls_in(a1, "Established"))
    error(await a2.post(f"/api/v2/me/calls/{callee_call}", {"operationName": "Answer"}), 400, 2)
    assert [c["state"] for c in await a2.calls()] == ["Established"]
    await a1.op(f"/api/v2/me/calls/{caller_call}", "Hangup")
    await until(lambda: _no_calls(gw))


async def _no_calls(gw: GatewayHandle) -> bool:
    s = gw.telephony.stats()
    return s["calls"] == 0 and s["rtp_legs"] == 0 and s["sip_sessions"] == 0


async def test_csrf_and_credentials(gw: GatewayHandle) -> None:
    async with gw.client("agent1") as a1:
        await a1.get("/api/v2/me")
        missing = await a1.http.post("/api/v2/me", json={"operationName": "StartContactCenterSession",
                                                         "channels": ["voice"]})
        assert missing.status_code == 403 and "Missing or invalid Csrf token" in missing.text
        wrong = await a1.http.post("/api/v2/me", json={"operationName": "StartContactCenterSession",
                                                       "channels": ["voice"]}, headers={"X-CSRF-TOKEN": "nope"})
        assert wrong.status_code == 403
        dev = await a1.device_id()
        device = (await a1.get(f"/api/v2/me/devices/{dev}")).json()["device"]
        assert device["userState"]["state"] == "LoggedOut"  # the rejected StartContactCenterSession did nothing
    async with httpx.AsyncClient(base_url=gw.base_url, auth=("agent1", "wrong")) as bad:
        r = await bad.get("/api/v2/me")
        assert r.status_code == 403 and r.json() == {"statusCode": 20, "statusMessage": "Access denied"}
        assert "www-authenticate" not in r.headers
    async with httpx.AsyncClient(base_url=gw.base_url) as anon:
        r = await anon.post("/api/v2/me", json={"operationName": "StartContactCenterSession"})
        assert r.status_code == 403 and r.json()["statusCode"] == 20


async def test_voice_api_operations_not_carried_out_yet_say_so(gw: GatewayHandle, call_pair: Any) -> None:
    a1, a2, caller_call, callee_call = call_pair
    for op, extra in (("Hold", {}), ("SendDtmf", {"digits": "1"}), ("MuteCall", {})):
        msg = error(await a2.post(f"/api/v2/me/calls/{callee_call}", {"operationName": op, **extra}), 400, 2)
        assert msg == f"Operation '{op}' is not supported by this gateway yet"
    dev = await a1.device_id()
    msg = error(await a1.post(f"/api/v2/me/devices/{dev}", {"operationName": "DoNotDisturbOn"}), 400, 2)
    assert msg == "Operation 'DoNotDisturbOn' is not supported by this gateway yet"
    # another user's device is still simply not found
    error(await a2.post(f"/api/v2/me/devices/{dev}", {"operationName": "DoNotDisturbOn"}), 404, 6)
    assert [c["state"] for c in await a2.calls()] == ["Ringing"]
