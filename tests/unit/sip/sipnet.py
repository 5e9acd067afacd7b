"""A fake network and clock for driving ``SipCore`` in unit tests (no sockets, no sleeping).

The core listens on 127.0.0.1:5060; datagrams it sends to itself are looped back, everything
else is captured in ``outside`` with the (fake) time it was sent, so tests can assert exact
retransmission schedules.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from gateway.sip.core import CoreConfig, LineConfig, SipCore
from gateway.sip.errors import RemoteSipError
from gateway.sip.message import SipRequest, SipResponse, parse_message
from gateway.sip.peer import Peer
from gateway.sip.sdp import LocalMedia

HOST = "127.0.0.1"
PORT = 5060
DATA = Path(__file__).resolve().parents[2] / "data" / "rfc4475"


def media(port: int = 40000) -> LocalMedia:
    return LocalMedia(address=HOST, port=port)


def read_sent(data: bytes) -> SipRequest | SipResponse:
    """A message the core sent. Requests must be well-formed; a response may not be, because a
    400 copies the peer's malformed From/To/Call-ID or lacks them (RFC 3261 §8.2.6.2)."""
    try:
        msg = parse_message(data)
    except RemoteSipError as exc:
        assert isinstance(exc.partial, SipResponse), f"the core sent an unparsable message: {exc}"
        return exc.partial
    assert isinstance(msg, (SipRequest, SipResponse))
    return msg


@dataclass
class Sent:
    """One datagram the core sent to somebody else."""

    at: float
    data: bytes
    peer: Peer

    @property
    def msg(self) -> SipRequest | SipResponse:
        return read_sent(self.data)


@dataclass
class Net:
    """One core on 127.0.0.1:5060 whose own datagrams loop back; others are captured."""

    core: SipCore
    now: float = 0.0
    events: list[object] = field(default_factory=list)
    outside: list[Sent] = field(default_factory=list)
    drop_acks: bool = False

    def pump(self, rounds: int = 50) -> None:
        for _ in range(rounds):
            moved = False
            for data, peer in self.core.datagrams_to_send():
                moved = True
                if peer.host == HOST and peer.port == PORT:
                    if self.drop_acks and data.startswith(b"ACK "):
                        continue
                    self.core.receive_datagram(data, Peer("udp", HOST, PORT), self.now)
                else:
                    self.outside.append(Sent(self.now, data, peer))
            while (ev := self.core.next_event()) is not None:
                moved = True
                self.events.append(ev)
            if not moved:
                return

    def advance(self, to: float) -> None:
        """Run every core timer due up to ``to`` at its own deadline, then set the clock to ``to``."""
        while True:
            t = self.core.get_timer()
            if t is None or t > to:
                break
            self.now = max(self.now, t)
            self.core.handle_timer(self.now)
            self.pump()
        self.now = to
        self.pump()

    def of(self, kind: type) -> list:
        return [e for e in self.events if isinstance(e, kind)]

    def take_sent(self) -> list[Sent]:
        out, self.outside = self.outside, []
        return out

    def take_outside(self) -> list[SipRequest | SipResponse]:
        return [s.msg for s in self.take_sent()]

    def inject(self, msg: SipRequest | SipResponse | bytes, source: Peer) -> None:
        data = msg if isinstance(msg, bytes) else msg.to_bytes()
        self.core.receive_datagram(data, source, self.now)
        self.pump()


def make_net(**lines: LineConfig) -> Net:
    """A core with standalone lines 1001 and 1002 plus ``lines``."""
    core = SipCore(CoreConfig(user_agent="test-ua"))
    core.set_listen("udp", HOST, PORT)
    for number in ("1001", "1002"):
        core.add_line(LineConfig(line_id=number, user=number, password=f"pw{number}"))
    for line in lines.values():
        core.add_line(line)
    return Net(core)
