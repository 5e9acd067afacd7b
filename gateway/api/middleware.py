"""Pure ASGI middleware of the Voice API (after Starlette's ``trustedhost.py``: a class taking
``app`` plus options, passing foreign scopes through, answering by calling a Response).

Order, outermost first, as ``build_api`` returns it: CORS, ``AuthMiddleware``,
``CsrfMiddleware`` (when enabled), ``EventHoldMiddleware``, ``ErrorMiddleware``; Starlette adds its
ExceptionMiddleware inside and ServerErrorMiddleware outside.

Scope of each: everything under ``/api/v2`` except the CometD endpoint ``/api/v2/notifications``
(and its sub-paths, §0.1.10). The CometD server authenticates Bayeux requests itself with
``Authenticator.authenticate`` (cookie alone or Basic alone, §0.1.12) and answers failures in
Bayeux terms, and it is exempt from CSRF (§4.1, §0.1.12). Paths outside ``/api/v2`` (``/health``)
are public.
"""

from __future__ import annotations

import hmac
import logging

from starlette.datastructures import Headers, MutableHeaders
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import ClientDisconnect, HTTPConnection, Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway.telephony.events import EventBus

from .auth import SESSION_COOKIE, Authenticator, Identity
from .errors import ACCESS_DENIED, CSRF_FAILED, render_error

__all__ = [
    "API_PREFIX",
    "CSRF_HEADER",
    "IDENTITY_KEY",
    "NOTIFICATIONS_PREFIX",
    "AuthMiddleware",
    "CsrfMiddleware",
    "ErrorMiddleware",
    "EventHoldMiddleware",
    "cors_middleware",
    "is_api_path",
    "is_notifications_path",
]

log = logging.getLogger(__name__)

API_PREFIX = "/api/v2"
NOTIFICATIONS_PREFIX = "/api/v2/notifications"
#: scope key under which AuthMiddleware leaves the request's ``Identity``
IDENTITY_KEY = "gws.identity"
#: §1.2: the name of the header the client must echo the token in
CSRF_HEADER = "X-CSRF-TOKEN"
_UNSAFE_METHODS = frozenset({"POST", "PUT", "DELETE", "PATCH"})

#: §1.2 CORS config of the GWS CSRF feature, plus X-CSRF-TOKEN (§0.1.13)
CORS_ALLOW_HEADERS = (
    "X-Requested-With", "Content-Type", "Accept", "Origin", "Cookie", "Authorization",
    "ssid", "surl", "ContactCenterId", CSRF_HEADER,
)
CORS_ALLOW_METHODS = ("GET", "POST", "PUT", "DELETE", "OPTIONS")
CORS_EXPOSE_HEADERS = ("X-CSRF-HEADER", CSRF_HEADER)


def _route_path(scope: Scope) -> str:
    path: str = scope["path"]
    root: str = scope.get("root_path", "")
    return path[len(root):] if root and path.startswith(root) else path


def _under(path: str, prefix: str) -> bool:
    return path == prefix or path.startswith(prefix + "/")


def is_api_path(path: str) -> bool:
    return _under(path, API_PREFIX)


def is_notifications_path(path: str) -> bool:
    return _under(path, NOTIFICATIONS_PREFIX)


def _protected(scope: Scope) -> bool:
    if scope["type"] != "http":
        return False
    path = _route_path(scope)
    return is_api_path(path) and not is_notifications_path(path)


def cors_middleware(origins: list[str]) -> Middleware:
    """§0.1.13 with Starlette's CORSMiddleware: with credentials allowed it echoes the request's
    Origin (never ``*``), also when ``origins`` is ``["*"]``; preflights are answered here,
    before authentication."""
    return Middleware(
        CORSMiddleware,
        allow_origins=list(origins),
        allow_methods=list(CORS_ALLOW_METHODS),
        allow_headers=list(CORS_ALLOW_HEADERS),
        allow_credentials=True,
        expose_headers=list(CORS_EXPOSE_HEADERS),
    )


def _session_cookie(value: str, secure: bool) -> str:
    cookie = f"{SESSION_COOKIE}={value}; Path=/; HttpOnly; SameSite=Lax"
    return cookie + "; Secure" if secure else cookie


def _expired_cookie(secure: bool) -> str:
    cookie = f"{SESSION_COOKIE}=; Max-Age=0; Expires=Thu, 01 Jan 1970 00:00:00 GMT; Path=/; HttpOnly; SameSite=Lax"
    return cookie + "; Secure" if secure else cookie


class AuthMiddleware:
    """Basic or session cookie on every API request; 403/20 without a WWW-Authenticate challenge.

    Creates the servlet-style session on the first authenticated request and sets ``JSESSIONID``
    on that response; clears the cookie when a handler invalidated the session.
    """

    def __init__(self, app: ASGIApp, authenticator: Authenticator) -> None:
        self.app = app
        self.authenticator = authenticator

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if not _protected(scope):
            await self.app(scope, receive, send)
            return
        identity = self.authenticator.resolve(HTTPConnection(scope))
        if identity is None:
            await ACCESS_DENIED.response()(scope, receive, send)
            return
        scope["user"] = identity.user
        scope[IDENTITY_KEY] = identity
        secure = scope.get("scheme") == "https"

        async def send_with_cookie(message: Message) -> None:
            if message["type"] == "http.response.start" and identity.session is not None:
                headers = MutableHeaders(scope=message)
                if identity.session.invalidated:
                    headers.append("set-cookie", _expired_cookie(secure))
                elif identity.new_session:
                    headers.append("set-cookie", _session_cookie(identity.session.id, secure))
            await send(message)

        await self.app(scope, receive, send_with_cookie)


class CsrfMiddleware:
    """GWS CSRF protection (§1.2): GETs carry the session's token; unsafe methods must echo it.

    An unsafe request passes only with a live session cookie *and* the matching ``X-CSRF-TOKEN``
    header; a session created by this very request (Basic, no cookie) does not count, since the
    client cannot know its token yet.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        identity: Identity | None = scope.get(IDENTITY_KEY)
        if not _protected(scope) or identity is None or identity.session is None:
            await self.app(scope, receive, send)
            return
        session = identity.session
        method = scope["method"]
        if method in _UNSAFE_METHODS:
            sent = Headers(scope=scope).get(CSRF_HEADER)
            if not (identity.from_cookie and sent and hmac.compare_digest(sent.encode(), session.csrf_token.encode())):
                await CSRF_FAILED.response()(scope, receive, send)
                return
            await self.app(scope, receive, send)
            return
        if method not in ("GET", "HEAD"):
            await self.app(scope, receive, send)
            return

        async def send_with_token(message: Message) -> None:
            if message["type"] == "http.response.start" and not session.invalidated:
                headers = MutableHeaders(scope=message)
                headers["X-CSRF-HEADER"] = CSRF_HEADER
                headers[CSRF_HEADER] = session.csrf_token
            await send(message)

        await self.app(scope, receive, send_with_token)


class EventHoldMiddleware:
    """Hold the user's notifications while their request runs (§1.6, §6 #28).

    The hold is taken before the handler and released right after the last body chunk has been
    handed to the server — or when the request ends any other way (exception, disconnect) — so an
    operation's CometD messages always follow its HTTP response.
    """

    def __init__(self, app: ASGIApp, bus: EventBus) -> None:
        self.app = app
        self.bus = bus

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        identity: Identity | None = scope.get(IDENTITY_KEY) if scope["type"] == "http" else None
        if identity is None:
            await self.app(scope, receive, send)
            return
        hold = self.bus.hold(identity.user.username)

        async def send_then_release(message: Message) -> None:
            await send(message)
            if message["type"] == "http.response.body" and not message.get("more_body", False):
                self.bus.release(hold)

        try:
            await self.app(scope, receive, send_then_release)
        finally:
            self.bus.release(hold)


class ErrorMiddleware:
    """Turns an unexpected exception into 500 ``{"statusCode":4}`` *inside* the API middleware,
    so the reply still gets CORS headers, cookies and the hold release. The traceback is logged
    (``render_error``); the client sees a generic message."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def sender(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, sender)
        except ClientDisconnect:
            log.debug("client went away during %s %s", scope.get("method"), scope.get("path"))
        except Exception as exc:
            if started:  # too late for an error body; let the server drop the connection
                log.error("error after the response started: %s %s", scope.get("method"), scope.get("path"),
                          exc_info=exc)
                raise
            response = render_error(Request(scope), exc)
            await response(scope, receive, send)
