"""SIP messages: tolerant parser, exact serializer, TCP framer, stateless reply builder.

RFC 3261 §7 (message format), §18.3 (framing), §8.2.6 (building responses), §25 (ABNF).
Parsing never raises anything but ``RemoteSipError``; its ``status_hint`` is the answer a UAS
owes (400, 501, 505, 513; 0 = nothing can be answered) and ``partial`` holds what was readable so
that answer can be built (``uas_checks.build_bad_request``).

A message ``parse_message`` returns is known to be usable: the start line, Via (every value),
From, To, Call-ID, CSeq, Contact, Route, Record-Route, Max-Forwards and Content-Length all follow
their grammar, so the properties below do not raise on it.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Final

from .errors import LocalSipError, RemoteSipError
from .framing import MAX_MESSAGE_SIZE, NEED_DATA, StreamFramer, find_head_end, split_head_lines
from .headers import (
    Address,
    HeaderError,
    HeaderField,
    Headers,
    Via,
    parse_address,
    parse_cseq,
    parse_uint,
    parse_via,
)
from .uri import SipUri, UriError, parse_uri

__all__ = [
    "KNOWN_METHODS",
    "MAX_MESSAGE_SIZE",
    "NEED_DATA",
    "REASON_PHRASES",
    "SipMessage",
    "SipRequest",
    "SipResponse",
    "StreamFramer",
    "build_response",
    "parse_message",
]

SIP_VERSION: Final = "SIP/2.0"

REASON_PHRASES: dict[int, str] = {
    100: "Trying", 180: "Ringing", 181: "Call Is Being Forwarded", 182: "Queued", 183: "Session Progress",
    200: "OK", 202: "Accepted", 300: "Multiple Choices", 301: "Moved Permanently", 302: "Moved Temporarily",
    400: "Bad Request", 401: "Unauthorized", 403: "Forbidden", 404: "Not Found", 405: "Method Not Allowed",
    406: "Not Acceptable", 407: "Proxy Authentication Required", 408: "Request Timeout", 410: "Gone",
    413: "Request Entity Too Large", 415: "Unsupported Media Type", 416: "Unsupported URI Scheme",
    420: "Bad Extension", 421: "Extension Required", 423: "Interval Too Brief",
    480: "Temporarily Unavailable", 481: "Call/Transaction Does Not Exist", 482: "Loop Detected",
    483: "Too Many Hops", 484: "Address Incomplete", 486: "Busy Here", 487: "Request Terminated",
    488: "Not Acceptable Here", 491: "Request Pending", 500: "Server Internal Error", 501: "Not Implemented",
    503: "Service Unavailable", 504: "Server Time-out", 505: "Version Not Supported",
    513: "Message Too Large", 600: "Busy Everywhere", 603: "Decline", 604: "Does Not Exist Anywhere",
    606: "Not Acceptable",
}

#: Methods of RFC 3261 and the IANA-registered extensions: a UA *recognises* these (405 when it does
#: not allow one, RFC 3261 §8.2.1) and answers any other method 501 (§21.5.2).
KNOWN_METHODS: Final = frozenset({
    "INVITE", "ACK", "BYE", "CANCEL", "OPTIONS", "REGISTER",  # RFC 3261
    "PRACK", "SUBSCRIBE", "NOTIFY", "PUBLISH", "INFO", "REFER", "MESSAGE", "UPDATE",
})

#: Headers that may appear at most once (RFC 3261 §7.3.1, Table 2); a second one is a 400.
SINGLE_VALUED = ("call-id", "cseq", "from", "to", "max-forwards", "content-length", "content-type")
#: Every message needs these (RFC 3261 §8.1.1).
MANDATORY = ("Via", "From", "To", "Call-ID", "CSeq")
#: Address lists checked by the parser so later stages can rely on them.
ADDRESS_LISTS = ("Contact", "Route", "Record-Route")

# token = 1*(alphanum / "-" / "." / "!" / "%" / "*" / "_" / "+" / "`" / "'" / "~" )
_TOKEN = r"[A-Za-z0-9\-.!%*_+`'~]+"
# SIP-Version = "SIP" "/" 1*DIGIT "." 1*DIGIT   (case-insensitive, RFC 3261 §7.1)
_VERSION = r"[Ss][Ii][Pp]/[0-9]+\.[0-9]+"
# Request-Line = Method SP Request-URI SP SIP-Version CRLF         (RFC 3261 §25.1)
# Liberal (RFC 4475 §3.1.2.9, §3.1.2.10): runs of SP/HT between the elements and after the version.
_REQUEST_LINE = re.compile(rf"({_TOKEN})[ \t]+([^ \t]+)[ \t]+({_VERSION})[ \t]*")
# Status-Line = SIP-Version SP Status-Code SP Reason-Phrase CRLF;  Status-Code = 3DIGIT
_STATUS_LINE = re.compile(rf"({_VERSION})[ \t]+([0-9]{{3}})(?:[ \t](.*))?", re.S)
# header-name = token;  a message-header is  name HCOLON value  (HCOLON = *( SP / HTAB ) ":" SWS)
_HEADER_NAME = re.compile(_TOKEN)
# callid = word [ "@" word ]: one run without white space
_CALL_ID = re.compile(r"[^ \t]+")

_Bad = Callable[..., RemoteSipError]  # the ``bad(reason, status=400)`` helper of _validate


@dataclass(slots=True, eq=False)
class SipMessage:
    """Common part of requests and responses."""

    headers: Headers = field(default_factory=Headers)
    body: bytes = b""
    version: str = SIP_VERSION

    # -- header accessors (parse on demand; the parser has already validated the mandatory ones) --
    @property
    def call_id(self) -> str:
        return (self.headers.get("Call-ID") or "").strip(" \t")

    @property
    def cseq(self) -> tuple[int, str]:
        return parse_cseq(self.headers.get("CSeq") or "")

    @property
    def vias(self) -> list[Via]:
        return [parse_via(v) for v in self.headers.values("Via")]

    @property
    def top_via(self) -> Via:
        first = self.headers.values("Via")
        if not first:
            raise HeaderError("no Via header")
        return parse_via(first[0])

    @property
    def from_(self) -> Address:
        return parse_address(self.headers.get("From") or "")

    @property
    def to(self) -> Address:
        return parse_address(self.headers.get("To") or "")

    @property
    def from_tag(self) -> str | None:
        return self.from_.tag

    @property
    def to_tag(self) -> str | None:
        return self.to.tag

    @property
    def contacts(self) -> list[Address]:
        return [parse_address(v) for v in self.headers.values("Contact")]

    @property
    def content_type(self) -> str:
        """media-type without parameters, lower case, LWS around "/" removed (RFC 3261 §20.15)."""
        ct = self.headers.get("Content-Type") or ""
        return "".join(ct.split(";", 1)[0].split()).lower()

    def start_line(self) -> str:
        raise NotImplementedError

    def to_bytes(self) -> bytes:
        """Serialize exactly: start line, fields in order as stored, blank line, body.

        Content-Length always states the body length (RFC 3261 §18.3): an existing field keeps
        its place and spelling (its value is rewritten only if wrong); a missing one is appended.
        The message itself is not modified.
        """
        lines = [self.start_line()]
        length = len(self.body)
        have_length = False
        for f in self.headers:
            if "\n" in f.value or "\n" in f.name or "\r" in f.name:
                raise LocalSipError(f"line break inside header {f.name!r}")
            if f.key == "content-length":
                if have_length:
                    continue
                have_length = True
                value = f.value if parse_uint(f.value.strip(" \t"), MAX_MESSAGE_SIZE) == length else str(length)
                lines.append(f"{f.name}: {value}")
            else:
                lines.append(f"{f.name}: {f.value}")
        if not have_length:
            lines.append(f"Content-Length: {length}")
        head = "\r\n".join(lines) + "\r\n\r\n"
        return head.encode("utf-8", errors="surrogateescape") + self.body

    def __bytes__(self) -> bytes:
        return self.to_bytes()


@dataclass(slots=True, eq=False)
class SipRequest(SipMessage):
    method: str = ""
    uri: str = ""

    @property
    def max_forwards(self) -> int | None:
        """Max-Forwards, None when absent or beyond 255 (RFC 4475 §3.1.2.4: treat as absent)."""
        value = self.headers.get("Max-Forwards")
        return None if value is None else parse_uint(value.strip(" \t"), 255)

    def start_line(self) -> str:
        return f"{self.method} {self.uri} {self.version}"

    def __repr__(self) -> str:
        return f"<SipRequest {self.method} {self.uri} call-id={self.call_id!r}>"


@dataclass(slots=True, eq=False)
class SipResponse(SipMessage):
    status: int = 200
    reason: str = "OK"

    def start_line(self) -> str:
        return f"{self.version} {self.status} {self.reason}"

    def __repr__(self) -> str:
        return f"<SipResponse {self.status} {self.reason} call-id={self.call_id!r}>"


# ---------------------------------------------------------------------------------------- parsing
def parse_message(data: bytes, *, stream: bool = False) -> SipMessage:
    """Parse one whole message (a UDP datagram, or one frame cut by ``StreamFramer``).

    Over a datagram the body is cut at Content-Length and trailing octets are ignored
    (RFC 3261 §18.3); a Content-Length beyond the datagram is a 400. With ``stream=True`` a
    missing Content-Length is a 400 too.
    """
    # RFC 3261 §7.5: ignore CRLFs before the start line.
    start = 0
    n = len(data)
    while start < n and data[start] in (0x0D, 0x0A):
        start += 1
    if start == n:
        raise RemoteSipError("empty message", status_hint=0)
    end = find_head_end(data, start)
    if end is None:
        # No empty line: a header block ending in a line break is read as header-only (liberal;
        # RFC 4475 §3.1.2.15's archive copy ends so). Anything else is a truncated message.
        if data[-1] != 0x0A:
            raise RemoteSipError("incomplete header section (no empty line)", status_hint=0)
        head_b, body = data[start:].rstrip(b"\r\n"), b""
    else:
        head_b, body = data[start:end[0]], data[end[1]:]
    start_line, lines, fold_error = split_head_lines(head_b.decode("utf-8", errors="surrogateescape"))
    msg, line_error = _start_line(start_line)
    fields: list[HeaderField] = []
    bad_line: str | None = fold_error
    for line in lines:
        name, sep, value = line.partition(":")
        name = name.rstrip(" \t")
        if not sep or not _HEADER_NAME.fullmatch(name):
            bad_line = bad_line or f"malformed header line {line[:80]!r}"
            continue
        fields.append(HeaderField(name, value.strip(" \t")))
    if msg is None:
        raise RemoteSipError(line_error or "malformed start line", status_hint=0)
    msg.headers = Headers(fields)
    msg.body = body
    if line_error:
        raise RemoteSipError(line_error, status_hint=400, partial=msg)
    if len(data) > MAX_MESSAGE_SIZE:
        raise RemoteSipError(f"message of {len(data)} octets is too large", status_hint=513, partial=msg)
    _validate(msg, fields, bad_line, stream=stream)
    return msg


def _start_line(line: str) -> tuple[SipMessage | None, str | None]:
    """The message skeleton for a start line, and the error if it is malformed.

    A malformed request line still yields a partial request (method as written) so a 400 can be
    built; a line that does not look like a request at all yields None (nothing to answer).
    """
    m = _REQUEST_LINE.fullmatch(line)
    if m:
        return SipRequest(method=m.group(1), uri=m.group(2), version=m.group(3)), None
    s = _STATUS_LINE.fullmatch(line)
    if s:
        reason = s.group(3) or ""
        return SipResponse(status=int(s.group(2)), reason=reason, version=s.group(1)), None
    error = f"malformed start line {line[:80]!r}"
    words = line.split()
    if words and _HEADER_NAME.fullmatch(words[0]) and not line.upper().startswith("SIP/"):
        uri = " ".join(words[1:-1]) if len(words) > 2 else (words[1] if len(words) > 1 else "")
        return SipRequest(method=words[0], uri=uri, version=words[-1] if len(words) > 2 else SIP_VERSION), error
    return None, error


def _validate(msg: SipMessage, fields: list[HeaderField], bad_line: str | None, *, stream: bool) -> None:
    h = msg.headers
    is_request = isinstance(msg, SipRequest)

    def bad(reason: str, status: int = 400) -> RemoteSipError:
        return RemoteSipError(reason, status_hint=status if is_request else 0, partial=msg)

    # RFC 3261 §8.2.2 / §21.5.6: any version but 2.0 is answered 505 before its content is judged
    if msg.version.upper() != SIP_VERSION:
        raise bad(f"unsupported version {msg.version}", 505)
    if bad_line:
        raise bad(bad_line)
    counts: dict[str, int] = {}
    for f in fields:
        key = f.key
        counts[key] = counts.get(key, 0) + 1
    for key in SINGLE_VALUED:
        if counts.get(key, 0) > 1:
            raise bad(f"more than one {key} header")
    _apply_content_length(msg, bad, stream=stream)
    if isinstance(msg, SipResponse) and not 100 <= msg.status <= 699:
        raise bad(f"status code {msg.status} out of range")
    for name in MANDATORY:
        if not (h.get(name) or "").strip(" \t"):
            raise bad(f"missing mandatory header {name}")
    current = "Via"
    try:
        if not msg.vias:
            raise HeaderError("empty Via")
        current = "From"
        msg.from_
        current = "To"
        msg.to
        current = "CSeq"
        seq, method = msg.cseq
        for current in ADDRESS_LISTS:
            for value in h.values(current):
                parse_address(value)
    except HeaderError as exc:
        raise bad(f"{current}: {exc}") from None
    if not _CALL_ID.fullmatch(msg.call_id):
        raise bad(f"malformed Call-ID {msg.call_id[:80]!r}")
    if isinstance(msg, SipRequest):
        _validate_request(msg, method, bad)


def _apply_content_length(msg: SipMessage, bad: _Bad, *, stream: bool) -> None:
    cl_text = msg.headers.get("Content-Length")
    if cl_text is None:
        if stream:
            raise bad("Content-Length is mandatory over stream transports (RFC 3261 §18.3)")
        return
    cl = parse_uint(cl_text.strip(" \t"), MAX_MESSAGE_SIZE)
    if cl is None:
        raise bad(f"invalid Content-Length {cl_text[:40]!r}")
    if cl > len(msg.body):
        raise bad(f"Content-Length {cl} exceeds the {len(msg.body)} octets received")
    msg.body = msg.body[:cl]


def _validate_request(msg: SipRequest, cseq_method: str, bad: _Bad) -> None:
    # Request-URI = SIP-URI / SIPS-URI / absoluteURI
    try:
        uri = parse_uri(msg.uri)
    except UriError as exc:
        raise bad(f"bad Request-URI: {exc}") from None
    # RFC 3261 §19.1.1 (table): headers are not allowed in a Request-URI (RFC 4475 §3.1.2.11)
    if isinstance(uri, SipUri) and uri.headers:
        raise bad("escaped headers are not allowed in a Request-URI")
    mf = msg.headers.get("Max-Forwards")
    if mf is not None and not re.fullmatch(r"[ \t]*[0-9]+[ \t]*", mf):
        raise bad(f"invalid Max-Forwards {mf[:40]!r}")
    if cseq_method != msg.method:
        # RFC 4475 §3.1.2.18: a method we do not implement is answered 501 whatever the CSeq says
        status = 400 if msg.method in KNOWN_METHODS else 501
        raise bad(f"CSeq method {cseq_method} does not match request method {msg.method}", status)


# ------------------------------------------------------------------------------------ responses
def build_response(
    request: SipRequest,
    status: int,
    reason: str | None = None,
    *,
    to_tag: str | None = None,
    headers: Iterable[tuple[str, str]] | None = None,
    body: bytes = b"",
    content_type: str | None = None,
) -> SipResponse:
    """Response to ``request`` per RFC 3261 §8.2.6: copy Via, From, To, Call-ID, CSeq.

    Works on a partially parsed request too (for 400s): it copies whatever is there.
    A To tag is added when given and the To has none (RFC 3261 §8.2.6.2; never on a 100).
    """
    h = Headers()
    for v in request.headers.get_all("Via"):
        h.add("Via", v)
    for name in ("From", "To", "Call-ID", "CSeq"):
        value = request.headers.get(name)
        if value is None:
            continue
        if name == "To" and to_tag and status > 100 and not _has_tag(value):
            value = f"{value};tag={to_tag}"
        h.add(name, value)
    if status == 100 and (ts := request.headers.get("Timestamp")):
        h.add("Timestamp", ts)  # RFC 3261 §8.2.6.1
    for k, v in headers or ():
        h.add(k, v)
    if body and content_type:
        h.set("Content-Type", content_type)
    return SipResponse(status=status, reason=reason or REASON_PHRASES.get(status, "Unknown"), headers=h, body=body)


def _has_tag(to_value: str) -> bool:
    try:
        return parse_address(to_value).tag is not None
    except HeaderError:
        return ";tag=" in to_value.replace(" ", "").lower()
