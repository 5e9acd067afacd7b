"""SIPp load into an auto-answering line: 200 calls at 20 calls/s, then nothing may be left behind.

Issue 2 proof "SIPp": SIPp (scenarios/uac_pcmu.xml) offers PCMU, takes 100/180/200, ACKs, holds the
call for 1 s and sends BYE.  Run with ``-rtp_echo`` it returns every RTP packet the gateway plays to it,
so each call has RTP in and out.  Afterwards every counter of GET /health "stats" (calls, SIP
sessions/dialogs/transactions, RTP legs and ports) and the SIP core's timers return to 0.

Transactions outlive their calls on purpose: over UDP a server non-INVITE transaction waits Timer J
(64*T1, RFC 3261 §17.2.2), a client one Timer K (T4, §17.1.2.2), an accepted INVITE Timer L (64*T1,
RFC 6026 §7.1).  The gateway runs with T1 = 50 ms / T4 = 250 ms ([sip] t1/t4) so they drain ~3.2 s after
the last BYE instead of 32 s; the test polls /health for that, it does not sleep.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.peers.sipp import SippResult
from tests.support.gateway import DEFAULT_DEVICES, GatewayHandle, gateway_settings, running_gateway
from tests.support.waiting import until

pytestmark = pytest.mark.e2e

LINE = "1001"
#: short RFC 3261 Table 4 timers so UDP transactions drain within seconds (Timer J/L = 64*T1, K = T4)
FAST_TIMERS = {"t1": 0.05, "t2": 0.4, "t4": 0.25}
DRAINED = {"calls": 0, "sip_sessions": 0, "sip_dialogs": 0, "sip_transactions": 0, "rtp_legs": 0, "rtp_ports": 0}


def settings(tmp_path: Path) -> Any:
    devices = [{**d, "auto_answer": True, "audio_source": "tone:1000"} if d["number"] == LINE else d
               for d in DEFAULT_DEVICES]
    return gateway_settings(tmp_path, devices=devices, sip=dict(FAST_TIMERS))


async def health_stats(gw: GatewayHandle) -> dict[str, int]:
    async with httpx.AsyncClient(base_url=gw.base_url, timeout=10) as http:
        r = await http.get("/health")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["status"] == "ok", body
    return body["stats"]  # type: ignore[no-any-return]


def per_call(stats: dict[str, int]) -> dict[str, int]:
    return {k: stats[k] for k in DRAINED}


async def wait_drained(gw: GatewayHandle, timeout: float = 30.0) -> dict[str, int]:
    """Poll /health until every per-call counter is 0 (or the deadline passes); the last stats."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        stats = await health_stats(gw)
        if per_call(stats) == DRAINED or loop.time() > deadline:
            return stats
        await asyncio.sleep(0.1)


async def run_load(gw: GatewayHandle, sipp_factory: Any, *, calls: int, rate: float, hold_ms: int,
                   transport: str) -> dict[str, int]:
    """Drive SIPp into LINE, require every call to succeed, and return the drained /health stats."""
    before = await health_stats(gw)
    assert per_call(before) == DRAINED, before
    port = gw.telephony.sip_ports["udp" if transport.startswith("u") else "tcp"]
    uac = sipp_factory("uac_pcmu", remote=f"127.0.0.1:{port}", service=LINE, calls=calls, rate=rate,
                       limit=50, pause_ms=hold_ms, transport=transport, timeout_s=60, extra_args=["-rtp_echo"])
    result: SippResult = await uac.run()
    assert (result.returncode, result.created, result.successful, result.failed) == (0, calls, calls, 0), (
        result.describe())

    after = await wait_drained(gw)
    assert per_call(after) == DRAINED, after
    sip = gw.telephony.sip.stats()
    assert (sip["sip_timers"], sip["core_errors"]) == (0, 0), sip
    assert gw.telephony.media.stats()["legs_started"] == 0  # no leg left on the media clock
    assert not gw.telephony._sessions  # no SIP session id still mapped to a call
    # media really flowed on every call: our tone out, SIPp's echo of it back in (~50 packets/s each way)
    assert after["rtp_packets_out"] - before["rtp_packets_out"] > calls * hold_ms / 20 * 0.8, after
    assert after["rtp_packets_in"] - before["rtp_packets_in"] > calls * hold_ms / 20 * 0.5, after
    return after


async def test_sipp_200_calls_at_20cps_into_auto_answer_line(tmp_path: Path, sipp_factory: Any) -> None:
    async with running_gateway(settings(tmp_path)) as gw:
        await run_load(gw, sipp_factory, calls=200, rate=20, hold_ms=1000, transport="u1")


async def test_sipp_calls_over_one_tcp_connection_leave_nothing_behind(tmp_path: Path, sipp_factory: Any) -> None:
    """The same over TCP (all calls on one connection, RFC 3261 §18.3 framing); the connection goes too."""
    async with running_gateway(settings(tmp_path)) as gw:
        await run_load(gw, sipp_factory, calls=40, rate=20, hold_ms=500, transport="t1")

        def tcp_connections() -> int:
            return int(gw.telephony.sip.stats()["tcp_connections"])

        # SIPp exited: its connection is closed and forgotten
        await until(lambda: tcp_connections() == 0, "SIPp's TCP connection to be gone")
