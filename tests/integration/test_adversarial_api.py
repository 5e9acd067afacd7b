"""Hostile Dial destinations against a real gateway (real SIP over loopback, real RTP port pool).

Found by attacking the gateway, each first failed: a SIP URI carrying header fields (``?X-Evil=1``) or a
``method`` parameter was dialled with that in the Request-URI (RFC 3261 §19.1.1 forbids both there; our own
line answered 400), and a destination of tens of kilobytes was accepted and then sat in Dialing until
Timer B because its INVITE could not be sent, while a long non-number was echoed whole in the error.
Now each gets 400 + statusCode 10 naming ``destination`` at once, and nothing is set up: no call, no
SIP session or transaction, no RTP port.

Held, and kept because nothing else covers it on a whole gateway: a CometD handshake flood.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from tests.support.gateway import GatewayHandle, gateway_settings, running_gateway

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
