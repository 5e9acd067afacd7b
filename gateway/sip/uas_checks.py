"""What a UAS checks before it acts on a request, and the 400 for one it could not parse.

RFC 3261 §8.2 fixes the order: method inspection (§8.2.1), header inspection — Request-URI scheme
and Require (§8.2.2.1, §8.2.2.3) — then content processing (§8.2.3); we add the Accept check of
§21.4.7 (the response we would send has to be acceptable) last. Line lookup (404), merged
requests (482) and dialog matching (481) need state and belong to the core. Pure functions:
the To tag of a stateless reply is derived from the request (§8.2.7), so a retransmission gets
the same one.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

from .errors import RemoteSipError
from .headers import HeaderError, parse_address, parse_params, split_list
from .message import KNOWN_METHODS, REASON_PHRASES, SipRequest, SipResponse, build_response
from .uri import UriError, parse_uri

__all__ = [
    "accepts_type",
    "allow_header",
    "build_bad_request",
    "check_request",
    "stateless_tag",
]

DEFAULT_TYPES = frozenset({"application/sdp"})
DEFAULT_SCHEMES = frozenset({"sip", "sips"})
#: Requests whose successful response carries our SDP (answer or offer): their Accept must allow it.
_SDP_REPLY_METHODS = frozenset({"INVITE", "UPDATE"})
#: Order of methods in an Allow header we build; the rest follow alphabetically.
_METHOD_ORDER = ("INVITE", "ACK", "CANCEL", "BYE", "OPTIONS", "UPDATE", "PRACK", "INFO", "REFER", "NOTIFY",
                 "SUBSCRIBE", "MESSAGE", "PUBLISH", "REGISTER")


def check_request(
    request: SipRequest,
    *,
    allowed_methods: frozenset[str],
    supported: frozenset[str] = frozenset(),
    accepted_types: frozenset[str] = DEFAULT_TYPES,
    schemes: frozenset[str] = DEFAULT_SCHEMES,
    to_tag: str | None = None,
) -> SipResponse | None:
    """The response a UAS sends instead of processing ``request``, or None to go on.

    ``allowed_methods``: what this UA accepts (501 for methods nobody registered, 405 for known
    ones not allowed, both with Allow). ``supported``: option tags understood (420 otherwise).
    ``accepted_types``: body types understood (415 with Accept otherwise). ``schemes``: R-URI
    schemes served (416 otherwise). ``to_tag`` overrides the derived tag for the reply.
    ACK is never answered (RFC 3261 §17.2.3), so for it the result is always None.
    """
    method = request.method
    if method == "ACK":
        return None

    def reply(status: int, headers: list[tuple[str, str]] | None = None, detail: str = "") -> SipResponse:
        reason = REASON_PHRASES.get(status, "Error") + (f" ({detail})" if detail else "")
        return build_response(request, status, reason, to_tag=to_tag or stateless_tag(request), headers=headers)

    # §8.2.1: method inspection
    if method not in allowed_methods:
        status = 405 if method in KNOWN_METHODS else 501
        return reply(status, [("Allow", allow_header(allowed_methods))])
    # §8.2.2.1: a Request-URI scheme we do not serve
    try:
        scheme = parse_uri(request.uri).scheme.lower()
    except UriError as exc:
        return reply(400, detail=f"bad Request-URI: {_printable(str(exc))}")
    if scheme not in schemes:
        return reply(416)
    # §8.2.2.3: Require (ignored in CANCEL; ACK is out above). Proxy-Require is for proxies only.
    if method != "CANCEL":
        known = {t.lower() for t in supported}
        missing = _unique(t for t in option_tags(request.headers.values("Require")) if t.lower() not in known)
        if missing:
            return reply(420, [("Unsupported", ", ".join(missing))])
        # §8.2.3: content processing
        problem = _content_problem(request, accepted_types)
        if problem is not None:
            return reply(*problem)
    # §21.4.7: the SDP our answer would carry must be acceptable to the UAC
    if method in _SDP_REPLY_METHODS and not accepts_type(request.headers.get_all("Accept"), "application/sdp"):
        return reply(406, detail="Accept excludes application/sdp")
    return None


def _content_problem(request: SipRequest, accepted: frozenset[str]) -> tuple[int, list[tuple[str, str]], str] | None:
    body = request.body
    ctype = request.headers.get("Content-Type")
    if not body or (ctype is None and not body.strip(b" \t\r\n")):
        return None  # no body, or only the line breaks some UAs leave after the head (UDP, no C-L)
    if ctype is None:
        # RFC 3261 §20.15: Content-Type MUST be present if the body is not empty
        return 400, [], "body without Content-Type"
    if _disposition_optional(request.headers.get("Content-Disposition")):
        return None  # §20.11 handling=optional: a body we do not understand may be ignored
    accept = [("Accept", ", ".join(sorted(accepted)))]
    encodings = [e.lower() for e in option_tags(request.headers.values("Content-Encoding"))]
    if any(e != "identity" for e in encodings):
        return 415, [*accept, ("Accept-Encoding", "identity")], "content encoding not supported"
    if request.content_type not in {t.lower() for t in accepted}:
        return 415, accept, ""
    return None


def _disposition_optional(value: str | None) -> bool:
    # Content-Disposition = disp-type *( SEMI disp-param ); handling-param = "handling" EQUAL ...
    if not value:
        return False
    _, _, rest = value.partition(";")
    try:
        params = parse_params(";" + rest) if rest else []
    except HeaderError:
        return False
    return any(k.lower() == "handling" and (v or "").lower() == "optional" for k, v in params)


def option_tags(values: Iterable[str]) -> list[str]:
    """Option tags (or other tokens) of list elements, empty elements skipped."""
    return [v.strip(" \t") for v in values if v.strip(" \t")]


def accepts_type(accept_values: list[str], media_type: str) -> bool:
    """Does an Accept header (all its fields) admit ``media_type``? (RFC 3261 §20.1)

    No Accept header means application/sdp; an empty one means nothing is acceptable. A media
    range with q=0 excludes (RFC 2616 §14.1).
    """
    if not accept_values:
        return media_type == "application/sdp"
    want_type, _, want_sub = media_type.lower().partition("/")
    for element in (e for v in accept_values for e in split_list(v)):
        range_, _, params = element.partition(";")
        mtype, _, msub = "".join(range_.split()).lower().partition("/")
        if mtype not in ("*", want_type) or msub not in ("*", want_sub):
            continue
        if _q_value(params) > 0:
            return True
    return False


def _q_value(params: str) -> float:
    try:
        for k, v in parse_params(";" + params) if params.strip() else []:
            if k.lower() == "q" and v is not None:
                return float(v)
    except (HeaderError, ValueError):
        return 1.0
    return 1.0


def build_bad_request(error: RemoteSipError, *, allowed_methods: frozenset[str] | None = None,
                      to_tag: str | None = None) -> SipResponse | None:
    """The 400/501/505/513 owed for a request the parser rejected, or None when there is no
    one to answer (a response, an ACK, status 0, or no Via to send it back along)."""
    partial = error.partial
    status = error.status_hint
    if not isinstance(partial, SipRequest) or partial.method == "ACK" or status < 300:
        return None
    if not any(v.strip(" \t") for v in partial.headers.get_all("Via")):
        return None
    reason = f"{REASON_PHRASES.get(status, 'Bad Request')} ({_printable(error.reason)})"
    headers = [("Allow", allow_header(allowed_methods))] if allowed_methods and status in (405, 501) else []
    tag = to_tag or (stateless_tag(partial) if partial.headers.get("To") is not None else None)
    return build_response(partial, status, reason, to_tag=tag, headers=headers)


def allow_header(methods: Iterable[str]) -> str:
    """``INVITE, ACK, CANCEL, BYE, OPTIONS`` — a stable order for an unordered set."""
    rank = {m: i for i, m in enumerate(_METHOD_ORDER)}
    return ", ".join(sorted(set(methods), key=lambda m: (rank.get(m, len(rank)), m)))


def stateless_tag(request: SipRequest) -> str:
    """A To tag that is the same for every retransmission of ``request`` (RFC 3261 §8.2.7)."""
    h = request.headers
    try:
        from_tag = parse_address(h.get("From") or "").tag or ""
    except HeaderError:
        from_tag = h.get("From") or ""
    vias = h.values("Via")
    key = "\x00".join([h.get("Call-ID") or "", from_tag, h.get("CSeq") or "", vias[0] if vias else ""])
    return hashlib.sha256(key.encode("utf-8", errors="surrogateescape")).hexdigest()[:16]


def _unique(items: Iterable[str]) -> list[str]:
    seen: set[str] = set()
    out: list[str] = []
    for item in items:
        if item.lower() not in seen:
            seen.add(item.lower())
            out.append(item)
    return out


def _printable(text: str, limit: int = 100) -> str:
    """Text safe inside a Reason-Phrase: printable ASCII, no line breaks, bounded length."""
    clean = "".join(c if " " <= c <= "~" else "?" for c in text)
    return clean if len(clean) <= limit else clean[: limit - 3] + "..."
