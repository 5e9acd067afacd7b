"""Registrar mode end to end: the gateway's lines behind a real Kamailio with digest auth.

Issue 2 proof: lines register (401 challenge, then credentials, RFC 3261 §10.2 / §22.2), a line with a
wrong password stays unregistered and Inactive, a Dial to a number that is not a local line goes
through the registrar (407 challenge, retry with Proxy-Authorization), Hangup sends the BYE along the
Record-Route set (§12.2.1.1, loose routing), a call from a registered softphone reaches the line's
registered Contact, a Hangup before the answer CANCELs through the proxy (§9.1), bindings are
refreshed before they expire (§10.2.4) and the lines unregister when the gateway shuts down
(Expires: 0, §10.2.2).
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any

import pytest

from gateway.sip.registration import RegState
from gateway.sip.session import SessionState
from tests.e2e.peers import Baresip, Kamailio
from tests.e2e.peers.audio import assert_tone, read_wav_info
from tests.support.gateway import GwsClient, gateway_settings, running_gateway
from tests.support.waiting import until

pytestmark = pytest.mark.e2e


DEVICES = [
    {"number": "1001", "sip_user": "1001", "sip_password": "pw1001", "display_name": "Line 1001",
     "audio_source": "tone:1000"},
    {"number": "1002", "sip_user": "1002", "sip_password": "pw1002", "display_name": "Line 1002",
     "audio_source": "tone:1000"},
    # kamailio knows 1003 with pw1003: this line's credentials are wrong on purpose
    {"number": "1003", "sip_user": "1003", "sip_password": "wrong-password", "display_name": "Line 1003"},
]
USERS = [
    {"username": f"agent{i}", "password": f"agent{i}pw", "roles": ["agent"], "devices": [f"100{i}"]}
    for i in (1, 2, 3)
]


async def device(client: GwsClient) -> dict[str, Any]:
    r = await client.get("/api/v2/me/devices", fields="*")
    assert r.status_code == 200, r.text
    return r.json()["devices"][0]  # type: ignore[no-any-return]


async def device_state(client: GwsClient, want: str) -> dict[str, Any] | None:
    dev = await device(client)
    return dev if dev["deviceState"] == want else None


async def call_in(client: GwsClient, state: str) -> dict[str, Any] | None:
    calls = await client.calls()
    return next((c for c in calls if c["state"] == state), None)


def settings_for(tmp_path: Path, kamailio: Kamailio, **sip: Any) -> Any:
    return gateway_settings(tmp_path, devices=DEVICES, users=USERS, sip={"registrar": kamailio.uri, **sip})


async def binding_cseq(kamailio: Kamailio, user: str) -> int | None:
    """CSeq of the REGISTER that last updated the user's binding in kamailio's usrloc."""
    out = await kamailio.rpc("ul.lookup", "location", "s:" + user)
    found = re.search(r"^\s*CSeq: (\d+)", out, re.M)
    return int(found.group(1)) if found else None


async def test_lines_register_with_digest_auth_and_refresh(kamailio: Kamailio,
                                                                          tmp_path: Path) -> None:
    # 10 s is kamailio's min_expires: the lines must refresh within the test
    async with running_gateway(settings_for(tmp_path, kamailio, register_expires=10)) as gw:
        contact_host = f"127.0.0.1:{gw.sip_port}"
        for line in ("1001", "1002"):
            contacts = await kamailio.wait_registered(line)
            assert [c.uri for c in contacts] == [f"sip:{line}@{contact_host}"]
            assert contacts[0].expires is not None and 0 < contacts[0].expires <= 10
            assert await binding_cseq(kamailio, line) == 2  # CSeq 1 got the 401, CSeq 2 the 200
        log = kamailio.log_text()
        for line in ("1001", "1002"):
            # challenged with 401, then accepted with credentials: exactly two REGISTERs so far
            assert log.count(f"REQ REGISTER {kamailio.uri} from sip:{line}@") == 2, log

        async with gw.client("agent1") as a1, gw.client("agent2") as a2, gw.client("agent3") as a3:
            for client in (a1, a2):
                await client.start_session()
                await until(lambda c=client: device_state(c, "Active"), f"{client.username}'s line Active")
            await a3.start_session()
            # the wrong password: 401, credentials, 401 again -> the line gives up until its back-off
            # retry instead of sending the refused password once more; no binding, device Inactive
            await until(lambda: gw.telephony.sip.core.registration_state("1003") is RegState.FAILED,
                        "line 1003's registration to fail")
            assert kamailio.log_text().count(f"REQ REGISTER {kamailio.uri} from sip:1003@") == 2
            assert await kamailio.registered_contacts("1003") == []
            assert (await device(a3))["deviceState"] == "Inactive"
            dev3 = await device(a3)
            r = await a3.post(f"/api/v2/me/devices/{dev3['id']}/calls",
                              {"operationName": "Dial", "destination": "1005"})
            assert (r.status_code, r.json()["statusCode"]) == (400, 2), r.text  # spec §1.5: statusCode 2 is HTTP 400
            assert await a3.calls() == []

            # refresh before the binding runs out (RFC 3261 §10.2.4): same Call-ID, next CSeq, accepted
            # (with the cached challenge's credentials, or after a new 401 if kamailio wants a new nonce)
            async def refreshed(user: str) -> bool:
                return (await binding_cseq(kamailio, user) or 0) >= 3

            for line in ("1001", "1002"):
                await until(lambda u=line: refreshed(u), f"{line}'s refreshed binding", timeout=15)
                contacts = await kamailio.registered_contacts(line)
                assert [c.uri for c in contacts] == [f"sip:{line}@{contact_host}"]
            for client in (a1, a2):
                assert (await device(client))["deviceState"] == "Active"


async def test_dial_registered_baresip_through_proxy_hang_up_and_unregister(
        kamailio: Kamailio, baresip_factory, tmp_path: Path) -> None:
    ua: Baresip = await baresip_factory("1005", registrar=kamailio, answermode="auto", tone_hz=440)
    async with running_gateway(settings_for(tmp_path, kamailio)) as gw:
        sip_port = gw.sip_port
        for line in ("1001", "1002"):
            await kamailio.wait_registered(line)
        async with gw.client("agent1") as a1:
            await a1.start_session()
            dev = await until(lambda: device_state(a1, "Active"), "line 1001 Active")
            mark = ua.mark()
            await a1.op(f"/api/v2/me/devices/{dev['id']}/calls", "Dial", destination="1005")
            established = await until(lambda: call_in(a1, "Established"), "agent1's call Established")
            assert [p["phoneNumber"] for p in established["participants"]] == ["1005"]
            answered = await ua.wait_event("CALL_ESTABLISHED", since=mark)
            assert answered["peeruri"] == f"sip:1001@{kamailio.hostport}"  # From: the line's AoR at the registrar
            # media flows both ways: wait on baresip's growing recording of what it receives
            await ua.wait_received_audio(1.0)
            await a1.op(f"/api/v2/me/calls/{established['id']}", "StartCallRecording")
            recordings = Path(gw.settings.recordings_path)
            rec = await until(lambda: _grown_wav(recordings, 1.0), "1 s in the gateway's recording")

            await a1.op(f"/api/v2/me/calls/{established['id']}", "Hangup")
            closed = await ua.wait_event("CALL_CLOSED", since=mark)
            assert closed["param"] == "Connection reset by peer"  # baresip received our BYE
            assert await a1.calls() == []
        assert [c.uri for c in await kamailio.registered_contacts("1001")] == [gw.line_uri("1001")]
    # leaving running_gateway shut the gateway down: every registered line sent Expires: 0 (the 300 s
    # bindings could not have run out by themselves)
    await kamailio.wait_unregistered("1001")
    await kamailio.wait_unregistered("1002")

    log = kamailio.log_text()
    assert log.count("REQ INVITE sip:1005@") == 2  # challenged with 407, then sent with Proxy-Authorization
    # the ACK for the 2xx and the BYE followed the Record-Route set: sent to kamailio, with baresip's
    # Contact as Request-URI (loose routing, RFC 3261 §12.2.1.1)
    for method in ("ACK", "BYE"):
        assert _logged(log, f"REQ {method} sip:1005-", "from sip:1001@", f"(src 127.0.0.1:{sip_port}/udp)"), log
    assert_tone(await ua.wait_recording("dec"), 1000, tol_hz=5)  # the line's tone:1000 reached baresip
    assert_tone(rec, 440, channel=0, tol_hz=5)  # remote (left) channel: baresip's 440 Hz
    assert_tone(rec, 1000, channel=1, tol_hz=5)  # local (right) channel: the line's own tone


def _logged(log: str, *parts: str) -> bool:
    """Some kamailio log line holds every part."""
    return any(all(p in line for p in parts) for line in log.splitlines())


def _grown_wav(directory: Path, seconds: float) -> Path | None:
    for path in sorted(directory.glob("*.wav")):
        try:
            if read_wav_info(path).duration >= seconds:
                return path
        except (OSError, ValueError):
            continue
    return None


async def test_registered_baresip_calls_a_line_via_its_registered_contact(kamailio: Kamailio, baresip_factory,
                                                                          tmp_path: Path) -> None:
    ua: Baresip = await baresip_factory("1005", registrar=kamailio, answermode="manual", tone_hz=440)
    async with running_gateway(settings_for(tmp_path, kamailio)) as gw:
        sip_port = gw.sip_port
        await kamailio.wait_registered("1002")
        async with gw.client("agent2") as a2:
            await a2.start_session()
            await until(lambda: device_state(a2, "Active"), "line 1002 Active")
            mark = await ua.dial(kamailio.aor("1002"))
            ringing = await until(lambda: call_in(a2, "Ringing"), "agent2's call Ringing")
            assert [p["phoneNumber"] for p in ringing["participants"]] == ["1005"]
            assert ringing["capabilities"] == ["Answer", "Reject"]
            await ua.wait_event("CALL_RINGING", since=mark)
            await a2.op(f"/api/v2/me/calls/{ringing['id']}", "Answer")
            await ua.wait_event("CALL_ESTABLISHED", since=mark)
            assert (await call_in(a2, "Established"))["id"] == ringing["id"]
            # baresip's ACK reached the line through the proxy, so the gateway's session is confirmed
            (call,) = list(gw.telephony.iter_calls())
            await until(lambda: gw.telephony.sip.core.session_state(call.session_id)
                                       is SessionState.CONFIRMED, "the ACK for our 200 OK")
            await ua.wait_received_audio(0.5)
            # the callee side hangs up: the BYE takes the route set of the INVITE's Record-Route (§12.1.1)
            await a2.op(f"/api/v2/me/calls/{ringing['id']}", "Hangup")
            closed = await ua.wait_event("CALL_CLOSED", since=mark)
            assert closed["param"] == "Connection reset by peer"  # baresip received our BYE
            assert await a2.calls() == []
    assert_tone(await ua.wait_recording("dec"), 1000, tol_hz=5)
    log = kamailio.log_text()
    assert log.count("REQ INVITE sip:1002@") == 2  # baresip's INVITE was challenged too (407)
    assert _logged(log, "REQ ACK sip:1002@", "from sip:1005@"), log
    assert _logged(log, "REQ BYE sip:1005-", "from sip:1002@", f"(src 127.0.0.1:{sip_port}/udp)"), log


async def test_hangup_before_answer_cancels_through_the_proxy(kamailio: Kamailio, baresip_factory,
                                                              tmp_path: Path) -> None:
    ua: Baresip = await baresip_factory("1006", registrar=kamailio, answermode="manual", tone_hz=440)
    async with running_gateway(settings_for(tmp_path, kamailio)) as gw:
        sip_port = gw.sip_port
        await kamailio.wait_registered("1001")
        async with gw.client("agent1") as a1:
            await a1.start_session()
            dev = await until(lambda: device_state(a1, "Active"), "line 1001 Active")
            mark = ua.mark()
            await a1.op(f"/api/v2/me/devices/{dev['id']}/calls", "Dial", destination="1006")
            await ua.wait_event("CALL_INCOMING", since=mark)
            dialing = await until(lambda: call_in(a1, "Dialing"), "agent1's call Dialing")
            await a1.op(f"/api/v2/me/calls/{dialing['id']}", "Hangup")
            await ua.wait_event("CALL_CLOSED", since=mark)
            assert await a1.calls() == []
            # the INVITE transaction ends with 487 (ACKed hop by hop): nothing is left in the core
            await until(lambda: gw.telephony.sip.core.stats()["sip_sessions"] == 0, "the session to end")
    log = kamailio.log_text()
    assert _logged(log, "REQ CANCEL sip:1006@", "from sip:1001@", f"(src 127.0.0.1:{sip_port}/udp)"), log



async def test_lines_register_and_call_over_tcp(kamailio: Kamailio, baresip_factory, tmp_path: Path) -> None:
    """registrar = "sip:host:port;transport=tcp": REGISTER, INVITE, ACK and BYE all take TCP (RFC 3261 §18)."""
    ua: Baresip = await baresip_factory("1005", registrar=kamailio, answermode="auto", tone_hz=440)
    settings = settings_for(tmp_path, kamailio, registrar=f"{kamailio.uri};transport=tcp")
    async with running_gateway(settings) as gw:
        tcp_port = gw.telephony.sip_ports["tcp"]
        contacts = await kamailio.wait_registered("1001")
        assert [c.uri for c in contacts] == [f"sip:1001@127.0.0.1:{tcp_port};transport=tcp"]
        async with gw.client("agent1") as a1:
            await a1.start_session()
            dev = await until(lambda: device_state(a1, "Active"), "line 1001 Active")
            mark = ua.mark()
            await a1.op(f"/api/v2/me/devices/{dev['id']}/calls", "Dial", destination="1005")
            established = await until(lambda: call_in(a1, "Established"), "agent1's call Established")
            await ua.wait_received_audio(0.5)
            await a1.op(f"/api/v2/me/calls/{established['id']}", "Hangup")
            closed = await ua.wait_event("CALL_CLOSED", since=mark)
            assert closed["param"] == "Connection reset by peer"
            # and back: kamailio reaches the line at its TCP Contact
            mark = await ua.dial(kamailio.aor("1001"))
            ringing = await until(lambda: call_in(a1, "Ringing"), "agent1's inbound call Ringing")
            await a1.op(f"/api/v2/me/calls/{ringing['id']}", "Answer")
            await ua.wait_event("CALL_ESTABLISHED", since=mark)
            await ua.wait_received_audio(0.5)
            await ua.hangup()
            await ua.wait_event("CALL_CLOSED", since=mark)
            await until(lambda: gw.telephony.sip.core.stats()["sip_sessions"] == 0, "both sessions to end")
            assert await a1.calls() == []
    await kamailio.wait_unregistered("1001")
    log = kamailio.log_text()
    for request in ("REQ REGISTER", "REQ INVITE sip:1005@", "REQ ACK sip:1005-", "REQ BYE sip:1005-"):
        assert _logged(log, request, "from sip:1001@", "/tcp)"), f"{request} over TCP:\n{log}"


@pytest.mark.parametrize("algorithm", ["MD5", "SHA-256"])
async def test_qop_auth_challenges_with_md5_and_sha256(kamailio_factory, tmp_path: Path, algorithm: str,
                                                       caplog: pytest.LogCaptureFixture) -> None:
    """Kamailio challenging with qop="auth" and the given algorithm (RFC 7616 / RFC 8760): the lines register
    and a call from 1001 to 1002 routed through the proxy passes its 407 with a Proxy-Authorization."""
    caplog.set_level(logging.INFO, logger="gateway.sip.trace")
    kamailio: Kamailio = await kamailio_factory({"1001": "pw1001", "1002": "pw1002"}, qop=True, algorithm=algorithm)
    async with running_gateway(settings_for(tmp_path, kamailio, trace=True)) as gw:
        for line in ("1001", "1002"):
            await kamailio.wait_registered(line)
        async with gw.client("agent1") as a1, gw.client("agent2") as a2:
            for client in (a1, a2):
                await client.start_session()
            dev = await until(lambda: device_state(a1, "Active"), "line 1001 Active")
            # a full SIP URI goes where it says: to the proxy, which challenges 1001 and forwards to 1002's contact
            await a1.op(f"/api/v2/me/devices/{dev['id']}/calls", "Dial",
                        destination={"phoneNumber": kamailio.aor("1002")})
            ringing = await until(lambda: call_in(a2, "Ringing"), "agent2's call Ringing")
            await a2.op(f"/api/v2/me/calls/{ringing['id']}", "Answer")
            established = await until(lambda: call_in(a1, "Established"), "agent1's call Established")
            await a1.op(f"/api/v2/me/calls/{established['id']}", "Hangup")
            await until(lambda: gw.telephony.stats()["calls"] == 0, "both calls released")
    sent = [r.getMessage() for r in caplog.records
            if r.name == "gateway.sip.trace" and r.getMessage().startswith(">>>")]
    auth = [line for msg in sent for line in msg.splitlines()
            if line.lower().startswith(("authorization:", "proxy-authorization:"))]
    registers = [a for a in auth if a.lower().startswith("authorization:")]
    invites = [a for a in auth if a.lower().startswith("proxy-authorization:")]
    assert registers and invites, auth
    for header in auth:
        assert f"algorithm={algorithm}" in header and "qop=auth" in header and "cnonce=" in header, header
        assert re.search(r"\bnc=0000000[1-9]\b", header), header
    width = 64 if algorithm == "SHA-256" else 32  # hex digest length of the response
    assert all(re.search(rf'response="[0-9a-f]{{{width}}}"', h) for h in auth), auth
    log = kamailio.log_text()
    assert log.count("REQ INVITE sip:1002@") == 2  # 407, then accepted with our credentials
