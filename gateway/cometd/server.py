"""The gateway's Bayeux 1.0 / CometD server: client registry, meta-channel handling and fan-out.

The protocol logic is synchronous and transport-neutral (``process``/``finish_connect``); the two
transports in ``longpolling.py`` and ``websocket.py`` only decide how long a ``/meta/connect`` is
held and how bytes reach the wire. Client ids are bound to the user that authenticated the
handshake, so a leaked id is useless from another login.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from starlette.requests import HTTPConnection
from starlette.routing import BaseRoute, Route, WebSocketRoute

from gateway.cometd import messages as m
from gateway.cometd.channels import channel_error, is_meta, is_service
from gateway.cometd.session import ClientSession

if TYPE_CHECKING:
    from gateway.cometd.websocket import WebSocketLink

log = logging.getLogger("gateway.cometd")

Authenticate = Callable[[HTTPConnection], Awaitable["str | None"]]
Render = Callable[[str], dict[str, Any]]
MESSAGE_KINDS = ("handshake", "connect", "subscribe", "unsubscribe", "disconnect")


@dataclass(slots=True)
class PendingConnect:
    """A /meta/connect that still has to be answered, possibly after being held."""

    message: m.Message
    session: ClientSession
    generation: int
    hold_seconds: float


@dataclass(slots=True)
class BatchOutcome:
    """Replies for a batch, in order, plus the connect (if any) whose reply goes last."""

    replies: list[m.Message] = field(default_factory=list)
    connect: PendingConnect | None = None
    handshaken: ClientSession | None = None


class CometdServer:
    """Bayeux server for ``/api/v2/notifications`` (spec §4.1, §0.1 items 10-12)."""

    def __init__(
        self,
        authenticate: Authenticate,
        *,
        path: str = "/api/v2/notifications",
        timeout_ms: int = 30000,
        interval_ms: int = 0,
        max_interval_ms: int = 10000,
        max_queue: int = 10000,
        max_clients_per_user: int = 64,
        max_subscriptions: int = 256,
        max_body_bytes: int = 1 << 20,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._authenticate = authenticate
        self.path = path.rstrip("/")
        self.timeout_ms = timeout_ms
        self.interval_ms = interval_ms
        self.max_interval_ms = max_interval_ms
        self.max_queue = max_queue
        self.max_clients_per_user = max_clients_per_user
        self.max_subscriptions = max_subscriptions
        self.max_body_bytes = max_body_bytes
        self._clock = clock
        self._clients: dict[str, ClientSession] = {}
        self._by_user: dict[str, dict[str, ClientSession]] = {}
        self._links: set[WebSocketLink] = set()
        self._event_ids = itertools.count(1)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._last_sweep = clock()
        self._sweep_every = min(1.0, max_interval_ms / 2000)
        self._closing = False

    # ------------------------------------------------------------------ public API

    def routes(self) -> list[BaseRoute]:
        """POST ``path``, ``path/`` and ``path/<message type>``, websocket at ``path``.

        The CometD JS client (``appendMessageTypeToURL``, on by default) always adds a ``/``: a
        single meta message goes to ``path/<type>``, a batch or a publish to ``path/`` itself.
        Without its own route that URL would be answered with a 307 slash redirect, which the
        client treats as a failed request.
        """
        from gateway.cometd.longpolling import LongPollingEndpoint
        from gateway.cometd.websocket import WebSocketEndpoint

        http = LongPollingEndpoint(self)
        routes: list[BaseRoute] = [Route(self.path, http, methods=["POST"], name="cometd"),
                                   Route(f"{self.path}/", http, methods=["POST"], name="cometd-slash")]
        routes += [Route(f"{self.path}/{kind}", http, methods=["POST"], name=f"cometd-{kind}")
                   for kind in MESSAGE_KINDS]
        routes.append(WebSocketRoute(self.path, WebSocketEndpoint(self), name="cometd-ws"))
        return routes

    def publish(self, username: str, channel: str, data: dict[str, Any] | Render) -> None:
        """Queue ``data`` on ``channel`` for every client of ``username`` subscribed to it.

        Synchronous and non-blocking. ``data`` may be a callable ``render(base_url)`` called once per
        distinct base URL among the receiving clients, so resource URIs match what each client used.
        Called from another thread, the enqueue is handed to the event loop (per-thread order kept).
        """
        if self._hop(self.publish, username, channel, data):
            return
        self._maybe_sweep()
        clients = self._by_user.get(username)
        if not clients:
            return
        problem = channel_error(channel, allow_wildcard=False)
        if problem is not None or is_meta(channel):
            log.error("publish for %s dropped: %s", username, problem or f"{channel} is a meta channel")
            return
        targets = [s for s in clients.values() if s.wants(channel)]
        if not targets:
            return
        event_id = f"e{next(self._event_ids)}"
        rendered: dict[str, str] = {}
        for session in targets:
            wire = rendered.get(session.base_url)
            if wire is None:
                try:
                    payload = data(session.base_url) if callable(data) else data
                    wire = m.dumps({"channel": channel, "data": payload, "id": event_id})
                except Exception:
                    log.exception("publish on %s for %s dropped: data could not be rendered", channel, username)
                    return
                rendered[session.base_url] = wire
            if not session.enqueue(wire):
                log.warning("cometd client %s of %s dropped: queue full (%d messages)", session.client_id,
                            username, self.max_queue)
                self._drop(session, "overflow")

    def disconnect_user(self, username: str) -> None:
        """Drop every client of ``username``; their next request (or held connect) gets 402."""
        if self._hop(self.disconnect_user, username):
            return
        for session in list(self._by_user.get(username, {}).values()):
            self._drop(session, "server")
        log.info("cometd clients of %s dropped", username)

    async def close(self) -> None:
        """Answer every held connect and close websockets (application shutdown)."""
        self._closing = True
        for session in list(self._clients.values()):
            self._drop(session, "shutdown")
        links = list(self._links)
        for link in links:
            link.shutdown()
        if links:
            await asyncio.wait([asyncio.ensure_future(link.closed()) for link in links], timeout=2.0)

    def client_count(self, username: str | None = None) -> int:
        """Live clients, of one user or all."""
        self._maybe_sweep()
        if username is None:
            return len(self._clients)
        return len(self._by_user.get(username, {}))

    def base_url_of(self, client_id: str) -> str | None:
        """scheme://host:port the client used for its handshake."""
        session = self._clients.get(client_id)
        return session.base_url if session else None

    def transport_of(self, client_id: str) -> str | None:
        """``websocket`` or ``long-polling``: the transport of the client's latest handshake or connect."""
        session = self._clients.get(client_id)
        return session.transport if session else None

    def held_connect_count(self, username: str | None = None) -> int:
        """Connects currently held open (for metrics and tests)."""
        sessions = self._clients.values() if username is None else self._by_user.get(username, {}).values()
        return sum(s.holds for s in sessions)

    def expire_idle(self, now: float | None = None) -> int:
        """Drop clients with no held connect whose last connect reply is older than max_interval."""
        now = self._clock() if now is None else now
        self._last_sweep = now
        limit = self.max_interval_ms / 1000
        stale = [s for s in self._clients.values() if s.holds == 0 and now - s.last_seen > limit]
        for session in stale:
            log.info("cometd client %s of %s expired (no connect for %.1f s)", session.client_id, session.username,
                     now - session.last_seen)
            self._drop(session, "expired")
        return len(stale)

    # ------------------------------------------------------------------ used by the transports

    async def authenticate(self, conn: HTTPConnection) -> str | None:
        """The app's authenticate(), made safe: an exception counts as 'not authenticated'."""
        self._bind_loop()
        try:
            username = await self._authenticate(conn)
        except Exception:
            log.exception("cometd authenticate() failed for %s", conn.url.path)
            return None
        return username if isinstance(username, str) and username else None

    def process(self, batch: list[m.Message], username: str, base_url: str, transport: str) -> BatchOutcome:
        """Handle a validated batch in order; the connect (if any) is returned for the transport to hold."""
        self._maybe_sweep()
        outcome = BatchOutcome()
        last = len(batch) - 1
        for index, message in enumerate(batch):
            channel = message["channel"]
            if channel == m.HANDSHAKE:
                outcome.replies.append(self._handshake(message, username, base_url, transport, outcome))
                continue
            session = self._session_for(message, username)
            if session is None:
                outcome.replies.append(m.unknown_client_reply(message))
            elif channel == m.CONNECT:
                session.transport = transport  # a client may handshake on one transport and connect on another
                if outcome.connect is not None:  # an earlier connect in the same batch: answer it now
                    outcome.replies.append(self.finish_connect(outcome.connect)[1])
                outcome.connect = self._connect(message, session, last_in_batch=index == last)
            elif channel == m.SUBSCRIBE:
                outcome.replies.append(self._subscribe(message, session))
            elif channel == m.UNSUBSCRIBE:
                outcome.replies.append(self._unsubscribe(message, session))
            elif channel == m.DISCONNECT:
                log.info("cometd client %s of %s disconnected", session.client_id, username)
                self._drop(session, "disconnect")
                outcome.replies.append(m.reply(message, True, clientId=session.client_id))
            elif is_meta(channel):
                outcome.replies.append(m.error_reply(message, f"400::Unknown meta channel {channel}"))
            else:
                log.info("cometd client %s of %s tried to publish on %s", session.client_id, username, channel)
                outcome.replies.append(m.error_reply(message, m.ERR_PUBLISH_DENIED))
        return outcome

    def finish_connect(self, pending: PendingConnect, *, deliver: bool = True) -> tuple[list[str], m.Message]:
        """Queued messages (unless superseded) and the connect reply for a connect that is answered now."""
        session = pending.session
        if session.closed:
            advice = {"reconnect": "none" if session.closed_reason == "disconnect" else "handshake", "interval": 0}
            return [], m.error_reply(pending.message, m.ERR_UNKNOWN_CLIENT, advice)
        current = session.connect_generation == pending.generation
        events = session.drain() if deliver and current else []
        session.connected = True
        session.last_seen = self._clock()
        return events, m.reply(pending.message, True, clientId=session.client_id, advice=self._advice())

    def release_hold(self, session: ClientSession) -> None:
        """A held connect ended without a reply (client went away): start its max_interval clock."""
        session.holds -= 1
        session.last_seen = self._clock()

    def add_link(self, link: WebSocketLink) -> None:
        self._links.add(link)

    def remove_link(self, link: WebSocketLink) -> None:
        self._links.discard(link)

    # ------------------------------------------------------------------ meta channels

    def _advice(self) -> dict[str, Any]:
        return {"reconnect": "retry", "interval": self.interval_ms, "timeout": self.timeout_ms}

    def _handshake(self, message: m.Message, username: str, base_url: str, transport: str,
                   outcome: BatchOutcome) -> m.Message:
        if self._closing:
            return m.error_reply(message, "503::Server shutting down", {"reconnect": "none", "interval": 0})
        client_id = secrets.token_hex(16)
        session = ClientSession(client_id, username, base_url, transport, self._clock(), self.max_queue)
        mine = self._by_user.setdefault(username, {})
        while len(mine) >= self.max_clients_per_user:
            oldest = min(mine.values(), key=lambda s: s.last_seen)
            log.warning("cometd client %s of %s dropped: more than %d clients", oldest.client_id, username,
                        self.max_clients_per_user)
            self._drop(oldest, "too-many-clients")
        self._clients[client_id] = session
        mine[client_id] = session
        outcome.handshaken = session
        log.info("cometd handshake: client %s for %s over %s from %s", client_id, username, transport, base_url)
        advice = {**self._advice(), "maxInterval": self.max_interval_ms}
        return m.reply(message, True, clientId=client_id, version=m.BAYEUX_VERSION,
                       supportedConnectionTypes=list(m.CONNECTION_TYPES), advice=advice)

    def _session_for(self, message: m.Message, username: str) -> ClientSession | None:
        client_id = message.get("clientId")
        session = self._clients.get(client_id) if isinstance(client_id, str) else None
        if session is None:
            return None
        if session.username != username:
            log.warning("cometd client %s belongs to %s but the request is authenticated as %s; refused",
                        client_id, session.username, username)
            return None
        return session

    def _connect(self, message: m.Message, session: ClientSession, *, last_in_batch: bool) -> PendingConnect:
        generation = session.begin_connect()
        timeout_ms = self.timeout_ms
        advice = message.get("advice")
        if isinstance(advice, dict):
            asked = advice.get("timeout")
            if isinstance(asked, (int, float)) and not isinstance(asked, bool):
                timeout_ms = max(0, min(timeout_ms, int(asked)))
        # CometD: the first connect after a handshake is answered at once (it confirms the
        # connection), and so is a connect that other messages follow in the same batch.
        if not session.connected or not last_in_batch:
            timeout_ms = 0
        return PendingConnect(message, session, generation, timeout_ms / 1000)

    def _subscriptions_of(self, message: m.Message) -> tuple[list[str], m.Message | None]:
        raw = message.get("subscription")
        items = raw if isinstance(raw, list) else [raw]
        if raw is None or not items:
            return [], m.error_reply(message, "400::subscription is missing", subscription=raw)
        for item in items:
            problem = channel_error(item, allow_wildcard=True)
            if problem is not None:
                return [], m.error_reply(message, f"400::subscription: {problem}", subscription=raw)
            if is_meta(item):
                return [], m.error_reply(message, m.ERR_SUBSCRIBE_DENIED, subscription=raw)
        return items, None

    def _subscribe(self, message: m.Message, session: ClientSession) -> m.Message:
        channels, error = self._subscriptions_of(message)
        if error is not None:
            return {**error, "clientId": session.client_id}
        wanted = {c for c in channels if not is_service(c)}  # service channels: accepted, nothing to deliver
        if len(session.subscriptions | wanted) > self.max_subscriptions:
            return m.error_reply(message, f"400::more than {self.max_subscriptions} subscriptions",
                                 clientId=session.client_id, subscription=message["subscription"])
        session.subscriptions |= wanted
        log.debug("cometd client %s of %s subscribed to %s", session.client_id, session.username, channels)
        return m.reply(message, True, clientId=session.client_id, subscription=message["subscription"])

    def _unsubscribe(self, message: m.Message, session: ClientSession) -> m.Message:
        channels, error = self._subscriptions_of(message)
        if error is not None:
            return {**error, "clientId": session.client_id}
        session.subscriptions.difference_update(channels)
        return m.reply(message, True, clientId=session.client_id, subscription=message["subscription"])

    # ------------------------------------------------------------------ registry

    def _drop(self, session: ClientSession, reason: str) -> None:
        session.close(reason)
        self._clients.pop(session.client_id, None)
        mine = self._by_user.get(session.username)
        if mine is not None:
            mine.pop(session.client_id, None)
            if not mine:
                del self._by_user[session.username]

    def _maybe_sweep(self) -> None:
        now = self._clock()
        if now - self._last_sweep >= self._sweep_every:
            self.expire_idle(now)

    def _bind_loop(self) -> None:
        if self._loop is None or self._loop.is_closed():
            self._loop = asyncio.get_running_loop()

    def _hop(self, func: Callable[..., None], *args: Any) -> bool:
        """If called off the event loop's thread, re-schedule ``func`` on the loop and return True."""
        loop = self._loop
        if loop is None or loop.is_closed():
            return False
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            return False
        loop.call_soon_threadsafe(func, *args)
        return True
