"""The e2e harness proves itself against real peers (no gateway involved).

If these fail, gateway e2e failures mean nothing: kamailio auth/registration/Record-Route, baresip
control + media + recording, SIPp runs and the audio analysis are all exercised here.
"""

from __future__ import annotations

import pytest

from tests.e2e.peers import Baresip, Kamailio, PeerError
from tests.e2e.peers.audio import assert_tone
from tests.e2e.peers.sipp import SippResult

pytestmark = pytest.mark.e2e


async def test_two_registered_baresips_call_through_kamailio(kamailio: Kamailio, baresip_factory) -> None:
    caller: Baresip = await baresip_factory("1005", registrar=kamailio, tone_hz=440)
    callee: Baresip = await baresip_factory("1006", registrar=kamailio, tone_hz=1000)

    contacts = await kamailio.registered_contacts("1006")
    assert [c.uri.rsplit("@", 1)[1] for c in contacts] == [f"127.0.0.1:{callee.sip_port}"]
    assert await kamailio.registered_contacts("1007") == []

    m_caller, m_callee = caller.mark(), callee.mark()
    await caller.dial(kamailio.aor("1006"))
    answered = await callee.wait_event("CALL_ESTABLISHED", since=m_callee)
    established = await caller.wait_event("CALL_ESTABLISHED", since=m_caller)
    assert answered["id"] == established["id"]  # same Call-ID on both sides of the proxy
    assert answered["peeruri"] == "sip:1005@" + kamailio.hostport
    await caller.wait_event("CALL_RTPESTAB", since=m_caller)
    await callee.wait_event("CALL_RTPESTAB", since=m_callee)

    # let half a second of the caller's tone arrive: wait on the callee's growing recording, not a sleep
    await callee.wait_received_audio(0.5)

    await caller.hangup()
    closed_caller = await caller.wait_event("CALL_CLOSED", since=m_caller)
    closed_callee = await callee.wait_event("CALL_CLOSED", since=m_callee)
    assert closed_callee["param"] == "Connection reset by peer"  # it received our BYE via loose routing
    assert closed_caller["id"] == closed_callee["id"] == established["id"]

    received = await callee.wait_recording("dec")
    analysis = assert_tone(received, 440, tol_hz=5)
    assert analysis.end_s - analysis.start_s > 0.3
    assert_tone(await caller.wait_recording("dec"), 1000, tol_hz=5)

    log = kamailio.log_text()
    assert log.count("REQ INVITE sip:1006@") == 2  # challenged with 407, then sent again with credentials
    assert "REQ BYE sip:1006-" in log  # the BYE followed the Record-Route set through the proxy


async def test_kamailio_rejects_unknown_user_and_bad_password(kamailio_factory, baresip_factory) -> None:
    k: Kamailio = await kamailio_factory({"1005": "pw1005"})
    with pytest.raises(PeerError, match="not registered"):
        await baresip_factory("1005", registrar=k, password="wrong")
    with pytest.raises(PeerError, match="not registered"):
        await baresip_factory("1009", registrar=k, password="pw1009")
    assert await k.registered_contacts("1005") == []
    assert "REGISTER rejected for user 1009" in k.log_text()  # 403 from the user regex, not an auth loop


async def test_standalone_baresip_dials_another_directly(baresip_factory) -> None:
    a: Baresip = await baresip_factory("1005", tone_hz=440)
    b: Baresip = await baresip_factory("1001", tone_hz=1000)
    mark = await a.dial(b.uri)
    answered = await b.wait_event("CALL_ESTABLISHED")
    assert answered["peeruri"] == a.uri
    await a.wait_event("CALL_ESTABLISHED", since=mark)
    await b.hangup()
    closed = await a.wait_event("CALL_CLOSED", since=mark)
    assert closed["param"] == "Connection reset by peer"


async def test_sipp_uac_to_uas_ten_calls(sipp_factory) -> None:
    uas = sipp_factory("uas_pcmu", calls=10)
    await uas.start()
    uac = sipp_factory("uac_pcmu", remote=uas.hostport, service="1001", calls=10, rate=100, limit=10, pause_ms=50)
    result: SippResult = await uac.run()
    assert (result.returncode, result.created, result.successful, result.failed) == (0, 10, 10, 0), result.describe()
    served = await uas.wait()
    assert (served.returncode, served.successful, served.failed) == (0, 10, 0), served.describe()


async def test_sipp_through_kamailio_auth_and_record_route(kamailio_factory, sipp_factory) -> None:
    uas = sipp_factory("uas_pcmu", calls=2)
    await uas.start()
    k: Kamailio = await kamailio_factory({"1005": "pw1005"}, gateway_uri=f"sip:{uas.hostport}")
    uac = sipp_factory(
        "uac_pcmu_auth", remote=k.hostport, service="2000", auth=("1005", "pw1005"), calls=2, limit=2, pause_ms=50
    )
    result = await uac.run()
    assert (result.returncode, result.successful, result.failed) == (0, 2, 0), result.describe()
    assert (await uas.wait()).successful == 2
    # ACK and BYE followed the Record-Route set back through kamailio
    log = k.log_text()
    assert log.count("REQ ACK sip:sipp@") == 2
    assert log.count("REQ BYE sip:sipp@") == 2
