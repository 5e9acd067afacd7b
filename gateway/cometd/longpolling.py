"""Bayeux long-polling transport (Bayeux 1.0 §5.1): one HTTP POST per batch, /meta/connect held.

A held connect returns as soon as a message is queued for its client, a newer connect supersedes
it, the client is dropped, the HTTP client goes away, or the connect timeout elapses.
"""

from __future__ import annotations

import asyncio
import logging
from contextlib import suppress
from typing import TYPE_CHECKING, Any

from starlette.requests import ClientDisconnect, HTTPConnection, Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from gateway.cometd import messages as m

if TYPE_CHECKING:
    from gateway.cometd.server import CometdServer, PendingConnect

log = logging.getLogger("gateway.cometd")

NO_CACHE = {"Cache-Control": "no-cache, no-store"}


class BodyTooLarge(Exception):
    """The request body exceeds the configured limit."""


def base_url_of(conn: HTTPConnection) -> str:
    """scheme://host[:port] the client addressed (ws/wss mapped to http/https)."""
    url = conn.url
    scheme = {"ws": "http", "wss": "https"}.get(url.scheme, url.scheme)
    return f"{scheme}://{url.netloc}"


def bayeux_response(events: list[str], replies: list[m.Message], status_code: int = 200) -> Response:
    return Response(m.join_wire(events, replies), status_code=status_code, media_type="application/json",
                    headers=NO_CACHE)


async def read_body(request: Request, limit: int) -> bytes:
    """The whole body, refusing (without buffering) anything over ``limit`` bytes."""
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge
        chunks.append(chunk)
    return b"".join(chunks)


async def wait_disconnect(receive: Receive) -> None:
    """Return when the HTTP client disconnects (the body has already been read)."""
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return


class LongPollingEndpoint:
    """ASGI app for ``POST /api/v2/notifications[/<type>]``."""

    def __init__(self, server: CometdServer) -> None:
        self._server = server

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = await self.handle(Request(scope, receive, send))
        await response(scope, receive, send)

    async def handle(self, request: Request) -> Response:
        server = self._server
        username = await server.authenticate(request)
        try:
            body = await read_body(request, server.max_body_bytes)
        except ClientDisconnect:
            return Response(status_code=400)
        except BodyTooLarge:
            return bayeux_response([], [m.error_reply({"channel": "/meta/unknown"},
                                                      f"413::body larger than {server.max_body_bytes} bytes")], 413)
        content_type = request.headers.get("content-type", "")
        decoded: Any = None
        try:
            decoded = m.decode_body(body, content_type)
            batch = m.parse_batch(decoded)
        except m.BayeuxFormatError as exc:
            if username is None:
                return self._unauthorized(request, decoded)
            log.warning("cometd bad request from %s (%s): %s", username, request.url.path, exc)
            return bayeux_response([], [m.format_error_reply(decoded, str(exc))], 400)
        if username is None:
            return self._unauthorized(request, batch)

        outcome = server.process(batch, username, base_url_of(request), "long-polling")
        if outcome.connect is None:
            return bayeux_response([], outcome.replies)
        events, connect_reply = await self._hold(request, outcome.connect)
        return bayeux_response(events, [*outcome.replies, connect_reply])

    def _unauthorized(self, request: Request, payload: Any) -> Response:
        """Spec §0.1.1: HTTP 403 and no WWW-Authenticate (a Basic challenge pops up browser dialogs)."""
        client = request.client.host if request.client else "?"
        log.warning("cometd request to %s from %s refused: not authenticated", request.url.path, client)
        return bayeux_response([], m.unauthorized_replies(payload), 403)

    async def _hold(self, request: Request, pending: PendingConnect) -> tuple[list[str], m.Message]:
        session = pending.session
        must_wait = (pending.hold_seconds > 0 and not session.queue and not session.closed
                     and session.connect_generation == pending.generation)
        if not must_wait:
            return self._server.finish_connect(pending)
        wake: asyncio.Future[None] = asyncio.get_running_loop().create_future()

        def listener() -> None:
            if not wake.done():
                wake.set_result(None)

        session.add_listener(listener)
        session.holds += 1
        gone = asyncio.ensure_future(wait_disconnect(request.receive))
        try:
            await asyncio.wait({wake, gone}, timeout=pending.hold_seconds, return_when=asyncio.FIRST_COMPLETED)
        finally:
            session.remove_listener(listener)
            session.holds -= 1
            gone.cancel()
            with suppress(asyncio.CancelledError, Exception):
                await gone
        client_gone = gone.done() and not gone.cancelled() and gone.exception() is None
        # A client that went away gets nothing drained: its messages wait for its next connect.
        return self._server.finish_connect(pending, deliver=not client_gone)
