"""Header fields and the structured values SIP needs (RFC 3261 §7.3, §20, §25.1).

A ``Headers`` object keeps every field as it came off the wire — the raw name (compact ``v`` or
``VIA`` stays so) and the raw value — so unknown headers and odd spellings serialise verbatim;
lookups go through the canonical lower-case key, compact forms expanded (RFC 3261 §7.3.3).
The value parsers raise ``HeaderError`` (a ``ValueError``) and nothing else, whatever the input.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from .uri import AbsoluteUri, SipUri, UriError, parse_uri

__all__ = [
    "Address",
    "HeaderError",
    "HeaderField",
    "Headers",
    "Via",
    "canonical_key",
    "canonical_name",
    "format_params",
    "parse_address",
    "parse_cseq",
    "parse_params",
    "parse_uint",
    "parse_via",
    "quote",
    "split_list",
    "unquote",
]


class HeaderError(ValueError):
    """A header value does not follow its grammar."""


#: RFC 3261 §7.3.3 (and extensions registered at IANA) compact form -> full name
COMPACT_FORMS: dict[str, str] = {
    "a": "Accept-Contact",
    "b": "Referred-By",
    "c": "Content-Type",
    "d": "Request-Disposition",
    "e": "Content-Encoding",
    "f": "From",
    "i": "Call-ID",
    "j": "Reject-Contact",
    "k": "Supported",
    "l": "Content-Length",
    "m": "Contact",
    "n": "Identity-Info",
    "o": "Event",
    "r": "Refer-To",
    "s": "Subject",
    "t": "To",
    "u": "Allow-Events",
    "v": "Via",
    "x": "Session-Expires",
    "y": "Identity",
}

#: Canonical spelling for headers we create (lookups never depend on it).
_CANONICAL = {
    name.lower(): name
    for name in (
        "Accept", "Accept-Encoding", "Accept-Language", "Alert-Info", "Allow", "Allow-Events",
        "Authentication-Info", "Authorization", "Call-ID", "Call-Info", "Contact", "Content-Disposition",
        "Content-Encoding", "Content-Language", "Content-Length", "Content-Type", "CSeq", "Date", "Error-Info",
        "Event", "Expires", "From", "In-Reply-To", "Max-Forwards", "Min-Expires", "MIME-Version",
        "Organization", "Priority", "Proxy-Authenticate", "Proxy-Authorization", "Proxy-Require",
        "Record-Route", "Refer-To", "Referred-By", "Reply-To", "Require", "Retry-After", "Route", "RSeq",
        "RAck", "Server", "Session-Expires", "Subject", "Supported", "Timestamp", "To", "Unsupported",
        "User-Agent", "Via", "Warning", "WWW-Authenticate", "Subscription-State", "Replaces",
    )
}

#: Headers whose value is a comma-separated list (RFC 3261 §7.3.1) and may be split/combined.
LIST_HEADERS = frozenset(
    k.lower()
    for k in (
        "Via", "Route", "Record-Route", "Contact", "Allow", "Supported", "Require", "Proxy-Require",
        "Unsupported", "Accept", "Accept-Encoding", "Accept-Language", "Content-Encoding", "Allow-Events",
        "In-Reply-To", "Content-Language", "Alert-Info", "Call-Info", "Error-Info", "Warning",
    )
)


@functools.lru_cache(maxsize=512)
def canonical_key(name: str) -> str:
    """Lookup key of a header name: lower case, compact form expanded. Cached: every header lookup
    on every message calls it (a few hundred calls per message; bounded, so hostile names cannot grow it)."""
    low = name.strip().lower()
    if len(low) == 1 and low in COMPACT_FORMS:
        return COMPACT_FORMS[low].lower()
    return low


def canonical_name(name: str) -> str:
    key = canonical_key(name)
    return _CANONICAL.get(key, name)


@dataclass(slots=True)
class HeaderField:
    """One header line: ``name`` as written, ``value`` with folding already collapsed.

    ``key`` (the lookup key) is computed once: every header lookup scans the fields by key."""

    name: str
    value: str
    key: str = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        self.key = canonical_key(self.name)


class Headers:
    """Ordered, case-insensitive multi-map of header fields."""

    __slots__ = ("_fields",)

    def __init__(self, items: Iterable[tuple[str, str] | HeaderField] = ()) -> None:
        self._fields: list[HeaderField] = []
        for it in items:
            if isinstance(it, HeaderField):
                self._fields.append(HeaderField(it.name, it.value))
            else:
                self._fields.append(HeaderField(it[0], it[1]))

    def __iter__(self) -> Iterator[HeaderField]:
        return iter(self._fields)

    def __len__(self) -> int:
        return len(self._fields)

    def __contains__(self, name: object) -> bool:
        if not isinstance(name, str):
            return False
        key = canonical_key(name)
        return any(f.key == key for f in self._fields)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Headers):
            return NotImplemented
        return self.items() == other.items()

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"Headers({self.items()!r})"

    def items(self) -> list[tuple[str, str]]:
        """Every field as (name as written, value), in order."""
        return [(f.name, f.value) for f in self._fields]

    def copy(self) -> Headers:
        return Headers(self._fields)

    def get(self, name: str, default: str | None = None) -> str | None:
        """Value of the first field with this name."""
        key = canonical_key(name)
        for f in self._fields:
            if f.key == key:
                return f.value
        return default

    def get_all(self, name: str) -> list[str]:
        """Values of every field with this name, one entry per header line."""
        key = canonical_key(name)
        return [f.value for f in self._fields if f.key == key]

    def values(self, name: str) -> list[str]:
        """Every list element across all fields of a list header (commas split, quotes respected)."""
        out: list[str] = []
        for v in self.get_all(name):
            out.extend(split_list(v))
        return out

    def count(self, name: str) -> int:
        key = canonical_key(name)
        return sum(1 for f in self._fields if f.key == key)

    def add(self, name: str, value: str) -> None:
        self._fields.append(HeaderField(canonical_name(name), value))

    def prepend(self, name: str, value: str) -> None:
        """Insert before the first field of that name (or at the top) — Via, Record-Route."""
        key = canonical_key(name)
        for i, f in enumerate(self._fields):
            if f.key == key:
                self._fields.insert(i, HeaderField(canonical_name(name), value))
                return
        self._fields.insert(0, HeaderField(canonical_name(name), value))

    def set(self, name: str, value: str) -> None:
        """Replace every field of this name by one field, kept at the first one's position."""
        key = canonical_key(name)
        for i, f in enumerate(self._fields):
            if f.key == key:
                self._fields[i] = HeaderField(f.name, value)
                self._fields[i + 1:] = [g for g in self._fields[i + 1:] if g.key != key]
                return
        self.add(name, value)

    def remove(self, name: str) -> None:
        key = canonical_key(name)
        self._fields = [f for f in self._fields if f.key != key]

    def pop_first_value(self, name: str) -> str | None:
        """Remove and return the first list element of a list header (topmost Via / Route)."""
        key = canonical_key(name)
        i = 0
        while i < len(self._fields):
            f = self._fields[i]
            if f.key != key:
                i += 1
                continue
            parts = split_list(f.value)
            if not parts:
                del self._fields[i]
                continue
            if len(parts) == 1:
                del self._fields[i]
            else:
                self._fields[i] = HeaderField(f.name, ", ".join(parts[1:]))
            return parts[0]
        return None


# -- lexical pieces (RFC 3261 §25.1) ---------------------------------------------------------------
# token = 1*(alphanum / "-" / "." / "!" / "%" / "*" / "_" / "+" / "`" / "'" / "~" )
_TOKEN = r"[A-Za-z0-9\-.!%*_+`'~]+"
_TOKEN_RE = re.compile(_TOKEN)
# quoted-string = SWS DQUOTE *(qdtext / quoted-pair ) DQUOTE ; quoted-pair = "\" (%x00-09 / %x0B-0C / %x0E-7F)
# (any character is accepted after the backslash: tolerant, and it can never end the string)
_QUOTED = r'"(?:[^"\\]|\\.)*"'
_QUOTED_RE = re.compile(_QUOTED, re.S)

# One list element is made of quoted strings, <...> sections and plain runs; a comma outside the
# first two separates elements (RFC 3261 §7.3.1). Unterminated quotes/brackets run to the end.
_LIST_PIECE = re.compile(r'"(?:[^"\\]|\\.)*(?:"|\\?\Z)|<[^>]*(?:>|\Z)|[^",<]+|,', re.S)


def split_list(value: str) -> list[str]:
    """Split a comma list, not breaking inside quoted strings or <...> (RFC 3261 §7.3.1)."""
    out: list[str] = []
    buf: list[str] = []
    for m in _LIST_PIECE.finditer(value):
        piece = m.group()
        if piece == ",":
            out.append("".join(buf).strip(" \t"))
            buf = []
        else:
            buf.append(piece)
    last = "".join(buf).strip(" \t")
    if last or out:
        out.append(last)
    return out


def quote(text: str) -> str:
    """``text`` as a quoted-string, escaping ``"`` and ``\\`` (RFC 3261 §25.1 quoted-pair)."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def unquote(text: str) -> str:
    """Content of a quoted-string with quoted-pairs resolved; other text is returned unchanged."""
    if len(text) >= 2 and text[0] == '"' and text[-1] == '"':
        return re.sub(r"\\(.)", r"\1", text[1:-1], flags=re.S)
    return text


# generic-param = token [ EQUAL gen-value ] ;  gen-value = token / host / quoted-string
# SEMI = SWS ";" SWS ;  EQUAL = SWS "=" SWS
# An unquoted value is any run without white space, controls, DQUOTE, ";", ",", "<", ">": that
# covers token / host / IPv6 (RFC 5118 received=) and tolerates odd characters that are harmless.
_PARAM_RE = re.compile(
    rf'[ \t]*;[ \t]*({_TOKEN})(?:[ \t]*=[ \t]*({_QUOTED}|[^\x00-\x20\x7f";,<>]+))?[ \t]*', re.S
)


def parse_params(text: str) -> list[tuple[str, str | None]]:
    """``;a=b;c;d="x;y"`` -> [(a,b),(c,None),(d,'"x;y"')] (quoted values kept quoted)."""
    params: list[tuple[str, str | None]] = []
    pos = 0
    n = len(text)
    while pos < n:
        m = _PARAM_RE.match(text, pos)
        if m is None:
            if not text[pos:].strip(" \t"):
                break
            raise HeaderError(f"bad parameter at {text[pos:pos + 40]!r}")
        params.append((m.group(1), m.group(2)))
        pos = m.end()
    return params


def format_params(params: Iterable[tuple[str, str | None]]) -> str:
    return "".join(f";{k}" if v is None else f";{k}={v}" for k, v in params)


def _param(params: list[tuple[str, str | None]], name: str) -> str | None:
    low = name.lower()
    for k, v in params:
        if k.lower() == low:
            return "" if v is None else v
    return None


def _set_param(params: list[tuple[str, str | None]], name: str, value: str | None) -> None:
    low = name.lower()
    for i, (k, _) in enumerate(params):
        if k.lower() == low:
            params[i] = (k, value)
            return
    params.append((name, value))


@dataclass(slots=True)
class Via:
    """One via-parm (RFC 3261 §20.42): ``SIP/2.0/UDP host:port;branch=...``."""

    transport: str
    host: str
    port: int | None = None
    params: list[tuple[str, str | None]] = field(default_factory=list)
    protocol: str = "SIP/2.0"

    def param(self, name: str) -> str | None:
        return _param(self.params, name)

    @property
    def branch(self) -> str | None:
        return self.param("branch")

    def set_param(self, name: str, value: str | None) -> None:
        _set_param(self.params, name, value)

    def sent_by(self) -> tuple[str, int | None]:
        return self.host, self.port

    def __str__(self) -> str:
        hp = self.host if self.port is None else f"{self.host}:{self.port}"
        return f"{self.protocol}/{self.transport} {hp}{format_params(self.params)}"


# via-parm      = sent-protocol LWS sent-by *( SEMI via-params )
# sent-protocol = protocol-name SLASH protocol-version SLASH transport      (SLASH = SWS "/" SWS)
# sent-by       = host [ COLON port ]                                       (COLON = SWS ":" SWS)
_VIA_RE = re.compile(
    rf"[ \t]*({_TOKEN})[ \t]*/[ \t]*({_TOKEN})[ \t]*/[ \t]*({_TOKEN})[ \t]+"
    r"(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9\-._]+)(?:[ \t]*:[ \t]*([0-9]{1,5}))?"
)


def parse_via(value: str) -> Via:
    """Parse one via-parm (a single element of a Via header's list)."""
    m = _VIA_RE.match(value)
    if not m:
        raise HeaderError(f"malformed Via {value[:80]!r}")
    name, version, transport, host, port = m.groups()
    p = int(port) if port else None
    if p is not None and p > 65535:
        raise HeaderError(f"Via port out of range in {value[:80]!r}")
    params = parse_params(value[m.end():])
    return Via(transport=transport.upper(), host=host, port=p, params=params, protocol=f"{name}/{version}")


@dataclass(slots=True)
class Address:
    """name-addr / addr-spec with header parameters (From, To, Contact, Route ...).

    ``display_name`` is kept as written (with its quotes when quoted); ``display`` decodes it."""

    uri: SipUri | AbsoluteUri
    display_name: str | None = None
    params: list[tuple[str, str | None]] = field(default_factory=list)
    wildcard: bool = False

    def param(self, name: str) -> str | None:
        return _param(self.params, name)

    @property
    def tag(self) -> str | None:
        return self.param("tag")

    @property
    def display(self) -> str | None:
        """Display name as text: quotes removed and quoted-pairs resolved."""
        return None if self.display_name is None else unquote(self.display_name)

    def set_param(self, name: str, value: str | None) -> None:
        _set_param(self.params, name, value)

    def __str__(self) -> str:
        if self.wildcard:
            return "*"
        dn = ""
        if self.display_name:
            dn = self.display_name if self.display_name.startswith('"') else quote(self.display_name)
            dn += " "
        return f"{dn}<{self.uri}>{format_params(self.params)}"


# display-name = *(token LWS) / quoted-string. Unquoted words may also carry non-ASCII text
# (tolerated: UAs put UTF-8 names there), never "," ";" "<" or a quote.
_DN_WORD = r"[A-Za-z0-9\-.!%*_+`'~\x80-\U0010ffff]+"
_DISPLAY_RE = re.compile(rf"{_DN_WORD}(?:[ \t]+{_DN_WORD})*")


def parse_address(value: str) -> Address:
    """Parse From/To/Contact/Route values (RFC 3261 §20.10, §25.1 name-addr / addr-spec)."""
    text = value.strip(" \t")
    if text == "*":
        return Address(uri=AbsoluteUri("*", ""), wildcard=True)
    if not text:
        raise HeaderError("empty address")
    if text[0] == '"':
        m = _QUOTED_RE.match(text)
        if not m:
            raise HeaderError(f"unterminated quoted string in {value[:80]!r}")
        rest = text[m.end():].lstrip(" \t")
        if not rest.startswith("<"):
            raise HeaderError(f"expected '<' after display name in {value[:80]!r}")
        return _name_addr(m.group(), rest, value)
    lt = text.find("<")
    if lt >= 0:
        dn = text[:lt].strip(" \t")
        if dn and not _DISPLAY_RE.fullmatch(dn):
            raise HeaderError(f"display name must be quoted: {dn[:80]!r}")
        return _name_addr(dn or None, text[lt:], value)
    # addr-spec: parameters after the URI belong to the header, and a URI with ',', '?' or ';'
    # must be enclosed in <> (RFC 3261 §20.10)
    semi = text.find(";")
    uri_text = (text if semi < 0 else text[:semi]).rstrip(" \t")
    if "?" in uri_text or "," in uri_text:
        raise HeaderError(f"addr-spec with '?' or ',' must be enclosed in <>: {value[:80]!r}")
    return Address(uri=_uri(uri_text), params=parse_params(text[semi:]) if semi >= 0 else [])


def _name_addr(display: str | None, text: str, value: str) -> Address:
    # name-addr = [ display-name ] LAQUOT addr-spec RAQUOT
    gt = text.find(">")
    if gt < 0:
        raise HeaderError(f"missing '>' in {value[:80]!r}")
    uri_text = text[1:gt]
    if uri_text != uri_text.strip(" \t"):
        raise HeaderError(f"white space inside <> in {value[:80]!r}")
    return Address(uri=_uri(uri_text), display_name=display, params=parse_params(text[gt + 1:]))


def _uri(text: str) -> SipUri | AbsoluteUri:
    try:
        return parse_uri(text)
    except UriError as exc:
        raise HeaderError(str(exc)) from None


# CSeq = "CSeq" HCOLON 1*DIGIT LWS Method
_CSEQ_RE = re.compile(rf"[ \t]*([0-9]+)[ \t]+({_TOKEN})[ \t]*")


def parse_cseq(value: str) -> tuple[int, str]:
    """``CSeq: 4711 INVITE`` -> (4711, 'INVITE'); the number must fit 32 bits (RFC 3261 §8.1.1.5)."""
    m = _CSEQ_RE.fullmatch(value)
    if not m:
        raise HeaderError(f"malformed CSeq {value[:80]!r}")
    seq = parse_uint(m.group(1), 0xFFFFFFFF)
    if seq is None:
        raise HeaderError(f"CSeq number out of range in {value[:80]!r}")
    return seq, m.group(2)


def parse_uint(digits: str, maximum: int) -> int | None:
    """Decimal ``digits`` (leading zeros allowed, as 1*DIGIT does) as an int, None above ``maximum``.

    Never calls int() on more than 20 digits, so a hostile 60 000-digit value costs nothing."""
    stripped = digits.lstrip("0") or "0"
    if len(stripped) > 20 or not stripped.isascii() or not stripped.isdigit():
        return None
    n = int(stripped)
    return n if n <= maximum else None
