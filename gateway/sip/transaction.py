"""RFC 3261 §17 transactions (client/server, INVITE/non-INVITE) with RFC 6026's Accepted state.

INTERFACE STUB — the implementation is being written; the public API below is fixed.

Sans-I/O: no sockets, no clock. Every method takes ``now`` (seconds, float, any epoch). Output
is pulled: ``TransactionLayer.messages_to_send()`` gives (message, peer) pairs to transmit,
``get_timer()`` the earliest deadline, ``next_event()`` events for the transaction user (TU).
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass

from .message import SipMessage, SipRequest, SipResponse
from .peer import Peer

__all__ = [
    "ClientTransaction",
    "RequestReceived",
    "ResponseReceived",
    "ServerTransaction",
    "TimerConfig",
    "TransactionLayer",
    "TransactionTerminated",
    "TransactionTimedOut",
    "TransportFailed",
    "TxEvent",
    "TxState",
]


@dataclass(frozen=True, slots=True)
class TimerConfig:
    """RFC 3261 Table 4 base values (seconds)."""

    t1: float = 0.5
    t2: float = 4.0
    t4: float = 5.0


class TxState(enum.Enum):
    CALLING = "Calling"
    TRYING = "Trying"
    PROCEEDING = "Proceeding"
    COMPLETED = "Completed"
    CONFIRMED = "Confirmed"
    ACCEPTED = "Accepted"  # RFC 6026 §7.1 / §7.2
    TERMINATED = "Terminated"


# ---- events for the TU -------------------------------------------------------------------------

@dataclass(frozen=True, slots=True, kw_only=True)
class ResponseReceived:
    """A response for a client transaction that the TU must see (RFC 3261 §17.1.1.2, §17.1.2.2).

    Provisional and final responses are passed up once; retransmitted non-2xx finals are absorbed.
    2xx responses to INVITE (first and retransmitted) are all passed up: the TU ACKs each (§13.2.2.4).
    """

    transaction: ClientTransaction
    response: SipResponse


@dataclass(frozen=True, slots=True, kw_only=True)
class RequestReceived:
    """A new request created a server transaction (not raised for retransmissions or an ACK
    that matched an INVITE server transaction in Completed)."""

    transaction: ServerTransaction
    request: SipRequest


@dataclass(frozen=True, slots=True, kw_only=True)
class TransactionTimedOut:
    """Timer B or F fired for a client transaction (the TU treats it as 408), or Timer H fired
    for an INVITE server transaction (no ACK came for a non-2xx final)."""

    transaction: ClientTransaction | ServerTransaction
    timer: str  # "B", "F" or "H"


@dataclass(frozen=True, slots=True, kw_only=True)
class TransportFailed:
    """The driver reported a send failure for this transaction (RFC 3261 §17.1.4: treat as 503)."""

    transaction: ClientTransaction | ServerTransaction


@dataclass(frozen=True, slots=True, kw_only=True)
class TransactionTerminated:
    """The transaction reached Terminated and was removed from the layer."""

    transaction: ClientTransaction | ServerTransaction


TxEvent = ResponseReceived | RequestReceived | TransactionTimedOut | TransportFailed | TransactionTerminated


class ClientTransaction:
    """Client INVITE (Fig. 5 + RFC 6026) or non-INVITE (Fig. 6) transaction.

    Attributes the TU reads: ``request``, ``peer``, ``state``, ``branch``, ``is_invite``,
    ``last_response`` (SipResponse | None), ``user_data`` (free slot for the TU, default None).
    For a non-2xx final to INVITE the transaction itself builds and sends the ACK (§17.1.1.3).
    """

    request: SipRequest
    peer: Peer
    state: TxState
    branch: str
    is_invite: bool
    last_response: SipResponse | None
    user_data: object


class ServerTransaction:
    """Server INVITE (Fig. 7 + RFC 6026) or non-INVITE (Fig. 8) transaction.

    Attributes the TU reads: ``request``, ``peer`` (where responses go: for UDP the Via's
    received/rport per RFC 3261 §18.2.2 / RFC 3581, for TCP the same connection),
    ``state``, ``branch``, ``is_invite``, ``last_response``, ``user_data``.
    """

    request: SipRequest
    peer: Peer
    state: TxState
    branch: str
    is_invite: bool
    last_response: SipResponse | None
    user_data: object


class TransactionLayer:
    """All transactions of one SIP endpoint, matched by branch (RFC 3261 §17.1.3, §17.2.3)."""

    def __init__(self, config: TimerConfig = TimerConfig(), *,
                 trace: Callable[[str, SipMessage, Peer], None] | None = None) -> None:
        raise NotImplementedError

    # -- inputs --
    def send_request(self, request: SipRequest, peer: Peer, now: float) -> ClientTransaction:
        """Start a client transaction: queue the request for sending and arm Timer A/B or E/F.
        The request's top Via must already carry a unique ``branch`` (see ``new_branch``)."""
        raise NotImplementedError

    def send_response(self, transaction: ServerTransaction, response: SipResponse, now: float) -> None:
        """Send a response on a server transaction and move its state machine."""
        raise NotImplementedError

    def receive_request(self, request: SipRequest, source: Peer, now: float) -> ServerTransaction | None:
        """Feed a received request (RFC 3261 §17.2.3 matching; RFC 2543 fallback when the branch
        lacks the magic cookie).

        * new request -> create a server transaction, emit ``RequestReceived``, return it;
        * retransmission of a request with a live transaction -> resend its last response, return None;
        * ACK matching an INVITE server transaction in Completed -> Confirmed (Timer I), return None;
        * ACK matching nothing (the ACK for a 2xx, a separate end-to-end request) -> return None and
          emit nothing: the caller (dialog layer) checks ``match_server(ack) is None`` beforehand and
          handles such ACKs itself. No transaction is ever created for an ACK.

        The layer never sends 100 Trying on its own; the TU does that.
        """
        raise NotImplementedError

    def receive_response(self, response: SipResponse, source: Peer, now: float) -> bool:
        """Feed a received response. Returns False if it matched no client transaction
        (the caller may still use a 2xx retransmission for a dialog, RFC 6026)."""
        raise NotImplementedError

    def transport_error(self, transaction: ClientTransaction | ServerTransaction, now: float) -> None:
        raise NotImplementedError

    def handle_timer(self, now: float) -> None:
        """Fire every timer due at or before ``now``."""
        raise NotImplementedError

    # -- outputs --
    def messages_to_send(self) -> list[tuple[SipMessage, Peer]]:
        raise NotImplementedError

    def get_timer(self) -> float | None:
        raise NotImplementedError

    def next_event(self) -> TxEvent | None:
        raise NotImplementedError

    # -- lookups --
    def match_server(self, request: SipRequest) -> ServerTransaction | None:
        raise NotImplementedError

    def match_client(self, response: SipResponse) -> ClientTransaction | None:
        raise NotImplementedError

    def match_cancel_target(self, cancel: SipRequest) -> ServerTransaction | None:
        """The INVITE server transaction a CANCEL refers to (same branch/sent-by, method INVITE;
        RFC 3261 §9.2)."""
        raise NotImplementedError

    def __len__(self) -> int:
        """Number of live transactions (for leak checks)."""
        raise NotImplementedError


def new_branch() -> str:
    """A fresh RFC 3261 §8.1.1.7 branch: magic cookie ``z9hG4bK`` + random token."""
    raise NotImplementedError
