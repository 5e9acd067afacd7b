"""SDP offer/answer (RFC 3264, RFC 4566) for one G.711 stream with RFC 4733 telephone-event."""

from __future__ import annotations

import pytest
from sipnet import HOST, PORT, make_net, media

from gateway.sip.errors import SdpError
from gateway.sip.events import CallConfirmed, IncomingCall, MediaUpdated
from gateway.sip.message import SipRequest, SipResponse, parse_message
from gateway.sip.peer import Peer
from gateway.sip.sdp import LocalMedia, NegotiatedMedia, SessionDescription, accept_answer, answer_offer, build_offer

LOCAL = LocalMedia(address="127.0.0.1", port=40000, session_id=5, session_version=1)
HEAD = "v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\n"


def offer(*lines: str, head: str = HEAD) -> bytes:
    return (head + "".join(f"{ln}\r\n" for ln in lines)).encode()


def test_offer_is_exact() -> None:
    assert build_offer(LOCAL) == (
        b"v=0\r\no=- 5 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
        b"m=audio 40000 RTP/AVP 0 8 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\n"
        b"a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-15\r\na=ptime:20\r\na=sendrecv\r\n")


def test_answer_is_exact_and_follows_the_offerers_order() -> None:
    body, negotiated = answer_offer(offer("m=audio 4000 RTP/AVP 8 0 101", "a=rtpmap:101 telephone-event/8000",
                                          "a=fmtp:101 0-16", "a=ptime:30"), LOCAL)
    assert body == (b"v=0\r\no=- 5 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
                    b"m=audio 40000 RTP/AVP 8 101\r\na=rtpmap:8 PCMA/8000\r\na=rtpmap:101 telephone-event/8000\r\n"
                    b"a=fmtp:101 0-15\r\na=ptime:20\r\na=sendrecv\r\n")
    assert negotiated == NegotiatedMedia(remote_address="192.0.2.1", remote_port=4000, codec="PCMA", payload_type=8,
                                         dtmf_payload_type=101, direction="sendrecv", ptime=30)


@pytest.mark.parametrize(("m_lines", "codecs", "dtmf", "chosen"), [
    (["m=audio 4000 RTP/AVP 0 8"], ("PCMU", "PCMA"), True, ("PCMU", 0, None)),
    (["m=audio 4000 RTP/AVP 8 0"], ("PCMU", "PCMA"), True, ("PCMA", 8, None)),  # the offerer's preference wins
    (["m=audio 4000 RTP/AVP 18 3 8"], ("PCMU", "PCMA"), True, ("PCMA", 8, None)),  # G729, GSM skipped
    (["m=audio 4000 RTP/AVP 0 8"], ("PCMA",), True, ("PCMA", 8, None)),  # only what we can do
    (["m=audio 4000 RTP/AVP 96 0", "a=rtpmap:96 opus/48000/2"], ("PCMU",), True, ("PCMU", 0, None)),
    (["m=audio 4000 RTP/AVP 97", "a=rtpmap:97 PCMU/8000"], ("PCMU",), True, ("PCMU", 97, None)),  # dynamic PT
    (["m=audio 4000 RTP/AVP 0 96", "a=rtpmap:96 telephone-event/8000"], ("PCMU",), True, ("PCMU", 0, 96)),
    (["m=audio 4000 RTP/AVP 0 96", "a=rtpmap:96 telephone-event/8000"], ("PCMU",), False, ("PCMU", 0, None)),
    (["m=audio 4000 RTP/AVP 0 96", "a=rtpmap:96 telephone-event/16000"], ("PCMU",), True, ("PCMU", 0, None)),
    (["m=audio 4000 RTP/AVP 0 8 101 102", "a=rtpmap:101 telephone-event/8000", "a=rtpmap:102 telephone-event/48000"],
     ("PCMA", "PCMU"), True, ("PCMU", 0, 101)),
])
def test_codec_and_telephone_event_selection(m_lines: list[str], codecs: tuple[str, ...], dtmf: bool,
                                             chosen: tuple[str, int, int | None]) -> None:
    local = LocalMedia(address="127.0.0.1", port=40000, codecs=codecs, dtmf=dtmf)
    body, n = answer_offer(offer(*m_lines), local)
    assert (n.codec, n.payload_type, n.dtmf_payload_type) == chosen
    audio = SessionDescription.parse(body).media[0]
    assert audio.formats == [str(chosen[1])] + ([str(chosen[2])] if chosen[2] is not None else [])


@pytest.mark.parametrize(("m_lines", "reason"), [
    (["m=audio 4000 RTP/AVP 96", "a=rtpmap:96 opus/48000/2"], "no common audio codec"),
    (["m=audio 4000 RTP/AVP 9 18"], "no common audio codec"),
    (["m=audio 4000 RTP/AVP 97", "a=rtpmap:97 PCMU/16000"], "no common audio codec"),
    (["m=audio 4000 RTP/SAVP 0"], "no common audio codec"),  # SRTP is not spoken
    (["m=video 5000 RTP/AVP 31"], "no audio stream"),
    (["m=audio 0 RTP/AVP 0"], "no audio stream"),  # a disabled stream is no stream
])
def test_nothing_acceptable_is_488(m_lines: list[str], reason: str) -> None:
    with pytest.raises(SdpError, match=reason) as err:
        answer_offer(offer(*m_lines), LOCAL)
    assert err.value.status_hint == 488


@pytest.mark.parametrize(("sdp", "reason"), [
    (b"", "empty SDP"),
    (b"o=- 1 1 IN IP4 h\r\nv=0\r\n", "must start with v=0"),
    (b"v=0\r\nthis is not sdp\r\n", "malformed SDP line"),
    (b"v=0\r\nc=IN IP4\r\n", "malformed c= line"),
    (b"v=0\r\nm=audio port RTP/AVP 0\r\n", "malformed m= line"),
    (b"v=0\r\nm=audio 70000 RTP/AVP 0\r\n", "malformed m= line"),
    (b"v=0\r\no=- 1 1 IN IP4 h\r\ns=-\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\n", "no connection address"),
])
def test_unparsable_sdp_is_400(sdp: bytes, reason: str) -> None:
    with pytest.raises(SdpError, match=reason) as err:
        answer_offer(sdp, LOCAL)
    assert err.value.status_hint == 400


@pytest.mark.parametrize(("session", "stream", "conn", "ours", "direction"), [
    ("", "", "192.0.2.1", "sendrecv", "sendrecv"),
    ("", "a=sendonly", "192.0.2.1", "sendrecv", "recvonly"),  # they hold us: we only listen
    ("", "a=recvonly", "192.0.2.1", "sendrecv", "sendonly"),
    ("", "a=inactive", "192.0.2.1", "sendrecv", "inactive"),
    ("a=sendonly", "", "192.0.2.1", "sendrecv", "recvonly"),  # session-level attribute
    ("a=sendonly", "a=sendrecv", "192.0.2.1", "sendrecv", "sendrecv"),  # media level overrides
    ("", "", "0.0.0.0", "sendrecv", "recvonly"),  # RFC 2543 hold: never send to 0.0.0.0 (RFC 3264 §8.4)
    ("", "a=sendonly", "0.0.0.0", "sendrecv", "recvonly"),
    ("", "a=recvonly", "0.0.0.0", "sendrecv", "inactive"),
    ("", "", "192.0.2.1", "sendonly", "sendonly"),  # we hold them
    ("", "a=sendonly", "192.0.2.1", "sendonly", "inactive"),
    ("", "", "192.0.2.1", "inactive", "inactive"),
])
def test_directions_and_hold(session: str, stream: str, conn: str, ours: str, direction: str) -> None:
    head = HEAD.replace("c=IN IP4 192.0.2.1", f"c=IN IP4 {conn}") + (f"{session}\r\n" if session else "")
    lines = ["m=audio 4000 RTP/AVP 0"] + ([stream] if stream else [])
    local = LocalMedia(address="127.0.0.1", port=40000, direction=ours)
    body, n = answer_offer(offer(*lines, head=head), local)
    assert n.direction == direction and n.remote_address == conn
    assert SessionDescription.parse(body).media[0].direction == direction


def test_every_offered_stream_is_answered_in_order_the_others_with_port_0() -> None:
    """RFC 3264 §6: as many m= lines as the offer, rejected ones with port 0."""
    head = HEAD.replace("t=0 0", "t=3034423619 3042462419")
    body, n = answer_offer(offer("m=video 5000 RTP/AVP 31", "a=rtpmap:31 H261/90000", "m=audio 0 RTP/AVP 0",
                                 "m=audio 4002 RTP/AVP 8", "c=IN IP4 192.0.2.77", "m=text 6000 RTP/AVP 98",
                                 head=head), LOCAL)
    sd = SessionDescription.parse(body)
    assert [m.m_line() for m in sd.media] == ["video 0 RTP/AVP 31", "audio 0 RTP/AVP 0", "audio 40000 RTP/AVP 8",
                                               "text 0 RTP/AVP 98"]
    assert sd.value("t") == "3034423619 3042462419"  # the offer's timing (RFC 3264 §6)
    assert (n.remote_address, n.remote_port, n.codec) == ("192.0.2.77", 4002, "PCMA")  # media-level c= wins


@pytest.mark.parametrize(("answer_lines", "expected"), [
    (["m=audio 5004 RTP/AVP 8 101", "a=rtpmap:101 telephone-event/8000"], ("PCMA", 8, 101, "sendrecv", 5004)),
    (["m=audio 5004 RTP/AVP 0", "a=recvonly"], ("PCMU", 0, None, "sendonly", 5004)),
    (["m=audio 5004 RTP/AVP 0", "a=inactive"], ("PCMU", 0, None, "inactive", 5004)),
])
def test_accept_answer(answer_lines: list[str], expected: tuple) -> None:
    n = accept_answer(offer(*answer_lines), LOCAL)
    assert (n.codec, n.payload_type, n.dtmf_payload_type, n.direction, n.remote_port) == expected


@pytest.mark.parametrize(("answer_lines", "reason"), [
    (["m=audio 0 RTP/AVP 0"], "rejected the audio stream"),
    (["m=video 5000 RTP/AVP 31"], "rejected the audio stream"),
    (["m=audio 5004 RTP/AVP 18"], "names no codec we offered"),
])
def test_unusable_answer_is_488(answer_lines: list[str], reason: str) -> None:
    with pytest.raises(SdpError, match=reason) as err:
        accept_answer(offer(*answer_lines), LOCAL)
    assert err.value.status_hint == 488


def test_sdp_round_trips_unknown_lines_in_order() -> None:
    text = (HEAD + "a=tool:x\r\nb=AS:64\r\nm=audio 4000/2 RTP/AVP 0\r\ni=stream\r\na=rtcp:4001\r\n"
            "a=fmtp:0 foo\r\n").encode()
    sd = SessionDescription.parse(text)
    assert sd.to_bytes() == text and sd.media[0].port_count == 2 and sd.media[0].fmtp(0) == "foo"
    assert sd.origin is not None and sd.origin.session_version == "1"


# ---------------------------------------------------------------------- re-INVITE (hold) in the core
def test_reinvite_hold_and_resume_are_answered_and_reported() -> None:
    net = make_net()
    peer = Peer("udp", "192.0.2.1", 5080)

    def invite(cseq: int, body: bytes, to_tag: str = "") -> SipRequest:
        text = (f"INVITE sip:1001@{HOST}:{PORT} SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.1:5080;branch=z9hG4bKh{cseq}\r\n"
                f"Max-Forwards: 70\r\nFrom: <sip:caller@example.com>;tag=ct\r\n"
                f"To: <sip:1001@{HOST}>{to_tag and ';tag=' + to_tag}\r\nCall-ID: hold-1\r\nCSeq: {cseq} INVITE\r\n"
                "Contact: <sip:caller@192.0.2.1:5080>\r\nContent-Type: application/sdp\r\n"
                f"Content-Length: {len(body)}\r\n\r\n").encode() + body
        m = parse_message(text)
        assert isinstance(m, SipRequest)
        return m

    def ack(cseq: int, to_tag: str) -> bytes:
        return (f"ACK sip:1001@{HOST}:{PORT} SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.1:5080;branch=z9hGbKa{cseq}\r\n"
                f"Max-Forwards: 70\r\nFrom: <sip:caller@example.com>;tag=ct\r\nTo: <sip:1001@{HOST}>;tag={to_tag}\r\n"
                f"Call-ID: hold-1\r\nCSeq: {cseq} ACK\r\nContent-Length: 0\r\n\r\n").encode()

    def final(sent: list) -> SipResponse:
        ok = [m for m in sent if isinstance(m, SipResponse) and m.status == 200]
        assert len(ok) == 1
        return ok[0]

    net.inject(invite(1, offer("m=audio 4000 RTP/AVP 0"), ), peer)
    (incoming,) = net.of(IncomingCall)
    net.core.answer(incoming.session_id, media(40002), net.now)
    net.pump()
    first = final(net.take_outside())
    tag = first.to_tag or ""
    origins = [SessionDescription.parse(first.body).origin]
    net.inject(ack(1, tag), peer)
    assert net.of(CallConfirmed)
    for cseq, lines, direction in [
        (2, ["m=audio 4000 RTP/AVP 0", "a=sendonly"], "recvonly"),  # hold
        (3, ["m=audio 4000 RTP/AVP 0", "a=inactive"], "inactive"),
        (4, ["m=audio 4000 RTP/AVP 0"], "sendrecv"),  # resume
    ]:
        net.inject(invite(cseq, offer(*lines), tag), peer)
        ok = final(net.take_outside())
        origins.append(SessionDescription.parse(ok.body).origin)
        assert ok.cseq == (cseq, "INVITE") and SessionDescription.parse(ok.body).media[0].direction == direction
        net.inject(ack(cseq, tag), peer)
        assert net.of(MediaUpdated)[-1].media.direction == direction
    assert len(net.of(MediaUpdated)) == 3
    # RFC 3264 §8: same o= session id, version up by one with every answer
    assert [o.session_version for o in origins if o] == ["1", "2", "3", "4"]
    assert len({o.session_id for o in origins if o}) == 1
