"""Dialog state (RFC 3261 §12): identifiers, CSeq spaces, route set, remote target.

A dialog is created from the request/response pair that establishes it and then builds every
in-dialog request (§12.2.1.1), including the loose/strict routing rules of §16.12 / §12.2.1.1.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from .headers import Headers, parse_address
from .message import SipRequest, SipResponse
from .uri import SipUri, parse_uri

__all__ = ["Dialog", "DialogId", "DialogState", "next_hop_of", "routing_problem"]


class DialogState(enum.Enum):
    EARLY = "early"
    CONFIRMED = "confirmed"
    TERMINATED = "terminated"


@dataclass(frozen=True, slots=True)
class DialogId:
    """RFC 3261 §12: Call-ID + local tag + remote tag."""

    call_id: str
    local_tag: str
    remote_tag: str


def _contact_uri(msg: SipRequest | SipResponse) -> str | None:
    values = msg.headers.values("Contact")
    if not values:
        return None
    try:
        addr = parse_address(values[0])
    except ValueError:
        return None
    return str(addr.uri)


def _route_uri(value: str) -> str:
    return str(parse_address(value).uri)


def routing_problem(request: SipRequest) -> str | None:
    """Why a dialog created by ``request`` could not route our requests back, or None.

    The remote target (the Contact; for an RFC 2543 request without one, the From) and every
    Record-Route entry must be SIP or SIPS URIs (RFC 3261 §8.1.1.8, §12.1.1); the UAS answers 400
    rather than accept a call it could never send BYE for.
    """
    contacts = request.headers.values("Contact")
    if contacts:
        if not isinstance(parse_address(contacts[0]).uri, SipUri):
            return "Contact is not a SIP or SIPS URI"
    elif not isinstance(request.from_.uri, SipUri):
        return "no Contact, and From is not a SIP or SIPS URI"
    if any(not isinstance(parse_address(rr).uri, SipUri) for rr in request.headers.values("Record-Route")):
        return "Record-Route is not a SIP or SIPS URI"
    return None


def next_hop_of(uri_text: str) -> SipUri:
    """The URI whose host/port/transport the request is sent to (RFC 3263 reduced to literals)."""
    return SipUri.parse(uri_text)


@dataclass(slots=True)
class Dialog:
    call_id: str
    local_tag: str
    remote_tag: str
    local_uri: str  # the From (UAC) / To (UAS) header value we put in requests, without tag
    remote_uri: str
    remote_target: str
    route_set: list[str] = field(default_factory=list)  # Route header values, in order
    local_seq: int = 1
    remote_seq: int | None = None
    is_uac: bool = True
    state: DialogState = DialogState.EARLY
    local_contact: str = ""

    @property
    def id(self) -> DialogId:
        return DialogId(self.call_id, self.local_tag, self.remote_tag)

    # -- construction (RFC 3261 §12.1.1 UAS, §12.1.2 UAC) ---------------------------------------
    @classmethod
    def from_uac(cls, request: SipRequest, response: SipResponse, local_contact: str) -> Dialog:
        """Dialog of the UAC from our INVITE and a 1xx/2xx carrying a To tag."""
        rr = response.headers.values("Record-Route")
        route_set = list(reversed(rr))
        target = _contact_uri(response) or request.uri
        seq, _ = request.cseq
        return cls(
            call_id=request.call_id,
            local_tag=request.from_tag or "",
            remote_tag=response.to_tag or "",
            local_uri=_strip_tag(request.headers.get("From") or ""),
            remote_uri=_strip_tag(response.headers.get("To") or ""),
            remote_target=target,
            route_set=route_set,
            local_seq=seq,
            remote_seq=None,
            is_uac=True,
            state=DialogState.CONFIRMED if 200 <= response.status < 300 else DialogState.EARLY,
            local_contact=local_contact,
        )

    @classmethod
    def from_uas(cls, request: SipRequest, local_tag: str, local_contact: str) -> Dialog:
        """Dialog of the UAS from a dialog-creating request and the tag we put in our To."""
        seq, _ = request.cseq
        return cls(
            call_id=request.call_id,
            local_tag=local_tag,
            remote_tag=request.from_tag or "",
            local_uri=_strip_tag(request.headers.get("To") or ""),
            remote_uri=_strip_tag(request.headers.get("From") or ""),
            remote_target=_contact_uri(request) or str(request.from_.uri),  # RFC 2543: no Contact
            route_set=list(request.headers.values("Record-Route")),
            local_seq=0,
            remote_seq=seq,
            is_uac=False,
            state=DialogState.EARLY,
            local_contact=local_contact,
        )

    def confirm_from_response(self, response: SipResponse) -> None:
        """A 2xx ends the early state; its Contact and Record-Route are authoritative (§12.1.2)."""
        if self.is_uac:
            self.route_set = list(reversed(response.headers.values("Record-Route")))
            target = _contact_uri(response)
            if target:
                self.remote_target = target
        self.state = DialogState.CONFIRMED

    def refresh_target(self, msg: SipRequest | SipResponse) -> None:
        """Target refresh requests/responses update the remote target (§12.2.1.2, §12.2.2)."""
        target = _contact_uri(msg)
        if target:
            self.remote_target = target

    # -- in-dialog requests --------------------------------------------------------------------
    def accept_remote_cseq(self, seq: int) -> bool:
        """§12.2.2: a lower CSeq than the last one seen is out of order (the caller answers 500)."""
        if self.remote_seq is not None and seq < self.remote_seq:
            return False
        self.remote_seq = seq
        return True

    def next_cseq(self) -> int:
        self.local_seq += 1
        return self.local_seq

    def create_request(self, method: str, *, cseq: int | None = None) -> tuple[SipRequest, SipUri]:
        """Build an in-dialog request (no Via yet) and the URI of its next hop (§12.2.1.1)."""
        seq = cseq if cseq is not None else self.next_cseq()
        h = Headers()
        request_uri = self.remote_target
        routes = list(self.route_set)
        if routes:
            first = parse_uri(_route_uri(routes[0]))
            if isinstance(first, SipUri) and not first.has_param("lr"):
                # strict routing: first route becomes the Request-URI, remote target goes last
                request_uri = str(first)
                routes = routes[1:] + [f"<{self.remote_target}>"]
        for r in routes:
            h.add("Route", r)
        h.add("Max-Forwards", "70")
        h.add("From", f"{self.local_uri};tag={self.local_tag}")
        h.add("To", f"{self.remote_uri};tag={self.remote_tag}")
        h.add("Call-ID", self.call_id)
        h.add("CSeq", f"{seq} {method}")
        if self.local_contact:
            h.add("Contact", self.local_contact)
        req = SipRequest(method=method, uri=request_uri, headers=h)
        hop = _route_uri(self.route_set[0]) if self.route_set else self.remote_target
        return req, next_hop_of(hop)


def _strip_tag(value: str) -> str:
    """Header value without its tag parameter (kept otherwise verbatim)."""
    addr = parse_address(value)
    addr.params = [(k, v) for k, v in addr.params if k.lower() != "tag"]
    return str(addr)
