"""Domain events -> CometD publications (spec §4.2-§4.6).

The bus gives us events with views; the CometD server owns clients and their base URLs. So for
each event we hand over ``(username, channel, render)`` and the server calls ``render(base_url)``
once per client when it enqueues (a configured public URL, when set, wins over the client's).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from gateway.telephony.events import (
    CallStateChanged,
    DeviceStateChanged,
    DomainEvent,
    EventBus,
    OperationFailed,
    SessionEnded,
)

from . import shapes

__all__ = ["CALLS_CHANNEL", "DEVICES_CHANNEL", "Publish", "Render", "connect_notifications"]

DEVICES_CHANNEL = "/v2/me/devices"
CALLS_CHANNEL = "/v2/me/calls"
_TOPIC_CHANNELS = {"devices": DEVICES_CHANNEL, "calls": CALLS_CHANNEL}

Render = Callable[[str], dict[str, Any]]
Publish = Callable[[str, str, Render], None]


def connect_notifications(bus: EventBus, publish: Publish, public_url: str = "",
                          disconnect_user: Callable[[str], None] | None = None) -> Callable[[DomainEvent], None]:
    """Subscribe to ``bus``; returns the subscriber (for tests). ``SessionEnded`` calls
    ``disconnect_user(username)`` (§3.1.2: after EndContactCenterSession the CometD client goes)."""
    fixed_base = public_url.rstrip("/")

    def bind(shape: Callable[[Any, str], dict[str, Any]], event: DomainEvent) -> Render:
        def render(base_url: str) -> dict[str, Any]:
            return shape(event, fixed_base or base_url.rstrip("/"))

        return render

    def on_event(event: DomainEvent) -> None:
        if isinstance(event, DeviceStateChanged):
            publish(event.username, DEVICES_CHANNEL, bind(shapes.device_state_message, event))
        elif isinstance(event, CallStateChanged):
            publish(event.username, CALLS_CHANNEL, bind(shapes.call_state_message, event))
        elif isinstance(event, OperationFailed):
            channel = _TOPIC_CHANNELS.get(event.topic, CALLS_CHANNEL if event.call_id else DEVICES_CHANNEL)
            publish(event.username, channel, bind(shapes.error_message, event))
        elif isinstance(event, SessionEnded):
            if disconnect_user is not None:
                disconnect_user(event.username)

    bus.subscribe(on_event)
    return on_event
