"""Hostile and broken peers against a real gateway: what a careless or malicious SIP peer can do to it.

Each test plays the peer with a raw UDP socket (so it can misbehave on purpose: never ACK, BYE before ACK,
offer media it cannot be sent, send one INVITE along two paths) and checks the gateway's answer on the wire,
the call state the agent sees through the Voice API, and that nothing is left behind (calls, sessions,
transactions, dialogs, RTP ports).  Found by attacking the gateway; each first failed:

* an offer whose connection address is a host name or of the other address family was rung and answered,
  and the Answer then failed with HTTP 500 after the 200 OK had gone out; now it gets 488 with warn-code
  301 (RFC 3261 §20.43), before and during a call (re-INVITE);
* one INVITE arriving twice with different branches (a loop, RFC 3261 §8.2.2.2) rang the line twice;
* an INVITE's Expires was ignored (RFC 3261 §13.3.1): a caller gone without CANCEL left the line ringing;
* TCP connections to the SIP port that never send anything were all kept: at the open-file limit the
  gateway could accept no HTTP client and bind no RTP port (``voice-gateway serve`` under prlimit);
* RTP from a stranger took a call over once its peer had been silent for a second ("RTP bleed"): the
  agent's audio went to the stranger;
* a recording that could not be written (file size limit / disk full) raised on every media tick, and
  Hangup then got HTTP 500, leaving a Released call on the line and its RTP port open.

Attacks that held keep a compact test here when nothing else covers them at gateway level: hostile requests
(unknown number, only unsupported codecs, Require, CSeq mismatch, BYE/CANCEL outside any dialog,
Max-Forwards 0); a peer that never ACKs our 200 or sends BYE before / right behind its ACK;
``voice-gateway serve`` killed with SIGKILL in the middle of a recorded call leaves a WAV that the next
start repairs.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import socket
import sys
import uuid
import wave
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.peers.audio import assert_tone, read_wav_info
from tests.e2e.peers.process import ManagedProcess
from tests.support.gateway import DEFAULT_DEVICES, GatewayHandle, GwsClient, gateway_settings, running_gateway
from tests.support.waiting import until

pytestmark = pytest.mark.e2e

#: short RFC 3261 Table 4 timers: Timer H/J/K/L and the 2xx give-up (64*T1) in 1.3 s
FAST_TIMERS = {"t1": 0.02, "t2": 0.16, "t4": 0.1}
AUTO = "1003"  # auto-answers with a 1000 Hz tone
DEVICES = [{**d, "auto_answer": True, "audio_source": "tone:1000"} if d["number"] == AUTO else d
           for d in DEFAULT_DEVICES]
DRAINED = {"calls": 0, "sip_sessions": 0, "sip_transactions": 0, "sip_dialogs": 0, "rtp_legs": 0, "rtp_ports": 0}

_STATUS = re.compile(rb"^SIP/2\.0 (\d{3}) ")


def status_of(msg: bytes) -> int | None:
    m = _STATUS.match(msg)
    return int(m.group(1)) if m else None


def header(msg: bytes, name: str) -> str | None:
    m = re.search(rb"^" + re.escape(name.encode()) + rb"[ \t]*:[ \t]*(.*?)\r?$", msg, re.I | re.M)
    return m.group(1).decode() if m else None


def sdp(rtp_port: int, connection: str = "IN IP4 127.0.0.1") -> bytes:
    return (f"v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc={connection}\r\nt=0 0\r\n"
            f"m=audio {rtp_port} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n").encode()


class RawPeer:
    """A SIP UA on a raw UDP socket that does exactly what the test says, nothing more."""

    def __init__(self, gw_port: int) -> None:
        self.gw_port = gw_port
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.setblocking(False)
        self.port: int = self.sock.getsockname()[1]
        self.call_id = f"{uuid.uuid4().hex}@adversary"
        self.tag = uuid.uuid4().hex[:8]
        self.to_tag: str | None = None

    def close(self) -> None:
        self.sock.close()

    def request(self, method: str, number: str, *, cseq: int = 1, branch: str | None = None,
                body: bytes = b"", in_dialog: bool = False) -> bytes:
        to = f"<sip:{number}@127.0.0.1:{self.gw_port}>" + (f";tag={self.to_tag}" if in_dialog else "")
        head = (f"{method} sip:{number}@127.0.0.1:{self.gw_port} SIP/2.0\r\n"
                f"Via: SIP/2.0/UDP 127.0.0.1:{self.port};branch={branch or 'z9hG4bK' + uuid.uuid4().hex};rport\r\n"
                f"Max-Forwards: 70\r\nFrom: <sip:adversary@127.0.0.1:{self.port}>;tag={self.tag}\r\nTo: {to}\r\n"
                f"Call-ID: {self.call_id}\r\nCSeq: {cseq} {method}\r\n"
                f"Contact: <sip:adversary@127.0.0.1:{self.port}>\r\n")
        if body:
            head += "Content-Type: application/sdp\r\n"
        return (head + f"Content-Length: {len(body)}\r\n\r\n").encode() + body

    async def send(self, data: bytes) -> None:
        await asyncio.get_running_loop().sock_sendto(self.sock, data, ("127.0.0.1", self.gw_port))

    async def expect(self, match: Callable[[bytes], bool], what: str, timeout: float = 5.0) -> bytes:
        """The first message that ``match``es (others, e.g. provisionals and retransmissions, are skipped)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        seen: list[str] = []
        while True:
            try:
                msg = await asyncio.wait_for(loop.sock_recv(self.sock, 65535), max(0.0, deadline - loop.time()))
            except TimeoutError:
                raise AssertionError(f"no {what} within {timeout}s; got {seen}") from None
            if match(msg):
                return msg
            seen.append(msg.split(b"\r\n", 1)[0].decode(errors="replace"))

    @staticmethod
    def ack_for(invite: bytes, final: bytes) -> bytes:
        """RFC 3261 §17.1.1.3: the ACK for a non-2xx final: the INVITE's Via/R-URI/From/Call-ID/CSeq
        number, the response's To, no body."""
        head = invite.split(b"\r\n\r\n", 1)[0].decode()
        head = head.replace("INVITE ", "ACK ", 1)
        head = re.sub(r"(?m)^CSeq: (\d+) INVITE$", r"CSeq: \1 ACK", head)
        head = re.sub(r"(?m)^To: .*$", "To: " + (header(final, "To") or ""), head)
        head = re.sub(r"(?m)^(Content-Type|Content-Length): .*\r?\n?", "", head).rstrip("\r\n")
        return (head + "\r\nContent-Length: 0\r\n\r\n").encode()

    def ok_for(self, request: bytes, body: bytes = b"") -> bytes:
        """200 OK to a request the gateway sent (RFC 3261 §8.2.6.2: its Via, From, To, Call-ID, CSeq;
        for an INVITE a To tag, our Contact and the SDP ``body``)."""
        fields = [f"{name}: {value}" for name in ("Via", "From", "To", "Call-ID", "CSeq")
                  for value in re.findall(rf"(?mi)^{name}[ \t]*:[ \t]*(.*?)\r?$", request.decode())]
        if request.startswith(b"INVITE "):
            fields = [f + f";tag={self.tag}" if f.startswith("To:") else f for f in fields]
            fields.append(f"Contact: <sip:adversary@127.0.0.1:{self.port}>")
        if body:
            fields.append("Content-Type: application/sdp")
        head = "SIP/2.0 200 OK\r\n" + "\r\n".join(fields) + f"\r\nContent-Length: {len(body)}\r\n\r\n"
        return head.encode() + body

    async def final_to(self, cseq: str, what: str = "") -> bytes:
        """The final response to the request with this CSeq (e.g. ``"1 INVITE"``)."""
        return await self.expect(lambda m: header(m, "CSeq") == cseq and (status_of(m) or 0) >= 200,
                                 what or f"final response to {cseq}")

    async def call(self, number: str, rtp_port: int) -> bytes:
        """INVITE an auto-answering line, take its 200 and ACK it: a confirmed dialog."""
        await self.send(self.request("INVITE", number, body=sdp(rtp_port)))
        ok = await self.final_to("1 INVITE")
        assert status_of(ok) == 200, ok[:200]
        self.to_tag = (header(ok, "To") or "").split("tag=")[1]
        await self.send(self.request("ACK", number, in_dialog=True))
        return ok


@pytest.fixture
async def gw(tmp_path: Path) -> AsyncIterator[GatewayHandle]:
    async with running_gateway(gateway_settings(tmp_path, devices=DEVICES, sip=dict(FAST_TIMERS))) as handle:
        yield handle


@pytest.fixture
async def peer(gw: GatewayHandle) -> AsyncIterator[RawPeer]:
    p = RawPeer(gw.sip_port)
    yield p
    p.close()


def rtp_socket() -> socket.socket:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    s.setblocking(False)
    return s


async def rtp_packets(sock: socket.socket, n: int) -> int:
    """Wait for ``n`` RTP packets on ``sock``; the number received."""
    loop = asyncio.get_running_loop()
    for _ in range(n):
        await asyncio.wait_for(loop.sock_recv(sock, 2048), 5)
    return n


def drain(sock: socket.socket) -> None:
    """Discard what is waiting on a non-blocking socket."""
    while True:
        try:
            sock.recv(2048)
        except BlockingIOError:
            return


async def drained(gw: GatewayHandle) -> None:
    await until(lambda: {k: gw.telephony.stats()[k] for k in DRAINED} == DRAINED,
                f"nothing left behind ({DRAINED})", timeout=10)


# -------------------------------------------------------------------------------------------------- tests
async def test_offer_we_cannot_send_media_to_gets_488_warning_301(gw: GatewayHandle, peer: RawPeer) -> None:
    """RFC 3264 §6 / RFC 3261 §20.43: we send RTP to IP literals of our own family only (no DNS lookup
    on the media path); anything else is refused up front, not rung, answered and then broken."""
    async with gw.client("agent2") as agent2:
        await agent2.start_session()
        for n, connection in enumerate(("IN IP4 media.example.invalid", "IN IP6 ::1"), start=1):
            invite = peer.request("INVITE", "1002", cseq=n, body=sdp(40000, connection))
            await peer.send(invite)
            final = await peer.final_to(f"{n} INVITE")
            assert status_of(final) == 488, final[:300]
            assert (header(final, "Warning") or "").startswith("301 "), final[:400]
            await peer.send(peer.ack_for(invite, final))
        assert await agent2.calls() == []  # the agent never saw a call it could not have answered

    # during a call: a re-INVITE moving the media to such an address is refused, the call goes on
    media = rtp_socket()
    try:
        await peer.call(AUTO, media.getsockname()[1])
        await rtp_packets(media, 5)
        reinvite = peer.request("INVITE", AUTO, cseq=2, in_dialog=True, body=sdp(40002, "IN IP6 ::1"))
        await peer.send(reinvite)
        final = await peer.final_to("2 INVITE")
        assert status_of(final) == 488 and (header(final, "Warning") or "").startswith("301 "), final[:400]
        await peer.send(peer.ack_for(reinvite, final))
        (call,) = gw.telephony.iter_calls()
        assert call.state.value == "Established"
        await rtp_packets(media, 5)  # still sent where it was going
        await peer.send(peer.request("BYE", AUTO, cseq=3, in_dialog=True))
        assert status_of(await peer.final_to("3 BYE")) == 200
    finally:
        media.close()
    await drained(gw)
    assert gw.telephony.sip.stats()["core_errors"] == 0


async def test_answer_we_cannot_send_media_to_ends_the_call_instead_of_leaving_it_dialing(
        gw: GatewayHandle, peer: RawPeer) -> None:
    """The same as a UAC: a 200 whose SDP names an IPv6 address (we are IPv4) is ACKed and ended with
    BYE (RFC 3261 §13.2.2.4), and the call is Released. Before, the media handler raised on it and the
    call stayed Dialing while the SIP dialog was up."""
    async with gw.client("agent1") as agent1:
        await agent1.start_session()
        dev = await agent1.device_id()
        await agent1.op(f"/api/v2/me/devices/{dev}/calls", "Dial", destination=f"sip:adversary@127.0.0.1:{peer.port}")
        invite = await peer.expect(lambda m: m.startswith(b"INVITE "), "the INVITE")
        await peer.send(peer.ok_for(invite, sdp(40000, "IN IP6 ::1")))
        await peer.expect(lambda m: m.startswith(b"ACK "), "the ACK for our 200")
        bye = await peer.expect(lambda m: m.startswith(b"BYE "), "a BYE: the call cannot have media")
        await peer.send(peer.ok_for(bye))
        assert await until(lambda: _no_calls(agent1), "agent1's call released") is True
    await drained(gw)


async def test_one_invite_arriving_twice_rings_once_the_loop_gets_482(gw: GatewayHandle, peer: RawPeer) -> None:
    """RFC 3261 §8.2.2.2: the same request (From tag, Call-ID, CSeq) on a second path while the first
    transaction is going on is a loop or a fork that came back: 482, not a second ringing call. The
    same call forked to another line of this gateway is another UA's business and rings there."""
    async with gw.client("agent2") as agent2, gw.client("supervisor1") as supervisor:
        await agent2.start_session()
        await supervisor.start_session()
        invites = {path: peer.request("INVITE", number, branch=f"z9hG4bK{path}{uuid.uuid4().hex}", body=sdp(40000))
                   for path, number in (("first", "1002"), ("loop", "1002"), ("fork", "1004"))}
        await peer.send(invites["first"])
        await peer.expect(lambda m: status_of(m) == 180, "180 Ringing")
        await peer.send(invites["loop"])
        looped = await peer.expect(lambda m: "z9hG4bKloop" in (header(m, "Via") or "") and (status_of(m) or 0) >= 200,
                                   "final response on the looped path")
        assert status_of(looped) == 482, looped[:300]
        await peer.send(peer.ack_for(invites["loop"], looped))
        await peer.send(invites["fork"])
        await until(supervisor.calls, "the call forked to line 1004 ringing there")
        assert [c["state"] for c in await agent2.calls()] == ["Ringing"]

        for path, agent in (("first", agent2), ("fork", supervisor)):
            (call,) = await agent.calls()
            await agent.op(f"/api/v2/me/calls/{call['id']}", "Reject")
            final = await peer.expect(lambda m, p=path: f"z9hG4bK{p}" in (header(m, "Via") or "")
                                      and (status_of(m) or 0) >= 200, f"final response on the {path} path")
            assert status_of(final) == 603
            await peer.send(peer.ack_for(invites[path], final))
    await drained(gw)



async def test_invite_expires_unanswered_gets_487_and_the_call_is_released(gw: GatewayHandle, peer: RawPeer) -> None:
    """RFC 3261 §13.3.1: an INVITE with Expires that is still unanswered when it runs out gets 487.
    Without this a caller that gave up (or vanished) without a CANCEL left the agent's line ringing
    for ever."""
    async with gw.client("agent2") as agent2:
        await agent2.start_session()
        body = sdp(40000)
        invite = peer.request("INVITE", "1002", body=body).replace(b"Content-Type:", b"Expires: 1\r\nContent-Type:")
        await peer.send(invite)
        await until(agent2.calls, "the call ringing at agent2")
        final = await peer.final_to("1 INVITE", "487 once the INVITE expired")
        assert status_of(final) == 487, final[:300]
        await peer.send(peer.ack_for(invite, final))
        assert await until(lambda: _no_calls(agent2), "agent2's call released") is True
    await drained(gw)


async def _no_calls(agent: GwsClient) -> bool:
    return await agent.calls() == []



async def test_peer_that_never_acks_or_hangs_up_around_the_ack_leaves_nothing(gw: GatewayHandle) -> None:
    """RFC 3261 §13.3.1.4: no ACK for our 2xx within 64*T1 -> we BYE and the call is Released; a BYE
    before the ACK, or right behind it, ends the call at once. Each time the RTP port is freed."""
    async def invite(peer: RawPeer) -> None:
        await peer.send(peer.request("INVITE", AUTO, body=sdp(40000)))
        ok = await peer.final_to("1 INVITE")
        assert status_of(ok) == 200, ok[:200]
        peer.to_tag = (header(ok, "To") or "").split("tag=")[1]

    peers = [RawPeer(gw.sip_port) for _ in range(3)]
    try:
        never_acks, bye_before_ack, bye_after_ack = peers
        for p in peers:
            await invite(p)
        await bye_before_ack.send(bye_before_ack.request("BYE", AUTO, cseq=2, in_dialog=True))
        await bye_after_ack.send(bye_after_ack.request("ACK", AUTO, in_dialog=True))
        await bye_after_ack.send(bye_after_ack.request("BYE", AUTO, cseq=2, in_dialog=True))
        for p in (bye_before_ack, bye_after_ack):
            assert status_of(await p.final_to("2 BYE")) == 200
        bye = await never_acks.expect(lambda m: m.startswith(b"BYE "), "the gateway's BYE after 64*T1 without ACK")
        assert header(bye, "Call-ID") == never_acks.call_id
        await never_acks.send(never_acks.ok_for(bye))
    finally:
        for p in peers:
            p.close()
    await drained(gw)



def rtp_packet(seq: int, ssrc: int = 0x1234) -> bytes:
    """A PCMU packet of 20 ms silence (RFC 3550 §5.1 header, no CSRC/extension)."""
    return bytes([0x80, 0]) + seq.to_bytes(2, "big") + (160 * seq).to_bytes(4, "big") + ssrc.to_bytes(4, "big") \
        + b"\xff" * 160


async def test_rtp_from_a_stranger_cannot_take_over_a_call_whose_peer_fell_silent(gw: GatewayHandle,
                                                                                  peer: RawPeer) -> None:
    """Symmetric RTP (RFC 4961) latches onto where the peer's packets come from; a stranger sending to
    the (guessable) port of a call whose peer went quiet for a second (silence suppression, hold) took
    the call over: the agent's audio went to the stranger (RTP bleed). Once the peer has been heard,
    only a new offer/answer moves the media."""
    media, stranger = rtp_socket(), rtp_socket()
    try:
        ok = await peer.call(AUTO, media.getsockname()[1])
        port = int(re.search(rb"m=audio (\d+) ", ok).group(1))  # type: ignore[union-attr]
        (call,) = gw.telephony.iter_calls()
        leg = call.leg
        assert leg is not None
        for seq in range(5):  # the peer talks, then falls silent (e.g. VAD)
            media.sendto(rtp_packet(seq), ("127.0.0.1", port))
        await until(lambda: leg.stats.packets_received == 5, "the peer's RTP received")
        await rtp_packets(media, 3)
        loop = asyncio.get_running_loop()
        await until(lambda: loop.time() - (leg.stats.last_received_at or 0) > 1.2, "the peer silent for 1.2 s")

        before = leg.stats.packets_received + leg.stats.ignored
        for seq in range(5):
            stranger.sendto(rtp_packet(seq, ssrc=0x666), ("127.0.0.1", port))
        await until(lambda: leg.stats.packets_received + leg.stats.ignored == before + 5, "the stranger's RTP seen")
        assert leg.remote_address == media.getsockname(), leg.remote_address
        drain(media)
        await rtp_packets(media, 3)  # the agent's audio still goes to the peer...
        with pytest.raises(BlockingIOError):
            stranger.recv(2048)  # ...and none of it to the stranger
        await peer.send(peer.request("BYE", AUTO, cseq=2, in_dialog=True))
        assert status_of(await peer.final_to("2 BYE")) == 200
    finally:
        media.close()
        stranger.close()
    await drained(gw)



async def test_hostile_requests_get_the_answer_rfc_3261_owes_and_ring_nothing(gw: GatewayHandle) -> None:
    """Held: each request gets exactly its final answer on the real gateway and no call reaches the
    agent. Max-Forwards 0 is a proxy's 483; a UA processes the request (RFC 4475 §3.3.11)."""
    g729 = sdp(40000).replace(b"RTP/AVP 0", b"RTP/AVP 18").replace(b"rtpmap:0 PCMU", b"rtpmap:18 G729")
    cases: list[tuple[str, Callable[[RawPeer], bytes], int]] = [
        ("INVITE to a number that is no line", lambda p: p.request("INVITE", "9999", body=sdp(40000)), 404),
        ("INVITE offering only G.729", lambda p: p.request("INVITE", "1002", body=g729), 488),
        ("INVITE requiring an unknown extension", lambda p: p.request("INVITE", "1002", body=sdp(40000)).replace(
            b"Max-Forwards", b"Require: x-evil\r\nMax-Forwards"), 420),
        ("INVITE whose CSeq names BYE",
         lambda p: p.request("INVITE", "1002", body=sdp(40000)).replace(b"CSeq: 1 INVITE", b"CSeq: 1 BYE"), 400),
        ("BYE for a dialog that does not exist", lambda p: (setattr(p, "to_tag", "nope"),
                                                            p.request("BYE", "1002", in_dialog=True))[1], 481),
        ("CANCEL for an INVITE that does not exist", lambda p: p.request("CANCEL", "1002"), 481),
        ("OPTIONS with Max-Forwards 0",
         lambda p: p.request("OPTIONS", "1002").replace(b"Max-Forwards: 70", b"Max-Forwards: 0"), 200),
    ]
    async with gw.client("agent2") as agent2:
        await agent2.start_session()
        for what, build, expected in cases:
            peer = RawPeer(gw.sip_port)
            try:
                request = build(peer)
                await peer.send(request)
                final = await peer.expect(lambda m: (status_of(m) or 0) >= 200, f"the final answer to: {what}")
                assert status_of(final) == expected, (what, final[:300])
                if expected == 420:
                    assert header(final, "Unsupported") == "x-evil"
                if request.startswith(b"INVITE "):
                    await peer.send(peer.ack_for(request, final))
            finally:
                peer.close()
        assert await agent2.calls() == []
    await drained(gw)
    assert gw.telephony.sip.stats()["core_errors"] == 0


# ------------------------------------------------------------------------------ crash safety (a real process)
CRASH_CONFIG = """
[http]
host = "127.0.0.1"
[sip]
host = "127.0.0.1"
[[users]]
username = "agent1"
password = "agent1pw"
devices = ["1001"]
[[devices]]
number = "1001"
sip_user = "1001"
sip_password = "pw1001"
audio_source = "tone:1000"
[[devices]]
number = "1002"
sip_user = "1002"
sip_password = "pw1002"
audio_source = "tone:440"
auto_answer = true
"""
#: one second of the recording: 8 kHz, 2 channels, 16 bit
BYTES_PER_SECOND = 8000 * 2 * 2


async def start_serve(tmp_path: Path, name: str, *, max_open_files: int | None = None,
                      max_file_size: int | None = None) -> tuple[ManagedProcess, str]:
    """``voice-gateway serve`` on free ports (with RLIMIT_NOFILE / RLIMIT_FSIZE lowered if asked);
    (process, base URL) once it logged "gateway ready"."""
    config = tmp_path / "gateway.toml"
    config.write_text(CRASH_CONFIG)
    env = {"VG_HTTP_PORT": "0", "VG_SIP_PORT": "0", "VG_RTP_PORT_MIN": "0", "VG_RTP_PORT_MAX": "0",
           "VG_RECORDINGS_DIR": str(tmp_path / "recordings"), "VG_DATA_DIR": str(tmp_path / "data")}
    argv = ["/usr/bin/env", *(f"{k}={v}" for k, v in env.items()), str(Path(sys.executable).parent / "voice-gateway"),
            "serve", "--config", str(config)]
    limits = ([f"--nofile={max_open_files}"] if max_open_files else []) + \
        ([f"--fsize={max_file_size}"] if max_file_size else [])
    if limits:
        argv = ["/usr/bin/prlimit", *limits, *argv]
    proc = ManagedProcess(name, argv, tmp_path / f"{name}.log")
    proc.start()

    def ready() -> str | None:
        proc.check_alive("starting")
        m = re.search(r"gateway ready: http=127\.0\.0\.1:(\d+)", proc.log_text())
        return f"http://127.0.0.1:{m.group(1)}" if m else None

    return proc, await until(ready, f"{name} ready", timeout=30)


async def test_sigkill_mid_recording_leaves_a_wav_the_restart_repairs(tmp_path: Path) -> None:
    """Issue 2 §3: a recording is streamed as the call runs and repaired at start-up if the process
    died. Kill -9 the gateway in the middle of a recorded call; the next start must leave a valid WAV
    (the wave module reads every frame on disk) with both parties' audio in it."""
    proc, base = await start_serve(tmp_path, "gateway-1")
    try:
        async with GwsClient(base, "agent1", "agent1pw") as agent1:
            await agent1.start_session()
            dev = await agent1.device_id()
            await agent1.op(f"/api/v2/me/devices/{dev}/calls", "Dial", destination="1002")  # auto-answers

            async def established() -> dict[str, Any] | None:
                return next((c for c in await agent1.calls() if c["state"] == "Established"), None)

            call = await until(established, "call to auto-answering 1002 Established")
            await agent1.op(f"/api/v2/me/calls/{call['id']}", "StartCallRecording")
        (path,) = await until(lambda: list((tmp_path / "recordings").glob("*.wav")), "the recording file")
        await until(lambda: path.stat().st_size > 44 + 2 * BYTES_PER_SECOND, "two seconds recorded on disk")
        os.kill(proc.pid or 0, signal.SIGKILL)
        assert proc.wait_exit(10) == -signal.SIGKILL
    finally:
        proc.stop()
    on_disk = path.stat().st_size

    proc, base = await start_serve(tmp_path, "gateway-2")
    try:
        assert "repaired" in proc.log_text() or read_wav_info(path).complete
    finally:
        assert proc.stop() == 0
    info = read_wav_info(path)
    assert info.complete and (info.rate, info.channels, info.sample_width) == (8000, 2, 2), info
    with wave.open(str(path)) as w:  # the header now describes exactly the whole frames on disk
        frames = w.getnframes()
        assert len(w.readframes(frames)) == frames * 4
    assert frames * 4 >= on_disk - 44 - 4 and frames >= 2 * 8000
    assert_tone(path, 440, channel=0)  # remote: line 1002's tone
    assert_tone(path, 1000, channel=1)  # local: line 1001's tone


async def test_tcp_connection_flood_cannot_starve_the_gateway_of_file_descriptors(tmp_path: Path) -> None:
    """Anyone can open TCP connections to the SIP port without a word of SIP. Before, every one was
    kept: at the process's open-file limit the gateway could accept nothing (HTTP /health and the API
    hung, accept() errors flooded the log) and could bind no RTP port. Now inbound SIP connections are
    capped well below the limit; the flood is turned away, the API and calls keep working."""
    limit = 256
    proc, base = await start_serve(tmp_path, "gateway", max_open_files=limit)
    flood: list[asyncio.StreamWriter] = []
    try:
        async with httpx.AsyncClient(base_url=base, timeout=5) as http:
            sip_port = (await http.get("/health")).json()["sip"]["tcp"]
            for _ in range(limit + 50):
                _, writer = await asyncio.open_connection("127.0.0.1", sip_port)
                flood.append(writer)
            health = await http.get("/health")
            assert health.status_code == 200 and health.json()["status"] == "ok"
        async with GwsClient(base, "agent1", "agent1pw") as agent1:
            await agent1.start_session()
            dev = await agent1.device_id()
            await agent1.op(f"/api/v2/me/devices/{dev}/calls", "Dial", destination="1002")  # two RTP legs

            async def established() -> dict[str, Any] | None:
                return next((c for c in await agent1.calls() if c["state"] == "Established"), None)

            call = await until(established, "a call while the flood holds its connections")
            await agent1.op(f"/api/v2/me/calls/{call['id']}", "Hangup")
        for writer in flood:
            writer.close()
        flood.clear()
        status_line = await until(lambda: tcp_options(sip_port), "SIP over TCP served again once the flood left")
        assert status_line.startswith(b"SIP/2.0 200 "), status_line
    finally:
        for writer in flood:
            writer.close()
        proc.stop()
    log = proc.log_text()
    assert "Too many open files" not in log, log[-2000:]


async def tcp_options(port: int) -> bytes:
    """Status line of the answer to an OPTIONS on a new TCP connection; b"" if the gateway closed it."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        local = writer.get_extra_info("sockname")[1]
        writer.write((f"OPTIONS sip:1001@127.0.0.1:{port} SIP/2.0\r\n"
                      f"Via: SIP/2.0/TCP 127.0.0.1:{local};branch=z9hG4bK{uuid.uuid4().hex}\r\n"
                      f"Max-Forwards: 70\r\nFrom: <sip:probe@127.0.0.1>;tag=p1\r\nTo: <sip:1001@127.0.0.1>\r\n"
                      f"Call-ID: {uuid.uuid4().hex}\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n").encode())
        try:
            return await asyncio.wait_for(reader.readline(), 5)
        except ConnectionError:
            return b""
    finally:
        writer.close()


async def test_recording_that_cannot_be_written_stops_cleanly_and_the_call_still_hangs_up(tmp_path: Path) -> None:
    """A recording whose writes fail (disk full; here the file size limit, RLIMIT_FSIZE) must not take
    the call down with it. Before, every media tick raised, and Hangup got HTTP 500 and left a Released
    call on the line and its RTP port open. Now the recording ends as a valid WAV of what was written,
    the call goes on and hangs up normally."""
    limit = 100_000  # ~3 s of recording
    proc, base = await start_serve(tmp_path, "gateway", max_file_size=limit)
    try:
        async with GwsClient(base, "agent1", "agent1pw") as agent1, httpx.AsyncClient(base_url=base) as http:
            await agent1.start_session()
            dev = await agent1.device_id()
            await agent1.op(f"/api/v2/me/devices/{dev}/calls", "Dial", destination="1002")  # auto-answers

            async def established() -> dict[str, Any] | None:
                return next((c for c in await agent1.calls() if c["state"] == "Established"), None)

            call = await until(established, "call to auto-answering 1002 Established")
            await agent1.op(f"/api/v2/me/calls/{call['id']}", "StartCallRecording")
            (path,) = await until(lambda: list((tmp_path / "recordings").glob("*.wav")), "the recording file")
            await until(lambda: "File too large" in proc.log_text(), "a recording write refused by the limit")
            assert (await http.get("/health")).json()["stats"]["rtp_packets_out"] > 0

            async def recording_stopped() -> dict[str, Any] | None:
                r = await agent1.get(f"/api/v2/me/calls/{call['id']}")
                c: dict[str, Any] = r.json()["call"]
                return c if c["recordingState"] == "Stopped" else None

            # the agent learns it: recordingState back to Stopped, StartCallRecording offered again
            stopped = await until(recording_stopped, "recordingState Stopped after the failed write")
            assert stopped["state"] == "Established" and "StartCallRecording" in stopped["capabilities"]

            await agent1.op(f"/api/v2/me/calls/{call['id']}", "Hangup")
            assert await agent1.calls() == []
            stats = await until(lambda: _health_stats_drained(http), "no call or RTP port left")
            assert stats["rtp_legs"] == 0
    finally:
        proc.stop()
    info = read_wav_info(path)
    assert info.complete and info.channels == 2, info
    with wave.open(str(path)) as w:
        assert w.getnframes() * 4 + 44 <= limit and w.getnframes() > 8000  # what fitted, as whole frames
    assert_tone(path, 440, channel=0)
    assert "media tick failed" not in proc.log_text()


async def _health_stats_drained(http: httpx.AsyncClient) -> dict[str, Any] | None:
    stats: dict[str, Any] = (await http.get("/health")).json()["stats"]
    return stats if stats["calls"] == 0 and stats["rtp_legs"] == 0 and stats["rtp_ports"] == 0 else None
