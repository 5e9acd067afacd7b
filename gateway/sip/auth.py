"""HTTP Digest authentication for SIP (RFC 3261 §22, RFC 2617, RFC 7616).

Client side: ``parse_challenges`` reads WWW-Authenticate / Proxy-Authenticate values (several
challenges per value and several values are allowed, RFC 7235 §4.1) and returns the Digest ones we
can answer, best first (SHA-256 before MD5, RFC 7616 §3.7); ``authorize`` computes the
Authorization / Proxy-Authorization value (qop=auth or auth-int, or the RFC 2069 form without qop;
MD5, MD5-sess, SHA-256, SHA-256-sess, SHA-512-256 where hashlib has it). ``DigestSession`` keeps
the nonce count per nonce. Server side (for tests and a future registrar): ``build_challenge``
and ``verify``.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from .headers import quote

__all__ = [
    "Challenge",
    "DigestCredentials",
    "DigestSession",
    "authorize",
    "build_challenge",
    "parse_auth_params",
    "parse_challenges",
    "verify",
]


def _hasher(name: str) -> Callable[[bytes], str] | None:
    try:
        hashlib.new(name)
    except ValueError:
        return None
    return lambda data: hashlib.new(name, data).hexdigest()


#: algorithm name (upper case, without -sess) -> hex digest function
_HASHES: dict[str, Callable[[bytes], str]] = {
    name: fn
    for name, fn in (("MD5", _hasher("md5")), ("SHA-256", _hasher("sha256")), ("SHA-512-256", _hasher("sha512_256")))
    if fn is not None
}
#: preference when a server offers several challenges (RFC 7616 §3.7: the strongest first)
_RANK = {"SHA-512-256": 0, "SHA-512-256-SESS": 1, "SHA-256": 2, "SHA-256-SESS": 3, "MD5": 4, "MD5-SESS": 5}


@dataclass(frozen=True, slots=True)
class DigestCredentials:
    username: str
    password: str


@dataclass(frozen=True, slots=True)
class Challenge:
    """One challenge; ``params`` has lower-case names and unquoted values."""

    scheme: str
    params: dict[str, str] = field(default_factory=dict)

    @property
    def realm(self) -> str:
        return self.params.get("realm", "")

    @property
    def nonce(self) -> str:
        return self.params.get("nonce", "")

    @property
    def opaque(self) -> str | None:
        return self.params.get("opaque")

    @property
    def algorithm(self) -> str:
        """Upper case; MD5 when absent (RFC 2617 §3.2.1)."""
        return self.params.get("algorithm", "MD5").upper()

    @property
    def qop_options(self) -> list[str]:
        """qop-options = "qop" EQUAL LDQUOT qop-value *("," qop-value) RDQUOT."""
        return [q.strip().lower() for q in self.params.get("qop", "").split(",") if q.strip()]

    @property
    def stale(self) -> bool:
        return self.params.get("stale", "").lower() == "true"

    @property
    def supported(self) -> bool:
        """A Digest challenge with an algorithm we have and a qop we can do (or none)."""
        if self.scheme.lower() != "digest" or "nonce" not in self.params:
            return False
        base = self.algorithm.removesuffix("-SESS")
        return base in _HASHES and (not self.qop_options or bool({"auth", "auth-int"} & set(self.qop_options)))


# -- auth-param lists (RFC 7235 §2.1, RFC 3261 §25.1) -----------------------------------------------
# challenge    = auth-scheme [ 1*SP ( token68 / #auth-param ) ]
# auth-param   = token BWS "=" BWS ( token / quoted-string )
_TOKEN = r"[A-Za-z0-9!#$%&'*+\-.^_`|~]+"
_ITEM = re.compile(
    rf'[ \t,]*(?:(?P<name>{_TOKEN})[ \t]*=[ \t]*(?P<value>"(?:[^"\\]|\\.)*"|[^ \t,"]*)'
    rf'|(?P<word>{_TOKEN}=*))',
    re.S,
)


def _unq(value: str) -> str:
    if len(value) >= 2 and value[0] == '"' and value[-1] == '"':
        return re.sub(r"\\(.)", r"\1", value[1:-1], flags=re.S)
    return value


def parse_auth_params(text: str) -> list[tuple[str | None, str]]:
    """Tokenise a challenge/credentials list into (name, value) params and (None, word) words.

    Stops quietly at anything it cannot read (the rest is ignored, never raised)."""
    out: list[tuple[str | None, str]] = []
    pos = 0
    while pos < len(text):
        m = _ITEM.match(text, pos)
        if m is None or m.end() == pos:
            break
        if m.group("name") is not None:
            out.append((m.group("name").lower(), _unq(m.group("value"))))
        else:
            out.append((None, m.group("word")))
        pos = m.end()
    return out


def _all_challenges(values: Iterable[str]) -> list[Challenge]:
    challenges: list[Challenge] = []
    for value in values:
        scheme: str | None = None
        params: dict[str, str] = {}
        for name, item in parse_auth_params(value):
            if name is None:
                if scheme is not None and not params and "=" in item:
                    params["token68"] = item  # e.g. "Negotiate abc=="
                    continue
                if scheme is not None:
                    challenges.append(Challenge(scheme, params))
                scheme, params = item, {}
            elif scheme is not None:
                params.setdefault(name, item)
        if scheme is not None:
            challenges.append(Challenge(scheme, params))
    return challenges


def parse_challenges(values: Iterable[str], *, supported_only: bool = True) -> list[Challenge]:
    """Challenges of WWW-Authenticate / Proxy-Authenticate header values, best first.

    With ``supported_only`` (the default) only Digest challenges we can answer are kept. Never
    raises: unreadable values just give no challenge.
    """
    found = _all_challenges(values)
    if not supported_only:
        return found
    usable = [c for c in found if c.supported]
    return sorted(usable, key=lambda c: _RANK.get(c.algorithm, 9))  # stable: server order breaks ties


# ------------------------------------------------------------------------------------ computing
def _h(algorithm: str) -> Callable[[bytes], str]:
    fn = _HASHES.get(algorithm.upper().removesuffix("-SESS"))
    if fn is None:
        raise ValueError(f"unsupported digest algorithm {algorithm!r}")
    return fn


def _b(text: str) -> bytes:
    return text.encode("utf-8", errors="surrogateescape")


def digest_response(*, algorithm: str, username: str, realm: str, password: str, method: str, uri: str,
                    nonce: str, qop: str | None = None, nc: str = "00000001", cnonce: str = "",
                    body: bytes = b"") -> str:
    """request-digest of RFC 2617 §3.2.2.1 / RFC 7616 §3.4.1."""
    h = _h(algorithm)
    ha1 = h(_b(f"{username}:{realm}:{password}"))
    if algorithm.upper().endswith("-SESS"):
        ha1 = h(_b(f"{ha1}:{nonce}:{cnonce}"))
    a2 = f"{method}:{uri}" if qop != "auth-int" else f"{method}:{uri}:{h(body)}"
    ha2 = h(_b(a2))
    if qop:
        return h(_b(f"{ha1}:{nonce}:{nc}:{cnonce}:{qop}:{ha2}"))
    return h(_b(f"{ha1}:{nonce}:{ha2}"))  # RFC 2069 compatibility (no qop)


def authorize(challenge: Challenge, credentials: DigestCredentials, method: str, uri: str, body: bytes = b"",
              nc: int = 1, cnonce: str | None = None) -> str:
    """The Authorization / Proxy-Authorization value answering ``challenge`` (RFC 3261 §22.4).

    ``uri`` is the Request-URI as sent; ``nc`` counts the requests made with this nonce (start at 1).
    Raises ``ValueError`` for a challenge that ``Challenge.supported`` says we cannot answer.
    """
    if not challenge.supported:
        raise ValueError(f"cannot answer {challenge.scheme} challenge with algorithm {challenge.algorithm}")
    options = challenge.qop_options
    qop = "auth" if "auth" in options else ("auth-int" if "auth-int" in options else None)
    if cnonce is None:
        cnonce = secrets.token_hex(8)
    nc_text = f"{nc:08x}"
    response = digest_response(
        algorithm=challenge.algorithm, username=credentials.username, realm=challenge.realm,
        password=credentials.password, method=method, uri=uri, nonce=challenge.nonce, qop=qop,
        nc=nc_text, cnonce=cnonce if (qop or challenge.algorithm.endswith("-SESS")) else "", body=body,
    )
    parts = [
        f"username={quote(credentials.username)}",
        f"realm={quote(challenge.realm)}",
        f"nonce={quote(challenge.nonce)}",
        f"uri={quote(uri)}",
        f"response={quote(response)}",
    ]
    if "algorithm" in challenge.params:
        parts.append(f"algorithm={challenge.params['algorithm']}")  # echoed as the server spelt it
    if qop or challenge.algorithm.endswith("-SESS"):
        parts.append(f"cnonce={quote(cnonce)}")
    if challenge.opaque is not None:
        parts.append(f"opaque={quote(challenge.opaque)}")
    if qop:
        parts += [f"qop={qop}", f"nc={nc_text}"]
    return "Digest " + ", ".join(parts)


class DigestSession:
    """Answers challenges for one set of credentials, counting requests per nonce (RFC 7616 §3.4)."""

    def __init__(self, credentials: DigestCredentials) -> None:
        self.credentials = credentials
        self._counts: dict[tuple[str, str], int] = {}

    def authorize(self, challenge: Challenge, method: str, uri: str, body: bytes = b"",
                  cnonce: str | None = None) -> str:
        key = (challenge.realm, challenge.nonce)
        nc = self._counts.get(key, 0) + 1
        self._counts[key] = nc
        return authorize(challenge, self.credentials, method, uri, body=body, nc=nc, cnonce=cnonce)

    def forget(self, nonce: str) -> None:
        """Drop the counters of a nonce the server declared stale."""
        self._counts = {k: v for k, v in self._counts.items() if k[1] != nonce}


# ---------------------------------------------------------------------------------- server side
def build_challenge(realm: str, nonce: str, *, algorithm: str = "MD5", qop: str | None = "auth",
                    opaque: str | None = None, stale: bool = False) -> str:
    """A WWW-Authenticate / Proxy-Authenticate value (RFC 7616 §3.3)."""
    parts = [f"realm={quote(realm)}", f"nonce={quote(nonce)}", f"algorithm={algorithm}"]
    if qop:
        parts.append(f"qop={quote(qop)}")
    if opaque is not None:
        parts.append(f"opaque={quote(opaque)}")
    if stale:
        parts.append("stale=true")
    return "Digest " + ", ".join(parts)


def verify(authorization: str, password: str, method: str, *, body: bytes = b"", realm: str | None = None,
           nonce: str | None = None, username: str | None = None) -> bool:
    """Does an Authorization value carry the right response for ``password`` and ``method``?

    ``realm`` / ``nonce`` / ``username``, when given, must match too. Never raises.
    """
    items = parse_auth_params(authorization)
    if not items or items[0][0] is not None or items[0][1].lower() != "digest":
        return False
    p = {k: v for k, v in items[1:] if k is not None}
    for key, want in (("realm", realm), ("nonce", nonce), ("username", username)):
        if want is not None and p.get(key) != want:
            return False
    if not all(k in p for k in ("username", "realm", "nonce", "uri", "response")):
        return False
    algorithm = p.get("algorithm", "MD5")
    qop = p.get("qop") or None
    if qop not in (None, "auth", "auth-int"):
        return False
    try:
        expected = digest_response(
            algorithm=algorithm, username=p["username"], realm=p["realm"], password=password, method=method,
            uri=p["uri"], nonce=p["nonce"], qop=qop, nc=p.get("nc", ""), cnonce=p.get("cnonce", ""), body=body,
        )
    except ValueError:
        return False
    return hmac.compare_digest(expected, p["response"].lower())
