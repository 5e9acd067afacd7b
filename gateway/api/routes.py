"""The Voice API as routes + middleware + exception handlers, for ``app.py`` to mount.

Routes carry full ``/api/v2/...`` paths (no ``Mount``), so their order relative to the CometD
endpoint and ``/health`` in the app's route list does not matter.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from starlette.middleware import Middleware
from starlette.requests import HTTPConnection, Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from gateway.config import Settings
from gateway.telephony.directory import User

from . import system
from .auth import Authenticator, SessionStore
from .calls import CallEndpoints
from .channels import ChannelEndpoints
from .context import ApiContext
from .devices import DeviceEndpoints
from .errors import exception_handlers
from .me import MeEndpoints
from .middleware import (
    AuthMiddleware,
    CsrfMiddleware,
    ErrorMiddleware,
    EventHoldMiddleware,
    cors_middleware,
)

if TYPE_CHECKING:  # the facade's module pulls in SIP and media; the API needs only its type
    from gateway.telephony.service import Telephony

__all__ = ["Api", "build_api"]

Endpoint = Callable[[Request], Awaitable[Response]]


def _route(path: str, name: str, *, get: Endpoint | None = None, post: Endpoint | None = None) -> Route:
    """One route per path with its methods, so a wrong method gets 405 with a complete ``Allow``."""
    by_method = {m: h for m, h in (("GET", get), ("POST", post)) if h is not None}

    async def endpoint(request: Request) -> Response:
        return await by_method["GET" if request.method == "HEAD" else request.method](request)

    endpoint.__name__ = name
    return Route(path, endpoint, methods=list(by_method), name=name)


@dataclass(frozen=True, slots=True)
class Api:
    """Everything ``app.py`` needs. Iterating gives ``(routes, middleware, exception_handlers)``."""

    routes: list[BaseRoute]
    middleware: list[Middleware]
    exception_handlers: dict[Any, Any]
    authenticator: Authenticator
    sessions: SessionStore

    @property
    def authenticate(self) -> Callable[[HTTPConnection], User | None]:
        """For the CometD server: cookie alone or Basic alone; None when not authenticated."""
        return self.authenticator.authenticate

    def __iter__(self) -> Iterator[Any]:
        return iter((self.routes, self.middleware, self.exception_handlers))


def build_api(telephony: Telephony, settings: Settings, *, clock: Callable[[], float] = time.monotonic) -> Api:
    """Build the ``/api/v2`` surface over ``telephony``. ``clock`` drives session idle expiry."""
    http = settings.http
    sessions = SessionStore(http.session_idle_seconds, clock=clock)
    authenticator = Authenticator(telephony.directory, sessions)
    ctx = ApiContext(telephony, public_url=http.public_url.strip().rstrip("/"))

    me = MeEndpoints(ctx, sessions)
    devices = DeviceEndpoints(ctx)
    calls = CallEndpoints(ctx)
    channels = ChannelEndpoints(ctx)
    v2 = "/api/v2"
    routes: list[BaseRoute] = [
        _route(f"{v2}/me", "me", get=me.get, post=me.post),
        _route(f"{v2}/users/{{user_id}}", "user", get=me.get_user),
        _route(f"{v2}/me/devices", "me_devices", get=devices.list),
        _route(f"{v2}/me/devices/{{device_id}}", "me_device", get=devices.get, post=devices.operate),
        _route(f"{v2}/me/devices/{{device_id}}/calls", "me_device_calls", post=devices.dial),
        _route(f"{v2}/devices/{{device_id}}", "device", get=devices.get),
        _route(f"{v2}/me/calls", "me_calls", get=calls.list),
        _route(f"{v2}/me/calls/{{call_id}}", "me_call", get=calls.get, post=calls.operate),
        _route(f"{v2}/calls/{{call_id}}", "call", get=calls.get),
        _route(f"{v2}/me/channels", "me_channels", get=channels.list),
        _route(f"{v2}/me/channels/{{channel}}", "me_channel", get=channels.get, post=channels.operate),
        _route(f"{v2}/settings/agent-states", "agent_states", get=system.agent_states),
        _route(f"{v2}/diagnostics/version", "version", get=system.version),
    ]

    middleware = [
        cors_middleware(http.cors_origins),
        Middleware(AuthMiddleware, authenticator=authenticator),
        *([Middleware(CsrfMiddleware)] if http.csrf else []),
        Middleware(EventHoldMiddleware, bus=telephony.bus),
        Middleware(ErrorMiddleware),
    ]
    return Api(routes, middleware, exception_handlers(), authenticator, sessions)
