"""SIP and other URIs (RFC 3261 §19.1, §25.1).

``SipUri`` keeps the user part and parameters as they appeared (escapes intact) so a URI
serialises back to the same text; ``unescape`` gives the decoded value when it is needed for
comparison (RFC 3261 §19.1.4).
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
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.\-]*):")
# hostport = host [ ":" port ];  host = hostname / IPv4address / IPv6reference
_HOSTPORT = re.compile(r"^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9\-.]+)(?::([0-9]{1,5}))?$")


@dataclass(slots=True)
class SipUri:
    """sip: / sips: URI. ``params`` is an ordered list of (name, value-or-None)."""

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
        params = [(k, v) for k, v in self.params if k.lower() not in {c.lower() for c in changes}]
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

    Raises ``UriError`` for text that is not a URI at all or a sip/sips URI with a bad hostport.
    """
    text = text.strip()
    m = _SCHEME.match(text)
    if not m:
        raise UriError(f"no URI scheme in {text!r}")
    scheme = m.group(1)
    rest = text[m.end():]
    if any(c in rest for c in " \t\r\n<>\""):
        raise UriError(f"illegal character in URI {text!r}")
    if scheme.lower() not in ("sip", "sips"):
        return AbsoluteUri(scheme, rest)
    headers = ""
    if "?" in rest:
        rest, headers = rest.split("?", 1)
    user: str | None = None
    password: str | None = None
    # userinfo ends at the last '@' before the first ';' of the hostport's params... but ';' is legal
    # in the user part (RFC 4475 3.1.1.9), so split on the last '@'.
    if "@" in rest:
        userinfo, rest = rest.rsplit("@", 1)
        if ":" in userinfo:
            user, password = userinfo.split(":", 1)
        else:
            user = userinfo
    parts = rest.split(";")
    hostport = parts[0]
    hm = _HOSTPORT.match(hostport)
    if not hm:
        raise UriError(f"bad host/port {hostport!r} in URI {text!r}")
    host = hm.group(1)
    port = int(hm.group(2)) if hm.group(2) else None
    if port is not None and port > 65535:
        raise UriError(f"port out of range in URI {text!r}")
    params: list[tuple[str, str | None]] = []
    for p in parts[1:]:
        if p == "":
            raise UriError(f"empty URI parameter in {text!r}")
        if "=" in p:
            k, v = p.split("=", 1)
            params.append((k, v))
        else:
            params.append((p, None))
    return SipUri(host=host, user=user, password=password, port=port, scheme=scheme, params=params, headers=headers)
