"""RFC 3261 §17 transaction timers on a fake clock: every send and every timeout at its exact time.

T1 = 0.5 s, T2 = 4 s, T4 = 5 s (Table 4). Over UDP: Timer A doubles from T1 until Timer B
(64*T1 = 32 s); Timer E doubles up to T2 (and is T2 once a provisional came) until Timer F; Timer
G resends a non-2xx final (doubling up to T2) until an ACK or Timer H; D = 32 s, I = K = T4,
J = 64*T1. Over TCP there are no retransmissions and D, I, J, K are zero.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from gateway.sip.errors import LocalSipError
from gateway.sip.message import SipMessage, SipRequest, build_response, parse_message
from gateway.sip.peer import Peer
from gateway.sip.transaction import (
    ClientTransaction,
    RequestReceived,
    ResponseReceived,
    ServerTransaction,
    TimerConfig,
    TransactionLayer,
    TransactionTerminated,
    TransactionTimedOut,
    TransportFailed,
    TxState,
    new_branch,
)

UDP = Peer("udp", "192.0.2.1", 5070)
TCP = Peer("tcp", "192.0.2.1", 5070, conn_id=7)
PEERS = {"udp": UDP, "tcp": TCP}


def make_request(method: str, transport: str = "udp", branch: str = "z9hG4bKtx1", cseq: int = 1,
                 via: str | None = None) -> SipRequest:
    via = via or f"SIP/2.0/{transport.upper()} 192.0.2.1:5070;branch={branch}"
    text = (f"{method} sip:1001@127.0.0.1 SIP/2.0\r\nVia: {via}\r\nFrom: <sip:a@example.com>;tag=fa\r\n"
            f"To: <sip:1001@127.0.0.1>\r\nCall-ID: tx-call\r\nCSeq: {cseq} {method}\r\nMax-Forwards: 70\r\n"
            "Content-Length: 0\r\n\r\n")
    m = parse_message(text.encode())
    assert isinstance(m, SipRequest)
    return m


def wire(m: SipMessage) -> SipMessage:
    """Through bytes and back, as a real peer's message would arrive."""
    return parse_message(m.to_bytes())


@dataclass
class Clock:
    """A TransactionLayer on a float clock, recording (time, start line) of every send and
    (time, event) of every TU event."""

    layer: TransactionLayer = field(default_factory=lambda: TransactionLayer(TimerConfig()))
    now: float = 0.0
    sent: list[tuple[float, str]] = field(default_factory=list)
    events: list[tuple[float, object]] = field(default_factory=list)

    def drain(self) -> None:
        for m, _peer in self.layer.messages_to_send():
            self.sent.append((self.now, m.start_line()))
        while (ev := self.layer.next_event()) is not None:
            self.events.append((self.now, ev))

    def run(self, until: float) -> None:
        while (t := self.layer.get_timer()) is not None and t <= until:
            self.now = t
            self.layer.handle_timer(t)
            self.drain()
        self.now = until

    def at(self, t: float) -> Clock:
        self.run(t)
        return self

    def send_times(self, start: str | None = None) -> list[float]:
        return [t for t, line in self.sent if start is None or line.startswith(start)]

    def of(self, kind: type) -> list[tuple[float, object]]:
        return [(t, e) for t, e in self.events if isinstance(e, kind)]

    # -- client side --
    def send(self, req: SipRequest, peer: Peer) -> ClientTransaction:
        tx = self.layer.send_request(req, peer, self.now)
        self.drain()
        return tx

    def answer(self, req: SipRequest, status: int, peer: Peer) -> bool:
        matched = self.layer.receive_response(wire(build_response(req, status, to_tag="tt")), peer, self.now)
        self.drain()
        return matched

    # -- server side --
    def receive(self, req: SipRequest, peer: Peer) -> ServerTransaction | None:
        tx = self.layer.receive_request(wire(req), peer, self.now)  # type: ignore[arg-type]
        self.drain()
        return tx

    def respond(self, tx: ServerTransaction, status: int) -> None:
        self.layer.send_response(tx, build_response(tx.request, status, to_tag="ss"), self.now)
        self.drain()


def timeline(c: Clock) -> list[tuple[float, str]]:
    """Timeouts and terminations as (time, what)."""
    out: list[tuple[float, str]] = []
    for t, e in c.events:
        if isinstance(e, TransactionTimedOut):
            out.append((t, f"timeout {e.timer}"))
        elif isinstance(e, TransactionTerminated):
            out.append((t, "terminated"))
    return out


# ---------------------------------------------------------------------------- client side
@pytest.mark.parametrize(("method", "transport", "sends", "timer"), [
    # Timer A: T1, 2T1, 4T1 ... (§17.1.1.2) until Timer B at 64*T1
    ("INVITE", "udp", [0.0, 0.5, 1.5, 3.5, 7.5, 15.5, 31.5], "B"),
    # Timer E: T1, 2T1 ... capped at T2 (§17.1.2.2) until Timer F at 64*T1
    ("OPTIONS", "udp", [0.0, 0.5, 1.5, 3.5, 7.5, 11.5, 15.5, 19.5, 23.5, 27.5, 31.5], "F"),
    ("INVITE", "tcp", [0.0], "B"),
    ("OPTIONS", "tcp", [0.0], "F"),
])
def test_unanswered_client_transaction(method: str, transport: str, sends: list[float], timer: str) -> None:
    c = Clock()
    tx = c.send(make_request(method, transport), PEERS[transport])
    assert tx.state is (TxState.CALLING if method == "INVITE" else TxState.TRYING)
    c.run(100.0)
    assert c.send_times() == sends and {line for _, line in c.sent} == {f"{method} sip:1001@127.0.0.1 SIP/2.0"}
    assert timeline(c) == [(32.0, f"timeout {timer}"), (32.0, "terminated")]
    assert tx.state is TxState.TERMINATED and len(c.layer) == 0 and c.layer.get_timer() is None


def test_timer_e_is_t2_once_a_provisional_arrived() -> None:
    c = Clock()
    req = make_request("OPTIONS")
    tx = c.send(req, UDP)
    c.run(0.2)
    assert c.answer(req, 100, UDP) and tx.state is TxState.PROCEEDING
    c.run(100.0)
    assert c.send_times() == [0.0, 0.5, 4.5, 8.5, 12.5, 16.5, 20.5, 24.5, 28.5]
    assert timeline(c) == [(32.0, "timeout F"), (32.0, "terminated")]
    assert [(t, e.response.status) for t, e in c.of(ResponseReceived)] == [(0.2, 100)]  # type: ignore[attr-defined]


def test_a_provisional_stops_timers_a_and_b() -> None:
    c = Clock()
    req = make_request("INVITE")
    tx = c.send(req, UDP)
    c.run(0.7)
    c.answer(req, 180, UDP)
    c.run(300.0)
    assert c.send_times() == [0.0, 0.5] and tx.state is TxState.PROCEEDING and timeline(c) == []
    assert tx.timers == {}  # the TU decides when to give up (CANCEL, §9.1)


@pytest.mark.parametrize(("transport", "ack_times", "end"), [
    ("udp", [1.0, 2.0], 33.0),  # Timer D = 32 s over UDP, absorbing final retransmissions
    ("tcp", [1.0], 1.0),  # Timer D = 0 over TCP
])
def test_client_invite_non_2xx_final_is_acked_then_timer_d(transport: str, ack_times: list[float],
                                                            end: float) -> None:
    c = Clock()
    req = make_request("INVITE", transport)
    tx = c.send(req, PEERS[transport])
    c.run(1.0)
    assert c.answer(req, 486, PEERS[transport])
    if transport == "udp":
        assert tx.state is TxState.COMPLETED and tx.timers == {"D": 33.0}
        c.run(2.0)
        assert c.answer(req, 486, UDP)  # retransmitted final: ACK again, not passed up
    c.run(100.0)
    assert c.send_times("ACK") == ack_times
    assert [(t, e.response.status) for t, e in c.of(ResponseReceived)] == [(1.0, 486)]  # type: ignore[attr-defined]
    assert timeline(c) == [(end, "terminated")]
    ack = tx.ack
    assert ack is not None and ack.start_line() == "ACK sip:1001@127.0.0.1 SIP/2.0"
    assert ack.cseq == (1, "ACK") and ack.top_via.branch == "z9hG4bKtx1" and ack.to_tag == "tt"
    assert [v.branch for v in ack.vias] == ["z9hG4bKtx1"]


def test_client_invite_2xx_goes_to_accepted_and_every_2xx_reaches_the_tu() -> None:
    """RFC 6026 §7.2: Accepted absorbs nothing the TU needs; Timer M = 64*T1."""
    c = Clock()
    req = make_request("INVITE")
    tx = c.send(req, UDP)
    c.run(0.2)
    c.answer(req, 200, UDP)
    assert tx.state is TxState.ACCEPTED and tx.timers == {"M": 32.2}
    c.run(1.0)
    c.answer(req, 200, UDP)
    c.run(100.0)
    assert [t for t, _ in c.of(ResponseReceived)] == [0.2, 1.0] and c.send_times() == [0.0]
    assert timeline(c) == [(32.2, "terminated")]


@pytest.mark.parametrize(("transport", "end"), [("udp", 6.0), ("tcp", 1.0)])  # Timer K = T4 / 0
def test_client_non_invite_final_then_timer_k(transport: str, end: float) -> None:
    c = Clock()
    req = make_request("OPTIONS", transport)
    c.send(req, PEERS[transport])
    c.run(1.0)
    c.answer(req, 200, PEERS[transport])
    c.run(2.0)
    c.answer(req, 200, PEERS[transport])  # a retransmission: absorbed (or stray once terminated)
    c.run(100.0)
    assert [t for t, _ in c.of(ResponseReceived)] == [1.0]
    assert timeline(c) == [(end, "terminated")]
    assert c.send_times() == ([0.0, 0.5] if transport == "udp" else [0.0])


def test_responses_match_by_branch_and_method_only() -> None:
    c = Clock()
    req = make_request("OPTIONS")
    c.send(req, UDP)
    other = make_request("OPTIONS", branch="z9hG4bKother")
    assert not c.answer(other, 200, UDP)
    wrong_method = wire(build_response(req, 200))
    wrong_method.headers.set("CSeq", "1 INFO")
    assert not c.layer.receive_response(wrong_method, UDP, c.now)  # type: ignore[arg-type]
    assert c.answer(req, 200, UDP)


# ---------------------------------------------------------------------------- server side
@pytest.mark.parametrize(("transport", "sends"), [
    # Timer G: T1, 2T1 ... capped at T2 (§17.2.1) from the final at 1.0 until Timer H at 1.0 + 64*T1
    ("udp", [1.0, 1.5, 2.5, 4.5, 8.5, 12.5, 16.5, 20.5, 24.5, 28.5, 32.5]),
    ("tcp", [1.0]),
])
def test_server_invite_final_without_ack_is_resent_until_timer_h(transport: str, sends: list[float]) -> None:
    c = Clock()
    tx = c.receive(make_request("INVITE", transport), PEERS[transport])
    assert tx is not None and tx.state is TxState.PROCEEDING
    assert [(t, type(e)) for t, e in c.events] == [(0.0, RequestReceived)]
    c.run(1.0)
    c.respond(tx, 486)
    c.run(100.0)
    assert c.send_times() == sends and {line for _, line in c.sent} == {"SIP/2.0 486 Busy Here"}
    assert timeline(c) == [(33.0, "timeout H"), (33.0, "terminated")]


@pytest.mark.parametrize(("transport", "sends", "end"), [
    ("udp", [1.0, 1.5], 7.0),  # the ACK at 2.0 stops Timer G; Timer I = T4 absorbs ACK copies
    ("tcp", [1.0], 2.0),  # Timer I = 0
])
def test_server_invite_ack_confirms_then_timer_i(transport: str, sends: list[float], end: float) -> None:
    c = Clock()
    invite = make_request("INVITE", transport)
    tx = c.receive(invite, PEERS[transport])
    assert tx is not None
    c.run(1.0)
    c.respond(tx, 486)
    c.run(2.0)
    ack = make_request("ACK", transport)
    ack.headers.set("To", tx.last_response.headers.get("To") or "")  # type: ignore[union-attr]
    assert c.receive(ack, PEERS[transport]) is None
    if transport == "udp":
        assert tx.state is TxState.CONFIRMED and tx.timers == {"I": 7.0}
        c.run(3.0)
        assert c.receive(ack, UDP) is None  # a retransmitted ACK is absorbed
    c.run(100.0)
    assert c.send_times() == sends and timeline(c) == [(end, "terminated")]
    assert [type(e) for _, e in c.events].count(RequestReceived) == 1


def test_server_invite_retransmissions_get_the_last_response() -> None:
    c = Clock()
    invite = make_request("INVITE")
    tx = c.receive(invite, UDP)
    assert tx is not None
    assert c.at(0.1).receive(invite, UDP) is None  # nothing sent yet: nothing to resend
    c.respond(tx, 100)
    assert c.at(0.3).receive(invite, UDP) is None  # -> the 100 again
    c.at(0.4).respond(tx, 180)
    assert c.at(0.8).receive(invite, UDP) is None  # -> the 180 again
    c.at(1.0).respond(tx, 603)
    assert c.at(1.2).receive(invite, UDP) is None  # -> the 603 again (Timer G keeps its schedule)
    c.run(1.6)
    assert c.sent == [(0.1, "SIP/2.0 100 Trying"), (0.3, "SIP/2.0 100 Trying"), (0.4, "SIP/2.0 180 Ringing"),
                      (0.8, "SIP/2.0 180 Ringing"), (1.0, "SIP/2.0 603 Decline"), (1.2, "SIP/2.0 603 Decline"),
                      (1.5, "SIP/2.0 603 Decline")]
    assert [type(e) for _, e in c.events] == [RequestReceived]


def test_server_invite_2xx_goes_to_accepted_for_timer_l() -> None:
    """RFC 6026 §7.1: the TU retransmits the 2xx; INVITE copies are absorbed silently."""
    c = Clock()
    invite = make_request("INVITE")
    tx = c.receive(invite, UDP)
    assert tx is not None
    c.at(1.0).respond(tx, 200)
    assert tx.state is TxState.ACCEPTED and tx.timers == {"L": 33.0}
    assert c.at(2.0).receive(invite, UDP) is None
    c.respond(tx, 200)  # the TU's own retransmission goes out through the transaction
    c.run(100.0)
    assert c.send_times() == [1.0, 2.0] and timeline(c) == [(33.0, "terminated")]


@pytest.mark.parametrize(("transport", "sends", "end"), [
    ("udp", [0.1, 5.0], 32.1),  # Timer J = 64*T1: retransmissions answered with the stored final
    ("tcp", [0.1], 0.1),  # Timer J = 0
])
def test_server_non_invite_final_then_timer_j(transport: str, sends: list[float], end: float) -> None:
    c = Clock()
    req = make_request("OPTIONS", transport)
    tx = c.receive(req, PEERS[transport])
    assert tx is not None
    assert c.at(0.05).receive(req, PEERS[transport]) is None  # in Trying: absorbed, nothing to resend
    c.at(0.1).respond(tx, 200)
    if transport == "udp":
        c.respond(tx, 500)  # after the final the TU's responses are discarded (§17.2.2)
        assert c.at(5.0).receive(req, UDP) is None
    c.run(100.0)
    assert c.send_times() == sends and timeline(c) == [(end, "terminated")]
    assert {line for _, line in c.sent} == {"SIP/2.0 200 OK"}


def test_cancel_finds_its_invite_and_is_its_own_transaction() -> None:
    c = Clock()
    invite_tx = c.receive(make_request("INVITE"), UDP)
    cancel = make_request("CANCEL")
    cancel_tx = c.receive(cancel, UDP)
    assert cancel_tx is not None and cancel_tx is not invite_tx
    assert c.layer.match_cancel_target(wire(cancel)) is invite_tx  # type: ignore[arg-type]
    assert c.layer.match_cancel_target(wire(make_request("CANCEL", branch="z9hG4bKelse"))) is None  # type: ignore[arg-type]


def test_rfc2543_requests_without_magic_cookie_are_matched_by_their_fields() -> None:
    c = Clock()
    old = make_request("OPTIONS", via="SIP/2.0/UDP 192.0.2.1:5070")
    tx = c.receive(old, UDP)
    assert tx is not None
    assert c.receive(old, UDP) is None
    assert c.receive(make_request("OPTIONS", via="SIP/2.0/UDP 192.0.2.1:5070", cseq=2), UDP) is not None


NAT = Peer("udp", "198.51.100.7", 40000)


@pytest.mark.parametrize(("via", "source", "peer", "added"), [
    ("SIP/2.0/UDP 192.0.2.1:5070;branch=z9hG4bKr;rport", NAT, NAT, "=40000;received=198.51.100.7"),
    ("SIP/2.0/UDP 192.0.2.1:5070;branch=z9hG4bKr", NAT, Peer("udp", "198.51.100.7", 5070), ";received=198.51.100.7"),
    ("SIP/2.0/UDP 192.0.2.1;branch=z9hG4bKr", Peer("udp", "192.0.2.1", 5999), Peer("udp", "192.0.2.1", 5060), ""),
    ("SIP/2.0/TCP 192.0.2.1:5070;branch=z9hG4bKr", TCP, TCP, ""),  # same connection back
    ("SIP/2.0/TCP 192.0.2.1:5070;branch=z9hG4bKr", Peer("tcp", "198.51.100.7", 40001, 3),
     Peer("tcp", "198.51.100.7", 40001, 3), ";received=198.51.100.7"),
])
def test_responses_go_where_via_received_and_rport_say(via: str, source: Peer, peer: Peer, added: str) -> None:
    """RFC 3261 §18.2.1-2 and RFC 3581 §4: the top Via is annotated in place for the responses."""
    c = Clock()
    tx = c.receive(make_request("OPTIONS", via=via), source)
    assert tx is not None and tx.peer == peer
    assert tx.request.headers.get("Via") == via + added


def test_transport_error_reports_and_terminates() -> None:
    c = Clock()
    tx = c.send(make_request("OPTIONS"), UDP)
    c.layer.transport_error(tx, 0.1)
    c.drain()
    assert [type(e) for _, e in c.events] == [TransportFailed, TransactionTerminated] and len(c.layer) == 0


def test_misuse_is_a_local_error() -> None:
    c = Clock()
    with pytest.raises(LocalSipError, match="ACK"):
        c.send(make_request("ACK"), UDP)
    c.send(make_request("OPTIONS"), UDP)
    with pytest.raises(LocalSipError, match="already exists"):
        c.send(make_request("OPTIONS"), UDP)
    tx = c.receive(make_request("OPTIONS", "tcp", branch="z9hG4bKsrv"), TCP)
    assert tx is not None
    c.respond(tx, 200)  # Timer J = 0 over TCP: terminated at once
    with pytest.raises(LocalSipError, match="terminated"):
        c.respond(tx, 500)


def test_new_branches_carry_the_magic_cookie_and_differ() -> None:
    branches = {new_branch() for _ in range(100)}
    assert len(branches) == 100 and all(b.startswith("z9hG4bK") and len(b) == 27 for b in branches)


def test_many_transactions_time_out_in_deadline_order() -> None:
    c = Clock()
    for i in range(200):
        c.now = i * 0.01
        c.send(make_request("OPTIONS", "tcp", branch=f"z9hG4bKmany{i}"), TCP)
    c.run(100.0)
    times = [t for t, what in timeline(c) if what == "timeout F"]
    assert times == [pytest.approx(32.0 + i * 0.01) for i in range(200)] and len(c.layer) == 0



def test_heap_compaction_while_timers_fire_fires_each_timer_once() -> None:
    """Cancelled heap entries are compacted away once they are the majority; when that happens
    in the middle of ``handle_timer`` (Timer B terminating a transaction cancels its Timer A),
    the timers still due must fire exactly once."""
    c = Clock()
    unanswered = [make_request("INVITE", branch=f"z9hG4bKu{i}") for i in range(400)]
    answered = [make_request("INVITE", branch=f"z9hG4bKa{i}") for i in range(300)]
    for req in unanswered + answered:
        c.send(req, UDP)
    c.run(0.1)
    for req in answered:  # 180: Timers A and B of these are cancelled (600 stale entries)
        c.answer(req, 180, UDP)
    c.run(100.0)
    timeouts = [(t, e.transaction.branch) for t, e in c.of(TransactionTimedOut)]  # type: ignore[attr-defined]
    assert len(timeouts) == 400 and {b for _, b in timeouts} == {f"z9hG4bKu{i}" for i in range(400)}
    assert {t for t, _ in timeouts} == {32.0}
    assert len(c.layer) == 300 and c.layer.get_timer() is None  # the proceeding ones wait for their TU
