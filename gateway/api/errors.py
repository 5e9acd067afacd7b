"""GWS errors: one exception type raised anywhere in ``gateway.api``, one place that renders it.

Handlers never build error bodies by hand; they raise ``GwsError`` (or let a ``TelephonyError``
through) and the handlers registered here turn it into ``{"statusCode": n, "statusMessage": ...}``
(spec §1.5; §0.1.2: every REST response is JSON with an integer ``statusCode``).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from gateway.telephony.errors import (
    AlreadyInUse,
    InvalidParameter,
    InvalidState,
    MissingParameter,
    NotFound,
    PermissionDenied,
    ServiceUnavailable,
    TelephonyError,
)

from .responses import GwsResponse

__all__ = [
    "ACCESS_DENIED",
    "CSRF_FAILED",
    "GwsError",
    "exception_handlers",
    "from_http_exception",
    "from_telephony_error",
    "internal_error",
    "render_error",
]

log = logging.getLogger(__name__)


class GwsError(Exception):
    """A request failed: ``status_code`` is the GWS statusCode, ``http_status`` the HTTP status."""

    def __init__(self, status_code: int, http_status: int, message: str,
                 headers: Mapping[str, str] | None = None) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.http_status = http_status
        self.message = message
        self.headers = dict(headers) if headers else None

    def response(self) -> GwsResponse:
        return GwsResponse({"statusCode": self.status_code, "statusMessage": self.message},
                           status_code=self.http_status, headers=self.headers)

    def __repr__(self) -> str:
        return f"GwsError({self.status_code}, {self.http_status}, {self.message!r})"


#: §0.1.1: unauthenticated -> 403 + statusCode 20, and deliberately no WWW-Authenticate header
#: (a Basic challenge makes browsers open their own password dialog).
ACCESS_DENIED = GwsError(20, 403, "Access denied")
#: §1.2: the text is the spec's; the body is JSON because §0.1.2 wins over the plain-text sample.
CSRF_FAILED = GwsError(3, 403, "Missing or invalid Csrf token")

#: TelephonyError kind -> (HTTP status, statusCode); spec §1.5 "Recommended HTTP mapping".
_TELEPHONY_KINDS: dict[type[TelephonyError], tuple[int, int]] = {
    MissingParameter: (400, 1),
    InvalidState: (400, 2),
    InvalidParameter: (400, 10),
    NotFound: (404, 6),
    PermissionDenied: (403, 5),
    AlreadyInUse: (409, 19),
    ServiceUnavailable: (503, 4),
}


def from_telephony_error(exc: TelephonyError) -> GwsError:
    """Map a domain error by kind (MRO order, so subclasses of a kind map like the kind)."""
    for cls in type(exc).__mro__:
        pair = _TELEPHONY_KINDS.get(cls)
        if pair is not None:
            return GwsError(pair[1], pair[0], exc.message)
    # A TelephonyError of no known kind is still a deliberate message for the client.
    log.warning("unmapped telephony error %s: %s", type(exc).__name__, exc.message)
    return GwsError(4, 500, exc.message)


def from_http_exception(exc: HTTPException, path: str, method: str) -> GwsError:
    """Routing errors (404 unknown URL, 405 wrong method) as GWS bodies, keeping ``Allow``."""
    if exc.status_code == 404:
        return GwsError(6, 404, f"Resource not found: {path}")
    if exc.status_code == 405:
        allowed = (exc.headers or {}).get("Allow", "")
        return GwsError(3, 405, f"Method {method} is not allowed on {path} (allowed: {allowed})", exc.headers)
    if exc.status_code == 413:
        return GwsError(10, 413, "Request body is too large")
    code = 10 if 400 <= exc.status_code < 500 else 4
    return GwsError(code, exc.status_code, exc.detail or "Request failed", exc.headers)


def internal_error() -> GwsError:
    """What an unexpected exception looks like to the client: no internals leak out."""
    return GwsError(4, 500, "Internal error")


def render_error(request: Request, exc: Exception) -> Response:
    """The one error renderer (registered for every exception type the API raises)."""
    if isinstance(exc, GwsError):
        return exc.response()
    if isinstance(exc, TelephonyError):
        return from_telephony_error(exc).response()
    if isinstance(exc, HTTPException):
        return from_http_exception(exc, request.url.path, request.method).response()
    log.error("unexpected error handling %s %s", request.method, request.url.path, exc_info=exc)
    return internal_error().response()


async def _handler(request: Request, exc: Exception) -> Response:
    return render_error(request, exc)


def exception_handlers() -> dict[type[Exception], object]:
    """The mapping for ``Starlette(exception_handlers=...)``.

    ``Exception`` lands in Starlette's outermost ServerErrorMiddleware (last resort, after which
    Starlette re-raises for the server to log); API errors are normally caught earlier by
    ``ErrorMiddleware`` so that CORS and cookie headers still wrap the 500.
    """
    return {GwsError: _handler, TelephonyError: _handler, HTTPException: _handler, Exception: _handler}
