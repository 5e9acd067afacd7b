"""Domain events and the in-process bus that carries them to the notification layer.

Ordering rule (spec §1.6, issue #2): notifications caused by an HTTP operation are delivered
*after* that operation's HTTP response. The API takes a per-user ``hold`` while it handles a
request and releases it once the response has been sent; while any hold for a user is open,
that user's events queue behind it (also events produced by SIP meanwhile), so the user's
stream stays in causal order.
"""

from __future__ import annotations

import logging
from collections import defaultdict, deque
from collections.abc import Callable
from dataclasses import dataclass

from .views import CallView, DeviceView

__all__ = [
    "CallStateChanged",
    "DeviceStateChanged",
    "DomainEvent",
    "EventBus",
    "Hold",
    "OperationFailed",
    "SessionEnded",
]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True, kw_only=True)
class DeviceStateChanged:
    """Published on /v2/me/devices as DeviceStateChangeMessage."""

    username: str
    device: DeviceView


@dataclass(frozen=True, slots=True, kw_only=True)
class CallStateChanged:
    """Published on /v2/me/calls as CallStateChangeMessage."""

    username: str
    call: CallView
    notification_type: str  # StatusChange | ParticipantsUpdated | AttachedDataChanged | CallRecordingStateChange | ...
    extensions: tuple[tuple[str, object], ...] = ()
    digits: str | None = None  # DtmfReceived/DtmfSent extension: the digits concerned


@dataclass(frozen=True, slots=True, kw_only=True)
class OperationFailed:
    """An accepted operation failed later (spec §4.6 ErrorMessage)."""

    username: str
    topic: str  # "calls" | "devices"
    operation: str
    error_code: int
    error_message: str
    device_id: str | None = None
    call_id: str | None = None
    phone_number: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class SessionEnded:
    """EndContactCenterSession finished: notification clients of the user are disconnected."""

    username: str


DomainEvent = DeviceStateChanged | CallStateChanged | OperationFailed | SessionEnded


class Hold:
    """Token of an open hold; release it exactly once (``EventBus.release``)."""

    __slots__ = ("username", "released")

    def __init__(self, username: str) -> None:
        self.username = username
        self.released = False


class EventBus:
    """Synchronous fan-out of domain events with per-user holds."""

    def __init__(self) -> None:
        self._subscribers: list[Callable[[DomainEvent], None]] = []
        self._holds: dict[str, int] = defaultdict(int)
        self._pending: dict[str, deque[DomainEvent]] = defaultdict(deque)

    def subscribe(self, handler: Callable[[DomainEvent], None]) -> None:
        self._subscribers.append(handler)

    def publish(self, event: DomainEvent) -> None:
        user = event.username
        if self._holds.get(user):
            self._pending[user].append(event)
            return
        self._deliver(event)

    def hold(self, username: str) -> Hold:
        self._holds[username] += 1
        return Hold(username)

    def release(self, hold: Hold) -> None:
        if hold.released:
            return
        hold.released = True
        user = hold.username
        self._holds[user] -= 1
        if self._holds[user] > 0:
            return
        del self._holds[user]
        pending = self._pending.pop(user, None)
        while pending:
            self._deliver(pending.popleft())

    def _deliver(self, event: DomainEvent) -> None:
        for handler in self._subscribers:
            try:
                handler(event)
            except Exception:  # a broken subscriber must not break telephony
                log.exception("event subscriber failed on %s", type(event).__name__)
