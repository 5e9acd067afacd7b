"""HTTP Basic credentials and servlet-style sessions (spec §1.2, §0.1.1, §0.1.12).

GWS clients either send Basic on every request (scripts, .NET) or log in once and then live on the
``JSESSIONID`` cookie (browsers); the CSRF token belongs to that session. Secrets never reach the
log: not the password, not the Authorization header, not the cookie value.
"""

from __future__ import annotations

import base64
import binascii
import secrets
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field

from starlette.requests import HTTPConnection

from gateway.telephony.directory import Directory, User

__all__ = [
    "SESSION_COOKIE",
    "Authenticator",
    "HttpSession",
    "Identity",
    "SessionStore",
    "parse_basic",
]

SESSION_COOKIE = "JSESSIONID"


@dataclass(slots=True, eq=False)
class HttpSession:
    """One HTTP session: who it belongs to and its CSRF token (a UUID, as in the spec's sample)."""

    id: str = field(repr=False)
    username: str
    csrf_token: str = field(repr=False)
    last_seen: float
    invalidated: bool = False


class SessionStore:
    """Sessions by id with idle expiry.

    Kept in least-recently-used order so expired sessions are always at the front and are dropped
    in amortised O(1). A client that sends Basic without keeping cookies gets a new session per
    request (as with a servlet container); ``max_per_user`` bounds what such a client can pile up.
    """

    def __init__(self, idle_seconds: float, clock: Callable[[], float] = time.monotonic,
                 max_per_user: int = 100) -> None:
        self._idle = float(idle_seconds)
        self._clock = clock
        self._max_per_user = max_per_user
        self._sessions: OrderedDict[str, HttpSession] = OrderedDict()
        self._by_user: dict[str, OrderedDict[str, None]] = {}

    def __len__(self) -> int:
        self._expire(self._clock())
        return len(self._sessions)

    def get(self, session_id: str) -> HttpSession | None:
        """The live session with this id (its idle timer restarts), or None."""
        now = self._clock()
        self._expire(now)
        session = self._sessions.get(session_id)
        if session is None:
            return None
        session.last_seen = now
        self._sessions.move_to_end(session_id)
        self._by_user[session.username].move_to_end(session_id)
        return session

    def create(self, username: str) -> HttpSession:
        now = self._clock()
        self._expire(now)
        session = HttpSession(id=secrets.token_hex(16).upper(), username=username,
                              csrf_token=str(uuid.uuid4()), last_seen=now)
        self._sessions[session.id] = session
        mine = self._by_user.setdefault(username, OrderedDict())
        mine[session.id] = None
        while len(mine) > self._max_per_user:
            oldest = next(iter(mine))
            self._drop(self._sessions[oldest])
        return session

    def invalidate(self, session: HttpSession) -> None:
        """End the session now (EndContactCenterSession, spec §3.1.2)."""
        session.invalidated = True
        if self._sessions.get(session.id) is session:
            self._drop(session)

    def _expire(self, now: float) -> None:
        while self._sessions:
            first = next(iter(self._sessions.values()))
            if now - first.last_seen <= self._idle:
                break
            self._drop(first)

    def _drop(self, session: HttpSession) -> None:
        session.invalidated = True
        del self._sessions[session.id]
        mine = self._by_user.get(session.username)
        if mine is not None:
            mine.pop(session.id, None)
            if not mine:
                del self._by_user[session.username]


def parse_basic(header: str) -> tuple[str, str] | None:
    """``Basic base64(user:password)`` -> (user, password); None for anything else (RFC 7617 §2)."""
    scheme, _, token = header.strip().partition(" ")
    if scheme.lower() != "basic" or not token.strip():
        return None
    try:
        raw = base64.b64decode(token.strip(), validate=True)
    except (binascii.Error, ValueError):
        return None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        text = raw.decode("latin-1")
    username, sep, password = text.partition(":")
    if not sep or not username:
        return None
    return username, password


@dataclass(frozen=True, slots=True)
class Identity:
    """Who made a request and through which session.

    ``from_cookie`` is true when the request presented a live session cookie (the CSRF check needs
    that); ``new_session`` when the session was created for this request (a cookie must be set).
    """

    user: User
    session: HttpSession | None
    from_cookie: bool
    new_session: bool


class Authenticator:
    """Checks Basic credentials against the directory and resolves session cookies."""

    def __init__(self, directory: Directory, sessions: SessionStore) -> None:
        self.directory = directory
        self.sessions = sessions

    def authenticate(self, conn: HTTPConnection) -> User | None:
        """The user behind a request, or None; creates nothing (CometD uses this).

        Accepts the session cookie alone or Basic alone (§0.1.12). Bad Basic credentials mean
        None even when a valid cookie comes with them.
        """
        identity = self.resolve(conn, create_session=False)
        return identity.user if identity else None

    def resolve(self, conn: HTTPConnection, *, create_session: bool = True) -> Identity | None:
        cookie_session = None
        session_id = conn.cookies.get(SESSION_COOKIE)
        if session_id:
            cookie_session = self.sessions.get(session_id)
        header = conn.headers.get("authorization")
        if header is not None:
            creds = parse_basic(header)
            user = self.directory.authenticate(*creds) if creds else None
            if user is None:
                return None
            if cookie_session is not None and cookie_session.username == user.username:
                return Identity(user, cookie_session, from_cookie=True, new_session=False)
            if not create_session:
                return Identity(user, None, from_cookie=False, new_session=False)
            return Identity(user, self.sessions.create(user.username), from_cookie=False, new_session=True)
        if cookie_session is None:
            return None
        user = self.directory.user(cookie_session.username)
        if user is None:  # removed from the directory since the session was made
            self.sessions.invalidate(cookie_session)
            return None
        return Identity(user, cookie_session, from_cookie=True, new_session=False)
