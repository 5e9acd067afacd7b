"""INVITE sessions (RFC 3261 §13-15, RFC 3264 offer/answer): the per-call state the core keeps.

The logic that moves these lives in ``core.py``; this module holds the state record and the
pure builders for the requests an INVITE usage needs (ACK for 2xx, CANCEL).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from .dialog import Dialog
from .headers import Headers
from .message import SipRequest, SipResponse
from .peer import Peer
from .sdp import LocalMedia, NegotiatedMedia

__all__ = ["InviteSession", "Role", "SessionState", "build_cancel"]


class Role(enum.Enum):
    UAC = "uac"
    UAS = "uas"


class SessionState(enum.Enum):
    CALLING = "calling"  # UAC: INVITE sent, nothing back yet
    PROCEEDING = "proceeding"  # UAC: a provisional arrived
    INCOMING = "incoming"  # UAS: INVITE received, 100 sent
    RINGING = "ringing"  # UAS: 180 sent
    ANSWERED = "answered"  # UAS: 2xx sent, waiting for the ACK (RFC 3261 §13.3.1.4)
    CONFIRMED = "confirmed"
    TERMINATED = "terminated"


@dataclass(slots=True, eq=False)
class InviteSession:
    id: str
    line_id: str
    role: Role
    state: SessionState
    invite: SipRequest
    peer: Peer  # UAC: next hop of the INVITE; UAS: where responses go
    local_tag: str
    dialog: Dialog | None = None
    local_media: LocalMedia | None = None
    local_sdp: bytes = b""
    remote_offer: bytes = b""
    media: NegotiatedMedia | None = None
    sdp_session_id: int = 0
    sdp_version: int = 0
    cancel_requested: bool = False
    provisional_received: bool = False
    auth_attempts: int = 0
    target: str = ""
    invite_tx: object = None
    # UAS 2xx retransmission (RFC 3261 §13.3.1.4) and pending local BYE until the ACK arrives
    final_2xx: SipResponse | None = None
    retransmit_interval: float = 0.0
    bye_after_ack: bool = False
    # UAC: the ACK for the 2xx, resent on each 2xx retransmission (RFC 3261 §13.2.2.4)
    ack: tuple[SipRequest, Peer] | None = None
    # re-INVITE in progress on this dialog (glare detection, RFC 3261 §14.2)
    reinvite_pending: bool = False
    reinvite_offer_from_us: bool = False
    extra: dict[str, object] = field(default_factory=dict)

    @property
    def answered(self) -> bool:
        return self.state in (SessionState.ANSWERED, SessionState.CONFIRMED)

    def next_sdp_version(self) -> int:
        self.sdp_version += 1
        return self.sdp_version


def build_cancel(invite: SipRequest) -> SipRequest:
    """CANCEL for a pending INVITE (RFC 3261 §9.1): same Request-URI, Call-ID, To, From, CSeq
    number and a single Via equal to the INVITE's top Via (same branch); Route copied."""
    h = Headers()
    vias = invite.headers.values("Via")
    h.add("Via", vias[0])
    for r in invite.headers.values("Route"):
        h.add("Route", r)
    h.add("Max-Forwards", "70")
    for name in ("From", "To", "Call-ID"):
        h.add(name, invite.headers.get(name) or "")
    seq, _ = invite.cseq
    h.add("CSeq", f"{seq} CANCEL")
    return SipRequest(method="CANCEL", uri=invite.uri, headers=h)
