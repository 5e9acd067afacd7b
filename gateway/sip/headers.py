"""Header fields and the structured values SIP needs (RFC 3261 §7.3, §20, §25.1).

A ``Headers`` object keeps every field as it came off the wire — the raw name (compact ``v`` or
``VIA`` stays so) and the raw value — so unknown headers and odd spellings serialise verbatim;
lookups go through the canonical lower-case key, compact forms expanded (RFC 3261 §7.3.3).
"""

from __future__ import annotations

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
    "format_params",
    "parse_address",
    "parse_cseq",
    "parse_params",
    "parse_via",
    "split_list",
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


def canonical_key(name: str) -> str:
    """Lookup key of a header name: lower case, compact form expanded."""
    low = name.strip().lower()
    if len(low) == 1 and low in COMPACT_FORMS:
        return COMPACT_FORMS[low].lower()
    return low


def canonical_name(name: str) -> str:
    key = canonical_key(name)
    return _CANONICAL.get(key, name)


@dataclass(slots=True)
class HeaderField:
    """One header line: ``name`` as written, ``value`` with folding already collapsed."""

    name: str
    value: str

    @property
    def key(self) -> str:
        return canonical_key(self.name)


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

    def __repr__(self) -> str:
        return f"Headers({[(f.name, f.value) for f in self._fields]!r})"

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
        for i, f in enumerate(self._fields):
            if f.key == key:
                parts = split_list(f.value)
                if not parts:
                    del self._fields[i]
                    continue
                first = parts[0]
                if len(parts) == 1:
                    del self._fields[i]
                else:
                    self._fields[i] = HeaderField(f.name, ", ".join(parts[1:]))
                return first
        return None


def split_list(value: str) -> list[str]:
    """Split a comma list, not breaking inside quoted strings or <...> (RFC 3261 §7.3.1)."""
    out: list[str] = []
    buf: list[str] = []
    in_quote = False
    in_angle = False
    i = 0
    n = len(value)
    while i < n:
        c = value[i]
        if in_quote:
            buf.append(c)
            if c == "\\" and i + 1 < n:
                buf.append(value[i + 1])
                i += 1
            elif c == '"':
                in_quote = False
        elif c == '"':
            in_quote = True
            buf.append(c)
        elif c == "<":
            in_angle = True
            buf.append(c)
        elif c == ">":
            in_angle = False
            buf.append(c)
        elif c == "," and not in_angle:
            out.append("".join(buf).strip())
            buf = []
        else:
            buf.append(c)
        i += 1
    last = "".join(buf).strip()
    if last or out:
        out.append(last)
    return out


_TOKEN = r"[A-Za-z0-9\-.!%*_+`'~]+"
_TOKEN_RE = re.compile(rf"^{_TOKEN}$")


def parse_params(text: str) -> list[tuple[str, str | None]]:
    """``;a=b;c;d="x;y"`` -> [(a,b),(c,None),(d,'"x;y"')] (quoted values kept quoted)."""
    params: list[tuple[str, str | None]] = []
    i = 0
    n = len(text)
    while i < n:
        while i < n and text[i] in " \t":
            i += 1
        if i >= n:
            break
        if text[i] != ";":
            raise HeaderError(f"expected ';' in parameters {text!r}")
        i += 1
        j = i
        in_quote = False
        while j < n:
            c = text[j]
            if in_quote:
                if c == "\\":
                    j += 1
                elif c == '"':
                    in_quote = False
            elif c == '"':
                in_quote = True
            elif c == ";":
                break
            j += 1
        if in_quote:
            raise HeaderError(f"unterminated quoted string in parameters {text!r}")
        item = text[i:j].strip()
        if not item:
            raise HeaderError(f"empty parameter in {text!r}")
        if "=" in item:
            k, v = item.split("=", 1)
            k, v = k.strip(), v.strip()
            if not _TOKEN_RE.match(k) or v == "":
                raise HeaderError(f"bad parameter {item!r}")
            params.append((k, v))
        else:
            if not _TOKEN_RE.match(item):
                raise HeaderError(f"bad parameter {item!r}")
            params.append((item, None))
        i = j
    return params


def format_params(params: Iterable[tuple[str, str | None]]) -> str:
    return "".join(f";{k}" if v is None else f";{k}={v}" for k, v in params)


def _param(params: list[tuple[str, str | None]], name: str) -> str | None:
    low = name.lower()
    for k, v in params:
        if k.lower() == low:
            return "" if v is None else v
    return None


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
        low = name.lower()
        for i, (k, _) in enumerate(self.params):
            if k.lower() == low:
                self.params[i] = (k, value)
                return
        self.params.append((name, value))

    def sent_by(self) -> tuple[str, int | None]:
        return self.host, self.port

    def __str__(self) -> str:
        hp = self.host if self.port is None else f"{self.host}:{self.port}"
        return f"{self.protocol}/{self.transport} {hp}{format_params(self.params)}"


_VIA_RE = re.compile(
    r"^\s*([A-Za-z0-9\-.!%*_+`'~]+)\s*/\s*([A-Za-z0-9\-.!%*_+`'~]+)\s*/\s*([A-Za-z0-9\-.!%*_+`'~]+)"
    r"\s+(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9\-.]+)(?:\s*:\s*([0-9]{1,5}))?\s*(.*)$",
    re.S,
)


def parse_via(value: str) -> Via:
    m = _VIA_RE.match(value)
    if not m:
        raise HeaderError(f"malformed Via {value!r}")
    name, version, transport, host, port, rest = m.groups()
    p = int(port) if port else None
    if p is not None and p > 65535:
        raise HeaderError(f"Via port out of range in {value!r}")
    params = parse_params(rest.strip()) if rest.strip() else []
    return Via(transport=transport.upper(), host=host, port=p, params=params, protocol=f"{name}/{version}")


@dataclass(slots=True)
class Address:
    """name-addr / addr-spec with header parameters (From, To, Contact, Route ...)."""

    uri: SipUri | AbsoluteUri
    display_name: str | None = None
    params: list[tuple[str, str | None]] = field(default_factory=list)
    wildcard: bool = False

    def param(self, name: str) -> str | None:
        return _param(self.params, name)

    @property
    def tag(self) -> str | None:
        return self.param("tag")

    def set_param(self, name: str, value: str | None) -> None:
        low = name.lower()
        for i, (k, _) in enumerate(self.params):
            if k.lower() == low:
                self.params[i] = (k, value)
                return
        self.params.append((name, value))

    def __str__(self) -> str:
        if self.wildcard:
            return "*"
        dn = ""
        if self.display_name:
            dn = self.display_name if self.display_name.startswith('"') else f'"{self.display_name}"'
            dn += " "
        return f"{dn}<{self.uri}>{format_params(self.params)}"


def _scan_quoted(text: str, i: int) -> int:
    """Index just past the closing quote of a quoted string starting at ``text[i] == '"'``."""
    j = i + 1
    n = len(text)
    while j < n:
        c = text[j]
        if c == "\\":
            j += 2
            continue
        if c == '"':
            return j + 1
        j += 1
    raise HeaderError(f"unterminated quoted string in {text!r}")


def parse_address(value: str) -> Address:
    """Parse From/To/Contact/Route values (RFC 3261 §20.10, §25.1 name-addr / addr-spec)."""
    text = value.strip()
    if text == "*":
        return Address(uri=AbsoluteUri("*", ""), wildcard=True)
    display: str | None = None
    i = 0
    if text.startswith('"'):
        j = _scan_quoted(text, 0)
        display = text[:j]
        i = j
        while i < len(text) and text[i] in " \t":
            i += 1
        if i >= len(text) or text[i] != "<":
            raise HeaderError(f"expected '<' after display name in {value!r}")
    lt = text.find("<", i)
    if lt >= 0:
        if display is None:
            dn = text[:lt].strip()
            display = dn or None
            if display and not re.fullmatch(rf"{_TOKEN}(?:[ \t]+{_TOKEN})*", display):
                raise HeaderError(f"display name must be quoted: {display!r}")
        gt = text.find(">", lt)
        if gt < 0:
            raise HeaderError(f"missing '>' in {value!r}")
        uri_text = text[lt + 1:gt]
        if uri_text != uri_text.strip():
            raise HeaderError(f"whitespace inside <> in {value!r}")
        rest = text[gt + 1:]
    else:
        # addr-spec: parameters after the URI belong to the header (RFC 3261 §20.10)
        semi = text.find(";")
        uri_text = text if semi < 0 else text[:semi]
        rest = "" if semi < 0 else text[semi:]
        uri_text = uri_text.strip()
        if "?" in uri_text or "," in uri_text:
            raise HeaderError(f"addr-spec with '?' or ',' must be enclosed in <>: {value!r}")
    try:
        uri = parse_uri(uri_text)
    except UriError as exc:
        raise HeaderError(str(exc)) from None
    params = parse_params(rest.strip()) if rest.strip() else []
    return Address(uri=uri, display_name=display, params=params)


_CSEQ_RE = re.compile(r"^\s*([0-9]{1,10})\s+([A-Za-z0-9\-.!%*_+`'~]+)\s*$")


def parse_cseq(value: str) -> tuple[int, str]:
    """``CSeq: 4711 INVITE`` -> (4711, 'INVITE'); the number must fit 32 bits (RFC 3261 §8.1.1.5)."""
    m = _CSEQ_RE.match(value)
    if not m:
        raise HeaderError(f"malformed CSeq {value!r}")
    seq = int(m.group(1))
    if seq > 0xFFFFFFFF:
        raise HeaderError(f"CSeq number out of range in {value!r}")
    return seq, m.group(2)
