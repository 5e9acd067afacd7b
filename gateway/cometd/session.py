"""One Bayeux client: identity, subscriptions and its bounded queue of outgoing messages.

A client is created by a successful ``/meta/handshake`` and belongs to the user that authenticated
it; the transports (long-polling, websocket) only move its queued messages to the wire.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable

from gateway.cometd.channels import matching_subscriptions

Listener = Callable[[], None]


class ClientSession:
    """State of one Bayeux client id.

    ``connect_generation`` counts ``/meta/connect`` requests: a held connect that sees a newer
    generation has been superseded and must be answered at once (CometD: a second concurrent
    connect releases the first). ``holds`` counts connects currently held open; a client with a
    held connect never expires.
    """

    __slots__ = (
        "client_id",
        "username",
        "base_url",
        "transport",
        "subscriptions",
        "queue",
        "max_queue",
        "last_seen",
        "holds",
        "connect_generation",
        "connected",
        "closed_reason",
        "_listeners",
    )

    def __init__(self, client_id: str, username: str, base_url: str, transport: str, now: float,
                 max_queue: int) -> None:
        self.client_id = client_id
        self.username = username
        self.base_url = base_url
        self.transport = transport
        self.subscriptions: set[str] = set()
        self.queue: deque[str] = deque()
        self.max_queue = max_queue
        self.last_seen = now
        self.holds = 0
        self.connect_generation = 0
        self.connected = False
        self.closed_reason: str | None = None
        self._listeners: set[Listener] = set()

    @property
    def closed(self) -> bool:
        return self.closed_reason is not None

    def wants(self, channel: str) -> bool:
        """True if any subscription (exact or wildcard) matches ``channel``."""
        subs = self.subscriptions
        if not subs:
            return False
        return any(candidate in subs for candidate in matching_subscriptions(channel))

    def enqueue(self, wire_message: str) -> bool:
        """Queue a serialised message; False (nothing queued) if the queue is full."""
        if len(self.queue) >= self.max_queue:
            return False
        self.queue.append(wire_message)
        self.notify()
        return True

    def drain(self) -> list[str]:
        """Take every queued message, oldest first."""
        out = list(self.queue)
        self.queue.clear()
        return out

    def begin_connect(self) -> int:
        """Register a new /meta/connect; wakes (and thereby supersedes) any connect already held."""
        self.connect_generation += 1
        self.notify()
        return self.connect_generation

    def close(self, reason: str) -> None:
        """Mark the client gone; held connects wake and answer."""
        if self.closed_reason is None:
            self.closed_reason = reason
            self.queue.clear()
            self.notify()

    def add_listener(self, listener: Listener) -> None:
        self._listeners.add(listener)

    def remove_listener(self, listener: Listener) -> None:
        self._listeners.discard(listener)

    def notify(self) -> None:
        """Wake whoever waits on this client (held long-polls, the websocket flusher)."""
        for listener in list(self._listeners):
            listener()
