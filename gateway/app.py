"""Application factory: one Starlette app per gateway instance (no module-level app).

The lifespan starts the telephony layer (media clock, SIP endpoint, line registrations) and
stops it again — unregistering lines and finishing recordings — on shutdown.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator

from starlette.applications import Starlette
from starlette.requests import HTTPConnection, Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from .api.notify import connect_notifications
from .api.routes import build_api
from .cometd.server import CometdServer
from .config import Settings
from .telephony.service import Telephony

__all__ = ["create_app"]

log = logging.getLogger("gateway")


def create_app(settings: Settings, *, http_port: int | None = None) -> Starlette:
    """Build the gateway. ``http_port`` is the bound HTTP port (reported by ``GET /health``)."""
    telephony = Telephony(settings)
    api = build_api(telephony, settings)

    async def authenticate(conn: HTTPConnection) -> str | None:
        user = api.authenticate(conn)
        return user.username if user is not None else None

    cometd = CometdServer(authenticate)
    connect_notifications(telephony.bus, cometd.publish, settings.http.public_url,
                          disconnect_user=cometd.disconnect_user)

    async def health(request: Request) -> JSONResponse:
        port = http_port if http_port is not None else (request.url.port or 0)
        return JSONResponse({
            "status": "ok" if telephony.sip_ports else "starting",
            "http": {"host": settings.http.host, "port": port},
            "sip": {"host": settings.sip.host, **telephony.sip_ports,
                    "mode": "registrar" if settings.sip.registrar else "standalone"},
            "stats": telephony.stats(),
            "cometd": {"clients": cometd.client_count(), "held_connects": cometd.held_connect_count()},
        })

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await telephony.start()
        log.info("gateway ready: http=%s:%s sip=%s", settings.http.host, http_port, telephony.sip_ports)
        try:
            yield
        finally:
            await cometd.close()
            await telephony.stop()
            log.info("gateway stopped")

    routes = [Route("/health", health, methods=["GET"]), *cometd.routes(), *api.routes]
    app = Starlette(routes=routes, middleware=api.middleware, exception_handlers=api.exception_handlers,
                    lifespan=lifespan)
    app.state.telephony = telephony
    app.state.cometd = cometd
    app.state.settings = settings
    return app
