"""Bayeux over a websocket (CometD ``websocket`` transport).

Frames carry the same message arrays as long-polling. Replies to non-connect messages go out at
once; events are pushed as soon as they are queued (they do not wait for the held connect); the
``/meta/connect`` reply is held like on long-polling. One flusher task per socket does every
event/connect write, so per-client order is publish order.
"""

from __future__ import annotations

import asyncio
import logging
from contextlib import suppress
from typing import TYPE_CHECKING

from starlette.types import Receive, Scope, Send
from starlette.websockets import WebSocket, WebSocketDisconnect, WebSocketState

from gateway.cometd import messages as m
from gateway.cometd.longpolling import base_url_of
from gateway.cometd.session import ClientSession

if TYPE_CHECKING:
    from gateway.cometd.server import CometdServer, PendingConnect

log = logging.getLogger("gateway.cometd")

POLICY_VIOLATION = 1008  # RFC 6455 §7.4.1
GOING_AWAY = 1001


def choose_subprotocol(offered: list[str]) -> str | None:
    """The subprotocol to answer with, if the client offered any (RFC 6455 §4.2.2 /subprotocol/).

    The CometD JS client offers its ``protocol`` setting (none by default). Browsers and the
    ``ws`` package fail the connection when the server picks none of the offered ones, and this
    endpoint only ever speaks Bayeux JSON, so take ``cometd`` if offered, else the first one.
    """
    if not offered:
        return None
    return "cometd" if "cometd" in offered else offered[0]


class WebSocketEndpoint:
    """ASGI app for the websocket at ``/api/v2/notifications``."""

    def __init__(self, server: CometdServer) -> None:
        self._server = server

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        websocket = WebSocket(scope, receive, send)
        username = await self._server.authenticate(websocket)
        if username is None:
            client = websocket.client.host if websocket.client else "?"
            log.warning("cometd websocket from %s refused: not authenticated", client)
            await websocket.close(code=POLICY_VIOLATION)  # before accept: the ASGI server answers HTTP 403
            return
        link = WebSocketLink(self._server, websocket, username, base_url_of(websocket))
        await link.run()


class WebSocketLink:
    """One accepted websocket, authenticated as ``username`` for its whole life."""

    def __init__(self, server: CometdServer, websocket: WebSocket, username: str, base_url: str) -> None:
        self._server = server
        self._ws = websocket
        self._username = username
        self._base_url = base_url
        self._session: ClientSession | None = None
        self._pending: PendingConnect | None = None
        self._deadline = 0.0
        self._kick = asyncio.Event()
        self._send_lock = asyncio.Lock()
        self._shutdown = False
        self._done = asyncio.Event()

    async def run(self) -> None:
        await self._ws.accept(subprotocol=choose_subprotocol(self._ws.scope.get("subprotocols") or []))
        self._server.add_link(self)
        flusher = asyncio.ensure_future(self._flush_loop())
        try:
            while not self._shutdown:
                frame = await self._ws.receive()
                if frame["type"] == "websocket.disconnect":
                    break
                text = frame.get("text")
                if text is None:
                    raw = frame.get("bytes") or b""
                    text = raw.decode("utf-8", errors="replace")
                await self._on_frame(text)
        except (WebSocketDisconnect, RuntimeError, OSError):
            pass
        finally:
            flusher.cancel()
            with suppress(asyncio.CancelledError, Exception):
                await flusher
            self._unbind()
            self._server.remove_link(self)
            self._done.set()

    def shutdown(self) -> None:
        """Server closing: flush what is due, then close the socket with 1001."""
        self._shutdown = True
        self._kick.set()

    async def closed(self) -> None:
        await self._done.wait()

    async def _on_frame(self, text: str) -> None:
        decoded = None
        try:
            decoded = m.decode_body(text.encode("utf-8"), "application/json")
            batch = m.parse_batch(decoded)
        except m.BayeuxFormatError as exc:
            log.warning("cometd bad websocket frame from %s: %s", self._username, exc)
            await self._send(m.join_wire([], [m.format_error_reply(decoded, str(exc))]))
            return
        outcome = self._server.process(batch, self._username, self._base_url, "websocket")
        replies = outcome.replies
        if outcome.handshaken is not None:
            self._bind(outcome.handshaken)
        if outcome.connect is not None:
            # Swap the held connect synchronously (no await since process()) so the flusher never
            # answers the old one twice.
            if self._pending is not None:
                old, self._pending = self._pending, None
                old.session.holds -= 1
                replies = [*replies, self._server.finish_connect(old, deliver=False)[1]]
            self._bind(outcome.connect.session)
            self._pending = outcome.connect
            self._pending.session.holds += 1
            self._deadline = asyncio.get_running_loop().time() + outcome.connect.hold_seconds
            self._kick.set()
        if replies:
            await self._send(m.join_wire([], replies))

    def _bind(self, session: ClientSession) -> None:
        """Route this client's queued events to this socket."""
        if self._session is session:
            return
        if self._session is not None:
            self._session.remove_listener(self._kick.set)
        self._session = session
        session.add_listener(self._kick.set)
        self._kick.set()

    def _unbind(self) -> None:
        if self._session is not None:
            self._session.remove_listener(self._kick.set)
            self._session = None
        if self._pending is not None:
            self._server.release_hold(self._pending.session)
            self._pending = None

    async def _flush_loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            self._kick.clear()
            await self._flush(loop.time())
            if self._shutdown:
                with suppress(Exception):
                    await self._ws.close(code=GOING_AWAY)
                return
            timeout = max(0.0, self._deadline - loop.time()) if self._pending is not None else None
            with suppress(TimeoutError):
                await asyncio.wait_for(self._kick.wait(), timeout)

    async def _flush(self, now: float) -> None:
        session = self._session
        events = session.drain() if session is not None and not session.closed else []
        replies: list[m.Message] = []
        pending = self._pending
        if pending is not None:
            held = pending.session
            due = (now >= self._deadline or held.closed or held.connect_generation != pending.generation
                   or self._shutdown)
            if due:
                self._pending = None
                held.holds -= 1
                more, reply = self._server.finish_connect(pending)
                events += more
                replies.append(reply)
        if session is not None and session.closed:
            session.remove_listener(self._kick.set)
            self._session = None
        if events or replies:
            await self._send(m.join_wire(events, replies))

    async def _send(self, text: str) -> None:
        async with self._send_lock:
            if self._ws.application_state == WebSocketState.CONNECTED:
                await self._ws.send_text(text)
