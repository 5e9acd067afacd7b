"""Dialogs (RFC 3261 §12): route sets, remote targets, and dialogs the peer made unusable."""

from __future__ import annotations

import pytest
from sipnet import HOST, PORT, make_net, media

from gateway.sip.dialog import Dialog
from gateway.sip.events import CallAnswered, CallEnded, CallFailed, IncomingCall, MessageDropped
from gateway.sip.message import SipRequest, SipResponse, build_response, parse_message
from gateway.sip.peer import Peer

SDP = (b"v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\n"
       b"m=audio 4000 RTP/AVP 0\r\n")
CALLER = Peer("udp", "192.0.2.1", 5080)


def incoming_invite(*, contact: str | None = "<sip:caller@192.0.2.1:5080>", record_route: str | None = None,
                    from_uri: str = "sip:caller@192.0.2.1:5080") -> bytes:
    return ((f"INVITE sip:1001@{HOST}:{PORT} SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.1:5080;branch=z9hG4bKdlg\r\n"
             f"Max-Forwards: 70\r\nFrom: <{from_uri}>;tag=ct\r\nTo: <sip:1001@{HOST}>\r\nCall-ID: dlg-1\r\n"
             "CSeq: 1 INVITE\r\n" + (f"Contact: {contact}\r\n" if contact else "")
             + (f"Record-Route: {record_route}\r\n" if record_route else "")
             + f"Content-Type: application/sdp\r\nContent-Length: {len(SDP)}\r\n\r\n").encode() + SDP)


def ack_for(ok: SipResponse) -> bytes:
    return (f"ACK sip:1001@{HOST}:{PORT} SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.1:5080;branch=z9hG4bKack\r\n"
            f"Max-Forwards: 70\r\nFrom: <sip:caller@192.0.2.1:5080>;tag=ct\r\nTo: {ok.headers.get('To')}\r\n"
            "Call-ID: dlg-1\r\nCSeq: 1 ACK\r\nContent-Length: 0\r\n\r\n").encode()


def test_loose_route_set_and_strict_routing_fallback() -> None:
    req = parse_message(incoming_invite(record_route="<sip:p1.example.com;lr>, <sip:p2.example.com;lr>"))
    assert isinstance(req, SipRequest)
    uas = Dialog.from_uas(req, "lt", "<sip:1001@127.0.0.1:5060>")
    bye, hop = uas.create_request("BYE")
    assert bye.uri == "sip:caller@192.0.2.1:5080" and str(hop) == "sip:p1.example.com;lr"
    assert bye.headers.get_all("Route") == ["<sip:p1.example.com;lr>", "<sip:p2.example.com;lr>"]
    assert (bye.cseq, bye.from_tag, bye.to_tag) == ((1, "BYE"), "lt", "ct")
    strict = Dialog.from_uas(parse_message(incoming_invite(record_route="<sip:p1.example.com>")), "lt", "")  # type: ignore[arg-type]
    bye, hop = strict.create_request("BYE")  # §12.2.1.1: no lr -> the route is the Request-URI
    assert bye.uri == "sip:p1.example.com" and str(hop) == "sip:p1.example.com"
    assert bye.headers.get_all("Route") == ["<sip:caller@192.0.2.1:5080>"]
    uac = Dialog.from_uac(req, build_response(req, 200, to_tag="tt", headers=[
        ("Record-Route", "<sip:p1.example.com;lr>, <sip:p2.example.com;lr>"), ("Contact", "<sip:callee@192.0.2.7>")]),
        "<sip:caller@192.0.2.1:5080>")
    bye, hop = uac.create_request("BYE")  # the UAC reverses the Record-Route (§12.1.2)
    assert bye.uri == "sip:callee@192.0.2.7" and str(hop) == "sip:p2.example.com;lr"
    assert bye.headers.get_all("Route") == ["<sip:p2.example.com;lr>", "<sip:p1.example.com;lr>"]
    assert bye.cseq == (2, "BYE")


@pytest.mark.parametrize(("contact", "record_route", "reason"), [
    ("<tel:+15551234>", None, "Contact"),
    ("<sip:caller@192.0.2.1:5080>", "<http://proxy.example.com>", "Record-Route"),
    (None, None, "Contact"),  # RFC 2543 without Contact: From is the fallback ... and it is not SIP
])
def test_invite_whose_dialog_could_not_be_used_is_a_400(contact: str | None, record_route: str | None,
                                                         reason: str) -> None:
    """RFC 3261 §8.1.1.8 / §12.1.1: the remote target and the route set are SIP or SIPS URIs."""
    net = make_net()
    from_uri = "sip:caller@192.0.2.1:5080" if contact else "tel:+15550000"
    net.inject(incoming_invite(contact=contact, record_route=record_route, from_uri=from_uri), CALLER)
    (resp,) = net.take_outside()
    assert isinstance(resp, SipResponse) and resp.status == 400 and reason in resp.reason
    assert not net.of(IncomingCall) and net.core.stats()["sip_sessions"] == 0


def test_rfc2543_invite_without_contact_is_ended_towards_its_from() -> None:
    net = make_net()
    net.inject(incoming_invite(contact=None), CALLER)
    (call,) = net.of(IncomingCall)
    net.core.answer(call.session_id, media(40002), net.now)
    net.pump()
    ok = [m for m in net.take_outside() if isinstance(m, SipResponse) and m.status == 200][0]
    net.inject(ack_for(ok), CALLER)
    net.core.bye(call.session_id, net.now)
    net.pump()
    (sent,) = net.take_sent()
    bye = sent.msg
    assert isinstance(bye, SipRequest) and bye.method == "BYE" and bye.uri == "sip:caller@192.0.2.1:5080"
    assert (sent.peer.host, sent.peer.port) == ("192.0.2.1", 5080)


def test_unreachable_remote_target_ends_the_call_without_a_bye() -> None:
    net = make_net()
    net.inject(incoming_invite(contact="<sip:caller@192.0.2.1:5080;transport=sctp>"), CALLER)
    (call,) = net.of(IncomingCall)
    net.core.answer(call.session_id, media(40002), net.now)
    net.pump()
    ok = [m for m in net.take_outside() if isinstance(m, SipResponse) and m.status == 200][0]
    net.inject(ack_for(ok), CALLER)
    net.core.bye(call.session_id, net.now)
    net.pump()
    assert net.take_outside() == [] and [e.cause for e in net.of(CallEnded)] == ["local_bye"]
    assert net.core.stats()["sip_sessions"] == 0


@pytest.mark.parametrize("extra", [
    [("Contact", "<tel:+15551234>")],
    [("Contact", "<sip:callee@192.0.2.10:5060;transport=tls>")],
    [("Contact", "<sip:callee@192.0.2.10>"), ("Record-Route", "<http://proxy.example.com>")],
])
def test_2xx_whose_dialog_cannot_be_used_fails_the_call_without_raising(extra: list[tuple[str, str]]) -> None:
    net = make_net()
    sid = net.core.invite("1001", "sip:2000@192.0.2.10:5060", media(), net.now)
    net.pump()
    (invite,) = net.take_outside()
    assert isinstance(invite, SipRequest)
    ok = build_response(invite, 200, to_tag="callee", headers=extra, body=SDP, content_type="application/sdp")
    callee = Peer("udp", "192.0.2.10", 5060)
    net.inject(ok, callee)
    net.inject(ok, callee)  # its retransmission, too
    assert [(e.session_id, e.status) for e in net.of(CallFailed)] == [(sid, 502)]
    assert not net.of(CallAnswered) and net.of(MessageDropped)
    assert [m for m in net.take_outside() if isinstance(m, SipRequest)] == []  # nowhere to send an ACK
    net.advance(net.now + 40)
    assert net.core.stats() == {"sip_sessions": 0, "sip_transactions": 0, "sip_dialogs": 0, "sip_timers": 0}


def test_bye_on_an_early_dialog_ends_the_pending_invite_with_487() -> None:
    """RFC 3261 §15.1.2: the UAS answers the BYE and still owes the INVITE a final response."""
    net = make_net()
    net.inject(incoming_invite(), CALLER)
    (call,) = net.of(IncomingCall)
    net.core.ringing(call.session_id, net.now)
    net.pump()
    ringing = [m for m in net.take_outside() if isinstance(m, SipResponse) and m.status == 180][0]
    bye = (f"BYE sip:1001@{HOST}:{PORT} SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.1:5080;branch=z9hG4bKbye\r\n"
           f"Max-Forwards: 70\r\nFrom: <sip:caller@192.0.2.1:5080>;tag=ct\r\nTo: {ringing.headers.get('To')}\r\n"
           "Call-ID: dlg-1\r\nCSeq: 2 BYE\r\nContent-Length: 0\r\n\r\n").encode()
    net.inject(bye, CALLER)
    answers = sorted((m.cseq[1], m.status) for m in net.take_outside() if isinstance(m, SipResponse))
    assert answers == [("BYE", 200), ("INVITE", 487)]
    assert [(e.session_id, e.cause) for e in net.of(CallEnded)] == [(call.session_id, "remote_bye")]
    net.advance(net.now + 40)  # no ACK for the 487: Timer H ends its transaction
    assert net.core.stats() == {"sip_sessions": 0, "sip_transactions": 0, "sip_dialogs": 0, "sip_timers": 0}


def test_a_2xx_outside_the_invite_transaction_still_ends_that_transaction() -> None:
    """A 2xx whose top Via names another branch reaches the session through its tags; the INVITE
    transaction waiting in Proceeding (no timer runs there) must not be left behind."""
    net = make_net()
    sid = net.core.invite("1001", "sip:2000@192.0.2.10:5060", media(), net.now)
    net.pump()
    (invite,) = net.take_outside()
    assert isinstance(invite, SipRequest)
    callee = Peer("udp", "192.0.2.10", 5060)
    net.inject(build_response(invite, 180, to_tag="callee"), callee)
    ok = build_response(invite, 200, to_tag="callee", headers=[("Contact", "<sip:callee@192.0.2.10>")], body=SDP,
                        content_type="application/sdp")
    ok.headers.set("Via", "SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKsomeotherbranch")
    net.inject(ok, callee)
    assert [e.session_id for e in net.of(CallAnswered)] == [sid]
    assert [m.method for m in net.take_outside() if isinstance(m, SipRequest)] == ["ACK"]
    net.core.bye(sid, net.now)
    net.pump()
    (bye,) = net.take_outside()
    assert isinstance(bye, SipRequest)
    net.inject(build_response(bye, 200), callee)
    net.advance(net.now + 40)
    assert net.core.stats() == {"sip_sessions": 0, "sip_transactions": 0, "sip_dialogs": 0, "sip_timers": 0}


def test_uas_2xx_is_resent_until_the_ack_and_given_up_with_bye_at_64_t1() -> None:
    """RFC 3261 §13.3.1.4: the 2xx is resent at T1, 2T1 ... capped at T2; no ACK in 64*T1 -> BYE."""
    net = make_net()
    net.inject(incoming_invite(), CALLER)
    (call,) = net.of(IncomingCall)
    net.take_sent()
    net.core.answer(call.session_id, media(40002), net.now)
    net.pump()
    net.advance(40.0)
    sent = net.take_sent()
    oks = [s for s in sent if s.data.startswith(b"SIP/2.0 200 ")]
    assert [s.at for s in oks] == [0.0, 0.5, 1.5, 3.5, 7.5, 11.5, 15.5, 19.5, 23.5, 27.5, 31.5]
    assert len({s.data for s in oks}) == 1
    byes = [s for s in sent if s.data.startswith(b"BYE ")]
    assert [s.at for s in byes] == [32.0, 32.5, 33.5, 35.5, 39.5]  # the BYE, then its Timer E copies
    assert [e.cause for e in net.of(CallEnded)] == ["ack_timeout"]


def test_uac_acks_every_copy_of_the_2xx_with_the_same_ack() -> None:
    """RFC 3261 §13.2.2.4: each 2xx retransmission is answered by the same ACK (no new transaction)."""
    net = make_net()
    net.core.invite("1001", "sip:2000@192.0.2.10:5060", media(), net.now)
    net.pump()
    (invite,) = net.take_outside()
    assert isinstance(invite, SipRequest)
    ok = build_response(invite, 200, to_tag="callee", headers=[("Contact", "<sip:callee@192.0.2.10:5070>")],
                        body=SDP, content_type="application/sdp")
    callee = Peer("udp", "192.0.2.10", 5060)
    for t in (0.1, 0.6, 1.6):
        net.advance(t)
        net.inject(ok, callee)
    acks = net.take_sent()
    assert [s.at for s in acks] == [0.1, 0.6, 1.6] and len({s.data for s in acks}) == 1
    ack = acks[0].msg
    assert isinstance(ack, SipRequest) and (ack.method, ack.uri, ack.cseq) == ("ACK", "sip:callee@192.0.2.10:5070",
                                                                              (1, "ACK"))
    assert ack.top_via.branch != invite.top_via.branch  # the 2xx ACK is a transaction of its own
    assert (acks[0].peer.host, acks[0].peer.port) == ("192.0.2.10", 5070)  # sent to the Contact


@pytest.mark.parametrize(("from_value", "user", "display"), [
    ('"Bob \\"the\\" Builder" <sip:bob@192.0.2.1:5080>', "bob", 'Bob "the" Builder'),  # quoted-pairs resolved
    ('"back\\\\slash" <sip:b@192.0.2.1>', "b", "back\\slash"),
    ("Plain Name <sip:a%20b@192.0.2.1>", "a b", "Plain Name"),  # escaped user part decoded
    ("<sip:anon@192.0.2.1>", "anon", None),
])
def test_incoming_call_reports_the_callers_name_decoded(from_value: str, user: str, display: str | None) -> None:
    net = make_net()
    data = incoming_invite().replace(b"From: <sip:caller@192.0.2.1:5080>;tag=ct", f"From: {from_value};tag=ct".encode())
    net.inject(data, CALLER)
    (call,) = net.of(IncomingCall)
    assert (call.remote_user, call.remote_display_name) == (user, display)


def test_a_2xx_that_crosses_our_cancel_is_acked_and_ended_with_bye() -> None:
    """RFC 3261 §9.1 / §15: CANCEL has no effect on an answered INVITE; the UAC ACKs and sends BYE."""
    net = make_net()
    sid = net.core.invite("1001", "sip:2000@192.0.2.10:5060", media(), net.now)
    net.pump()
    (invite,) = net.take_outside()
    assert isinstance(invite, SipRequest)
    callee = Peer("udp", "192.0.2.10", 5060)
    net.inject(build_response(invite, 180, to_tag="callee"), callee)
    net.core.cancel(sid, net.now)
    net.pump()
    (cancel,) = net.take_outside()
    assert isinstance(cancel, SipRequest) and cancel.method == "CANCEL"
    net.inject(build_response(invite, 200, to_tag="callee", headers=[("Contact", "<sip:callee@192.0.2.10>")],
                              body=SDP, content_type="application/sdp"), callee)
    net.inject(build_response(cancel, 200), callee)
    sent = [m for m in net.take_outside() if isinstance(m, SipRequest)]
    assert [(m.method, m.cseq) for m in sent] == [("ACK", (1, "ACK")), ("BYE", (2, "BYE"))]
    assert [(e.session_id, e.cause) for e in net.of(CallEnded)] == [(sid, "local_cancel")]
    assert not net.of(CallAnswered) and not net.of(CallFailed)
    net.inject(build_response(sent[1], 200), callee)
    net.advance(net.now + 40)
    assert net.core.stats() == {"sip_sessions": 0, "sip_transactions": 0, "sip_dialogs": 0, "sip_timers": 0}
