"""Where a message came from or goes to. Pure data: no sockets here (the driver owns them)."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Peer"]


@dataclass(frozen=True, slots=True)
class Peer:
    """A transport address, plus the stream connection a message arrived on or must use.

    ``host`` may be a name; the asyncio driver resolves it. ``conn_id`` is set for stream
    transports when a specific connection must be used (responses go back on the connection the
    request came in on, RFC 3261 §18.2.2).
    """

    transport: str  # "udp" | "tcp"
    host: str
    port: int
    conn_id: int | None = None

    @property
    def reliable(self) -> bool:
        """RFC 3261 §17: retransmission timers only run over unreliable transports."""
        return self.transport.lower() != "udp"

    def __str__(self) -> str:
        return f"{self.transport}:{self.host}:{self.port}"
