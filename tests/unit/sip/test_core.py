"""SipCore end to end without sockets: datagrams carried by a fake network, time by a float."""

from __future__ import annotations

import csv

import pytest
from sipnet import DATA, HOST, PORT, Net, make_net, media

from gateway.sip.auth import verify
from gateway.sip.core import LineConfig
from gateway.sip.events import (
    CallAnswered,
    CallConfirmed,
    CallEnded,
    CallFailed,
    CallProgress,
    IncomingCall,
    MessageDropped,
    RegistrationStateChanged,
)
from gateway.sip.message import SipRequest, SipResponse, build_response, parse_message
from gateway.sip.peer import Peer
from gateway.sip.uri import SipUri


def establish(net: Net) -> tuple[str, str]:
    uac = net.core.invite("1001", f"sip:1002@{HOST}:{PORT}", media(40000), net.now)
    net.pump()
    incoming = net.of(IncomingCall)
    assert len(incoming) == 1 and incoming[0].line_id == "1002" and incoming[0].remote_user == "1001"
    uas = incoming[0].session_id
    net.core.ringing(uas, net.now)
    net.pump()
    assert [(e.session_id, e.status) for e in net.of(CallProgress)] == [(uac, 180)]
    negotiated = net.core.answer(uas, media(40002), net.now)
    assert negotiated is not None and negotiated.remote_port == 40000 and negotiated.codec == "PCMU"
    net.pump()
    answered = net.of(CallAnswered)
    assert len(answered) == 1 and answered[0].session_id == uac and answered[0].media.remote_port == 40002
    assert [e.session_id for e in net.of(CallConfirmed)] == [uas]
    return uac, uas


def assert_clean(net: Net) -> None:
    net.advance(net.now + 40)
    stats = net.core.stats()
    assert stats["sip_sessions"] == 0, stats
    assert stats["sip_transactions"] == 0, stats
    assert stats["sip_dialogs"] == 0, stats


@pytest.mark.parametrize("hangup_side", ["caller", "callee"])
def test_line_to_line_call_and_bye(hangup_side: str) -> None:
    net = make_net()
    uac, uas = establish(net)
    ender, other = (uac, uas) if hangup_side == "caller" else (uas, uac)
    net.core.bye(ender, net.now)
    net.pump()
    ended = {e.session_id: e.cause for e in net.of(CallEnded)}
    assert ended == {ender: "local_bye", other: "remote_bye"}
    assert_clean(net)


def test_caller_cancel_gives_487_and_no_leftovers() -> None:
    net = make_net()
    uac = net.core.invite("1001", f"sip:1002@{HOST}:{PORT}", media(), net.now)
    net.pump()
    uas = net.of(IncomingCall)[0].session_id
    net.core.ringing(uas, net.now)
    net.pump()
    net.core.cancel(uac, net.now)
    net.pump()
    ended = {e.session_id: (e.cause, e.status) for e in net.of(CallEnded)}
    assert ended == {uac: ("local_cancel", None), uas: ("remote_cancel", 487)}
    assert not net.of(CallFailed)
    assert_clean(net)


def test_cancel_before_provisional_waits_for_it() -> None:
    """RFC 3261 §9.1: no CANCEL until a provisional response has arrived."""
    net = make_net()
    uac = net.core.invite("1001", "sip:9999@192.0.2.10:5060", media(), net.now)
    net.pump()
    (invite,) = net.take_outside()
    net.core.cancel(uac, net.now)
    net.pump()
    assert not any(isinstance(m, SipRequest) and m.method == "CANCEL" for m in net.take_outside())
    src = Peer("udp", "192.0.2.10", 5060)
    assert isinstance(invite, SipRequest)
    net.inject(build_response(invite, 180, to_tag="abc"), src)
    sent = net.take_outside()
    assert [m.method for m in sent if isinstance(m, SipRequest)] == ["CANCEL"]
    cancel = sent[0]
    assert isinstance(cancel, SipRequest)
    assert cancel.top_via.branch == invite.top_via.branch and cancel.cseq == (1, "CANCEL")
    net.inject(build_response(cancel, 200), src)
    net.inject(build_response(invite, 487, to_tag="abc"), src)
    acks = [m for m in net.take_outside() if isinstance(m, SipRequest) and m.method == "ACK"]
    assert len(acks) == 1
    assert [e.cause for e in net.of(CallEnded)] == ["local_cancel"]
    assert_clean(net)


def test_reject_reaches_caller_as_failure() -> None:
    net = make_net()
    uac = net.core.invite("1001", f"sip:1002@{HOST}:{PORT}", media(), net.now)
    net.pump()
    uas = net.of(IncomingCall)[0].session_id
    net.core.reject(uas, 603, net.now, "Decline")
    net.pump()
    assert [(e.session_id, e.status) for e in net.of(CallFailed)] == [(uac, 603)]
    assert [(e.session_id, e.cause) for e in net.of(CallEnded)] == [(uas, "local_reject")]
    assert_clean(net)


def test_answer_retransmits_2xx_until_ack_then_gives_up_with_bye() -> None:
    """RFC 3261 §13.3.1.4: 2xx resent at T1, 2T1 ... T2 until ACK; after 64*T1 the UAS sends BYE."""
    net = make_net()
    net.drop_acks = True
    uac = net.core.invite("1001", f"sip:1002@{HOST}:{PORT}", media(), net.now)
    net.pump()
    uas = net.of(IncomingCall)[0].session_id
    net.core.answer(uas, media(40002), net.now)
    net.pump()
    assert [e.session_id for e in net.of(CallAnswered)] == [uac]
    net.advance(31.9)
    assert not net.of(CallEnded)
    net.advance(32.1)
    causes = {e.session_id: e.cause for e in net.of(CallEnded)}
    assert causes[uas] == "ack_timeout"
    assert causes[uac] == "remote_bye"


def test_unsupported_codec_gets_488() -> None:
    net = make_net()
    sdp = (b"v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\n"
           b"m=audio 4000 RTP/AVP 96\r\na=rtpmap:96 opus/48000/2\r\n")
    inv = _invite_from_outside("1001", sdp)
    net.inject(inv, Peer("udp", "192.0.2.1", 5070))
    (resp,) = net.take_outside()
    assert isinstance(resp, SipResponse) and resp.status == 488
    assert not net.of(IncomingCall)


def test_record_route_is_honoured_for_bye() -> None:
    net = make_net()
    sdp = (b"v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\n"
           b"m=audio 4000 RTP/AVP 0 101\r\na=rtpmap:101 telephone-event/8000\r\n")
    inv = _invite_from_outside("1001", sdp, record_route="<sip:192.0.2.50:5070;lr>")
    proxy = Peer("udp", "192.0.2.50", 5070)
    net.inject(inv, proxy)
    uas = net.of(IncomingCall)[0].session_id
    net.core.answer(uas, media(), net.now)
    net.pump()
    responses = net.take_outside()
    ok = [m for m in responses if isinstance(m, SipResponse) and m.status == 200]
    assert ok and ok[0].headers.get("Record-Route") == "<sip:192.0.2.50:5070;lr>"
    ack = SipRequest(method="ACK", uri=f"sip:1001@{HOST}:{PORT}", headers=inv.headers.copy())
    ack.headers.set("To", ok[0].headers.get("To") or "")
    ack.headers.set("CSeq", "1 ACK")
    ack.headers.set("Via", "SIP/2.0/UDP 192.0.2.50:5070;branch=z9hG4bKack1")
    ack.body = b""
    net.inject(ack, proxy)
    assert net.of(CallConfirmed)
    net.core.bye(uas, net.now)
    net.pump()
    sent = [(s.msg, s.peer) for s in net.outside]
    byes = [(m, p) for m, p in sent if isinstance(m, SipRequest) and m.method == "BYE"]
    assert len(byes) == 1
    bye, peer = byes[0]
    assert (peer.host, peer.port) == ("192.0.2.50", 5070)
    assert bye.headers.get("Route") == "<sip:192.0.2.50:5070;lr>"
    assert bye.uri == "sip:caller@192.0.2.1:5080"


def _invite_from_outside(user: str, sdp: bytes, record_route: str | None = None) -> SipRequest:
    text = (
        f"INVITE sip:{user}@{HOST}:{PORT} SIP/2.0\r\n"
        "Via: SIP/2.0/UDP 192.0.2.50:5070;branch=z9hG4bKproxy1\r\n"
        "Via: SIP/2.0/UDP 192.0.2.1:5080;branch=z9hG4bKcaller1\r\n"
        + (f"Record-Route: {record_route}\r\n" if record_route else "")
        + "Max-Forwards: 69\r\n"
        "From: <sip:caller@example.com>;tag=ct1\r\n"
        f"To: <sip:{user}@{HOST}>\r\n"
        "Call-ID: outside-call-1\r\n"
        "CSeq: 1 INVITE\r\n"
        "Contact: <sip:caller@192.0.2.1:5080>\r\n"
        "Content-Type: application/sdp\r\n"
        f"Content-Length: {len(sdp)}\r\n\r\n"
    ).encode() + sdp
    msg = parse_message(text)
    assert isinstance(msg, SipRequest)
    return msg


def test_register_with_digest_challenge_refresh_and_unregister() -> None:
    registrar = SipUri.parse("sip:192.0.2.5:5070")
    net = make_net(r=LineConfig(line_id="1005", user="1005", password="secret", registrar=registrar))
    src = Peer("udp", "192.0.2.5", 5070)
    net.core.register("1005", net.now)
    net.pump()
    (reg1,) = net.take_outside()
    assert isinstance(reg1, SipRequest) and reg1.method == "REGISTER" and reg1.uri == "sip:192.0.2.5:5070"
    challenge = build_response(reg1, 401, to_tag="r1", headers=[
        ("WWW-Authenticate", 'Digest realm="192.0.2.5", nonce="abc123", qop="auth", algorithm=MD5')])
    net.inject(challenge, src)
    (reg2,) = net.take_outside()
    assert isinstance(reg2, SipRequest)
    assert reg2.cseq[0] == reg1.cseq[0] + 1 and reg2.call_id == reg1.call_id
    assert verify(reg2.headers.get("Authorization") or "", "secret", "REGISTER")
    ok = build_response(reg2, 200, to_tag="r1", headers=[("Contact", f"<sip:1005@{HOST}:{PORT}>;expires=60")])
    net.inject(ok, src)
    assert [(e.line_id, e.registered, e.expires) for e in net.of(RegistrationStateChanged)] == [("1005", True, 60)]
    assert net.core.is_registered("1005")
    net.advance(53.0)  # refresh at 90 % of 60 s = 54 s
    assert net.take_outside() == []
    net.advance(54.0)  # (at 54.5 Timer E would already have resent it)
    (refresh,) = net.take_outside()
    assert isinstance(refresh, SipRequest) and refresh.method == "REGISTER" and refresh.call_id == reg1.call_id
    assert verify(refresh.headers.get("Authorization") or "", "secret", "REGISTER")  # the cached challenge
    net.inject(build_response(refresh, 200, to_tag="r1",
                              headers=[("Contact", f"<sip:1005@{HOST}:{PORT}>;expires=60")]), src)
    assert net.core.unregister_all(net.now) == 1
    net.pump()
    (unreg,) = net.take_outside()
    assert isinstance(unreg, SipRequest) and unreg.headers.get("Expires") == "0"
    net.inject(build_response(unreg, 200, to_tag="r1"), src)
    assert net.of(RegistrationStateChanged)[-1].registered is False
    assert net.core.registrations_pending() == 0


def test_invite_407_is_retried_with_proxy_authorization() -> None:
    proxy = SipUri.parse("sip:192.0.2.5:5070")
    net = make_net(r=LineConfig(line_id="1005", user="1005", password="secret", registrar=proxy))
    src = Peer("udp", "192.0.2.5", 5070)
    net.core.invite("1005", "sip:2000@192.0.2.5:5070", media(), net.now, via_proxy=proxy)
    net.pump()
    (inv1,) = net.take_outside()
    assert isinstance(inv1, SipRequest)
    net.inject(build_response(inv1, 407, to_tag="p1", headers=[
        ("Proxy-Authenticate", 'Digest realm="192.0.2.5", nonce="n407", qop="auth"')]), src)
    sent = net.take_outside()
    methods = [m.method for m in sent if isinstance(m, SipRequest)]
    assert methods == ["ACK", "INVITE"]
    inv2 = sent[1]
    assert isinstance(inv2, SipRequest)
    assert inv2.cseq == (2, "INVITE") and inv2.top_via.branch != inv1.top_via.branch
    assert verify(inv2.headers.get("Proxy-Authorization") or "", "secret", "INVITE")


def test_garbage_and_malformed_datagrams_never_raise() -> None:
    net = make_net()
    src = Peer("udp", "192.0.2.9", 5999)
    net.inject(b"\x00\xff" * 32768, src)  # 64 KiB of garbage
    net.inject(b"INVITE sip:1001@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.9:5999;branch=z9hG4bKx\r\n"
               b"CSeq: banana\r\n\r\n", src)
    assert net.of(MessageDropped)
    answers = [m for m in net.take_outside() if isinstance(m, SipResponse)]
    assert [a.status for a in answers] == [400]
    # still serving
    opt = (b"OPTIONS sip:1001@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.9:5999;branch=z9hG4bKopt\r\n"
           b"From: <sip:x@y>;tag=1\r\nTo: <sip:1001@127.0.0.1>\r\nCall-ID: o1\r\nCSeq: 1 OPTIONS\r\n"
           b"Max-Forwards: 70\r\nContent-Length: 0\r\n\r\n")
    net.inject(opt, src)
    (ok,) = net.take_outside()
    assert isinstance(ok, SipResponse) and ok.status == 200 and "INVITE" in (ok.headers.get("Allow") or "")


def _rfc4475_rows() -> list[dict[str, str]]:
    with open(DATA / "INDEX.tsv", newline="") as f:
        return list(csv.DictReader(f, delimiter="\t"))


def _accepts(expected: str, got: int | None) -> bool:
    for alt in expected.split("|"):
        if alt == "any":
            return True
        if alt == "drop" and got is None:
            return True
        if alt == "close":
            continue
        if alt.startswith("!") and got is not None and str(got) != alt[1:]:
            return True
        if alt.endswith("xx") and got is not None and str(got)[0] == alt[0]:
            return True
        if alt.isdigit() and got == int(alt):
            return True
    return False


@pytest.mark.parametrize("row", _rfc4475_rows(), ids=lambda r: f"{r['rfc_section']}-{r['name']}")
def test_rfc4475_vector_gets_the_answer_a_ua_owes(row: dict[str, str]) -> None:
    net = make_net()
    data = (DATA / f"{row['name']}.dat").read_bytes()
    net.inject(data, Peer("udp", "192.0.2.99", 5060))
    sent = net.take_outside()
    answers = [m for m in sent if isinstance(m, SipResponse)]
    assert not [m for m in sent if isinstance(m, SipRequest)]
    got = answers[0].status if answers else None
    if row["name"] == "dblreq":
        assert len(answers) == 1 and answers[0].cseq[1] == "REGISTER"
    assert len(answers) <= 1
    assert _accepts(row["rfc_response"], got), f"{row['name']}: expected {row['rfc_response']}, got {got}"
