"""The SIP user agent core of the whole gateway: every line, call and registration (sans-I/O).

Shaped like aioquic's ``QuicConnection``: inputs are datagrams/framed messages with a ``now``,
timer expiry and API calls; outputs are pulled — ``datagrams_to_send()``, ``get_timer()``,
``next_event()``. Nothing here touches a socket or reads a clock; ``endpoint.py`` does that.

One core serves all lines, so a call between two lines of the gateway is two ordinary sessions
(UAC and UAS) that happen to share a Call-ID; sessions are therefore keyed by our own id.
"""

from __future__ import annotations

import dataclasses
import itertools
import logging
import secrets
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from . import sdp as sdp_mod
from .auth import Challenge, DigestCredentials, authorize, parse_challenges
from .dialog import Dialog, DialogId, DialogState, routing_problem
from .errors import LocalSipError, RemoteSipError
from .events import (
    CallAnswered,
    CallConfirmed,
    CallEnded,
    CallFailed,
    CallProgress,
    IncomingCall,
    MediaUpdated,
    MessageDropped,
    RegistrationStateChanged,
    SipEvent,
)
from .headers import HeaderError, Headers, parse_address
from .message import SipMessage, SipRequest, SipResponse, build_response, parse_message
from .peer import Peer
from .registration import Registration, RegState, granted_expires, refresh_delay, retry_delay
from .sdp import LocalMedia, NegotiatedMedia, SdpError
from .session import InviteSession, Role, SessionState, build_cancel
from .timers import TimerHeap
from .transaction import (
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
from .uas_checks import build_bad_request, check_request
from .uri import SipUri, UriError, parse_uri

__all__ = ["CoreConfig", "LineConfig", "SipCore"]

log = logging.getLogger("gateway.sip")

ALLOWED_METHODS = frozenset({"INVITE", "ACK", "CANCEL", "BYE", "OPTIONS"})
ALLOW_HEADER = ", ".join(["INVITE", "ACK", "CANCEL", "BYE", "OPTIONS"])


@dataclass(frozen=True, slots=True)
class LineConfig:
    """One softphone line. ``registrar`` None = standalone (reachable directly, no REGISTER)."""

    line_id: str
    user: str
    password: str = dataclasses.field(repr=False, default="")
    display_name: str = ""
    registrar: SipUri | None = None
    outbound_proxy: SipUri | None = None
    domain: str = ""
    register_expires: int = 300


@dataclass(frozen=True, slots=True)
class CoreConfig:
    user_agent: str = "voice-gateway"
    timers: TimerConfig = TimerConfig()


class SipCore:
    def __init__(self, config: CoreConfig = CoreConfig(), *,
                 trace: Callable[[str, SipMessage | bytes, Peer], None] | None = None) -> None:
        self.config = config
        self._trace = trace
        self._tx = TransactionLayer(config.timers, trace=None)
        self._out: list[tuple[bytes, Peer]] = []
        self._events: deque[SipEvent] = deque()
        self._timers = TimerHeap()
        self._listen: dict[str, tuple[str, int]] = {}
        self._lines: dict[str, LineConfig] = {}
        self._lines_by_user: dict[str, str] = {}
        self._sessions: dict[str, InviteSession] = {}
        self._by_dialog: dict[DialogId, str] = {}
        self._uac_by_tag: dict[tuple[str, str], str] = {}
        self._registrations: dict[str, Registration] = {}
        self._acks: dict[tuple[str, str, str], tuple[bytes, Peer]] = {}
        # out-of-dialog requests with a live server transaction, by what RFC 3261 §8.2.2.2 compares
        self._no_tag_requests: dict[tuple[str, str, str, int, str], ServerTransaction] = {}
        # per (line, 407?): the digest challenge last answered and its nonce count (one per line)
        self._nonce_counts: dict[tuple[str, bool], _DigestState] = {}
        self._ids = itertools.count(1)

    # ================================================================ configuration
    def set_listen(self, transport: str, host: str, port: int) -> None:
        self._listen[transport.lower()] = (host, port)

    @property
    def transports(self) -> list[str]:
        return list(self._listen)

    def add_line(self, line: LineConfig) -> None:
        self._lines[line.line_id] = line
        self._lines_by_user[line.user] = line.line_id
        self._lines_by_user.setdefault(line.line_id, line.line_id)

    def line(self, line_id: str) -> LineConfig:
        try:
            return self._lines[line_id]
        except KeyError:
            raise LocalSipError(f"unknown line {line_id!r}") from None

    def local_uri(self, line_id: str, transport: str = "udp") -> str:
        """Where a line is reachable directly: sip:<user>@<host>:<port>."""
        line = self.line(line_id)
        host, port = self._local_hostport(transport)
        return f"sip:{line.user}@{host}:{port}"

    def stats(self) -> dict[str, int]:
        return {
            "sip_sessions": len(self._sessions),
            "sip_transactions": len(self._tx),
            "sip_dialogs": len(self._by_dialog),
            "sip_timers": len(self._timers),
        }

    # ================================================================ outputs
    def datagrams_to_send(self) -> list[tuple[bytes, Peer]]:
        self._collect_tx_output()
        out, self._out = self._out, []
        return out

    def get_timer(self) -> float | None:
        a = self._tx.get_timer()
        b = self._timers.next_deadline()
        if a is None:
            return b
        if b is None:
            return a
        return min(a, b)

    def next_event(self) -> SipEvent | None:
        return self._events.popleft() if self._events else None

    # ================================================================ inputs
    def receive_datagram(self, data: bytes, source: Peer, now: float) -> None:
        """Feed one UDP datagram or one framed stream message. Never raises for bad input."""
        try:
            msg = parse_message(data, stream=source.reliable)
        except RemoteSipError as exc:
            self._on_unparsable(exc, data, source)
            return
        if self._trace:
            self._trace("in", msg, source)
        try:
            if isinstance(msg, SipResponse):
                self._on_response(msg, source, now)
            elif isinstance(msg, SipRequest):
                self._on_request(msg, source, now)
        except (HeaderError, UriError, ValueError) as exc:
            # A header the parser let through but a later stage cannot use: answer 400 if we can.
            self._emit(MessageDropped(reason=f"unusable message: {exc}", peer=source))
            if isinstance(msg, SipRequest) and msg.method != "ACK":
                self._send_stateless(build_response(msg, 400, f"Bad Request ({exc})"[:120]), source)
        self._pump(now)

    def handle_timer(self, now: float) -> None:
        self._tx.handle_timer(now)
        for key in self._timers.pop_due(now):
            self._on_core_timer(key, now)
        self._pump(now)

    def transport_error(self, peer: Peer, now: float) -> None:
        """The driver could not deliver to ``peer`` (connect refused, stream closed)."""
        # transactions are told individually by the driver when it knows which; nothing else here
        self._pump(now)

    # ================================================================ call control API
    def invite(self, line_id: str, target: str, local: LocalMedia, now: float, *,
               via_proxy: SipUri | None = None, headers: tuple[tuple[str, str], ...] = ()) -> str:
        """Send an INVITE from a line to ``target`` (a SIP URI). Returns the session id.

        ``via_proxy`` sends the request to that proxy (loose routing, RFC 3261 §8.1.2) instead of
        the target's host — used for registrar mode.
        """
        line = self.line(line_id)
        try:
            target_uri = SipUri.parse(target)
        except UriError as exc:
            raise LocalSipError(f"bad target URI {target!r}: {exc}") from None
        if target_uri.headers or target_uri.has_param("method"):
            # RFC 3261 §19.1.1 (table): neither may appear in a Request-URI; honouring the headers
            # (§19.1.5) would let whoever chose the URI write our request's header fields
            raise LocalSipError(f"a Request-URI cannot carry header fields or a method parameter: {target[:120]!r}")
        hop_uri = via_proxy or line.outbound_proxy or target_uri
        peer = self._peer_for_uri(hop_uri)
        sid = f"s{next(self._ids)}"
        local_tag = _new_tag()
        call_id = f"{secrets.token_hex(12)}@{self._local_hostport(peer.transport)[0]}"
        media = dataclasses.replace(local, session_id=secrets.randbelow(2**31), session_version=1)
        body = sdp_mod.build_offer(media)
        h = Headers()
        h.add("Max-Forwards", "70")
        h.add("From", f"{self._from_value(line)};tag={local_tag}")
        h.add("To", f"<{target_uri.aor() if not target_uri.params else str(target_uri)}>")
        h.add("Call-ID", call_id)
        h.add("CSeq", "1 INVITE")
        if line.outbound_proxy is not None and via_proxy is None:
            h.add("Route", f"<{line.outbound_proxy.with_params(lr=None)}>")
        h.add("Contact", self._contact(line, peer.transport))
        h.add("Allow", ALLOW_HEADER)
        h.add("User-Agent", self.config.user_agent)
        for k, v in headers:
            h.add(k, v)
        h.add("Content-Type", "application/sdp")
        req = SipRequest(method="INVITE", uri=str(target_uri), headers=h, body=body)
        s = InviteSession(id=sid, line_id=line_id, role=Role.UAC, state=SessionState.CALLING, invite=req,
                          peer=peer, local_tag=local_tag, local_media=media, local_sdp=body,
                          sdp_session_id=media.session_id, sdp_version=1, target=str(target_uri))
        self._sessions[sid] = s
        self._uac_by_tag[(call_id, local_tag)] = sid
        s.invite_tx = self._send_request(req, peer, now, ("invite", sid))
        self._pump(now)
        return sid

    def ringing(self, session_id: str, now: float) -> None:
        s = self._uas(session_id, SessionState.INCOMING, SessionState.RINGING)
        if s.state is SessionState.INCOMING:
            self._respond(s, 180, now)
            s.state = SessionState.RINGING
        self._pump(now)

    def answer(self, session_id: str, local: LocalMedia, now: float) -> NegotiatedMedia | None:
        """Send the 2xx. Returns the negotiated media when the INVITE had an offer; for an
        offer-less INVITE we offer here and the media arrives with ``CallConfirmed``.
        Raises ``SdpError`` (status_hint 488) if the offer cannot be answered (nothing is sent)."""
        s = self._uas(session_id, SessionState.INCOMING, SessionState.RINGING)
        media = dataclasses.replace(local, session_id=s.sdp_session_id, session_version=s.next_sdp_version())
        negotiated: NegotiatedMedia | None = None
        if s.remote_offer:
            body, negotiated = sdp_mod.answer_offer(s.remote_offer, media)
        else:
            body = sdp_mod.build_offer(media)
        s.local_media, s.local_sdp, s.media = media, body, negotiated
        resp = self._response_for(s, 200)
        resp.body = body
        resp.headers.set("Content-Type", "application/sdp")
        s.final_2xx = resp
        self._tx.send_response(s.invite_tx, resp, now)  # type: ignore[arg-type]
        s.state = SessionState.ANSWERED
        self._timers.cancel(("invite-expires", s.id))
        if s.dialog:
            s.dialog.state = DialogState.CONFIRMED
        t1 = self.config.timers.t1
        s.retransmit_interval = t1
        if not s.peer.reliable:
            self._timers.set(("2xx", s.id), now + t1)
        self._timers.set(("ack-timeout", s.id), now + 64 * t1)
        self._pump(now)
        return negotiated

    def reject(self, session_id: str, status: int, now: float, reason: str | None = None) -> None:
        s = self._uas(session_id, SessionState.INCOMING, SessionState.RINGING)
        self._respond(s, status, now, reason)
        self._end(s, CallEnded(session_id=s.id, cause="local_reject", status=status))
        self._pump(now)

    def cancel(self, session_id: str, now: float) -> None:
        """Abandon our unanswered INVITE (RFC 3261 §9.1: CANCEL only after a provisional)."""
        s = self._sessions.get(session_id)
        if s is None or s.role is not Role.UAC or s.state not in (SessionState.CALLING, SessionState.PROCEEDING):
            raise LocalSipError(f"session {session_id} cannot be cancelled")
        s.cancel_requested = True
        if s.provisional_received:
            self._send_cancel(s, now)
        # stays in the table until the INVITE transaction finishes (487 or a 2xx we must ACK+BYE)
        self._emit_terminal(s, CallEnded(session_id=s.id, cause="local_cancel"))
        self._pump(now)

    def bye(self, session_id: str, now: float) -> None:
        s = self._sessions.get(session_id)
        if s is None or s.state not in (SessionState.ANSWERED, SessionState.CONFIRMED):
            raise LocalSipError(f"session {session_id} has no confirmed dialog to end")
        if s.state is SessionState.ANSWERED:
            # RFC 3261 §15: the callee must not send BYE before the ACK (or its timeout)
            s.bye_after_ack = True
            self._emit_terminal(s, CallEnded(session_id=s.id, cause="local_bye"))
        else:
            self._send_bye(s, now)
            self._end(s, CallEnded(session_id=s.id, cause="local_bye"))
        self._pump(now)

    def hangup(self, session_id: str, now: float) -> None:
        """Whatever ends this session from our side: CANCEL, 603/486 or BYE."""
        s = self._sessions.get(session_id)
        if s is None or s.extra.get("terminal"):
            return
        if s.role is Role.UAC and s.state in (SessionState.CALLING, SessionState.PROCEEDING):
            self.cancel(session_id, now)
        elif s.role is Role.UAS and s.state in (SessionState.INCOMING, SessionState.RINGING):
            self.reject(session_id, 486, now, "Busy Here")
        elif s.state in (SessionState.ANSWERED, SessionState.CONFIRMED):
            self.bye(session_id, now)

    def session_state(self, session_id: str) -> SessionState | None:
        s = self._sessions.get(session_id)
        return s.state if s else None

    # ================================================================ registration API
    def register(self, line_id: str, now: float) -> None:
        line = self.line(line_id)
        if line.registrar is None:
            raise LocalSipError(f"line {line_id} has no registrar")
        reg = self._registrations.get(line_id)
        if reg is None:
            reg = Registration(line_id=line_id, call_id=f"{secrets.token_hex(12)}@reg",
                               from_tag=_new_tag(), requested_expires=line.register_expires)
            self._registrations[line_id] = reg
        reg.auth_attempts = 0
        self._send_register(line, reg, reg.requested_expires, now)
        self._pump(now)

    def unregister(self, line_id: str, now: float) -> None:
        reg = self._registrations.get(line_id)
        if reg is None or reg.state in (RegState.IDLE, RegState.UNREGISTERING):
            return
        self._timers.cancel(("register", line_id))
        reg.auth_attempts = 0
        reg.state = RegState.UNREGISTERING
        self._send_register(self.line(line_id), reg, 0, now)
        self._pump(now)

    def unregister_all(self, now: float) -> int:
        """Send Expires: 0 for every registered line; returns how many REGISTERs went out."""
        n = 0
        for line_id, reg in list(self._registrations.items()):
            if reg.state in (RegState.REGISTERED, RegState.REGISTERING):
                self.unregister(line_id, now)
                n += 1
        return n

    def registrations_pending(self) -> int:
        return sum(1 for r in self._registrations.values()
                   if r.state in (RegState.REGISTERING, RegState.UNREGISTERING))

    def is_registered(self, line_id: str) -> bool:
        reg = self._registrations.get(line_id)
        return reg is not None and reg.state is RegState.REGISTERED

    def registration_state(self, line_id: str) -> RegState | None:
        """Where a line's registration stands (None: it never registered)."""
        reg = self._registrations.get(line_id)
        return reg.state if reg is not None else None

    def terminate_all(self, now: float) -> None:
        """Shutdown: end every session from our side (BYE / CANCEL / 503)."""
        for sid in list(self._sessions):
            s = self._sessions.get(sid)
            if s is None or s.extra.get("terminal"):
                continue
            try:
                if s.role is Role.UAS and s.state in (SessionState.INCOMING, SessionState.RINGING):
                    self.reject(sid, 503, now, "Service Unavailable")
                else:
                    self.hangup(sid, now)
            except LocalSipError:
                pass
        self._pump(now)

    # ================================================================ receive path
    def _on_unparsable(self, exc: RemoteSipError, data: bytes, source: Peer) -> None:
        if self._trace:
            self._trace("drop", data[:2000], source)
        partial = exc.partial
        if isinstance(partial, SipRequest) and partial.method != "ACK" and exc.status_hint:
            resp = build_bad_request(exc)
            if resp is not None:
                self._send_stateless(resp, source)
                self._emit(MessageDropped(reason=f"answered {resp.status}: {exc.reason}", peer=source))
                return
        self._emit(MessageDropped(reason=exc.reason, peer=source))

    def _on_response(self, resp: SipResponse, source: Peer, now: float) -> None:
        if self._tx.receive_response(resp, source, now):
            return
        # RFC 6026 / §13.2.2.4: a 2xx retransmission after the transaction is gone: re-ACK
        try:
            seq, method = resp.cseq
        except HeaderError:
            return
        if method == "INVITE" and 200 <= resp.status < 300:
            key = (resp.call_id, resp.from_tag or "", resp.to_tag or "")
            cached = self._acks.get(key)
            if cached:
                self._send_raw(cached[0], cached[1])
                return
            sid = self._uac_by_tag.get((resp.call_id, resp.from_tag or ""))
            if sid:
                self._on_invite_2xx(self._sessions[sid], resp, now)
                return
        self._emit(MessageDropped(reason=f"stray response {resp.status} {method}", peer=source))

    def _on_request(self, req: SipRequest, source: Peer, now: float) -> None:
        if req.method == "ACK":
            if self._tx.match_server(req) is not None:
                self._tx.receive_request(req, source, now)
            else:
                self._on_ack(req, now)
            return
        tx = self._tx.receive_request(req, source, now)
        if tx is None:
            return  # retransmission, absorbed by its transaction
        if req.method == "CANCEL":
            self._on_cancel(tx, req, now)
            return
        if req.to_tag:
            self._on_in_dialog(tx, req, now)
            return
        if self._is_merged(tx, req):
            self._reply(tx, build_response(req, 482, to_tag=_new_tag()), now)
            return
        reply = check_request(req, allowed_methods=ALLOWED_METHODS)
        if reply is not None:
            self._reply(tx, reply, now)
            return
        line_id = self._line_for_request(req)
        if req.method == "OPTIONS":
            self._reply(tx, self._options_response(req), now)
            return
        if line_id is None:
            self._reply(tx, build_response(req, 404, "Not Found", to_tag=_new_tag()), now)
            return
        if req.method == "INVITE":
            self._on_new_invite(tx, req, line_id, now)
        elif req.method == "BYE":
            self._reply(tx, build_response(req, 481, to_tag=_new_tag()), now)
        else:
            self._reply(tx, build_response(req, 405, to_tag=_new_tag(), headers=[("Allow", ALLOW_HEADER)]), now)

    def _is_merged(self, tx: ServerTransaction, req: SipRequest) -> bool:
        """RFC 3261 §8.2.2.2: a request without To tag whose From tag, Call-ID and CSeq equal those of
        an ongoing transaction it did not match arrived a second way (a loop, or a fork that came back):
        it gets 482. Compared per line: a call forked to two lines of this gateway reaches two UAs."""
        from_tag = req.from_tag
        if not from_tag:
            return False
        key = _merge_key(req, self._line_for_request(req))
        ongoing = self._no_tag_requests.get(key)
        if ongoing is not None and ongoing is not tx and ongoing.state is not TxState.TERMINATED:
            return True
        self._no_tag_requests[key] = tx
        return False

    def _line_for_request(self, req: SipRequest) -> str | None:
        try:
            uri = parse_uri(req.uri)
        except UriError:
            return None
        if not isinstance(uri, SipUri) or uri.user is None:
            return None
        return self._lines_by_user.get(uri.user_unescaped or "")

    def _options_response(self, req: SipRequest) -> SipResponse:
        return build_response(req, 200, to_tag=_new_tag(), headers=[
            ("Allow", ALLOW_HEADER), ("Accept", "application/sdp"), ("Supported", ""),
            ("Server", self.config.user_agent)])

    def _on_new_invite(self, tx: ServerTransaction, req: SipRequest, line_id: str, now: float) -> None:
        problem = routing_problem(req)
        if problem is not None:
            self._reply(tx, build_response(req, 400, f"Bad Request ({problem})", to_tag=_new_tag()), now)
            return
        if req.body:
            if req.content_type != "application/sdp":
                self._reply(tx, build_response(req, 415, to_tag=_new_tag(), headers=[("Accept", "application/sdp")]),
                            now)
                return
            try:  # our media address is the SIP host's (same family): the offer is checked against it
                sdp_mod.answer_offer(req.body, LocalMedia(address=self._local_hostport(tx.peer.transport)[0], port=9))
            except SdpError as exc:
                status = exc.status_hint or 488
                self._reply(tx, build_response(req, status, to_tag=_new_tag(), headers=[_warning(exc)]), now)
                return
        # 100 Trying at once: we hand the call to telephony, which may take a moment (§17.2.1)
        self._tx.send_response(tx, build_response(req, 100), now)
        sid = f"s{next(self._ids)}"
        local_tag = _new_tag()
        s = InviteSession(id=sid, line_id=line_id, role=Role.UAS, state=SessionState.INCOMING, invite=req,
                          peer=tx.peer, local_tag=local_tag, remote_offer=req.body,
                          sdp_session_id=secrets.randbelow(2**31))
        s.invite_tx = tx
        tx.user_data = ("invite-uas", sid)
        s.dialog = Dialog.from_uas(req, local_tag, self._contact(self.line(line_id), tx.peer.transport))
        self._sessions[sid] = s
        self._by_dialog[s.dialog.id] = sid
        frm = req.from_
        remote_user = frm.uri.user_unescaped if isinstance(frm.uri, SipUri) else None
        display = frm.display or None  # quotes removed, quoted-pairs resolved (RFC 3261 §25.1)
        expires = _delta_seconds(req.headers.get("Expires"))
        if expires is not None:  # §13.3.1: unanswered when it runs out -> 487
            self._timers.set(("invite-expires", sid), now + expires)
        self._emit(IncomingCall(
            session_id=sid, line_id=line_id, call_id=req.call_id, remote_uri=str(frm.uri),
            remote_user=remote_user, remote_display_name=display, local_uri=str(req.to.uri),
            request_uri=req.uri, has_offer=bool(req.body),
            headers=tuple((f.name, f.value) for f in req.headers if f.name.lower().startswith("x-")),
        ))

    def _on_cancel(self, tx: ServerTransaction, req: SipRequest, now: float) -> None:
        target = self._tx.match_cancel_target(req)
        if target is None:
            self._reply(tx, build_response(req, 481, to_tag=_new_tag()), now)
            return
        sid = _session_of(target)
        s = self._sessions.get(sid) if sid else None
        self._reply(tx, build_response(req, 200, to_tag=s.local_tag if s else _new_tag()), now)
        if s is None or s.state not in (SessionState.INCOMING, SessionState.RINGING):
            return  # already answered or rejected: CANCEL has no effect (§9.2)
        self._respond(s, 487, now)
        self._end(s, CallEnded(session_id=s.id, cause="remote_cancel", status=487))

    def _on_in_dialog(self, tx: ServerTransaction, req: SipRequest, now: float) -> None:
        did = DialogId(req.call_id, req.to_tag or "", req.from_tag or "")
        sid = self._by_dialog.get(did)
        s = self._sessions.get(sid) if sid else None
        if s is None or s.dialog is None:
            self._reply(tx, build_response(req, 481), now)
            return
        seq, _ = req.cseq
        if not s.dialog.accept_remote_cseq(seq):
            self._reply(tx, build_response(req, 500, "Server Internal Error (CSeq out of order)"), now)
            return
        if req.method == "BYE":
            self._reply(tx, build_response(req, 200), now)
            if s.role is Role.UAS and s.state in (SessionState.INCOMING, SessionState.RINGING):
                self._respond(s, 487, now)  # §15.1.2: BYE on an early dialog; the INVITE still gets a final
            if not s.extra.get("terminal"):
                self._end(s, CallEnded(session_id=s.id, cause="remote_bye"))
            else:
                self._forget(s)
        elif req.method == "INVITE":
            self._on_reinvite(s, tx, req, now)
        elif req.method == "OPTIONS":
            self._reply(tx, self._options_response(req), now)
        else:
            reply = check_request(req, allowed_methods=ALLOWED_METHODS)
            self._reply(tx, reply or build_response(req, 405, headers=[("Allow", ALLOW_HEADER)]), now)

    def _on_reinvite(self, s: InviteSession, tx: ServerTransaction, req: SipRequest, now: float) -> None:
        """Re-INVITE from the peer (hold, resume, address change): RFC 3261 §14.2, RFC 3264 §8."""
        if s.state is not SessionState.CONFIRMED or s.reinvite_pending or s.local_media is None:
            # §14.2: a re-INVITE while one is pending (or before our 2xx was ACKed) gets 491/500
            status = 491 if s.reinvite_pending else 500
            hdr = [("Retry-After", "1")] if status == 500 else []
            self._reply(tx, build_response(req, status, headers=hdr), now)
            return
        assert s.dialog is not None
        s.dialog.refresh_target(req)
        media = dataclasses.replace(s.local_media, session_id=s.sdp_session_id, session_version=s.next_sdp_version())
        negotiated: NegotiatedMedia | None = None
        try:
            if req.body:
                body, negotiated = sdp_mod.answer_offer(req.body, media)
            else:
                body = sdp_mod.build_offer(media)
        except SdpError as exc:
            self._reply(tx, build_response(req, exc.status_hint or 488, headers=[_warning(exc)]), now)
            return
        s.local_sdp = body
        resp = build_response(req, 200, headers=[("Contact", s.dialog.local_contact), ("Allow", ALLOW_HEADER)],
                              body=body, content_type="application/sdp")
        tx.user_data = ("reinvite-uas", s.id)
        self._tx.send_response(tx, resp, now)
        s.reinvite_pending = True
        s.reinvite_offer_from_us = not req.body
        s.final_2xx = resp
        t1 = self.config.timers.t1
        s.retransmit_interval = t1
        if not tx.peer.reliable:
            self._timers.set(("2xx", s.id), now + t1)
        self._timers.set(("ack-timeout", s.id), now + 64 * t1)
        if negotiated is not None:
            s.media = negotiated
            self._emit(MediaUpdated(session_id=s.id, media=negotiated))

    def _on_ack(self, ack: SipRequest, now: float) -> None:
        did = DialogId(ack.call_id, ack.to_tag or "", ack.from_tag or "")
        sid = self._by_dialog.get(did)
        s = self._sessions.get(sid) if sid else None
        if s is None or s.final_2xx is None:
            return  # ACK for something we no longer track: drop silently (§17.2.3)
        seq, _ = ack.cseq
        if seq != s.final_2xx.cseq[0]:
            return
        self._timers.cancel(("2xx", s.id))
        self._timers.cancel(("ack-timeout", s.id))
        s.final_2xx = None
        if s.reinvite_pending:
            s.reinvite_pending = False
            if s.reinvite_offer_from_us and ack.body and s.local_media:
                try:
                    s.media = sdp_mod.accept_answer(ack.body, s.local_media)
                    self._emit(MediaUpdated(session_id=s.id, media=s.media))
                except SdpError:
                    pass
            return
        s.state = SessionState.CONFIRMED
        media: NegotiatedMedia | None = None
        if not s.remote_offer and ack.body and s.local_media is not None:
            try:
                media = s.media = sdp_mod.accept_answer(ack.body, s.local_media)
            except SdpError:
                media = None
        if s.bye_after_ack:
            self._send_bye(s, now)
            self._forget(s)
            return
        self._emit(CallConfirmed(session_id=s.id, media=media))

    # ================================================================ transaction events
    def _pump(self, now: float) -> None:
        """Drain transaction-layer events into the session/registration logic."""
        while (ev := self._tx.next_event()) is not None:
            if isinstance(ev, RequestReceived):
                continue  # handled synchronously in _on_request
            tx = ev.transaction
            tag = tx.user_data if isinstance(tx.user_data, tuple) else (None, None)
            kind, key = tag[0], tag[1]
            if isinstance(ev, ResponseReceived):
                self._on_tx_response(kind, key, ev.transaction, ev.response, now)
            elif isinstance(ev, (TransactionTimedOut, TransportFailed)):
                status = 408 if isinstance(ev, TransactionTimedOut) else 503
                self._on_tx_failure(kind, key, tx, status, now)
            elif isinstance(ev, TransactionTerminated):
                if isinstance(tx, ServerTransaction):
                    self._forget_no_tag_request(tx)
                self._on_tx_terminated(kind, key, tx)

    def _on_tx_response(self, kind: object, key: object, tx: ClientTransaction, resp: SipResponse,
                        now: float) -> None:
        if kind == "invite":
            s = self._sessions.get(str(key))
            if s is not None:
                self._on_invite_response(s, tx, resp, now)
            elif 200 <= resp.status < 300:
                self._ack_and_bye_orphan(tx.request, resp, now)
        elif kind == "register":
            self._on_register_response(str(key), tx, resp, now)
        elif kind == "auth-retry" and resp.status in (401, 407):
            pass

    def _on_tx_failure(self, kind: object, key: object, tx: ClientTransaction | ServerTransaction, status: int,
                       now: float) -> None:
        if kind == "invite":
            s = self._sessions.get(str(key))
            if s is not None and not s.answered:
                reason = "Request Timeout" if status == 408 else "Service Unavailable (transport error)"
                self._end(s, CallFailed(session_id=s.id, status=status, reason=reason))
        elif kind == "invite-uas":
            s = self._sessions.get(str(key))
            if s is not None:
                self._end(s, CallEnded(session_id=s.id, cause="ack_timeout", status=status))
        elif kind == "register":
            reg = self._registrations.get(str(key))
            if reg is not None:
                self._registration_failed(reg, status, "no response from registrar" if status == 408
                                          else "transport error", None, now)

    def _forget_no_tag_request(self, tx: ServerTransaction) -> None:
        req = tx.request
        if req.to_tag or not req.from_tag:
            return
        try:
            key = _merge_key(req, self._line_for_request(req))
        except HeaderError:
            return
        if self._no_tag_requests.get(key) is tx:
            del self._no_tag_requests[key]

    def _on_tx_terminated(self, kind: object, key: object, tx: ClientTransaction | ServerTransaction) -> None:
        if kind == "invite":
            s = self._sessions.get(str(key))
            if s is not None and s.extra.get("terminal") and s.invite_tx is tx:
                self._forget(s)

    # ---------------------------------------------------------------- UAC INVITE
    def _on_invite_response(self, s: InviteSession, tx: ClientTransaction, resp: SipResponse, now: float) -> None:
        if tx is not s.invite_tx:
            if 200 <= resp.status < 300:
                self._on_invite_2xx(s, resp, now)
            return
        status = resp.status
        if status < 200:
            if status > 100:
                s.provisional_received = True
                if s.state is SessionState.CALLING:
                    s.state = SessionState.PROCEEDING
                if not s.extra.get("terminal"):
                    self._emit(CallProgress(session_id=s.id, status=status, reason=resp.reason))
            elif status == 100:
                s.provisional_received = True
            if s.cancel_requested and not s.extra.get("cancel_sent"):
                self._send_cancel(s, now)
            return
        if status < 300:
            self._on_invite_2xx(s, resp, now)
            return
        if status in (401, 407) and not s.cancel_requested and self._retry_with_auth_invite(s, resp, now):
            return
        if s.extra.get("terminal"):
            self._forget(s)
            return
        self._end(s, CallFailed(session_id=s.id, status=status, reason=resp.reason))

    def _on_invite_2xx(self, s: InviteSession, resp: SipResponse, now: float) -> None:
        key = (resp.call_id, resp.from_tag or "", resp.to_tag or "")
        if key in self._acks:
            cached = self._acks[key]
            self._send_raw(cached[0], cached[1])
            return
        pending = s.invite_tx
        if isinstance(pending, ClientTransaction) and pending.state in (TxState.CALLING, TxState.PROCEEDING):
            # a 2xx matched to the session by its tags but not to the INVITE transaction (another
            # branch in its top Via): the INVITE is answered all the same, and nothing else would end
            # that transaction (Proceeding runs no timer, RFC 3261 §17.1.1.2)
            self._tx.terminate(pending, now)
        line = self.line(s.line_id)
        dialog = Dialog.from_uac(s.invite, resp, self._contact(line, s.peer.transport))
        dialog.state = DialogState.CONFIRMED
        routed = self._dialog_request(dialog, "ACK", s.invite.cseq[0])
        if routed is None:
            # §12.1.2: a Contact / Record-Route we cannot send to: no ACK (nor BYE) is possible
            self._emit(MessageDropped(reason=f"2xx for call {resp.call_id} cannot be ACKed", peer=s.peer))
            if s.extra.get("terminal"):
                self._forget(s)
            else:
                self._end(s, CallFailed(session_id=s.id, status=502, reason="Bad Gateway (unroutable 2xx)"))
            return
        ack, peer = routed
        ack.headers.add("User-Agent", self.config.user_agent)
        auth = s.invite.headers.get("Proxy-Authorization") or s.invite.headers.get("Authorization")
        if auth is not None:  # RFC 3261 §22.1: the ACK carries the INVITE's credentials
            name = "Proxy-Authorization" if s.invite.headers.get("Proxy-Authorization") else "Authorization"
            ack.headers.add(name, auth)
        self._add_via(ack, peer)
        data = ack.to_bytes()
        self._send_raw(data, peer, ack)
        self._acks[key] = (data, peer)
        self._timers.set(("ack-cache", key), now + 64 * self.config.timers.t1)
        if s.state is SessionState.CONFIRMED or s.extra.get("terminal"):
            # a second 2xx (forked) or one that raced our CANCEL: accept and end it (§13.2.2.4)
            self._send_bye_on(dialog, now)
            if s.extra.get("terminal") and s.state is not SessionState.CONFIRMED:
                self._forget(s)
            return
        try:
            media = sdp_mod.accept_answer(resp.body, s.local_media) if s.local_media else None
        except SdpError as exc:
            media = None
            log.warning("call %s: unusable SDP answer (%s); hanging up", s.invite.call_id, exc)
        s.dialog = dialog
        s.ack = (ack, peer)
        self._by_dialog[dialog.id] = s.id
        if media is None:
            s.state = SessionState.CONFIRMED
            self._send_bye(s, now)
            self._end(s, CallFailed(session_id=s.id, status=488, reason="Not Acceptable Here (no usable SDP answer)"))
            return
        s.state = SessionState.CONFIRMED
        s.media = media
        to = resp.to
        self._emit(CallAnswered(session_id=s.id, media=media, remote_uri=str(to.uri)))

    def _ack_and_bye_orphan(self, invite: SipRequest, resp: SipResponse, now: float) -> None:
        key = (resp.call_id, resp.from_tag or "", resp.to_tag or "")
        if key in self._acks:
            self._send_raw(*self._acks[key])
            return
        from_uri = parse_address(invite.headers.get("From") or "").uri
        line_id = self._lines_by_user.get(from_uri.user or "") if isinstance(from_uri, SipUri) else None
        contact = self._contact(self.line(line_id), "udp") if line_id else ""
        dialog = Dialog.from_uac(invite, resp, contact)
        routed = self._dialog_request(dialog, "ACK", invite.cseq[0])
        if routed is None:
            return
        ack, peer = routed
        self._add_via(ack, peer)
        data = ack.to_bytes()
        self._send_raw(data, peer, ack)
        self._acks[key] = (data, peer)
        self._timers.set(("ack-cache", key), now + 64 * self.config.timers.t1)
        self._send_bye_on(dialog, now)

    def _retry_with_auth_invite(self, s: InviteSession, resp: SipResponse, now: float) -> bool:
        line = self.line(s.line_id)
        if s.auth_attempts >= 2 or not line.password:
            return False
        new = self._authorized_copy(s.invite, resp, line, answered=s.auth_attempts)
        if new is None:
            return False
        s.auth_attempts += 1
        s.invite = new
        s.invite_tx = self._send_request(new, s.peer, now, ("invite", s.id))
        return True

    def _authorized_copy(self, req: SipRequest, challenge: SipResponse, line: LineConfig, *,
                         answered: int = 0) -> SipRequest | None:
        """The request again with credentials for the challenge, CSeq + 1, fresh branch (§22.2).

        ``answered`` counts the challenges already answered in this exchange: after one, only a
        ``stale=true`` challenge is answered again (RFC 7616 §3.3, RFC 2617 §3.2.1) — any other means
        the password was refused. (Kamailio's nonces are time-based: the refusal may or may not carry the
        nonce we used, so the nonce cannot tell.)"""
        proxy = challenge.status == 407
        values = challenge.headers.get_all("Proxy-Authenticate" if proxy else "WWW-Authenticate")
        challenges = parse_challenges(values)
        if not challenges:
            return None
        ch = challenges[0]
        key = (line.line_id, proxy)
        if answered and not ch.stale:
            self._nonce_counts.pop(key, None)  # refused: never offer them pre-emptively either
            return None
        state = self._nonce_counts.get(key)
        if state is None or state.challenge.nonce != ch.nonce:
            state = self._nonce_counts[key] = _DigestState(ch)
        else:
            state.challenge = ch
        value = self._digest_value(line, state, req)
        h = req.headers.copy()
        h.remove("Via")
        h.remove("Authorization" if not proxy else "Proxy-Authorization")
        h.add("Proxy-Authorization" if proxy else "Authorization", value)
        seq, method = req.cseq
        h.set("CSeq", f"{seq + 1} {method}")
        return SipRequest(method=req.method, uri=req.uri, headers=h, body=req.body)

    def _digest_value(self, line: LineConfig, state: _DigestState, req: SipRequest) -> str:
        """Credentials for ``req`` under ``state``'s challenge; every use counts (RFC 7616 §3.4: nc)."""
        state.nc += 1
        return authorize(state.challenge, DigestCredentials(line.user, line.password), req.method, req.uri,
                         body=req.body, nc=state.nc)

    def _send_cancel(self, s: InviteSession, now: float) -> None:
        s.extra["cancel_sent"] = True
        sent = s.invite_tx.request if isinstance(s.invite_tx, ClientTransaction) else s.invite
        cancel = build_cancel(sent)
        self._tx.send_request(cancel, s.peer, now).user_data = ("cancel", s.id)
        # §9.1: if no final response arrives within 64*T1 of the CANCEL, the INVITE is destroyed
        self._timers.set(("cancel-timeout", s.id), now + 64 * self.config.timers.t1)

    # ---------------------------------------------------------------- UAS helpers
    def _uas(self, session_id: str, *states: SessionState) -> InviteSession:
        s = self._sessions.get(session_id)
        if s is None or s.role is not Role.UAS or s.state not in states or s.extra.get("terminal"):
            raise LocalSipError(f"session {session_id} is not an unanswered incoming call")
        return s

    def _response_for(self, s: InviteSession, status: int, reason: str | None = None) -> SipResponse:
        headers: list[tuple[str, str]] = []
        if 100 < status < 300:
            # §12.1.1: Record-Route copied into dialog-establishing responses; Contact required
            headers += [("Record-Route", rr) for rr in s.invite.headers.get_all("Record-Route")]
            headers.append(("Contact", self._contact(self.line(s.line_id), s.peer.transport)))
        if status == 200:
            headers += [("Allow", ALLOW_HEADER), ("Supported", "")]
        headers.append(("Server", self.config.user_agent))
        return build_response(s.invite, status, reason, to_tag=s.local_tag, headers=headers)

    def _respond(self, s: InviteSession, status: int, now: float, reason: str | None = None) -> None:
        self._tx.send_response(s.invite_tx, self._response_for(s, status, reason), now)  # type: ignore[arg-type]

    def _reply(self, tx: ServerTransaction, resp: SipResponse, now: float) -> None:
        if not resp.headers.get("Server"):
            resp.headers.add("Server", self.config.user_agent)
        self._tx.send_response(tx, resp, now)

    # ---------------------------------------------------------------- BYE
    def _send_bye(self, s: InviteSession, now: float) -> None:
        if s.dialog is not None:
            self._send_bye_on(s.dialog, now)

    def _send_bye_on(self, dialog: Dialog, now: float) -> None:
        routed = self._dialog_request(dialog, "BYE")
        if routed is None:
            return
        bye, peer = routed
        bye.headers.add("User-Agent", self.config.user_agent)
        self._send_request(bye, peer, now, ("bye", dialog.call_id))

    def _dialog_request(self, dialog: Dialog, method: str, cseq: int | None = None) -> tuple[SipRequest, Peer] | None:
        """An in-dialog request and where to send it, or None (logged) when the peer's remote
        target or route set names nothing we can reach (non-SIP URI, unsupported transport)."""
        try:
            req, hop = dialog.create_request(method, cseq=cseq)
            return req, self._peer_for_uri(hop)
        except (UriError, HeaderError, LocalSipError) as exc:
            log.warning("cannot send %s for call %s: %s", method, dialog.call_id, exc)
            return None

    # ---------------------------------------------------------------- session end
    def _emit_terminal(self, s: InviteSession, event: CallEnded | CallFailed) -> None:
        if s.extra.get("terminal"):
            return
        s.extra["terminal"] = True
        self._emit(event)

    def _end(self, s: InviteSession, event: CallEnded | CallFailed) -> None:
        self._emit_terminal(s, event)
        self._forget(s)

    def _forget(self, s: InviteSession) -> None:
        s.state = SessionState.TERMINATED
        self._sessions.pop(s.id, None)
        if s.dialog is not None:
            self._by_dialog.pop(s.dialog.id, None)
        self._uac_by_tag.pop((s.invite.call_id, s.local_tag), None)
        self._timers.cancel(("2xx", s.id))
        self._timers.cancel(("ack-timeout", s.id))
        self._timers.cancel(("cancel-timeout", s.id))
        self._timers.cancel(("invite-expires", s.id))

    # ================================================================ registration internals
    def _send_register(self, line: LineConfig, reg: Registration, expires: int, now: float) -> None:
        assert line.registrar is not None
        registrar = line.registrar
        domain = line.domain or registrar.aor().split(":", 1)[1]
        peer = self._peer_for_uri(line.outbound_proxy or registrar)
        aor = f"sip:{line.user}@{domain}"
        h = Headers()
        h.add("Max-Forwards", "70")
        h.add("From", f"<{aor}>;tag={reg.from_tag}")
        h.add("To", f"<{aor}>")
        h.add("Call-ID", reg.call_id)
        h.add("CSeq", f"{reg.next_cseq()} REGISTER")
        h.add("Contact", f"{self._contact(line, peer.transport)};expires={expires}")
        h.add("Expires", str(expires))
        h.add("Allow", ALLOW_HEADER)
        h.add("User-Agent", self.config.user_agent)
        req = SipRequest(method="REGISTER", uri=f"{registrar.scheme}:{domain}", headers=h)
        # Refreshes and the unregister reuse the last challenge with the next nc (RFC 3261 §22.1,
        # RFC 7616 §3.4): no 401 round trip while the nonce lives; a stale one is simply re-answered.
        for proxy, header in ((False, "Authorization"), (True, "Proxy-Authorization")):
            state = self._nonce_counts.get((line.line_id, proxy))
            if state is not None:
                h.add(header, self._digest_value(line, state, req))
        if reg.state is not RegState.UNREGISTERING:
            reg.state = RegState.REGISTERING if reg.state is not RegState.REGISTERED else reg.state
        self._send_request(req, peer, now, ("register", line.line_id))

    def _on_register_response(self, line_id: str, tx: ClientTransaction, resp: SipResponse, now: float) -> None:
        reg = self._registrations.get(line_id)
        if reg is None or resp.status < 200:
            return
        line = self.line(line_id)
        reg.last_status = resp.status
        unregistering = reg.state is RegState.UNREGISTERING
        if resp.status in (401, 407) and reg.auth_attempts < 2 and line.password:
            new = self._authorized_copy(tx.request, resp, line, answered=reg.auth_attempts)
            if new is not None:
                reg.auth_attempts += 1
                reg.cseq += 1
                peer = self._peer_for_uri(line.outbound_proxy or line.registrar)  # type: ignore[arg-type]
                self._send_request(new, peer, now, ("register", line_id))
                return
        if 200 <= resp.status < 300:
            reg.auth_attempts = 0
            if unregistering:
                reg.state = RegState.IDLE
                self._emit(RegistrationStateChanged(line_id=line_id, registered=False, status=resp.status,
                                                    reason="unregistered", expires=0))
                return
            contact = self._contact_uri(line, tx.peer.transport)
            expires = granted_expires(resp, contact, reg.requested_expires)
            reg.granted = expires
            reg.failures = 0
            was = reg.state
            reg.state = RegState.REGISTERED
            self._timers.set(("register", line_id), now + refresh_delay(expires))
            if was is not RegState.REGISTERED:
                self._emit(RegistrationStateChanged(line_id=line_id, registered=True, status=resp.status,
                                                    reason=resp.reason, expires=expires))
            return
        if resp.status == 423 and not unregistering:
            min_exp = resp.headers.get("Min-Expires")
            if min_exp and min_exp.strip().isdigit():
                reg.requested_expires = int(min_exp)
                reg.auth_attempts = 0
                self._send_register(line, reg, reg.requested_expires, now)
                return
        retry_after = resp.headers.get("Retry-After")
        ra = int(retry_after.split()[0]) if retry_after and retry_after.split()[0].isdigit() else None
        if unregistering:
            reg.state = RegState.IDLE
            self._emit(RegistrationStateChanged(line_id=line_id, registered=False, status=resp.status,
                                                reason=f"unregister failed: {resp.status} {resp.reason}"))
            return
        self._registration_failed(reg, resp.status, resp.reason, ra, now)

    def _registration_failed(self, reg: Registration, status: int, reason: str, retry_after: int | None,
                             now: float) -> None:
        if reg.state is RegState.UNREGISTERING:
            reg.state = RegState.IDLE
            self._emit(RegistrationStateChanged(line_id=reg.line_id, registered=False, status=status, reason=reason))
            return
        reg.failures += 1
        was_registered = reg.state is RegState.REGISTERED
        reg.state = RegState.FAILED
        delay = retry_delay(reg.failures, retry_after)
        self._timers.set(("register", reg.line_id), now + delay)
        log.warning("line %s: registration failed: %s %s (retry in %.0f s)", reg.line_id, status, reason, delay)
        if was_registered or reg.failures == 1:
            self._emit(RegistrationStateChanged(line_id=reg.line_id, registered=False, status=status, reason=reason))

    # ================================================================ core timers
    def _on_core_timer(self, key: object, now: float) -> None:
        if not isinstance(key, tuple):
            return
        kind = key[0]
        if kind == "2xx":
            s = self._sessions.get(key[1])
            if s is None or s.final_2xx is None:
                return
            self._send_raw(s.final_2xx.to_bytes(), s.peer, s.final_2xx)
            s.retransmit_interval = min(2 * s.retransmit_interval, self.config.timers.t2)
            self._timers.set(("2xx", s.id), now + s.retransmit_interval)
        elif kind == "ack-timeout":
            s = self._sessions.get(key[1])
            if s is None or s.final_2xx is None:
                return
            self._timers.cancel(("2xx", s.id))
            s.final_2xx = None
            if s.reinvite_pending:
                # §14.2: no ACK for our re-INVITE 2xx -> the dialog is in doubt: end it
                s.reinvite_pending = False
            s.state = SessionState.CONFIRMED
            self._send_bye(s, now)
            self._end(s, CallEnded(session_id=s.id, cause="ack_timeout"))
        elif kind == "register":
            line_id = key[1]
            reg = self._registrations.get(line_id)
            if reg is None or reg.state in (RegState.IDLE, RegState.UNREGISTERING):
                return
            reg.auth_attempts = 0
            self._send_register(self.line(line_id), reg, reg.requested_expires, now)
        elif kind == "invite-expires":
            # RFC 3261 §13.3.1: the INVITE's Expires ran out before the call was answered
            s = self._sessions.get(key[1])
            if (s is None or s.role is not Role.UAS or s.extra.get("terminal")
                    or s.state not in (SessionState.INCOMING, SessionState.RINGING)):
                return
            log.info("call %s: INVITE expired unanswered; 487", s.invite.call_id)
            self._respond(s, 487, now)
            self._end(s, CallEnded(session_id=s.id, cause="invite_expired", status=487))
        elif kind == "ack-cache":
            self._acks.pop(key[1], None)
        elif kind == "cancel-timeout":
            # §9.1: CANCELled 64*T1 ago and still no final response (the UAS ignored the CANCEL, or
            # its 487 was lost): consider the INVITE cancelled, so neither session nor transaction leaks
            s = self._sessions.get(key[1])
            if s is None or not isinstance(s.invite_tx, ClientTransaction):
                return
            log.info("call %s: no final response %.1f s after CANCEL; INVITE transaction destroyed",
                     s.invite.call_id, 64 * self.config.timers.t1)
            self._tx.terminate(s.invite_tx, now)
            self._forget(s)

    # ================================================================ sending helpers
    def _local_hostport(self, transport: str) -> tuple[str, int]:
        t = transport.lower()
        if t in self._listen:
            return self._listen[t]
        if self._listen:
            return next(iter(self._listen.values()))
        return ("127.0.0.1", 5060)

    def _contact_uri(self, line: LineConfig, transport: str) -> str:
        host, port = self._local_hostport(transport)
        suffix = ";transport=tcp" if transport.lower() == "tcp" else ""
        return f"sip:{line.user}@{host}:{port}{suffix}"

    def _contact(self, line: LineConfig, transport: str) -> str:
        return f"<{self._contact_uri(line, transport)}>"

    def _from_value(self, line: LineConfig) -> str:
        if line.registrar is not None:
            domain = line.domain or line.registrar.aor().split(":", 1)[1]
        else:
            host, port = self._local_hostport("udp")
            domain = line.domain or f"{host}:{port}"
        name = f'"{_quote(line.display_name)}" ' if line.display_name else ""
        return f"{name}<sip:{line.user}@{domain}>"

    def _peer_for_uri(self, uri: SipUri) -> Peer:
        """Next-hop transport address for a URI (RFC 3263 §4 with literal hosts; default port 5060)."""
        transport = uri.transport
        if transport not in ("udp", "tcp"):
            raise LocalSipError(f"unsupported transport {transport!r} in {uri}")
        if transport not in self._listen and self._listen:
            raise LocalSipError(f"transport {transport} is not enabled")
        maddr = uri.param("maddr")
        host = maddr or uri.host
        if host.startswith("[") and host.endswith("]"):
            host = host[1:-1]
        return Peer(transport, host, uri.port or 5060)

    def _add_via(self, req: SipRequest, peer: Peer) -> str:
        host, port = self._local_hostport(peer.transport)
        branch = new_branch()
        req.headers.remove("Via")
        req.headers.prepend("Via", f"SIP/2.0/{peer.transport.upper()} {host}:{port};branch={branch};rport")
        return branch

    def _send_request(self, req: SipRequest, peer: Peer, now: float,
                      user_data: tuple[str, object]) -> ClientTransaction:
        self._add_via(req, peer)
        tx = self._tx.send_request(req, peer, now)
        tx.user_data = user_data
        return tx

    def _send_stateless(self, resp: SipResponse, peer: Peer) -> None:
        self._send_raw(resp.to_bytes(), peer, resp)

    def _send_raw(self, data: bytes, peer: Peer, msg: SipMessage | None = None) -> None:
        if self._trace:
            self._trace("out", msg if msg is not None else data, peer)
        self._out.append((data, peer))

    def _collect_tx_output(self) -> None:
        for msg, peer in self._tx.messages_to_send():
            if self._trace:
                self._trace("out", msg, peer)
            self._out.append((msg.to_bytes(), peer))

    def _emit(self, event: SipEvent) -> None:
        self._events.append(event)


@dataclass(slots=True)
class _DigestState:
    """The digest challenge a line last answered and how many requests have used its nonce."""

    challenge: Challenge
    nc: int = 0


def _new_tag() -> str:
    return secrets.token_hex(6)


def _quote(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"')


def _warning(exc: SdpError) -> tuple[str, str]:
    """Warning header for a refused offer (RFC 3261 §20.43): code, pseudonym, the reason as a
    quoted-string (shortened first, so the closing quote always survives; no control characters)."""
    text = "".join(c if c >= " " and c != "\x7f" else "?" for c in str(exc))[:150]
    return "Warning", f'{exc.warn_code} - "{_quote(text)}"'


def _delta_seconds(value: str | None) -> int | None:
    """An Expires value (RFC 3261 §20.19: delta-seconds, at most 2**32-1); None if absent or malformed."""
    if value is None or not value.strip().isdigit():
        return None
    return min(int(value.strip()), 2**32 - 1)


def _merge_key(req: SipRequest, line_id: str | None) -> tuple[str, str, str, int, str]:
    """What RFC 3261 §8.2.2.2 compares (From tag, Call-ID, CSeq), per line (or Request-URI)."""
    seq, method = req.cseq
    return (line_id or req.uri, req.from_tag or "", req.call_id, seq, method)


def _session_of(tx: ServerTransaction) -> str | None:
    data = tx.user_data
    if isinstance(data, tuple) and data and data[0] == "invite-uas":
        return str(data[1])
    return None


_ = (TxState,)  # re-exported for typing by the driver
