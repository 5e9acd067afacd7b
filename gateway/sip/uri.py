"""SIP and other URIs (RFC 3261 §19.1, §25.1).

``SipUri`` keeps every component as it appeared (escapes intact, parameter order and case) so a URI
serialises back to the same text; ``unescape`` gives the decoded value when it is needed for
comparison (RFC 3261 §19.1.4). The reader is tolerant: it rejects what would break the message
structure (white space, controls, ``< > "``) or make the URI ambiguous, not every character the
ABNF happens to leave out.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from urllib.parse import unquote_to_bytes

__all__ = ["AbsoluteUri", "SipUri", "UriError", "parse_uri", "unescape"]


class UriError(ValueError):
    """The text is not a URI we can read."""


def unescape(text: str) -> str:
    """Decode %HH escapes (RFC 3261 §25.1 escaped); invalid escapes are kept literally."""
    if "%" not in text:
        return text
    return unquote_to_bytes(text).decode("utf-8", errors="surrogateescape")


# scheme = ALPHA *( ALPHA / DIGIT / "+" / "-" / "." )     (RFC 3261 §25.1)
_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*:")
# No URI component may hold white space, controls, DQUOTE, "<" or ">" (RFC 3261 §25.1; they delimit
# URIs inside header fields), so these are refused wherever they appear.
_ILLEGAL = re.compile(r'[\x00-\x20\x7f<>"]')
# hostport     = host [ ":" port ]
# host         = hostname / IPv4address / IPv6reference
# hostname     = *( domainlabel "." ) toplabel [ "." ]     (alphanum and "-"; "_" tolerated)
# IPv6reference = "[" IPv6address "]"
# port         = 1*DIGIT
_HOSTPORT = re.compile(r"(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9\-._]+)(?::([0-9]{1,5}))?")
# pname = 1*paramchar ; paramchar = param-unreserved / unreserved / escaped  ("=" and ";" excluded)
_PNAME = re.compile(r"[^=;?@]+")


@dataclass(slots=True)
class SipUri:
    """sip: / sips: URI. ``params`` is an ordered list of (name, value-or-None); ``headers`` the raw
    text after ``?`` (RFC 3261 §19.1.1)."""

    host: str
    user: str | None = None
    password: str | None = None
    port: int | None = None
    scheme: str = "sip"
    params: list[tuple[str, str | None]] = field(default_factory=list)
    headers: str = ""

    @classmethod
    def parse(cls, text: str) -> SipUri:
        uri = parse_uri(text)
        if not isinstance(uri, SipUri):
            raise UriError(f"not a SIP URI: {text!r}")
        return uri

    def param(self, name: str) -> str | None:
        """Value of a URI parameter (case-insensitive name); ``""`` for a flag, None if absent."""
        low = name.lower()
        for k, v in self.params:
            if k.lower() == low:
                return "" if v is None else v
        return None

    def has_param(self, name: str) -> bool:
        low = name.lower()
        return any(k.lower() == low for k, _ in self.params)

    def with_params(self, **changes: str | None) -> SipUri:
        """Copy with parameters set (value None = flag) — used for transport=, lr."""
        low = {c.lower() for c in changes}
        params = [(k, v) for k, v in self.params if k.lower() not in low]
        params.extend(changes.items())
        return replace(self, params=params)

    def without_params(self, *names: str) -> SipUri:
        low = {n.lower() for n in names}
        return replace(self, params=[(k, v) for k, v in self.params if k.lower() not in low])

    @property
    def transport(self) -> str:
        """Transport named by the URI (RFC 3261 §19.1.1), default udp for sip:, tls for sips:."""
        t = self.param("transport")
        if t:
            return t.lower()
        return "tls" if self.scheme.lower() == "sips" else "udp"

    @property
    def user_unescaped(self) -> str | None:
        return None if self.user is None else unescape(self.user)

    @property
    def header_fields(self) -> list[tuple[str, str]]:
        """The ``?h=v&...`` part decoded (RFC 3261 §19.1.1): used for Replaces in a Refer-To."""
        out: list[tuple[str, str]] = []
        for item in self.headers.split("&") if self.headers else ():
            name, _, value = item.partition("=")
            out.append((unescape(name), unescape(value)))
        return out

    def __str__(self) -> str:
        out = [self.scheme, ":"]
        if self.user is not None:
            out.append(self.user)
            if self.password is not None:
                out.append(":" + self.password)
            out.append("@")
        out.append(self.host)
        if self.port is not None:
            out.append(f":{self.port}")
        for k, v in self.params:
            out.append(f";{k}" if v is None else f";{k}={v}")
        if self.headers:
            out.append("?" + self.headers)
        return "".join(out)

    def aor(self) -> str:
        """Address-of-record form: scheme:user@host[:port], no parameters."""
        user = f"{self.user}@" if self.user is not None else ""
        port = f":{self.port}" if self.port is not None else ""
        return f"{self.scheme}:{user}{self.host}{port}"


@dataclass(slots=True, frozen=True)
class AbsoluteUri:
    """Any non-SIP URI (tel:, http:, isbn: ...) kept as opaque text (RFC 3261 §25.1 absoluteURI)."""

    scheme: str
    opaque: str

    def __str__(self) -> str:
        return f"{self.scheme}:{self.opaque}"


def parse_uri(text: str) -> SipUri | AbsoluteUri:
    """Parse a Request-URI or the URI inside a name-addr.

    Raises ``UriError`` (and nothing else) for text that is not a URI at all, or a sip/sips URI
    whose parts cannot be told apart.
    """
    text = text.strip(" \t")
    m = _SCHEME.match(text)
    if not m:
        raise UriError(f"no URI scheme in {text[:80]!r}")
    scheme = m.group()[:-1]
    rest = text[m.end():]
    bad = _ILLEGAL.search(rest)
    if bad:
        raise UriError(f"illegal character {bad.group()!r} in URI {text[:80]!r}")
    if scheme.lower() not in ("sip", "sips"):
        # absoluteURI = scheme ":" ( hier-part / opaque-part ) — never empty
        if not rest:
            raise UriError(f"empty {scheme}: URI")
        return AbsoluteUri(scheme, rest)
    return _parse_sip(scheme, rest, text)


def _parse_sip(scheme: str, rest: str, text: str) -> SipUri:
    # SIP-URI = "sip:" [ userinfo ] hostport uri-parameters [ headers ]
    # userinfo = ( user / telephone-subscriber ) [ ":" password ] "@"
    # user = 1*( unreserved / escaped / user-unreserved )
    # user-unreserved = "&" / "=" / "+" / "$" / "," / ";" / "?" / "/"
    # "@" belongs to no component but userinfo, while ";" and "?" may sit in the user part
    # (RFC 4475 §3.1.1.2, §3.1.1.9): so cut at the first "@" before looking for params/headers.
    user: str | None = None
    password: str | None = None
    at = rest.find("@")
    if at >= 0:
        userinfo, rest = rest[:at], rest[at + 1:]
        user, colon, pw = userinfo.partition(":")
        if colon:
            password = pw
        if not user:
            raise UriError(f"empty user part in URI {text[:80]!r}")
    headers = ""
    q = rest.find("?")
    if q >= 0:
        rest, headers = rest[:q], rest[q + 1:]
    parts = rest.split(";")
    hm = _HOSTPORT.fullmatch(parts[0])
    if not hm:
        raise UriError(f"bad host/port {parts[0][:80]!r} in URI {text[:80]!r}")
    host = hm.group(1)
    port = int(hm.group(2)) if hm.group(2) else None
    if port is not None and port > 65535:
        raise UriError(f"port out of range in URI {text[:80]!r}")
    params: list[tuple[str, str | None]] = []
    # uri-parameters = *( ";" uri-parameter ); other-param = pname [ "=" pvalue ]
    for p in parts[1:]:
        name, eq, value = p.partition("=")
        if not _PNAME.fullmatch(name):
            raise UriError(f"bad URI parameter {p[:40]!r} in {text[:80]!r}")
        params.append((name, value if eq else None))
    return SipUri(host=host, user=user, password=password, port=port, scheme=scheme, params=params, headers=headers)
