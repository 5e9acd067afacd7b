"""Where a SIP message's head ends, its header lines, and cutting a TCP stream into messages.

RFC 3261 §7 (message = start-line *message-header CRLF [body]), §7.3.1 (folding), §7.5 and §18.3
(framing by Content-Length over streams), RFC 5626 §4.4.1 (CRLF keep-alives). Everything here is
linear in the input: a framer fed one octet at a time never rescans what it has already seen.
"""

from __future__ import annotations

import re
from typing import Final

from .errors import RemoteSipError

__all__ = ["MAX_MESSAGE_SIZE", "NEED_DATA", "StreamFramer", "find_head_end", "split_head_lines"]

#: Largest message we accept over a stream; RFC 3261 §18.1.1 expects UDP messages < 64 KiB anyway.
MAX_MESSAGE_SIZE: Final = 65535

# The head ends at the first empty line. CRLF is the rule; a bare LF is tolerated as a line end.
_HEAD_END = re.compile(rb"\r?\n\r?\n")
_LINE_BREAK = re.compile(r"\r?\n")
_CONTENT_LENGTH_NAMES = frozenset({"content-length", "l"})


class _NeedData:
    __slots__ = ()

    def __repr__(self) -> str:
        return "NEED_DATA"


#: Returned by ``StreamFramer.next_message`` when more bytes are needed (h11's sentinel idea).
NEED_DATA: Final = _NeedData()


def find_head_end(data: bytes | bytearray, start: int = 0) -> tuple[int, int] | None:
    """(end of the last header line, start of the body) or None if no empty line is there yet."""
    m = _HEAD_END.search(data, start)
    return None if m is None else (m.start(), m.end())


def split_head_lines(head: str) -> tuple[str, list[str], str | None]:
    """Start line, header lines with folding undone, and an error for a fold with nothing before it.

    A line starting with SP or HT continues the previous header; the line break and the white space
    around it count as one SP (RFC 3261 §7.3.1). The start line itself never continues.
    """
    raw = _LINE_BREAK.split(head)
    groups: list[list[str]] = []
    error: str | None = None
    for line in raw[1:]:
        if line[:1] in (" ", "\t"):
            piece = line.strip(" \t")
            if not groups:
                error = error or f"continuation line {line[:80]!r} before any header"
            elif piece:
                groups[-1].append(piece)
        else:
            groups.append([line])
    lines = [g[0] if len(g) == 1 else " ".join([g[0].rstrip(" \t"), *g[1:]]) for g in groups]
    return raw[0], lines, error


class StreamFramer:
    """Cut a byte stream (TCP) into SIP messages by Content-Length (RFC 3261 §18.3).

    Feed bytes with ``receive_data``; ``next_message`` returns one message's bytes or NEED_DATA.
    A framing error (no, bad or conflicting Content-Length, oversized message) raises
    ``RemoteSipError``; the stream is unusable after it (every later call raises the same error)
    and the caller closes the connection. ``keepalives`` counts the CRLFCRLF pings seen
    (RFC 5626 §4.4.1) so the caller can answer each with a CRLF pong.
    """

    def __init__(self, max_size: int = MAX_MESSAGE_SIZE) -> None:
        self._buf = bytearray()
        self._max = max_size
        self._scan = 0  # the head end is not before this offset
        self._total: int | None = None  # length of the message in progress, once its head is read
        self._error: RemoteSipError | None = None
        self.keepalives = 0

    @property
    def pending_bytes(self) -> int:
        """Octets received but not yet returned as a message."""
        return len(self._buf)

    def receive_data(self, data: bytes) -> None:
        self._buf += data

    def next_message(self) -> bytes | _NeedData:
        if self._error is not None:
            raise self._error
        try:
            return self._next()
        except RemoteSipError as exc:
            self._error = exc
            raise

    def _next(self) -> bytes | _NeedData:
        if self._total is None:
            if not self._skip_line_breaks():
                return NEED_DATA
            end = find_head_end(self._buf, max(0, self._scan - 3))
            if end is None:
                self._scan = len(self._buf)
                if len(self._buf) > self._max:
                    raise RemoteSipError("message head too large", status_hint=513)
                return NEED_DATA
            length = _content_length(bytes(self._buf[:end[0]]))
            self._total = end[1] + length
            if self._total > self._max:
                raise RemoteSipError(f"message of {self._total} octets is too large", status_hint=513)
        if len(self._buf) < self._total:
            return NEED_DATA
        out = bytes(self._buf[:self._total])
        del self._buf[:self._total]
        self._total = None
        self._scan = 0
        return out

    def _skip_line_breaks(self) -> bool:
        """Drop CRLFs before a start line (RFC 3261 §7.5), counting CRLFCRLF pings.

        True when the buffer now starts with something else; False when it is empty or holds the
        beginning of what may still become a ping.
        """
        buf = self._buf
        i = 0
        n = len(buf)
        ready = False
        while i < n:
            if buf.startswith(b"\r\n\r\n", i):
                self.keepalives += 1
                i += 4
            elif buf[i] == 0x0A:
                i += 1
            elif buf[i] == 0x0D:
                rest = bytes(buf[i:i + 4])
                if len(rest) < 4 and b"\r\n\r\n".startswith(rest):
                    break  # wait: the rest of a ping may be on its way
                if rest.startswith(b"\r\n"):
                    i += 2
                else:
                    ready = True  # a lone CR: let the parser reject what follows
                    break
            else:
                ready = True
                break
        if i:
            del buf[:i]
            self._scan = max(0, self._scan - i)
        return ready


def _content_length(head: bytes) -> int:
    """The one Content-Length of a head (RFC 3261 §18.3: mandatory on streams, §20.14)."""
    _, lines, _ = split_head_lines(head.decode("latin-1"))
    length: int | None = None
    for line in lines:
        name, sep, value = line.partition(":")
        if not sep or name.strip(" \t").lower() not in _CONTENT_LENGTH_NAMES:
            continue
        digits = value.strip(" \t")
        if not digits.isdigit() or not digits.isascii():
            raise RemoteSipError(f"invalid Content-Length {digits[:40]!r} on a stream", status_hint=400)
        stripped = digits.lstrip("0") or "0"
        this = int(stripped) if len(stripped) <= 10 else MAX_MESSAGE_SIZE * 1000
        if length is not None and this != length:
            raise RemoteSipError("conflicting Content-Length headers on a stream", status_hint=400)
        length = this
    if length is None:
        raise RemoteSipError("missing Content-Length on a stream (RFC 3261 §18.3)", status_hint=400)
    return length
