"""End to end in standalone mode: a real gateway, real baresip, real CometD clients (aiocometd_ng).

Issue 2 proof: baresip calls a line and the agent answers, records and sees every state change over
CometD; line-to-line calls with answer, reject (603) and caller-cancel (CANCEL -> 487); a line dials
a standalone baresip by full SIP URI. Audio is checked by content: each line plays its own tone
(device ``audio_source``), baresip plays 440 Hz, and every recording is analysed for the other
side's frequency.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.peers import Baresip
from tests.e2e.peers.audio import analyze, assert_tone, read_wav, read_wav_info, tone_profile
from tests.support.cometd_client import CometdClient, CometdMessage, call_message, cometd_client
from tests.support.gateway import DEFAULT_DEVICES, GatewayHandle, GwsClient, gateway_settings, running_gateway
from tests.support.waiting import until

pytestmark = pytest.mark.e2e

BARESIP_HZ = 440.0
LINE_HZ = {"1001": 1000.0, "1002": 600.0}
RECORDING_LEFT, RECORDING_RIGHT = 0, 1  # remote party, local line (issue 2 §3)


def _devices() -> list[dict[str, Any]]:
    out = []
    for dev in DEFAULT_DEVICES:
        hz = LINE_HZ.get(dev["number"])
        out.append({**dev, "audio_source": f"tone:{int(hz)}"} if hz else dict(dev))
    return out


@pytest.fixture
async def gw(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> AsyncIterator[GatewayHandle]:
    """A gateway on free ports with SIP tracing on, so tests can check what went over the wire."""
    caplog.set_level(logging.INFO, logger="gateway.sip.trace")
    async with running_gateway(gateway_settings(tmp_path, devices=_devices(), sip={"trace": True})) as handle:
        yield handle


@dataclass(frozen=True, slots=True)
class WireMessage:
    """One SIP message the gateway sent ("out") or received ("in"), from its trace log."""

    direction: str
    start_line: str
    cseq: str

    @property
    def is_response(self) -> bool:
        return self.start_line.startswith("SIP/2.0 ")

    @property
    def status(self) -> int | None:
        return int(self.start_line.split()[1]) if self.is_response else None

    @property
    def method(self) -> str:
        return self.cseq.split()[-1] if self.is_response else self.start_line.split()[0]


def sip_wire(caplog: pytest.LogCaptureFixture) -> list[WireMessage]:
    """Every SIP message in the gateway's trace so far (logger gateway.sip.trace, ">>> peer\n<message>")."""
    out = []
    for rec in caplog.records:
        if rec.name != "gateway.sip.trace":
            continue
        head, _, text = rec.getMessage().partition("\n")
        arrow = head.split(" ", 1)[0]
        if arrow not in (">>>", "<<<"):
            continue
        lines = text.splitlines()
        cseq = next((ln.split(":", 1)[1].strip() for ln in lines if ln.lower().startswith("cseq:")), "")
        out.append(WireMessage("out" if arrow == ">>>" else "in", lines[0].strip() if lines else "", cseq))
    return out


def wire_summary(wire: list[WireMessage], method: str | None = None) -> list[tuple[str, str]]:
    """(direction, method or status) for requests/responses of ``method`` (all when None), in order."""
    return [(m.direction, str(m.status) if m.is_response else m.method)
            for m in wire if method is None or m.method == method]


@dataclass
class Agent:
    """An agent desktop: the Voice API client plus its CometD subscription."""

    api: GwsClient
    events: CometdClient
    device_id: str
    number: str

    async def call_op(self, call_id: str, operation: str, **params: Any) -> None:
        await self.api.op(f"/api/v2/me/calls/{call_id}", operation, **params)

    async def dial(self, destination: str) -> None:
        await self.api.op(f"/api/v2/me/devices/{self.device_id}/calls", "Dial",
                          destination={"phoneNumber": destination})

    def history(self, call_id: str) -> list[tuple[str | None, str | None]]:
        """(notificationType, state) of every CometD message about ``call_id``, in arrival order."""
        return [(m.notification_type, m.call_state)
                for m in self.events.all(call_message(call_id=call_id, notification=None))]


@contextlib.asynccontextmanager
async def agent(gw: GatewayHandle, username: str, transport: str = "long-polling") -> AsyncIterator[Agent]:
    """Log in like a desktop: a GET for the session cookie, CometD with Basic + cookie, then the session."""
    async with gw.client(username) as api:
        me = await api.get("/api/v2/me")
        assert me.status_code == 200, me.text
        cookie = api.http.cookies.get("JSESSIONID")
        assert cookie, "the gateway set no JSESSIONID cookie"
        async with cometd_client(gw.base_url, username, transport=transport,
                                 cookies={"JSESSIONID": cookie}) as events:
            assert events.negotiated_transport == transport
            mark = events.mark()
            await api.start_session()
            await events.wait_for(lambda m: m.message_type == "DeviceStateChangeMessage", since=mark)
            devices = (await api.get("/api/v2/me/devices", fields="*")).json()["devices"]
            yield Agent(api=api, events=events, device_id=devices[0]["id"], number=devices[0]["phoneNumber"])


async def poll_until(condition: Any, timeout: float = 5.0, what: str = "condition") -> Any:
    """``until`` with this file's argument order (timeout before the description)."""
    return await until(condition, what, timeout)


def leg_of(gw: GatewayHandle, call_id: str) -> Any:
    call = next((c for c in gw.telephony.iter_calls() if c.id == call_id), None)
    assert call is not None and call.leg is not None, f"call {call_id} has no media leg"
    return call.leg


async def wait_idle(gw: GatewayHandle, timeout: float = 5.0) -> dict[str, int]:
    """Until no call, SIP session/dialog or RTP leg is left (transactions may linger for Timer K/D)."""

    def idle() -> dict[str, int] | None:
        s = gw.telephony.stats()
        left = {k: s[k] for k in ("calls", "sip_sessions", "sip_dialogs", "rtp_legs", "rtp_ports") if s[k]}
        return None if left else s

    return await poll_until(idle, timeout, "the gateway to hold no call, session, dialog or RTP leg")  # type: ignore[no-any-return]


def recordings(gw: GatewayHandle) -> list[Path]:
    return sorted(gw.settings.recordings_path.glob("*.wav"))


def assert_ringing_shape(msg: CometdMessage, number: str) -> dict[str, Any]:
    """§4.5: a StatusChange CallStateChangeMessage for the device's DN, full call resource inside."""
    data = msg.data
    assert msg.channel == "/v2/me/calls"
    assert data["messageType"] == "CallStateChangeMessage"
    assert data["notificationType"] == "StatusChange"
    assert data["phoneNumber"] == number
    call = data["call"]
    assert call["state"] == "Ringing"
    assert "Answer" in call["capabilities"] and "Reject" in call["capabilities"]
    assert call["uri"].endswith(f"/api/v2/me/calls/{call['id']}") and call["path"] == f"/calls/{call['id']}"
    assert call["recordingState"] == "Stopped"
    return call  # type: ignore[no-any-return]


# ====================================================================================== baresip -> line
@pytest.mark.parametrize("transport", ["long-polling", "websocket"])
async def test_baresip_calls_line_agent_answers_records_and_baresip_hangs_up(
        gw: GatewayHandle, baresip_factory: Any, transport: str) -> None:
    ua: Baresip = await baresip_factory("5005", tone_hz=BARESIP_HZ)
    async with agent(gw, "agent1", transport) as a1:
        mark = a1.events.mark()
        ua_mark = await ua.dial(gw.line_uri("1001"))

        ringing = await a1.events.wait_for(call_message("Ringing"), since=mark)
        call = assert_ringing_shape(ringing, "1001")
        call_id = call["id"]
        assert call["participants"][0]["phoneNumber"] == "5005"
        assert [c["id"] for c in await a1.api.calls()] == [call_id]
        await ua.wait_event("CALL_RINGING", since=ua_mark)  # our 180 reached baresip

        await a1.call_op(call_id, "Answer")
        established = await a1.events.wait_for(call_message("Established", call_id=call_id), since=mark)
        assert established.call["capabilities"] == ["Hangup", "StartCallRecording"]
        await ua.wait_event("CALL_ESTABLISHED", since=ua_mark)

        rec_requested = time.monotonic()
        await a1.call_op(call_id, "StartCallRecording")
        rec = await a1.events.wait_for(
            call_message(call_id=call_id, notification="CallRecordingStateChange"), since=mark)
        assert rec.call["recordingState"] == "Recording" and rec.call["state"] == "Established"
        assert "StopCallRecording" in rec.call["capabilities"]

        # media progress, not a sleep: 2 s of our tone reached baresip and 100 of its packets reached us
        await ua.wait_received_audio(2.0)
        leg = leg_of(gw, call_id)
        await poll_until(lambda: leg.stats.packets_received >= 100, 5, "100 RTP packets from baresip")

        await ua.hangup()
        released = await a1.events.wait_for(call_message("Released", call_id=call_id), since=mark)
        released_seen = time.monotonic()
        assert released.call["capabilities"] == []
        assert released.call["recordingState"] == "Stopped"
        assert await a1.api.calls() == []
        assert a1.history(call_id) == [
            ("StatusChange", "Ringing"),
            ("StatusChange", "Established"),
            ("CallRecordingStateChange", "Established"),
            ("StatusChange", "Released"),
        ]
        await ua.wait_event("CALL_CLOSED", since=ua_mark)
    await wait_idle(gw)

    # the gateway's recording: stereo 8 kHz 16-bit, remote (baresip, 440 Hz) left, local (1000 Hz) right
    [wav] = recordings(gw)
    assert call_id in wav.name
    info = read_wav_info(wav)
    assert (info.rate, info.channels, info.sample_width, info.complete) == (8000, 2, 2, True)
    assert 1.9 <= info.duration <= released_seen - rec_requested + 0.5, info
    audio = read_wav(wav)
    left = assert_tone(audio, BARESIP_HZ, channel=RECORDING_LEFT, min_dbfs=-20)
    right = assert_tone(audio, LINE_HZ["1001"], channel=RECORDING_RIGHT, min_dbfs=-20)
    assert left.end_s - left.start_s >= 1.0 and right.end_s - right.start_s >= 1.0
    # no gaps: (almost) every 100 ms slice carries the tone, not just the analysed middle
    for channel, hz in ((RECORDING_LEFT, BARESIP_HZ), (RECORDING_RIGHT, LINE_HZ["1001"])):
        frames = tone_profile(audio, channel)
        good = [f for f in frames if abs(f.frequency_hz - hz) <= 15 and f.rms_dbfs > -20]
        assert len(good) >= 0.9 * len(frames), [(round(f.frequency_hz), round(f.rms_dbfs, 1)) for f in frames]
    # what baresip heard is the line's tone
    received = await ua.wait_recording("dec")
    assert_tone(received, LINE_HZ["1001"], min_dbfs=-20)
    assert read_wav_info(received).duration >= 2.0


async def test_dtmf_from_baresip_is_reported_digit_by_digit(gw: GatewayHandle, baresip_factory: Any) -> None:
    """RFC 4733 telephone-events sent by baresip reach the agent as one CometD message per key press,
    in order, each carrying the digit (our ``DtmfReceived`` notification, §4.5 extension)."""
    ua: Baresip = await baresip_factory("5007", tone_hz=BARESIP_HZ)
    async with agent(gw, "agent1") as a1:
        mark = a1.events.mark()
        ua_mark = await ua.dial(gw.line_uri("1001"))
        call_id = (await a1.events.wait_for(call_message("Ringing"), since=mark)).call["id"]
        await a1.call_op(call_id, "Answer")
        await ua.wait_event("CALL_ESTABLISHED", since=ua_mark)
        dtmf = call_message(call_id=call_id, notification="DtmfReceived")
        for n, digit in enumerate("12#9", 1):
            await ua.cmd("sndcode", digit)
            # the next key only once this one is reported: one event per press, none merged or lost
            await a1.events.wait_for(lambda m, n=n: len(a1.events.all(dtmf, since=mark)) >= n, since=mark)
        got = a1.events.all(dtmf, since=mark)
        assert [m.data["digits"] for m in got] == ["1", "2", "#", "9"]
        assert all(m.data["phoneNumber"] == "1001" and m.call["state"] == "Established" for m in got)
        await a1.call_op(call_id, "Hangup")
        await ua.wait_event("CALL_CLOSED", since=ua_mark)
    await wait_idle(gw)


# ====================================================================================== line -> line
@pytest.mark.parametrize("hangup_by", ["caller", "callee"])
async def test_line_to_line_answered_audio_both_ways_and_hangup(
        gw: GatewayHandle, caplog: pytest.LogCaptureFixture, hangup_by: str) -> None:
    async with agent(gw, "agent1") as a1, agent(gw, "agent2", "websocket") as a2:
        m1, m2 = a1.events.mark(), a2.events.mark()
        await a1.dial("1002")
        dialing = await a1.events.wait_for(call_message("Dialing"), since=m1)
        out_id = dialing.call["id"]
        assert dialing.data["phoneNumber"] == "1001" and dialing.call["callType"] == "Internal"
        assert dialing.call["capabilities"] == ["Hangup"]

        ringing = await a2.events.wait_for(call_message("Ringing"), since=m2)
        in_id = assert_ringing_shape(ringing, "1002")["id"]
        assert in_id != out_id
        assert ringing.call["participants"][0]["phoneNumber"] == "1001"

        await a2.call_op(in_id, "Answer")
        await a2.events.wait_for(call_message("Established", call_id=in_id), since=m2)
        await a1.events.wait_for(call_message("Established", call_id=out_id), since=m1)

        # both sides record: each recording must hold the other line's tone on the left
        await a1.call_op(out_id, "StartCallRecording")
        await a2.call_op(in_id, "StartCallRecording")
        out_leg, in_leg = leg_of(gw, out_id), leg_of(gw, in_id)
        await poll_until(lambda: min(out_leg.stats.packets_received, in_leg.stats.packets_received) >= 75,
                         5, "75 RTP packets received on each leg")
        await poll_until(lambda: min(out_leg.recorded_frames, in_leg.recorded_frames) >= 1.5 * 8000,
                         5, "1.5 s recorded on each leg")

        if hangup_by == "caller":
            await a1.call_op(out_id, "Hangup")
        else:
            await a2.call_op(in_id, "Hangup")
        r1 = await a1.events.wait_for(call_message("Released", call_id=out_id), since=m1)
        r2 = await a2.events.wait_for(call_message("Released", call_id=in_id), since=m2)
        assert r1.call["capabilities"] == [] and r2.call["capabilities"] == []
        assert await a1.api.calls() == [] and await a2.api.calls() == []
        assert a1.history(out_id) == [("StatusChange", "Dialing"), ("StatusChange", "Established"),
                                      ("CallRecordingStateChange", "Established"), ("StatusChange", "Released")]
        assert a2.history(in_id) == [("StatusChange", "Ringing"), ("StatusChange", "Established"),
                                     ("CallRecordingStateChange", "Established"), ("StatusChange", "Released")]
    await wait_idle(gw)
    # one BYE (sent by the side that hung up, received by the other) and its 200
    wire = sip_wire(caplog)
    assert wire_summary(wire, "BYE") == [("out", "BYE"), ("in", "BYE"), ("out", "200"), ("in", "200")]

    by_call = {next(i for i in (out_id, in_id) if i in p.name): p for p in recordings(gw)}
    assert set(by_call) == {out_id, in_id}
    for call_id, local, remote in ((out_id, "1001", "1002"), (in_id, "1002", "1001")):
        audio = read_wav(by_call[call_id])
        assert (audio.rate, audio.channels) == (8000, 2)
        assert audio.duration >= 1.5
        assert_tone(audio, LINE_HZ[remote], channel=RECORDING_LEFT, min_dbfs=-20)
        assert_tone(audio, LINE_HZ[local], channel=RECORDING_RIGHT, min_dbfs=-20)


async def test_line_to_line_reject_releases_both_sides(gw: GatewayHandle, caplog: pytest.LogCaptureFixture) -> None:
    async with agent(gw, "agent1") as a1, agent(gw, "agent2") as a2:
        m1, m2 = a1.events.mark(), a2.events.mark()
        await a1.dial("1002")
        out_id = (await a1.events.wait_for(call_message("Dialing"), since=m1)).call["id"]
        in_id = (await a2.events.wait_for(call_message("Ringing"), since=m2)).call["id"]

        await a2.call_op(in_id, "Reject")
        r2 = await a2.events.wait_for(call_message("Released", call_id=in_id), since=m2)
        r1 = await a1.events.wait_for(call_message("Released", call_id=out_id), since=m1)
        assert r1.call["capabilities"] == [] and r2.call["capabilities"] == []
        assert await a1.api.calls() == [] and await a2.api.calls() == []
        assert a1.history(out_id) == [("StatusChange", "Dialing"), ("StatusChange", "Released")]
        assert a2.history(in_id) == [("StatusChange", "Ringing"), ("StatusChange", "Released")]
        # 603 is an ordinary outcome of dialling: no ErrorMessage for the caller
        assert not a1.events.all(lambda m: m.message_type == "ErrorMessage", since=m1)
    await wait_idle(gw)
    finals = [m for m in sip_wire(caplog) if m.method == "INVITE" and (m.status or 0) >= 200]
    assert [(m.direction, m.start_line) for m in finals] == [("out", "SIP/2.0 603 Decline"),
                                                             ("in", "SIP/2.0 603 Decline")]
    assert ("out", "ACK") in wire_summary(sip_wire(caplog), "ACK")  # the caller ACKed the 603 (§17.1.1.3)


async def test_line_to_line_caller_cancels_while_ringing(gw: GatewayHandle, caplog: pytest.LogCaptureFixture) -> None:
    async with agent(gw, "agent1") as a1, agent(gw, "agent2") as a2:
        m1, m2 = a1.events.mark(), a2.events.mark()
        await a1.dial("1002")
        out_id = (await a1.events.wait_for(call_message("Dialing"), since=m1)).call["id"]
        in_id = (await a2.events.wait_for(call_message("Ringing"), since=m2)).call["id"]

        await a1.call_op(out_id, "Hangup")
        r1 = await a1.events.wait_for(call_message("Released", call_id=out_id), since=m1)
        r2 = await a2.events.wait_for(call_message("Released", call_id=in_id), since=m2)
        assert r1.call["capabilities"] == [] and r2.call["capabilities"] == []
        assert await a1.api.calls() == [] and await a2.api.calls() == []
        assert a1.history(out_id) == [("StatusChange", "Dialing"), ("StatusChange", "Released")]
        assert a2.history(in_id) == [("StatusChange", "Ringing"), ("StatusChange", "Released")]
        # a cancelled call is no failure: no ErrorMessage
        assert not a1.events.all(lambda m: m.message_type == "ErrorMessage", since=m1)
    await wait_idle(gw)
    wire = sip_wire(caplog)
    # RFC 3261 §9: CANCEL answered 200, the INVITE answered 487 and that 487 ACKed
    assert wire_summary(wire, "CANCEL") == [("out", "CANCEL"), ("in", "CANCEL"), ("out", "200"), ("in", "200")]
    finals = [(m.direction, m.status) for m in wire if m.method == "INVITE" and (m.status or 0) >= 200]
    assert finals == [("out", 487), ("in", 487)]
    assert wire_summary(wire, "ACK") == [("out", "ACK"), ("in", "ACK")]
    assert not [m for m in wire if m.method == "BYE"]


@pytest.mark.parametrize("first", ["Hangup", "Answer"])
async def test_line_to_line_answer_races_caller_cancel(
        gw: GatewayHandle, caplog: pytest.LogCaptureFixture, first: str) -> None:
    """Answer and Hangup (CANCEL) cross: whichever wins, both calls end Released and nothing is left.

    Over loopback the callee's 200 usually leaves before the CANCEL arrives, so the caller must ACK
    that 2xx and end the dialog with BYE (RFC 3261 §9.1, §15); if the CANCEL wins it is a plain 487.
    """
    async with agent(gw, "agent1") as a1, agent(gw, "agent2") as a2:
        m1, m2 = a1.events.mark(), a2.events.mark()
        await a1.dial("1002")
        out_id = (await a1.events.wait_for(call_message("Dialing"), since=m1)).call["id"]
        in_id = (await a2.events.wait_for(call_message("Ringing"), since=m2)).call["id"]

        ops = {"Hangup": lambda: a1.api.post(f"/api/v2/me/calls/{out_id}", {"operationName": "Hangup"}),
               "Answer": lambda: a2.api.post(f"/api/v2/me/calls/{in_id}", {"operationName": "Answer"})}
        order = [first, "Answer" if first == "Hangup" else "Hangup"]
        results = dict(zip(order, await asyncio.gather(*(ops[k]() for k in order)), strict=True))
        assert results["Hangup"].json()["statusCode"] == 0
        assert results["Answer"].json()["statusCode"] in (0, 2, 6), results["Answer"].text  # 2/6: already gone

        await a1.events.wait_for(call_message("Released", call_id=out_id), since=m1)
        await a2.events.wait_for(call_message("Released", call_id=in_id), since=m2)
        assert a1.history(out_id) == [("StatusChange", "Dialing"), ("StatusChange", "Released")]
        callee = a2.history(in_id)
        assert await a1.api.calls() == [] and await a2.api.calls() == []
    await wait_idle(gw)
    wire = sip_wire(caplog)
    finals = [m.status for m in wire if m.method == "INVITE" and m.direction == "in" and (m.status or 0) >= 200]
    if finals == [200]:  # the 2xx crossed our CANCEL: ACKed, then ended with a BYE
        assert callee == [("StatusChange", "Ringing"), ("StatusChange", "Established"), ("StatusChange", "Released")]
        assert wire_summary(wire, "BYE") == [("out", "BYE"), ("in", "BYE"), ("out", "200"), ("in", "200")]
    else:
        assert finals == [487], wire_summary(wire)
        assert callee == [("StatusChange", "Ringing"), ("StatusChange", "Released")]


async def test_answer_after_caller_cancelled_is_refused(gw: GatewayHandle, caplog: pytest.LogCaptureFixture) -> None:
    """The CANCEL got there first (callee already Released): Answer fails and nothing comes back to life."""
    async with agent(gw, "agent1") as a1, agent(gw, "agent2") as a2:
        m1, m2 = a1.events.mark(), a2.events.mark()
        await a1.dial("1002")
        out_id = (await a1.events.wait_for(call_message("Dialing"), since=m1)).call["id"]
        in_id = (await a2.events.wait_for(call_message("Ringing"), since=m2)).call["id"]
        await a1.call_op(out_id, "Hangup")
        await a2.events.wait_for(call_message("Released", call_id=in_id), since=m2)

        late = await a2.api.post(f"/api/v2/me/calls/{in_id}", {"operationName": "Answer"})
        assert late.json()["statusCode"] != 0, late.text
        assert await a2.api.calls() == []
        await a1.events.wait_for(call_message("Released", call_id=out_id), since=m1)
        assert a2.history(in_id) == [("StatusChange", "Ringing"), ("StatusChange", "Released")]
    await wait_idle(gw)
    assert not [m for m in sip_wire(caplog) if m.method == "INVITE" and m.status == 200]


# ====================================================================================== baresip cancels
async def test_baresip_cancels_before_answer(gw: GatewayHandle, baresip_factory: Any,
                                             caplog: pytest.LogCaptureFixture) -> None:
    ua: Baresip = await baresip_factory("5007", tone_hz=BARESIP_HZ)
    async with agent(gw, "agent1") as a1:
        mark = a1.events.mark()
        ua_mark = await ua.dial(gw.line_uri("1001"))
        call_id = (await a1.events.wait_for(call_message("Ringing"), since=mark)).call["id"]
        await ua.wait_event("CALL_RINGING", since=ua_mark)
        await ua.hangup()
        released = await a1.events.wait_for(call_message("Released", call_id=call_id), since=mark)
        assert released.call["capabilities"] == []
        assert a1.history(call_id) == [("StatusChange", "Ringing"), ("StatusChange", "Released")]
        assert await a1.api.calls() == []
        await ua.wait_event("CALL_CLOSED", since=ua_mark)
    await wait_idle(gw)
    wire = sip_wire(caplog)
    assert wire_summary(wire, "CANCEL") == [("in", "CANCEL"), ("out", "200")]
    finals = [(m.direction, m.status) for m in wire if m.method == "INVITE" and (m.status or 0) >= 200]
    assert finals == [("out", 487)]
    assert ("in", "ACK") in wire_summary(wire, "ACK")


# ====================================================================================== line -> baresip
async def test_line_dials_standalone_baresip_by_uri_which_auto_answers(
        gw: GatewayHandle, baresip_factory: Any) -> None:
    ua: Baresip = await baresip_factory("5006", tone_hz=BARESIP_HZ, answermode="auto")
    async with agent(gw, "agent1") as a1:
        m1, ua_mark = a1.events.mark(), ua.mark()
        await a1.dial(ua.uri)
        dialing = await a1.events.wait_for(call_message("Dialing"), since=m1)
        call_id = dialing.call["id"]
        assert dialing.call["callType"] == "Outbound"
        established = await a1.events.wait_for(call_message("Established", call_id=call_id), since=m1)
        assert established.call["capabilities"] == ["Hangup", "StartCallRecording"]
        answered = await ua.wait_event("CALL_ESTABLISHED", since=ua_mark)
        assert answered["peeruri"].startswith("sip:1001@127.0.0.1")

        await ua.wait_received_audio(1.0)
        leg = leg_of(gw, call_id)
        await poll_until(lambda: leg.stats.packets_received >= 50, 5, "50 RTP packets from baresip")

        await a1.call_op(call_id, "Hangup")
        released = await a1.events.wait_for(call_message("Released", call_id=call_id), since=m1)
        assert released.call["capabilities"] == []
        closed = await ua.wait_event("CALL_CLOSED", since=ua_mark)
        assert closed["param"] == "Connection reset by peer"  # baresip got our BYE
        assert await a1.api.calls() == []
    await wait_idle(gw)
    heard = analyze(await ua.wait_recording("dec"))
    assert abs(heard.frequency_hz - LINE_HZ["1001"]) <= 5 and heard.rms_dbfs > -20, heard.describe()


async def test_line_cancels_call_to_ringing_baresip(gw: GatewayHandle, baresip_factory: Any,
                                                     caplog: pytest.LogCaptureFixture) -> None:
    """Our CANCEL must satisfy a third-party UAS, not just our own (RFC 3261 §9.1: same Via branch, CSeq)."""
    ua: Baresip = await baresip_factory("5008", tone_hz=BARESIP_HZ, answermode="manual")
    async with agent(gw, "agent1") as a1:
        m1, ua_mark = a1.events.mark(), ua.mark()
        await a1.dial(ua.uri)
        call_id = (await a1.events.wait_for(call_message("Dialing"), since=m1)).call["id"]
        await ua.wait_event("CALL_INCOMING", since=ua_mark)
        await poll_until(lambda: any(m.direction == "in" and m.status == 180 for m in sip_wire(caplog)),
                         5, "baresip's 180 Ringing")

        await a1.call_op(call_id, "Hangup")
        released = await a1.events.wait_for(call_message("Released", call_id=call_id), since=m1)
        assert released.call["capabilities"] == []
        await ua.wait_event("CALL_CLOSED", since=ua_mark)
        assert a1.history(call_id) == [("StatusChange", "Dialing"), ("StatusChange", "Released")]
        assert await a1.api.calls() == []
        await poll_until(lambda: ("in", 487) in [(m.direction, m.status) for m in sip_wire(caplog)],
                         5, "baresip's 487 Request Terminated")
    await wait_idle(gw)
    wire = sip_wire(caplog)
    assert wire_summary(wire, "CANCEL") == [("out", "CANCEL"), ("in", "200")]
    assert [m.status for m in wire if m.method == "INVITE" and (m.status or 0) >= 200] == [487]
    assert wire_summary(wire, "ACK") == [("out", "ACK")]


async def test_agent_rejects_baresip_call_with_603(gw: GatewayHandle, baresip_factory: Any) -> None:
    ua: Baresip = await baresip_factory("5009", tone_hz=BARESIP_HZ)
    async with agent(gw, "agent1") as a1:
        mark = a1.events.mark()
        ua_mark = await ua.dial(gw.line_uri("1001"))
        call_id = (await a1.events.wait_for(call_message("Ringing"), since=mark)).call["id"]
        await a1.call_op(call_id, "Reject")
        released = await a1.events.wait_for(call_message("Released", call_id=call_id), since=mark)
        assert released.call["capabilities"] == []
        closed = await ua.wait_event("CALL_CLOSED", since=ua_mark)
        assert "603" in closed["param"], closed
        assert await a1.api.calls() == []
    await wait_idle(gw)


class DeafToCancelUas(asyncio.DatagramProtocol):
    """A UAS that rings (100, 180) but ignores CANCEL: a crashed phone, or a CANCEL lost on the way."""

    def __init__(self) -> None:
        self.transport: asyncio.DatagramTransport | None = None
        self.received: list[str] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    @property
    def port(self) -> int:
        assert self.transport is not None
        return int(self.transport.get_extra_info("sockname")[1])

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        text = data.decode(errors="replace")
        first = text.split("\r\n", 1)[0]
        self.received.append(first.split(" ", 1)[0])
        if not first.startswith("INVITE ") or self.transport is None:
            return
        copied = [ln for ln in text.split("\r\n")
                  if ln.split(":", 1)[0].strip().lower() in ("via", "v", "from", "f", "to", "t", "call-id", "i",
                                                              "cseq")]
        for status, tag in (("100 Trying", ""), ("180 Ringing", ";tag=deaf1")):
            headers = [ln + tag if ln.split(":", 1)[0].strip().lower() in ("to", "t") else ln for ln in copied]
            reply = (f"SIP/2.0 {status}\r\n" + "\r\n".join(headers)
                     + f"\r\nContact: <sip:deaf@127.0.0.1:{self.port}>\r\nContent-Length: 0\r\n\r\n")
            self.transport.sendto(reply.encode(), addr)


async def test_cancel_ignored_by_callee_leaves_nothing_behind(tmp_path: Path) -> None:
    """RFC 3261 §9.1: no final response 64*T1 after our CANCEL -> the INVITE transaction is destroyed.

    T1 is 50 ms here so 64*T1 is 3.2 s; before the fix the session and its INVITE transaction stayed forever.
    """
    loop = asyncio.get_running_loop()
    transport, uas = await loop.create_datagram_endpoint(DeafToCancelUas, local_addr=("127.0.0.1", 0))
    settings = gateway_settings(tmp_path, devices=_devices(), sip={"t1": 0.05})
    try:
        async with running_gateway(settings) as gw, agent(gw, "agent1") as a1:
            m1 = a1.events.mark()
            await a1.dial(f"sip:deaf@127.0.0.1:{uas.port}")
            call_id = (await a1.events.wait_for(call_message("Dialing"), since=m1)).call["id"]
            await poll_until(lambda: "INVITE" in uas.received, 5, "the INVITE at the deaf UAS")
            await poll_until(lambda: gw.telephony.sip.stats().get("sip_transactions", 0) >= 1 and any(
                c.id == call_id for c in gw.telephony.iter_calls()), 5, "the call to be ringing")

            await a1.call_op(call_id, "Hangup")
            released = await a1.events.wait_for(call_message("Released", call_id=call_id), since=m1)
            assert released.call["capabilities"] == []
            assert await a1.api.calls() == []
            await poll_until(lambda: "CANCEL" in uas.received, 5, "our CANCEL at the UAS")

            stats = await wait_idle(gw, timeout=64 * 0.05 + 3)
            await poll_until(lambda: gw.telephony.stats()["sip_transactions"] == 0, 64 * 0.05 + 3,
                             "every SIP transaction to end")
            assert stats["calls"] == stats["sip_sessions"] == stats["rtp_legs"] == 0
    finally:
        transport.close()
