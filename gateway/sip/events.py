"""Events the SIP core hands to its user (telephony), named for what happened.

Every INVITE session ends with exactly one terminal event: ``CallEnded`` or ``CallFailed``.
Local actions (bye, cancel, reject) produce their terminal event at once, so the user never
waits for the network to learn that its own hang-up happened.
"""

from __future__ import annotations

from dataclasses import dataclass

from .peer import Peer
from .sdp import NegotiatedMedia

__all__ = [
    "CallAnswered",
    "CallConfirmed",
    "CallEnded",
    "CallFailed",
    "CallProgress",
    "IncomingCall",
    "MediaUpdated",
    "MessageDropped",
    "RegistrationStateChanged",
    "SipEvent",
]


@dataclass(frozen=True, slots=True, kw_only=True)
class IncomingCall:
    """A new INVITE for one of our lines (100 Trying already sent)."""

    session_id: str
    line_id: str
    call_id: str
    remote_uri: str
    remote_user: str | None
    remote_display_name: str | None
    local_uri: str
    request_uri: str
    has_offer: bool
    headers: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class CallProgress:
    """A provisional response (180 Ringing, 183 Session Progress) to our INVITE."""

    session_id: str
    status: int
    reason: str


@dataclass(frozen=True, slots=True, kw_only=True)
class CallAnswered:
    """Our INVITE got a 2xx with a usable answer; the ACK has been sent."""

    session_id: str
    media: NegotiatedMedia
    remote_uri: str


@dataclass(frozen=True, slots=True, kw_only=True)
class CallConfirmed:
    """The ACK for our 2xx arrived (UAS side); ``media`` is set when the ACK carried the answer."""

    session_id: str
    media: NegotiatedMedia | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class MediaUpdated:
    """The peer changed the session with a re-INVITE (hold, resume, new address)."""

    session_id: str
    media: NegotiatedMedia


@dataclass(frozen=True, slots=True, kw_only=True)
class CallFailed:
    """Our INVITE failed: a final non-2xx, a timeout (408) or a transport error (503)."""

    session_id: str
    status: int
    reason: str


@dataclass(frozen=True, slots=True, kw_only=True)
class CallEnded:
    """An established or ringing session is over.

    ``cause``: remote_bye, remote_cancel, local_bye, local_cancel, local_reject, ack_timeout, shutdown.
    """

    session_id: str
    cause: str
    status: int | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class RegistrationStateChanged:
    line_id: str
    registered: bool
    status: int | None
    reason: str
    expires: int | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class MessageDropped:
    """A datagram or message we could not use (unparsable, stray response)."""

    reason: str
    peer: Peer


SipEvent = (
    IncomingCall
    | CallProgress
    | CallAnswered
    | CallConfirmed
    | MediaUpdated
    | CallFailed
    | CallEnded
    | RegistrationStateChanged
    | MessageDropped
)
