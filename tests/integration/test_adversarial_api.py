"""Hostile Dial destinations against a real gateway (real SIP over loopback, real RTP port pool).

Found by attacking the gateway, each first failed: a SIP URI carrying header fields (``?X-Evil=1``) or a
``method`` parameter was dialled with that in the Request-URI (RFC 3261 §19.1.1 forbids both there; our own
line answered 400), and a destination of tens of kilobytes was accepted and then sat in Dialing until
Timer B because its INVITE could not be sent, while a long non-number was echoed whole in the error.
Now each gets 400 + statusCode 10 naming ``destination`` at once, and nothing is set up: no call, no
SIP session or transaction, no RTP port.

Held, and kept because nothing else covers it on a whole gateway: a CometD handshake flood; a Dial storm
into an RTP port range with room for one call.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.peers.ports import free_port
from tests.support.gateway import DEFAULT_DEVICES, GatewayHandle, GwsClient, gateway_settings, running_gateway
from tests.support.waiting import until

NOTHING = {"calls": 0, "sip_sessions": 0, "sip_transactions": 0, "sip_dialogs": 0, "rtp_legs": 0, "rtp_ports": 0}


@pytest.fixture
async def gw(tmp_path: Path) -> AsyncIterator[GatewayHandle]:
    async with running_gateway(gateway_settings(tmp_path)) as handle:
        yield handle


@pytest.mark.parametrize("destination", [
    "sip:1002@127.0.0.1:{port}?X-Evil=1",
    "sip:1002@127.0.0.1:{port}?Call-ID=evil&Max-Forwards=1",
    "sip:1002@127.0.0.1:{port};method=REGISTER",
    "sip:" + "a" * 70000 + "@127.0.0.1:{port}",
    "9" * 5000,
], ids=["uri-header", "uri-headers-hijack", "method-param", "huge-uri", "huge-number"])
async def test_dial_destination_that_cannot_be_sent_is_refused_at_once(gw: GatewayHandle, destination: str) -> None:
    dest = destination.replace("{port}", str(gw.sip_port))
    async with gw.client("agent1") as agent1:
        await agent1.start_session()
        dev = await agent1.device_id()
        r = await agent1.post(f"/api/v2/me/devices/{dev}/calls", {"operationName": "Dial", "destination": dest})
        assert r.status_code == 400, r.text[:300]
        body = r.json()
        assert body["statusCode"] == 10 and "'destination'" in body["statusMessage"], body
        assert len(body["statusMessage"]) < 300  # the input is not echoed whole
        assert await agent1.calls() == []
    assert {k: gw.telephony.stats()[k] for k in NOTHING} == NOTHING


async def test_cometd_handshake_flood_is_bounded_per_user_and_hurts_no_one_else(gw: GatewayHandle) -> None:
    """Held: a user handshaking in a loop keeps at most max_clients_per_user clients (the oldest go);
    another user's client keeps its subscription and gets its events."""
    url = "/api/v2/notifications"
    handshake = [{"channel": "/meta/handshake", "version": "1.0", "supportedConnectionTypes": ["long-polling"]}]
    cometd = gw.app.state.cometd
    async with httpx.AsyncClient(base_url=gw.base_url, auth=("agent1", "agent1pw"), timeout=10) as flooder, \
            httpx.AsyncClient(base_url=gw.base_url, auth=("agent2", "agent2pw"), timeout=10) as victim:
        cid = (await victim.post(url, json=handshake)).json()[0]["clientId"]
        for msg in ({"channel": "/meta/subscribe", "clientId": cid, "subscription": "/v2/me/devices"},
                    {"channel": "/meta/connect", "clientId": cid, "connectionType": "long-polling"}):
            assert (await victim.post(url, json=[msg])).json()[0]["successful"] is True

        replies = await asyncio.gather(*(flooder.post(url, json=handshake) for _ in range(300)))
        assert all(r.status_code == 200 and r.json()[0]["successful"] for r in replies)
        assert cometd.client_count("agent1") == cometd.max_clients_per_user
        assert cometd.client_count("agent2") == 1

        async with gw.client("agent2") as agent2:
            await agent2.start_session()
        connect = [{"channel": "/meta/connect", "clientId": cid, "connectionType": "long-polling"}]
        got = (await victim.post(url, json=connect)).json()
        assert [m["channel"] for m in got] == ["/v2/me/devices", "/meta/connect"], got
        assert got[0]["data"]["messageType"] == "DeviceStateChangeMessage"


async def test_dial_storm_into_a_tiny_rtp_port_range_fails_clearly_and_leaks_nothing(tmp_path: Path) -> None:
    """Held: with three RTP ports, concurrent Dials to an auto-answering line get either 200 or HTTP 503 +
    statusCode 4 naming the port range; those whose callee found no port end Released; after Hangup every
    port, call, session and transaction is gone and a new call works."""
    base = free_port(udp=True, tcp=False, span=6)
    base += base & 1  # RTP ports are even: base, base+2, base+4
    devices = [{**d, "auto_answer": True} if d["number"] == "1002" else d for d in DEFAULT_DEVICES]
    settings = gateway_settings(tmp_path, devices=devices, media={"rtp_port_min": base, "rtp_port_max": base + 5},
                                sip={"t1": 0.02, "t2": 0.16, "t4": 0.1})
    async with running_gateway(settings) as gw, gw.client("agent1") as agent1:
        await agent1.start_session()
        url = f"/api/v2/me/devices/{await agent1.device_id()}/calls"
        replies = await asyncio.gather(*(agent1.post(url, {"operationName": "Dial", "destination": "1002"})
                                         for _ in range(10)))
        refused = [r.json() for r in replies if r.status_code == 503]
        assert {r.status_code for r in replies} == {200, 503}, [r.text for r in replies]
        assert all(b["statusCode"] == 4 and f"{base}-{base + 5}" in b["statusMessage"] for b in refused), refused

        async def settled() -> tuple[list[dict[str, Any]]] | None:
            calls = await agent1.calls()
            return (calls,) if all(c["state"] == "Established" for c in calls) else None

        (calls,) = await until(settled, "every Dial either Established or Released")
        assert len(calls) <= 1  # three ports hold at most one internal call (two legs)
        for call in calls:
            await agent1.op(f"/api/v2/me/calls/{call['id']}", "Hangup")
        # the refused calls' INVITE client transactions wait out Timer D (32 s, RFC 3261 §17.1.1.2): not a leak
        settled_state = {k: v for k, v in NOTHING.items() if k != "sip_transactions"}
        await until(lambda: {k: gw.telephony.stats()[k] for k in settled_state} == settled_state,
                    f"back to {settled_state}")
        await agent1.op(url, "Dial", destination="1002")
        await until(lambda: _established(agent1), "a new call Established once the ports are free")


async def _established(agent: GwsClient) -> bool:
    return [c["state"] for c in await agent.calls()] == ["Established"]
