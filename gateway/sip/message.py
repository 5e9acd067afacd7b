"""SIP messages: tolerant parser, exact serializer, TCP framer, stateless reply builder.

RFC 3261 §7 (message format), §18.3 (framing), §8.2.6 (building responses), §25 (ABNF).
Parsing never raises anything but ``RemoteSipError``; its ``status_hint`` is the answer a UAS
owes (400, 505, 513 ...) and ``partial`` holds what was readable so that answer can be built.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Final

from .errors import RemoteSipError
from .headers import Address, HeaderError, HeaderField, Headers, Via, parse_address, parse_cseq, parse_via

__all__ = [
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

#: Largest message we accept over a stream; RFC 3261 §18.1.1 expects UDP messages < 64 KiB anyway.
MAX_MESSAGE_SIZE: Final = 65535

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

#: Headers that may appear at most once (RFC 3261 §7.3.1, Table 2); a second one is a 400.
SINGLE_VALUED = frozenset({"call-id", "cseq", "from", "to", "max-forwards", "content-length", "content-type"})

# Request-Line = Method SP Request-URI SP SIP-Version CRLF        (RFC 3261 §25.1)
_TOKEN = r"[A-Za-z0-9\-.!%*_+`'~]+"
_REQUEST_LINE = re.compile(rf"^({_TOKEN}) (\S+) (SIP/\d+\.\d+)$")
# Status-Line = SIP-Version SP Status-Code SP Reason-Phrase CRLF
_STATUS_LINE = re.compile(r"^(SIP/\d+\.\d+) ([0-9]{3}) (.*)$", re.S)
_HEADER_NAME = re.compile(rf"^{_TOKEN}$")


class _NeedData:
    __slots__ = ()

    def __repr__(self) -> str:
        return "NEED_DATA"


#: Returned by ``StreamFramer.next_message`` when more bytes are needed (h11's sentinel idea).
NEED_DATA: Final = _NeedData()


@dataclass(slots=True, eq=False)
class SipMessage:
    """Common part of requests and responses."""

    headers: Headers = field(default_factory=Headers)
    body: bytes = b""
    version: str = SIP_VERSION

    # -- header accessors (parse on demand; the parser has already validated the mandatory ones) --
    @property
    def call_id(self) -> str:
        return (self.headers.get("Call-ID") or "").strip()

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
    def content_type(self) -> str:
        ct = self.headers.get("Content-Type") or ""
        return ct.split(";", 1)[0].strip().lower()

    def start_line(self) -> str:
        raise NotImplementedError

    def to_bytes(self) -> bytes:
        """Serialize exactly: start line, fields in order as stored, blank line, body.

        Content-Length is (re)written to the body length so a message we build is always framed right.
        """
        self.headers.set("Content-Length", str(len(self.body)))
        lines = [self.start_line()]
        lines.extend(f"{f.name}: {f.value}" for f in self.headers)
        head = "\r\n".join(lines) + "\r\n\r\n"
        return head.encode("utf-8", errors="surrogateescape") + self.body

    def __bytes__(self) -> bytes:
        return self.to_bytes()


@dataclass(slots=True, eq=False)
class SipRequest(SipMessage):
    method: str = ""
    uri: str = ""

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


def _split_head(data: bytes) -> tuple[bytes, bytes] | None:
    idx = data.find(b"\r\n\r\n")
    if idx >= 0:
        return data[:idx], data[idx + 4:]
    idx = data.find(b"\n\n")
    if idx >= 0:
        return data[:idx], data[idx + 2:]
    return None


def _unfold(head: str) -> list[str]:
    """Header lines with continuation lines (leading SP/HT) joined by one space (RFC 3261 §7.3.1)."""
    lines: list[str] = []
    for raw in re.split(r"\r\n|\n", head):
        if raw[:1] in (" ", "\t") and lines:
            lines[-1] = lines[-1].rstrip() + " " + raw.strip()
        else:
            lines.append(raw)
    return lines


def parse_message(data: bytes, *, stream: bool = False) -> SipMessage:
    """Parse one whole message (a UDP datagram, or one frame cut by ``StreamFramer``).

    Over a datagram the body is cut at Content-Length and trailing octets are ignored
    (RFC 3261 §18.3); a Content-Length beyond the datagram is a 400.
    """
    # RFC 3261 §7.5: ignore CRLFs before the start line.
    start = 0
    while data[start:start + 2] == b"\r\n" or data[start:start + 1] == b"\n":
        start += 2 if data[start:start + 2] == b"\r\n" else 1
    data = data[start:]
    if not data:
        raise RemoteSipError("empty message", status_hint=0)
    split = _split_head(data)
    if split is None:
        # No blank line: accept a header block that ends in CRLF as header-only (liberal, RFC 4475 baddn).
        if data.endswith(b"\r\n"):
            head_b, body = data[:-2], b""
        else:
            raise RemoteSipError("incomplete header section (no empty line)", status_hint=0)
    else:
        head_b, body = split
    head = head_b.decode("utf-8", errors="surrogateescape")
    lines = _unfold(head)
    start_line = lines[0]
    msg: SipMessage
    m = _REQUEST_LINE.match(start_line)
    if m:
        msg = SipRequest(method=m.group(1), uri=m.group(2), version=m.group(3))
    else:
        s = _STATUS_LINE.match(start_line)
        if not s:
            raise RemoteSipError(f"malformed start line {start_line[:80]!r}", status_hint=400)
        code = int(s.group(2))
        msg = SipResponse(status=code, reason=s.group(3), version=s.group(1))
    fields: list[HeaderField] = []
    for line in lines[1:]:
        if not line.strip():
            continue
        name, sep, value = line.partition(":")
        name = name.rstrip(" \t")
        if not sep or not _HEADER_NAME.match(name):
            msg.headers = Headers(fields)
            raise RemoteSipError(f"malformed header line {line[:80]!r}", status_hint=400, partial=msg)
        fields.append(HeaderField(name, value.strip()))
    msg.headers = Headers(fields)
    msg.body = body
    _validate(msg, stream=stream)
    return msg


def _validate(msg: SipMessage, *, stream: bool) -> None:
    h = msg.headers

    def bad(reason: str, status: int = 400) -> RemoteSipError:
        return RemoteSipError(reason, status_hint=status, partial=msg)

    for key in SINGLE_VALUED:
        if h.count(key) > 1:
            raise bad(f"more than one {key} header")
    cl_text = h.get("Content-Length")
    if cl_text is not None:
        if not re.fullmatch(r"[0-9]{1,10}", cl_text.strip()):
            raise bad(f"invalid Content-Length {cl_text!r}")
        cl = int(cl_text)
        if cl > len(msg.body):
            raise bad(f"Content-Length {cl} exceeds the {len(msg.body)} octets received")
        msg.body = msg.body[:cl]
    elif stream:
        raise bad("Content-Length is mandatory over stream transports (RFC 3261 §18.3)")
    if isinstance(msg, SipResponse):
        if not 100 <= msg.status <= 699:
            raise bad(f"status code {msg.status} out of range")
    for name in ("Via", "From", "To", "Call-ID", "CSeq"):
        if name not in h or not (h.get(name) or "").strip():
            raise bad(f"missing mandatory header {name}")
    try:
        vias = msg.vias
        if not vias:
            raise HeaderError("empty Via")
        msg.from_
        msg.to
        seq, method = msg.cseq
    except HeaderError as exc:
        raise bad(str(exc)) from None
    if msg.version.upper() != SIP_VERSION:
        raise bad(f"unsupported version {msg.version}", 505)
    if isinstance(msg, SipRequest):
        if method != msg.method:
            raise bad(f"CSeq method {method} does not match request method {msg.method}")
        mf = h.get("Max-Forwards")
        if mf is not None and not re.fullmatch(r"[0-9]{1,3}", mf.strip()):
            raise bad(f"invalid Max-Forwards {mf!r}")
        if mf is not None and int(mf) > 255:
            raise bad(f"Max-Forwards {mf} out of range")
    if len(msg.call_id.split()) != 1:
        raise bad("malformed Call-ID")


class StreamFramer:
    """Cut a byte stream (TCP) into SIP messages by Content-Length (RFC 3261 §18.3).

    Feed bytes with ``receive_data``; ``next_message`` returns one message's bytes or NEED_DATA.
    A framing error (no or bad Content-Length, oversized head) raises ``RemoteSipError`` and the
    stream is unusable after it: the caller closes the connection.
    """

    def __init__(self, max_size: int = MAX_MESSAGE_SIZE) -> None:
        self._buf = bytearray()
        self._max = max_size
        self.keepalives = 0

    def receive_data(self, data: bytes) -> None:
        self._buf += data

    def next_message(self) -> bytes | _NeedData:
        # RFC 5626 §4.4.1 keep-alive: a CRLFCRLF ping (answered by the caller) or stray CRLFs.
        while self._buf[:2] == b"\r\n":
            if self._buf[:4] == b"\r\n\r\n":
                self.keepalives += 1
                del self._buf[:4]
            else:
                del self._buf[:2]
        idx = self._buf.find(b"\r\n\r\n")
        if idx < 0:
            if len(self._buf) > self._max:
                raise RemoteSipError("message head too large", status_hint=513)
            return NEED_DATA
        head = bytes(self._buf[:idx]).decode("utf-8", errors="surrogateescape")
        length: int | None = None
        for line in _unfold(head)[1:]:
            name, _, value = line.partition(":")
            if name.strip().lower() in ("content-length", "l"):
                if length is not None:
                    raise RemoteSipError("duplicate Content-Length on a stream", status_hint=400)
                if not re.fullmatch(r"\s*[0-9]{1,10}\s*", value):
                    raise RemoteSipError(f"invalid Content-Length {value.strip()!r}", status_hint=400)
                length = int(value)
        if length is None:
            raise RemoteSipError("missing Content-Length on a stream", status_hint=400)
        total = idx + 4 + length
        if total > self._max:
            raise RemoteSipError("message too large", status_hint=513)
        if len(self._buf) < total:
            return NEED_DATA
        out = bytes(self._buf[:total])
        del self._buf[:total]
        return out


def build_response(
    request: SipRequest,
    status: int,
    reason: str | None = None,
    *,
    to_tag: str | None = None,
    headers: list[tuple[str, str]] | None = None,
    body: bytes = b"",
    content_type: str | None = None,
) -> SipResponse:
    """Response to ``request`` per RFC 3261 §8.2.6: copy Via, From, To, Call-ID, CSeq.

    Works on a partially parsed request too (for 400s): it copies whatever is there.
    A To tag is added when given and the To has none (RFC 3261 §8.2.6.2).
    """
    h = Headers()
    for v in request.headers.get_all("Via"):
        h.add("Via", v)
    for name in ("From", "To", "Call-ID", "CSeq"):
        value = request.headers.get(name)
        if value is None:
            continue
        if name == "To" and to_tag and status > 100 and ";tag=" not in value.replace(" ", "").lower():
            value = f"{value};tag={to_tag}"
        h.add(name, value)
    if status == 100 and (ts := request.headers.get("Timestamp")):
        h.add("Timestamp", ts)  # RFC 3261 §8.2.6.1
    for k, v in headers or ():
        h.add(k, v)
    if body and content_type:
        h.set("Content-Type", content_type)
    resp = SipResponse(status=status, reason=reason or REASON_PHRASES.get(status, "Unknown"), headers=h, body=body)
    return resp
