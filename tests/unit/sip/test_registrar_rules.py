"""Rules of registrar mode that a real proxy (Kamailio) exercises, pinned without sockets.

tests/e2e/test_registrar_mode.py shows them against Kamailio; here each is checked exactly: refused
credentials are not sent again (RFC 7616 §3.3), a stale nonce is answered again, and a call placed
through the proxy sends its ACK and BYE along the reversed Record-Route set with the INVITE's
credentials on the ACK (RFC 3261 §12.1.2, §12.2.1.1, §13.2.2.4, §22.1).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from gateway.sip.auth import verify
from gateway.sip.core import CoreConfig, LineConfig, SipCore
from gateway.sip.events import CallAnswered, CallFailed, RegistrationStateChanged
from gateway.sip.message import SipRequest, SipResponse, build_response, parse_message
from gateway.sip.peer import Peer
from gateway.sip.registration import RegState
from gateway.sip.sdp import LocalMedia
from gateway.sip.uri import SipUri

HOST, PORT = "127.0.0.1", 5060
PROXY = SipUri.parse("sip:192.0.2.5:5070")
PROXY_PEER = Peer("udp", "192.0.2.5", 5070)
REALM = "192.0.2.5"


@dataclass
class Proxy:
    """A core with one registrar-mode line; whatever it sends is captured as the proxy would see it."""

    core: SipCore
    now: float = 0.0
    events: list[object] = field(default_factory=list)
    sent: list[tuple[SipRequest | SipResponse, Peer]] = field(default_factory=list)

    def pump(self) -> None:
        for data, peer in self.core.datagrams_to_send():
            msg = parse_message(data)
            assert isinstance(msg, (SipRequest, SipResponse))
            self.sent.append((msg, peer))
        while (ev := self.core.next_event()) is not None:
            self.events.append(ev)

    def take(self) -> list[SipRequest]:
        out = [m for m, _ in self.sent if isinstance(m, SipRequest)]
        self.sent.clear()
        return out

    def reply(self, msg: SipResponse) -> None:
        self.core.receive_datagram(msg.to_bytes(), PROXY_PEER, self.now)
        self.pump()

    def advance(self, to: float) -> None:
        while (t := self.core.get_timer()) is not None and t <= to:
            self.now = max(self.now, t)
            self.core.handle_timer(self.now)
            self.pump()
        self.now = to

    def of(self, kind: type) -> list:
        return [e for e in self.events if isinstance(e, kind)]


def make_proxy(password: str = "pw1001") -> Proxy:
    core = SipCore(CoreConfig(user_agent="test-ua"))
    core.set_listen("udp", HOST, PORT)
    core.add_line(LineConfig(line_id="1001", user="1001", password=password, registrar=PROXY))
    return Proxy(core)


def challenge(req: SipRequest, nonce: str, *, status: int = 401, stale: bool = False) -> SipResponse:
    name = "WWW-Authenticate" if status == 401 else "Proxy-Authenticate"
    value = f'Digest realm="{REALM}", nonce="{nonce}"' + (", stale=true" if stale else "")
    return build_response(req, status, to_tag="k1", headers=[(name, value)])


def test_refused_register_credentials_are_not_sent_again() -> None:
    p = make_proxy(password="wrong")
    p.core.register("1001", p.now)
    p.pump()
    (reg1,) = p.take()
    p.reply(challenge(reg1, "n1"))
    (reg2,) = p.take()
    assert reg2.headers.get("Authorization") is not None and reg2.cseq == (2, "REGISTER")
    # kamailio answers refused credentials with a fresh challenge (new nonce, no stale=true)
    p.reply(challenge(reg2, "n2"))
    assert p.take() == []  # the same wrong password is not tried again
    assert [(e.registered, e.status) for e in p.of(RegistrationStateChanged)] == [(False, 401)]
    assert p.core.registration_state("1001") is RegState.FAILED
    p.advance(5.0)  # the back-off retry starts over: no credentials until challenged again
    (retry,) = p.take()
    assert retry.cseq == (3, "REGISTER") and retry.call_id == reg1.call_id
    assert retry.headers.get("Authorization") is None


def test_stale_nonce_is_answered_with_the_same_password() -> None:
    p = make_proxy()
    p.core.register("1001", p.now)
    p.pump()
    (reg1,) = p.take()
    p.reply(challenge(reg1, "n1"))
    (reg2,) = p.take()
    p.reply(challenge(reg2, "n2", stale=True))  # RFC 7616 §3.3: the nonce expired, the password was fine
    (reg3,) = p.take()
    assert reg3.cseq == (3, "REGISTER")
    assert verify(reg3.headers.get("Authorization") or "", "pw1001", "REGISTER", nonce="n2")
    p.reply(build_response(reg3, 200, to_tag="k1", headers=[("Contact", f"<sip:1001@{HOST}:{PORT}>;expires=300")]))
    assert p.core.registration_state("1001") is RegState.REGISTERED


def test_invite_with_refused_proxy_credentials_fails_with_407() -> None:
    p = make_proxy(password="wrong")
    sid = p.core.invite("1001", f"sip:1005@{REALM}:5070", LocalMedia(address=HOST, port=40000), p.now,
                        via_proxy=PROXY)
    p.pump()
    (inv1,) = p.take()
    p.reply(challenge(inv1, "n1", status=407))
    ack1, inv2 = p.take()
    assert (ack1.method, inv2.method) == ("ACK", "INVITE")
    p.reply(challenge(inv2, "n2", status=407))
    assert [r.method for r in p.take()] == ["ACK"]  # hop-by-hop ACK of the 407, and no third INVITE
    assert [(e.session_id, e.status) for e in p.of(CallFailed)] == [(sid, 407)]


def test_ack_and_bye_of_a_call_through_the_proxy_follow_the_record_route_set() -> None:
    p = make_proxy()
    sid = p.core.invite("1001", f"sip:1005@{REALM}:5070", LocalMedia(address=HOST, port=40000), p.now,
                        via_proxy=PROXY)
    p.pump()
    (inv1,) = p.take()
    assert inv1.uri == f"sip:1005@{REALM}:5070" and inv1.headers.get("Route") is None
    p.reply(challenge(inv1, "n1", status=407))
    inv2 = p.take()[1]
    assert verify(inv2.headers.get("Proxy-Authorization") or "", "pw1001", "INVITE")
    sdp = (b"v=0\r\no=- 1 1 IN IP4 192.0.2.9\r\ns=-\r\nc=IN IP4 192.0.2.9\r\nt=0 0\r\n"
           b"m=audio 4000 RTP/AVP 0\r\n")
    # two proxies recorded the route; the one nearest to us is listed last in the response
    ok = build_response(inv2, 200, to_tag="callee", body=sdp, content_type="application/sdp", headers=[
        ("Record-Route", "<sip:192.0.2.7:5070;lr>"), ("Record-Route", "<sip:192.0.2.5:5070;lr>"),
        ("Contact", "<sip:1005-0xabc@192.0.2.9:5062>")])
    p.reply(ok)
    assert [e.session_id for e in p.of(CallAnswered)] == [sid]
    ((ack, ack_peer),) = [(m, peer) for m, peer in p.sent if isinstance(m, SipRequest)]
    assert ack.method == "ACK" and ack.uri == "sip:1005-0xabc@192.0.2.9:5062"  # remote target = Contact
    assert (ack_peer.host, ack_peer.port) == ("192.0.2.5", 5070)  # first hop: the nearest proxy
    assert ack.headers.get_all("Route") == ["<sip:192.0.2.5:5070;lr>", "<sip:192.0.2.7:5070;lr>"]
    assert ack.cseq == (2, "ACK")  # the CSeq number of the INVITE it acknowledges (§13.2.2.4)
    assert ack.headers.get("Proxy-Authorization") == inv2.headers.get("Proxy-Authorization")
    p.sent.clear()
    p.core.hangup(sid, p.now)
    p.pump()
    ((bye, bye_peer),) = [(m, peer) for m, peer in p.sent if isinstance(m, SipRequest)]
    assert bye.method == "BYE" and bye.uri == "sip:1005-0xabc@192.0.2.9:5062"
    assert (bye_peer.host, bye_peer.port) == ("192.0.2.5", 5070)
    assert bye.headers.get_all("Route") == ["<sip:192.0.2.5:5070;lr>", "<sip:192.0.2.7:5070;lr>"]
    assert bye.cseq == (3, "BYE")
