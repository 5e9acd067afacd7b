"""RFC 3261 §17 transactions (client/server, INVITE/non-INVITE) with RFC 6026's Accepted state.

Sans-I/O: no sockets, no clock. Every method takes ``now`` (seconds, float, any epoch). Output
is pulled: ``TransactionLayer.messages_to_send()`` gives (message, peer) pairs to transmit,
``get_timer()`` the earliest deadline, ``next_event()`` events for the transaction user (TU).

The four machines are plain transition tables keyed by ``(state, trigger)`` (h11 ``_state.py``
style); the side effects named in a transition (retransmit, pass to TU, send ACK ...) are carried
out by ``TransactionLayer`` methods beside the tables, and the timers each state runs are listed
in ``STATE_TIMERS``. Timers are absolute deadlines in one heap with lazy deletion, so
``get_timer``/``handle_timer`` stay O(log n) with thousands of transactions.
"""

from __future__ import annotations

import enum
import heapq
import secrets
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from .errors import LocalSipError, RemoteSipError
from .headers import HeaderError, Headers, Via, split_list
from .message import SipMessage, SipRequest, SipResponse
from .peer import Peer

__all__ = [
    "MAGIC_COOKIE",
    "STATE_TIMERS",
    "TRANSITIONS",
    "Action",
    "ClientTransaction",
    "RequestReceived",
    "ResponseReceived",
    "ServerTransaction",
    "TimerConfig",
    "TransactionLayer",
    "TransactionTerminated",
    "TransactionTimedOut",
    "Transition",
    "TransportFailed",
    "Trigger",
    "TxEvent",
    "TxKind",
    "TxState",
    "build_non2xx_ack",
    "new_branch",
]

#: RFC 3261 §8.1.1.7: branches starting with this were made by an RFC 3261 element.
MAGIC_COOKIE: Final = "z9hG4bK"


@dataclass(frozen=True, slots=True)
class TimerConfig:
    """RFC 3261 Table 4 base values (seconds). ``timer_d`` is Timer D over UDP (">= 32 s")."""

    t1: float = 0.5
    t2: float = 4.0
    t4: float = 5.0
    timer_d: float = 32.0


class TxState(enum.Enum):
    CALLING = "Calling"
    TRYING = "Trying"
    PROCEEDING = "Proceeding"
    COMPLETED = "Completed"
    CONFIRMED = "Confirmed"
    ACCEPTED = "Accepted"  # RFC 6026 §7.1 / §7.2
    TERMINATED = "Terminated"


class TxKind(enum.Enum):
    """Which of the four machines a transaction runs."""

    CLIENT_INVITE = "client INVITE"  # RFC 3261 Fig. 5 + RFC 6026 §7.2
    CLIENT_NON_INVITE = "client non-INVITE"  # Fig. 6
    SERVER_INVITE = "server INVITE"  # Fig. 7 + RFC 6026 §7.1
    SERVER_NON_INVITE = "server non-INVITE"  # Fig. 8


class Trigger(enum.Enum):
    """What can happen to a transaction: a message, a TU call, a timer, a transport error."""

    RECV_1XX = "1xx received"
    RECV_2XX = "2xx received"
    RECV_3XX_6XX = "300-699 received"
    RECV_REQUEST = "request retransmission received"
    RECV_ACK = "ACK received"
    SEND_1XX = "1xx from TU"
    SEND_2XX = "2xx from TU"
    SEND_3XX_6XX = "300-699 from TU"
    TIMER_A = "Timer A"
    TIMER_B = "Timer B"
    TIMER_D = "Timer D"
    TIMER_E = "Timer E"
    TIMER_F = "Timer F"
    TIMER_G = "Timer G"
    TIMER_H = "Timer H"
    TIMER_I = "Timer I"
    TIMER_J = "Timer J"
    TIMER_K = "Timer K"
    TIMER_L = "Timer L"
    TIMER_M = "Timer M"
    TRANSPORT_ERROR = "transport error"

    @property
    def timer(self) -> str | None:
        """The timer letter for a timer trigger, else None."""
        return self.value[-1] if self.value.startswith("Timer ") else None


class Action(enum.Enum):
    """Side effects a transition asks for; ``TransactionLayer._do`` carries them out."""

    SEND = "send the TU's response"
    RESEND = "retransmit the request (client) / the last response (server)"
    BACKOFF = "re-arm the retransmission timer that fired with its next interval"
    SEND_ACK = "send the ACK for a non-2xx final (RFC 3261 §17.1.1.3)"
    TO_TU = "pass the response to the TU"
    TIMEOUT = "tell the TU the timer fired"
    TRANSPORT_FAILED = "tell the TU the transport failed"


@dataclass(frozen=True, slots=True)
class Transition:
    next: TxState
    actions: tuple[Action, ...] = ()


_S = TxState
_T = Trigger
_A = Action
_ABSORB: Final = ()

# RFC 3261 Fig. 5 with RFC 6026 §7.2 (2xx -> Accepted, Timer M). Timer B is not run in Proceeding
# (§17.1.1.2: only Calling times out; the TU CANCELs or calls ``terminate``).
_CLIENT_INVITE: dict[tuple[TxState, Trigger], Transition] = {
    (_S.CALLING, _T.TIMER_A): Transition(_S.CALLING, (_A.RESEND, _A.BACKOFF)),
    (_S.CALLING, _T.TIMER_B): Transition(_S.TERMINATED, (_A.TIMEOUT,)),
    (_S.CALLING, _T.RECV_1XX): Transition(_S.PROCEEDING, (_A.TO_TU,)),
    (_S.CALLING, _T.RECV_2XX): Transition(_S.ACCEPTED, (_A.TO_TU,)),
    (_S.CALLING, _T.RECV_3XX_6XX): Transition(_S.COMPLETED, (_A.SEND_ACK, _A.TO_TU)),
    (_S.CALLING, _T.TRANSPORT_ERROR): Transition(_S.TERMINATED, (_A.TRANSPORT_FAILED,)),
    (_S.PROCEEDING, _T.RECV_1XX): Transition(_S.PROCEEDING, (_A.TO_TU,)),
    (_S.PROCEEDING, _T.RECV_2XX): Transition(_S.ACCEPTED, (_A.TO_TU,)),
    (_S.PROCEEDING, _T.RECV_3XX_6XX): Transition(_S.COMPLETED, (_A.SEND_ACK, _A.TO_TU)),
    (_S.PROCEEDING, _T.TRANSPORT_ERROR): Transition(_S.TERMINATED, (_A.TRANSPORT_FAILED,)),
    (_S.COMPLETED, _T.RECV_1XX): Transition(_S.COMPLETED, _ABSORB),
    (_S.COMPLETED, _T.RECV_2XX): Transition(_S.COMPLETED, _ABSORB),
    (_S.COMPLETED, _T.RECV_3XX_6XX): Transition(_S.COMPLETED, (_A.SEND_ACK,)),  # retransmitted final
    (_S.COMPLETED, _T.TIMER_D): Transition(_S.TERMINATED),
    (_S.COMPLETED, _T.TRANSPORT_ERROR): Transition(_S.TERMINATED, (_A.TRANSPORT_FAILED,)),
    (_S.ACCEPTED, _T.RECV_1XX): Transition(_S.ACCEPTED, _ABSORB),
    (_S.ACCEPTED, _T.RECV_2XX): Transition(_S.ACCEPTED, (_A.TO_TU,)),  # the TU ACKs every 2xx (§13.2.2.4)
    (_S.ACCEPTED, _T.RECV_3XX_6XX): Transition(_S.ACCEPTED, _ABSORB),
    (_S.ACCEPTED, _T.TIMER_M): Transition(_S.TERMINATED),
    (_S.ACCEPTED, _T.TRANSPORT_ERROR): Transition(_S.TERMINATED, (_A.TRANSPORT_FAILED,)),
}

# RFC 3261 Fig. 6.
_CLIENT_NON_INVITE: dict[tuple[TxState, Trigger], Transition] = {
    (_S.TRYING, _T.TIMER_E): Transition(_S.TRYING, (_A.RESEND, _A.BACKOFF)),
    (_S.TRYING, _T.TIMER_F): Transition(_S.TERMINATED, (_A.TIMEOUT,)),
    (_S.TRYING, _T.RECV_1XX): Transition(_S.PROCEEDING, (_A.TO_TU,)),
    (_S.TRYING, _T.RECV_2XX): Transition(_S.COMPLETED, (_A.TO_TU,)),
    (_S.TRYING, _T.RECV_3XX_6XX): Transition(_S.COMPLETED, (_A.TO_TU,)),
    (_S.TRYING, _T.TRANSPORT_ERROR): Transition(_S.TERMINATED, (_A.TRANSPORT_FAILED,)),
    (_S.PROCEEDING, _T.TIMER_E): Transition(_S.PROCEEDING, (_A.RESEND, _A.BACKOFF)),
    (_S.PROCEEDING, _T.TIMER_F): Transition(_S.TERMINATED, (_A.TIMEOUT,)),
    (_S.PROCEEDING, _T.RECV_1XX): Transition(_S.PROCEEDING, (_A.TO_TU,)),
    (_S.PROCEEDING, _T.RECV_2XX): Transition(_S.COMPLETED, (_A.TO_TU,)),
    (_S.PROCEEDING, _T.RECV_3XX_6XX): Transition(_S.COMPLETED, (_A.TO_TU,)),
    (_S.PROCEEDING, _T.TRANSPORT_ERROR): Transition(_S.TERMINATED, (_A.TRANSPORT_FAILED,)),
    (_S.COMPLETED, _T.RECV_1XX): Transition(_S.COMPLETED, _ABSORB),
    (_S.COMPLETED, _T.RECV_2XX): Transition(_S.COMPLETED, _ABSORB),
    (_S.COMPLETED, _T.RECV_3XX_6XX): Transition(_S.COMPLETED, _ABSORB),
    (_S.COMPLETED, _T.TIMER_K): Transition(_S.TERMINATED),
    (_S.COMPLETED, _T.TRANSPORT_ERROR): Transition(_S.TERMINATED, (_A.TRANSPORT_FAILED,)),
}

# RFC 3261 Fig. 7 as redrawn by RFC 6026 Fig. 7: 2xx -> Accepted (Timer L), the TU retransmits
# the 2xx through the transaction; a transport error in Proceeding/Accepted is reported but the
# transaction stays, so INVITE retransmissions are still absorbed instead of looking new.
# An ACK in Accepted goes to the TU: ``match_server`` returns None for it (see there).
_SERVER_INVITE: dict[tuple[TxState, Trigger], Transition] = {
    (_S.PROCEEDING, _T.RECV_REQUEST): Transition(_S.PROCEEDING, (_A.RESEND,)),  # last provisional
    (_S.PROCEEDING, _T.SEND_1XX): Transition(_S.PROCEEDING, (_A.SEND,)),
    (_S.PROCEEDING, _T.SEND_2XX): Transition(_S.ACCEPTED, (_A.SEND,)),
    (_S.PROCEEDING, _T.SEND_3XX_6XX): Transition(_S.COMPLETED, (_A.SEND,)),
    (_S.PROCEEDING, _T.TRANSPORT_ERROR): Transition(_S.PROCEEDING, (_A.TRANSPORT_FAILED,)),
    (_S.COMPLETED, _T.RECV_REQUEST): Transition(_S.COMPLETED, (_A.RESEND,)),
    (_S.COMPLETED, _T.RECV_ACK): Transition(_S.CONFIRMED),
    (_S.COMPLETED, _T.TIMER_G): Transition(_S.COMPLETED, (_A.RESEND, _A.BACKOFF)),
    (_S.COMPLETED, _T.TIMER_H): Transition(_S.TERMINATED, (_A.TIMEOUT,)),
    (_S.COMPLETED, _T.TRANSPORT_ERROR): Transition(_S.TERMINATED, (_A.TRANSPORT_FAILED,)),
    (_S.CONFIRMED, _T.RECV_REQUEST): Transition(_S.CONFIRMED, _ABSORB),
    (_S.CONFIRMED, _T.RECV_ACK): Transition(_S.CONFIRMED, _ABSORB),
    (_S.CONFIRMED, _T.TIMER_I): Transition(_S.TERMINATED),
    (_S.CONFIRMED, _T.TRANSPORT_ERROR): Transition(_S.TERMINATED, (_A.TRANSPORT_FAILED,)),
    (_S.ACCEPTED, _T.RECV_REQUEST): Transition(_S.ACCEPTED, _ABSORB),  # RFC 6026 §8.7: not to the TU
    (_S.ACCEPTED, _T.SEND_2XX): Transition(_S.ACCEPTED, (_A.SEND,)),
    (_S.ACCEPTED, _T.TIMER_L): Transition(_S.TERMINATED),
    (_S.ACCEPTED, _T.TRANSPORT_ERROR): Transition(_S.ACCEPTED, (_A.TRANSPORT_FAILED,)),
}

# RFC 3261 Fig. 8. Responses from the TU in Completed are discarded (§17.2.2).
_SERVER_NON_INVITE: dict[tuple[TxState, Trigger], Transition] = {
    (_S.TRYING, _T.RECV_REQUEST): Transition(_S.TRYING, _ABSORB),
    (_S.TRYING, _T.SEND_1XX): Transition(_S.PROCEEDING, (_A.SEND,)),
    (_S.TRYING, _T.SEND_2XX): Transition(_S.COMPLETED, (_A.SEND,)),
    (_S.TRYING, _T.SEND_3XX_6XX): Transition(_S.COMPLETED, (_A.SEND,)),
    (_S.TRYING, _T.TRANSPORT_ERROR): Transition(_S.TERMINATED, (_A.TRANSPORT_FAILED,)),
    (_S.PROCEEDING, _T.RECV_REQUEST): Transition(_S.PROCEEDING, (_A.RESEND,)),
    (_S.PROCEEDING, _T.SEND_1XX): Transition(_S.PROCEEDING, (_A.SEND,)),
    (_S.PROCEEDING, _T.SEND_2XX): Transition(_S.COMPLETED, (_A.SEND,)),
    (_S.PROCEEDING, _T.SEND_3XX_6XX): Transition(_S.COMPLETED, (_A.SEND,)),
    (_S.PROCEEDING, _T.TRANSPORT_ERROR): Transition(_S.TERMINATED, (_A.TRANSPORT_FAILED,)),
    (_S.COMPLETED, _T.RECV_REQUEST): Transition(_S.COMPLETED, (_A.RESEND,)),
    (_S.COMPLETED, _T.SEND_1XX): Transition(_S.COMPLETED, _ABSORB),
    (_S.COMPLETED, _T.SEND_2XX): Transition(_S.COMPLETED, _ABSORB),
    (_S.COMPLETED, _T.SEND_3XX_6XX): Transition(_S.COMPLETED, _ABSORB),
    (_S.COMPLETED, _T.TIMER_J): Transition(_S.TERMINATED),
    (_S.COMPLETED, _T.TRANSPORT_ERROR): Transition(_S.TERMINATED, (_A.TRANSPORT_FAILED,)),
}

#: The four machines. A (state, trigger) pair missing from a table: a received message is
#: absorbed, a TU ``send_response`` is refused with ``LocalSipError``, a timer cannot be running.
TRANSITIONS: Final[dict[TxKind, dict[tuple[TxState, Trigger], Transition]]] = {
    TxKind.CLIENT_INVITE: _CLIENT_INVITE,
    TxKind.CLIENT_NON_INVITE: _CLIENT_NON_INVITE,
    TxKind.SERVER_INVITE: _SERVER_INVITE,
    TxKind.SERVER_NON_INVITE: _SERVER_NON_INVITE,
}

#: Timers that run while a machine is in a state: entering a state stops the others and starts
#: those not yet running (retransmission timers A/E/G only over unreliable transports).
STATE_TIMERS: Final[dict[TxKind, dict[TxState, tuple[str, ...]]]] = {
    TxKind.CLIENT_INVITE: {_S.CALLING: ("A", "B"), _S.COMPLETED: ("D",), _S.ACCEPTED: ("M",)},
    TxKind.CLIENT_NON_INVITE: {_S.TRYING: ("E", "F"), _S.PROCEEDING: ("E", "F"), _S.COMPLETED: ("K",)},
    TxKind.SERVER_INVITE: {_S.COMPLETED: ("G", "H"), _S.CONFIRMED: ("I",), _S.ACCEPTED: ("L",)},
    TxKind.SERVER_NON_INVITE: {_S.COMPLETED: ("J",)},
}

_TIMER_TRIGGERS: Final = {t.timer: t for t in Trigger if t.timer is not None}


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


# ---- transactions ------------------------------------------------------------------------------

class _Transaction:
    """State shared by both sides. Timers live in the layer's heap; ``_timers`` points at the
    heap entries (``[deadline, seq, tx-or-None, name]``) so they can be cancelled lazily."""

    __slots__ = ("request", "peer", "state", "branch", "is_invite", "last_response", "user_data",
                 "kind", "_timers", "_intervals", "_keys")

    def __init__(self, kind: TxKind, request: SipRequest, peer: Peer, branch: str, state: TxState) -> None:
        self.kind = kind
        self.request = request
        self.peer = peer
        self.branch = branch
        self.state = state
        self.is_invite = request.method == "INVITE"
        self.last_response: SipResponse | None = None
        self.user_data: object = None
        self._timers: dict[str, list] = {}
        self._intervals: dict[str, float] = {}
        self._keys: list[tuple[dict, tuple]] = []

    @property
    def method(self) -> str:
        return self.request.method

    @property
    def timers(self) -> dict[str, float]:
        """Running timers: letter -> absolute deadline (a copy, for inspection)."""
        return {name: entry[0] for name, entry in self._timers.items()}

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.request.method} {self.branch} {self.state.value}>"


class ClientTransaction(_Transaction):
    """Client INVITE (Fig. 5 + RFC 6026) or non-INVITE (Fig. 6) transaction.

    Attributes the TU reads: ``request``, ``peer``, ``state``, ``branch``, ``is_invite``,
    ``last_response`` (SipResponse | None), ``user_data`` (free slot for the TU, default None),
    ``ack`` (the ACK this transaction sent for a non-2xx final, else None), ``timers``.
    For a non-2xx final to INVITE the transaction itself builds and sends the ACK (§17.1.1.3).
    """

    __slots__ = ("ack",)

    request: SipRequest
    peer: Peer
    state: TxState
    branch: str
    is_invite: bool
    last_response: SipResponse | None
    user_data: object

    def __init__(self, request: SipRequest, peer: Peer, branch: str) -> None:
        invite = request.method == "INVITE"
        super().__init__(TxKind.CLIENT_INVITE if invite else TxKind.CLIENT_NON_INVITE, request, peer, branch,
                         TxState.CALLING if invite else TxState.TRYING)
        self.ack: SipRequest | None = None


class ServerTransaction(_Transaction):
    """Server INVITE (Fig. 7 + RFC 6026) or non-INVITE (Fig. 8) transaction.

    Attributes the TU reads: ``request``, ``peer`` (where responses go: for UDP the Via's
    received/rport per RFC 3261 §18.2.2 / RFC 3581, for TCP the same connection),
    ``source`` (where the request came from), ``state``, ``branch``, ``is_invite``,
    ``last_response``, ``user_data``, ``timers``.
    """

    __slots__ = ("source",)

    request: SipRequest
    peer: Peer
    state: TxState
    branch: str
    is_invite: bool
    last_response: SipResponse | None
    user_data: object

    def __init__(self, request: SipRequest, source: Peer, peer: Peer, branch: str) -> None:
        invite = request.method == "INVITE"
        super().__init__(TxKind.SERVER_INVITE if invite else TxKind.SERVER_NON_INVITE, request, peer, branch,
                         TxState.PROCEEDING if invite else TxState.TRYING)
        self.source = source


# ---- the layer ---------------------------------------------------------------------------------

_HeapEntry = list  # [deadline: float, seq: int, tx: _Transaction | None, name: str]


class TransactionLayer:
    """All transactions of one SIP endpoint, matched by branch (RFC 3261 §17.1.3, §17.2.3)."""

    #: compact the timer heap when this many cancelled entries are waiting and they are the majority
    _COMPACT_AT: Final = 512

    def __init__(self, config: TimerConfig = TimerConfig(), *,
                 trace: Callable[[str, SipMessage, Peer], None] | None = None) -> None:
        self.config = config
        self._trace = trace
        self._clients: dict[tuple[str, str], ClientTransaction] = {}
        self._servers: dict[tuple, ServerTransaction] = {}
        self._acks2543: dict[tuple, ServerTransaction] = {}
        self._live: set[_Transaction] = set()
        self._heap: list[_HeapEntry] = []
        self._seq = 0
        self._stale = 0
        self._out: list[tuple[SipMessage, Peer]] = []
        self._events: deque[TxEvent] = deque()

    # -- inputs --
    def send_request(self, request: SipRequest, peer: Peer, now: float) -> ClientTransaction:
        """Start a client transaction: queue the request for sending and arm Timer A/B or E/F.
        The request's top Via must already carry a unique ``branch`` (see ``new_branch``).

        Raises ``LocalSipError`` for an ACK (never a transaction, §17.1.1.3 / §13.2.2.4: send it
        with ``send_stateless``), a missing branch, or a branch+method already in use.
        """
        if request.method == "ACK":
            raise LocalSipError("ACK is not sent in a client transaction; use send_stateless")
        try:
            branch = request.top_via.branch
        except HeaderError as exc:
            raise LocalSipError(f"request has no usable Via: {exc}") from None
        if not branch:
            raise LocalSipError("the request's top Via has no branch parameter")
        key = (branch, request.method)
        if key in self._clients:
            raise LocalSipError(f"a client transaction for {request.method} branch {branch} already exists")
        tx = ClientTransaction(request, peer, branch)
        self._clients[key] = tx
        tx._keys.append((self._clients, key))
        self._live.add(tx)
        self._queue(request, peer)
        self._enter(tx, now)
        return tx

    def send_response(self, transaction: ServerTransaction, response: SipResponse, now: float) -> None:
        """Send a response on a server transaction and move its state machine.

        1xx keeps/puts it in Proceeding; 2xx on INVITE -> Accepted (Timer L; the TU retransmits the
        2xx itself through this method, RFC 6026 §7.1); 300-699 on INVITE -> Completed (Timer G, H);
        a non-INVITE final -> Completed (Timer J). After a non-INVITE final, further responses are
        discarded (§17.2.2). A 2xx for an INVITE whose transaction already terminated (Timer L) is
        still sent, statelessly. Any other response the state does not allow raises ``LocalSipError``.
        """
        trigger = _send_trigger(response.status)
        if transaction.state is TxState.TERMINATED:
            if transaction.is_invite and trigger is Trigger.SEND_2XX:
                self._queue(response, transaction.peer)
                return
            raise LocalSipError(f"cannot send {response.status}: {transaction!r} has terminated")
        if not self._apply(transaction, trigger, now, response):
            raise LocalSipError(f"cannot send {response.status} on {transaction!r} in {transaction.state.value}")

    def receive_request(self, request: SipRequest, source: Peer, now: float) -> ServerTransaction | None:
        """Feed a received request (RFC 3261 §17.2.3 matching; RFC 2543 fallback when the branch
        lacks the magic cookie).

        * new request -> create a server transaction, emit ``RequestReceived``, return it;
        * retransmission of a request with a live transaction -> resend its last response, return None;
        * ACK matching an INVITE server transaction in Completed -> Confirmed (Timer I), return None;
        * ACK matching nothing (the ACK for a 2xx, a separate end-to-end request) -> return None and
          emit nothing: the caller (dialog layer) checks ``match_server(ack) is None`` beforehand and
          handles such ACKs itself. No transaction is ever created for an ACK.

        The layer never sends 100 Trying on its own; the TU does that. Before matching, the top Via
        is annotated with ``received``/``rport`` (RFC 3261 §18.2.1, RFC 3581 §4). A request without
        a readable Via, CSeq, From or To raises ``RemoteSipError`` (400) naming the header.
        """
        via = _top_via(request)
        _annotate_via(request, via, source)
        if request.method == "ACK":
            tx = self.match_server(request)
            if tx is not None:
                self._apply(tx, Trigger.RECV_ACK, now, request)
            return None
        existing = self._lookup_server(request, via, request.method)
        if existing is not None:
            self._apply(existing, Trigger.RECV_REQUEST, now, request)
            return None
        branch = via.branch or ""
        tx = ServerTransaction(request, source, _response_peer(via, source), branch)
        for index, key in self._server_keys(request, via):
            index[key] = tx
            tx._keys.append((index, key))
        self._live.add(tx)
        self._events.append(RequestReceived(transaction=tx, request=request))
        self._enter(tx, now)
        return tx

    def receive_response(self, response: SipResponse, source: Peer, now: float) -> bool:
        """Feed a received response. Returns False if it matched no client transaction
        (the caller may still use a 2xx retransmission for a dialog, RFC 6026)."""
        tx = self.match_client(response)
        if tx is None or not 100 <= response.status <= 699:
            return False
        status = response.status
        trigger = Trigger.RECV_1XX if status < 200 else Trigger.RECV_2XX if status < 300 else Trigger.RECV_3XX_6XX
        self._apply(tx, trigger, now, response)
        return True

    def transport_error(self, transaction: ClientTransaction | ServerTransaction, now: float) -> None:
        """The driver could not send a message of this transaction (RFC 3261 §17.1.4, §17.2.4):
        emit ``TransportFailed``; the transaction terminates, except an INVITE server transaction in
        Proceeding or Accepted, which stays to absorb INVITE retransmissions (RFC 6026 Fig. 7)."""
        if transaction.state is not TxState.TERMINATED:
            self._apply(transaction, Trigger.TRANSPORT_ERROR, now, None)

    def terminate(self, transaction: ClientTransaction | ServerTransaction, now: float) -> None:
        """The TU destroys a transaction early, e.g. an INVITE client transaction still in
        Proceeding 64*T1 after its CANCEL (RFC 3261 §9.1). Emits ``TransactionTerminated``."""
        if transaction.state is not TxState.TERMINATED:
            transaction.state = TxState.TERMINATED
            self._enter(transaction, now)

    def send_stateless(self, message: SipMessage, peer: Peer) -> None:
        """Queue a message outside any transaction (the ACK for a 2xx, a stateless reply to a bad
        request), so every outgoing message goes through ``messages_to_send`` and ``trace``."""
        self._queue(message, peer)

    def handle_timer(self, now: float) -> None:
        """Fire every timer due at or before ``now``, earliest first.

        ``self._heap`` is re-read on every turn: a timer's side effects may cancel other timers and
        so compact the heap into a new list (``_cancel``)."""
        while self._heap and self._heap[0][0] <= now:
            entry = heapq.heappop(self._heap)
            tx = entry[2]
            if tx is None:
                self._stale -= 1
                continue
            name = entry[3]
            if tx._timers.get(name) is not entry:
                continue  # cannot happen while the heap is consistent; never fire a timer twice
            del tx._timers[name]
            self._apply(tx, _TIMER_TRIGGERS[name], now, None)

    # -- outputs --
    def messages_to_send(self) -> list[tuple[SipMessage, Peer]]:
        """Everything queued since the last call, in order."""
        out, self._out = self._out, []
        return out

    def get_timer(self) -> float | None:
        """The earliest running deadline, or None (amortised O(log n): cancelled entries are
        dropped from the top of the heap as they surface)."""
        heap = self._heap
        while heap and heap[0][2] is None:
            heapq.heappop(heap)
            self._stale -= 1
        return heap[0][0] if heap else None

    def next_event(self) -> TxEvent | None:
        return self._events.popleft() if self._events else None

    # -- lookups --
    def match_server(self, request: SipRequest) -> ServerTransaction | None:
        """The server transaction a received request belongs to (RFC 3261 §17.2.3).

        An ACK matches its INVITE server transaction only while that one is Completed or Confirmed
        (the ACK for a non-2xx final). In any other state — notably Accepted, where RFC 6026 §8.7
        hands the ACK to the TU — None is returned and the ACK is the dialog layer's.
        """
        try:
            via = request.top_via
        except HeaderError:
            return None
        if request.method != "ACK":
            return self._lookup_server(request, via, request.method)
        tx: ServerTransaction | None
        if _is_3261(via):
            tx = self._servers.get(_key3261(via, "INVITE"))
        else:
            try:
                tx = self._acks2543.get(_ack_key2543(request, via))
            except HeaderError:
                return None
            resp = tx.last_response if tx is not None else None
            if resp is None or _tag(resp, "to") != _tag(request, "to"):
                tx = None  # §17.2.3: the ACK's To tag must match the response's
        if tx is not None and tx.state in (TxState.COMPLETED, TxState.CONFIRMED):
            return tx
        return None

    def match_client(self, response: SipResponse) -> ClientTransaction | None:
        """RFC 3261 §17.1.3: top Via branch and CSeq method equal to the request's."""
        try:
            branch = response.top_via.branch
            method = response.cseq[1]
        except HeaderError:
            return None
        if not branch:
            return None
        return self._clients.get((branch, method))

    def match_cancel_target(self, cancel: SipRequest) -> ServerTransaction | None:
        """The INVITE server transaction a CANCEL refers to (same branch/sent-by, method INVITE;
        RFC 3261 §9.2), in whatever state it is (the TU answers 200 to the CANCEL and 487 to the
        INVITE only while it is in Proceeding)."""
        try:
            return self._lookup_server(cancel, cancel.top_via, "INVITE")
        except HeaderError:
            return None

    def transaction_of(self, message: SipMessage) -> ClientTransaction | ServerTransaction | None:
        """The live transaction an outgoing message belongs to, for a driver that must report a
        send failure through ``transport_error`` (None for stateless messages such as 2xx ACKs)."""
        try:
            via = message.top_via
        except HeaderError:
            return None
        if isinstance(message, SipRequest):
            tx = self._clients.get((via.branch or "", "INVITE" if message.method == "ACK" else message.method))
            if tx is not None and message.method == "ACK" and tx.ack is not message:
                return None
            return tx
        try:
            method = message.cseq[1]
        except HeaderError:
            return None
        if _is_3261(via):
            return self._servers.get(_key3261(via, method))
        for tx in self._live:  # RFC 2543 peers only: no key can be rebuilt from a response
            if isinstance(tx, ServerTransaction) and tx.last_response is message:
                return tx
        return None

    def __len__(self) -> int:
        """Number of live transactions (for leak checks)."""
        return len(self._live)

    # -- machinery --
    def _apply(self, tx: _Transaction, trigger: Trigger, now: float, message: SipMessage | None) -> bool:
        """Run one (state, trigger) transition; False if the table has none for it."""
        transition = TRANSITIONS[tx.kind].get((tx.state, trigger))
        if transition is None:
            return False
        for action in transition.actions:
            self._do(tx, action, trigger, now, message)
        if transition.next is not tx.state:
            tx.state = transition.next
            self._enter(tx, now)
        return True

    def _do(self, tx: _Transaction, action: Action, trigger: Trigger, now: float,
            message: SipMessage | None) -> None:
        if action is Action.SEND:
            assert isinstance(message, SipResponse)
            tx.last_response = message
            self._queue(message, tx.peer)
        elif action is Action.RESEND:
            if isinstance(tx, ClientTransaction):
                self._queue(tx.request, tx.peer)
            elif tx.last_response is not None:
                self._queue(tx.last_response, tx.peer)
        elif action is Action.BACKOFF:
            name = trigger.timer
            assert name is not None
            self._arm(tx, name, self._next_interval(tx, name), now)
        elif action is Action.SEND_ACK:
            assert isinstance(tx, ClientTransaction) and isinstance(message, SipResponse)
            if tx.ack is None:
                tx.ack = build_non2xx_ack(tx.request, message)
            self._queue(tx.ack, tx.peer)
        elif action is Action.TO_TU:
            assert isinstance(tx, ClientTransaction) and isinstance(message, SipResponse)
            tx.last_response = message
            self._events.append(ResponseReceived(transaction=tx, response=message))
        elif action is Action.TIMEOUT:
            assert trigger.timer is not None
            self._events.append(TransactionTimedOut(transaction=tx, timer=trigger.timer))  # type: ignore[arg-type]
        elif action is Action.TRANSPORT_FAILED:
            self._events.append(TransportFailed(transaction=tx))  # type: ignore[arg-type]

    def _enter(self, tx: _Transaction, now: float) -> None:
        """Just entered ``tx.state``: stop the timers the state does not run, start the missing
        ones; a zero-length timer (D, I, J, K over reliable transports) fires at once."""
        if tx.state is TxState.TERMINATED:
            self._remove(tx)
            return
        wanted = STATE_TIMERS[tx.kind].get(tx.state, ())
        for name in [n for n in tx._timers if n not in wanted]:
            self._cancel(tx, name)
        immediate: list[str] = []
        for name in wanted:
            if name in tx._timers:
                continue
            delay = self._initial_interval(tx, name)
            if delay is None:
                continue
            if delay <= 0:
                immediate.append(name)
            else:
                self._arm(tx, name, delay, now)
        state = tx.state
        for name in immediate:
            if tx.state is state:
                self._apply(tx, _TIMER_TRIGGERS[name], now, None)

    def _initial_interval(self, tx: _Transaction, name: str) -> float | None:
        """RFC 3261 Table 4 (+ RFC 6026 §8.11 for L and M); None = not run on this transport."""
        c = self.config
        unreliable = not tx.peer.reliable
        if name in ("A", "E", "G"):
            return c.t1 if unreliable else None
        if name in ("B", "F", "H", "L", "M"):
            return 64 * c.t1
        if name == "D":
            return c.timer_d if unreliable else 0.0
        if name == "J":
            return 64 * c.t1 if unreliable else 0.0
        if name in ("I", "K"):
            return c.t4 if unreliable else 0.0
        raise AssertionError(f"unknown timer {name}")

    def _next_interval(self, tx: _Transaction, name: str) -> float:
        """Back-off after a retransmission: A doubles (§17.1.1.2); E doubles up to T2, and is T2
        once a provisional came (§17.1.2.2); G doubles up to T2 (§17.2.1)."""
        last = tx._intervals[name]
        if name == "A":
            return 2 * last
        if name == "E" and tx.state is TxState.PROCEEDING:
            return self.config.t2
        return min(2 * last, self.config.t2)

    def _arm(self, tx: _Transaction, name: str, delay: float, now: float) -> None:
        self._cancel(tx, name)
        self._seq += 1
        entry: _HeapEntry = [now + delay, self._seq, tx, name]
        heapq.heappush(self._heap, entry)
        tx._timers[name] = entry
        tx._intervals[name] = delay

    def _cancel(self, tx: _Transaction, name: str) -> None:
        entry = tx._timers.pop(name, None)
        if entry is None:
            return
        entry[2] = None
        self._stale += 1
        if self._stale > self._COMPACT_AT and 2 * self._stale > len(self._heap):
            self._heap = [e for e in self._heap if e[2] is not None]
            heapq.heapify(self._heap)
            self._stale = 0

    def _remove(self, tx: _Transaction) -> None:
        for name in list(tx._timers):
            self._cancel(tx, name)
        for index, key in tx._keys:
            if index.get(key) is tx:
                del index[key]
        tx._keys.clear()
        if tx in self._live:
            self._live.discard(tx)
            self._events.append(TransactionTerminated(transaction=tx))  # type: ignore[arg-type]

    def _queue(self, message: SipMessage, peer: Peer) -> None:
        self._out.append((message, peer))
        if self._trace is not None:
            self._trace("out", message, peer)

    def _lookup_server(self, request: SipRequest, via: Via, method: str) -> ServerTransaction | None:
        if _is_3261(via):
            return self._servers.get(_key3261(via, method))
        try:
            return self._servers.get(_key2543(request, via, method))
        except HeaderError:
            return None

    def _server_keys(self, request: SipRequest, via: Via) -> list[tuple[dict, tuple]]:
        if _is_3261(via):
            return [(self._servers, _key3261(via, request.method))]
        keys: list[tuple[dict, tuple]] = [(self._servers, _key2543(request, via, request.method))]
        if request.method == "INVITE":
            keys.append((self._acks2543, _ack_key2543(request, via)))
        return keys


# ---- matching keys, Via handling, ACK ----------------------------------------------------------

def _send_trigger(status: int) -> Trigger:
    if 100 <= status <= 199:
        return Trigger.SEND_1XX
    if 200 <= status <= 299:
        return Trigger.SEND_2XX
    if 300 <= status <= 699:
        return Trigger.SEND_3XX_6XX
    raise LocalSipError(f"status code {status} is not 100-699")


def _is_3261(via: Via) -> bool:
    branch = via.branch
    return bool(branch) and branch.startswith(MAGIC_COOKIE)  # type: ignore[union-attr]


def _sent_by(via: Via) -> tuple[str, int]:
    """sent-by compared as RFC 3261 §17.2.3 needs: host case-insensitive, default port filled in."""
    default = 5061 if via.transport.upper() in ("TLS", "WSS") else 5060
    return via.host.lower(), via.port if via.port is not None else default


def _key3261(via: Via, method: str) -> tuple:
    """§17.2.3: branch + sent-by + method, an ACK counting as its INVITE."""
    host, port = _sent_by(via)
    return ("3261", via.branch, host, port, "INVITE" if method == "ACK" else method)


def _via2543(via: Via) -> tuple:
    host, port = _sent_by(via)
    return (via.transport.upper(), host, port, via.branch)


def _tag(message: SipMessage, which: str) -> str | None:
    return message.to_tag if which == "to" else message.from_tag


def _key2543(request: SipRequest, via: Via, method: str) -> tuple:
    """§17.2.3 for RFC 2543 peers: Request-URI, To tag, From tag, Call-ID, CSeq, top Via.
    ``method`` is INVITE when looking up a CANCEL's target (§9.2)."""
    num = request.cseq[0]
    return ("2543", request.uri, _tag(request, "to"), _tag(request, "from"), request.call_id, num, method,
            _via2543(via))


def _ack_key2543(request: SipRequest, via: Via) -> tuple:
    """§17.2.3: an RFC 2543 ACK matches its INVITE without the To tag (checked separately)."""
    return (request.uri, _tag(request, "from"), request.call_id, request.cseq[0], _via2543(via))


def _top_via(request: SipRequest) -> Via:
    """The top Via, also checking the headers matching needs; bad ones are the peer's 400."""
    try:
        via = request.top_via
    except HeaderError as exc:
        raise RemoteSipError(f"Via: {exc}", status_hint=400, partial=request) from None
    for name, read in (("CSeq", lambda: request.cseq), ("From", lambda: request.from_),
                       ("To", lambda: request.to)):
        try:
            read()
        except HeaderError as exc:
            raise RemoteSipError(f"{name}: {exc}", status_hint=400, partial=request) from None
    return via


def _bare_host(host: str) -> str:
    return host[1:-1] if host.startswith("[") and host.endswith("]") else host


def _annotate_via(request: SipRequest, via: Via, source: Peer) -> None:
    """RFC 3261 §18.2.1: add ``received`` when sent-by is not the source address; RFC 3581 §4:
    fill a bare ``rport`` with the source port, and then always add ``received``. The top Via
    is rewritten in place (same header line, other Vias untouched) so responses copy it."""
    changed = False
    if via.param("rport") == "":
        via.set_param("rport", str(source.port))
        via.set_param("received", source.host)
        changed = True
    elif _bare_host(via.host).lower() != _bare_host(source.host).lower() and via.param("received") != source.host:
        via.set_param("received", source.host)
        changed = True
    if not changed:
        return
    for field in request.headers:
        if field.key == "via":
            parts = split_list(field.value)
            parts[0] = str(via)
            field.value = ", ".join(parts)
            return


def _response_peer(via: Via, source: Peer) -> Peer:
    """RFC 3261 §18.2.2 / RFC 3581 §4: where a server transaction's responses go.

    Reliable transports answer on the connection the request came in on. UDP answers to
    ``received`` (else the sent-by host) and to ``rport`` when the client asked for it (else the
    sent-by port, else 5060). ``maddr`` is not supported.
    """
    if source.reliable:
        return source
    host = _bare_host(via.param("received") or via.host)
    rport = via.param("rport")
    if rport and rport.isdigit():
        port = int(rport)
    else:
        port = via.port if via.port is not None else 5060
    return Peer(source.transport, host, port)


def build_non2xx_ack(invite: SipRequest, response: SipResponse) -> SipRequest:
    """The ACK for a non-2xx final, built by the INVITE client transaction (RFC 3261 §17.1.1.3):
    the INVITE's Request-URI, its top Via only, its From, Call-ID, CSeq number with method ACK
    and Route headers, and the To of the response (with the tag the UAS added)."""
    h = Headers()
    h.add("Via", invite.headers.values("Via")[0])
    for route in invite.headers.get_all("Route"):
        h.add("Route", route)
    h.add("Max-Forwards", invite.headers.get("Max-Forwards") or "70")
    h.add("From", invite.headers.get("From") or "")
    h.add("To", response.headers.get("To") or invite.headers.get("To") or "")
    h.add("Call-ID", invite.headers.get("Call-ID") or "")
    h.add("CSeq", f"{invite.cseq[0]} ACK")
    return SipRequest(method="ACK", uri=invite.uri, headers=h, version=invite.version)


def new_branch() -> str:
    """A fresh RFC 3261 §8.1.1.7 branch: magic cookie ``z9hG4bK`` + 20 random hex digits."""
    return MAGIC_COOKIE + secrets.token_hex(10)
