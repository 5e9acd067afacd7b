"""Bayeux channel names and wildcard subscriptions.

Bayeux 1.0 §2.2: a channel name is an absolute path of non-empty segments (``/v2/me/calls``).
A subscription may end in a wildcard segment: ``*`` matches exactly one segment, ``**`` matches one
or more segments (``/v2/me/*`` matches ``/v2/me/calls`` but not ``/v2/me`` or ``/v2/me/a/b``;
``/**`` matches every channel). Wildcards are allowed only as the last segment and never in a
channel a message is published to.
"""

from __future__ import annotations

from collections.abc import Iterator

META_PREFIX = "/meta/"
SERVICE_PREFIX = "/service/"
MAX_CHANNEL_LENGTH = 512


def channel_error(name: object, *, allow_wildcard: bool) -> str | None:
    """Return why ``name`` is not a valid channel (or subscription if ``allow_wildcard``), else None."""
    if not isinstance(name, str):
        return "channel must be a string"
    if not name.startswith("/") or name == "/":
        return f"channel {name[:80]!r} must be an absolute path like /v2/me/calls"
    if len(name) > MAX_CHANNEL_LENGTH:
        return f"channel longer than {MAX_CHANNEL_LENGTH} characters"
    segments = name[1:].split("/")
    for index, segment in enumerate(segments):
        if not segment:
            return f"channel {name[:80]!r} has an empty segment"
        if "*" in segment:
            if not allow_wildcard:
                return f"channel {name[:80]!r} must not contain a wildcard"
            if segment not in ("*", "**") or index != len(segments) - 1:
                return f"channel {name[:80]!r}: a wildcard (* or **) may only be the whole last segment"
    return None


def is_meta(name: str) -> bool:
    """Meta channels (/meta/...) carry the protocol itself (Bayeux §2.2.1)."""
    return name.startswith(META_PREFIX) or name == "/meta"


def is_service(name: str) -> bool:
    """Service channels (/service/...) are client-to-server requests, never broadcast (Bayeux §2.2.2)."""
    return name.startswith(SERVICE_PREFIX) or name == "/service"


def matching_subscriptions(channel: str) -> Iterator[str]:
    """Every subscription string that matches the concrete ``channel``.

    Lets a client's subscriptions live in a plain set: delivery checks ``depth + 2`` set lookups
    instead of evaluating each pattern. For ``/v2/me/calls`` this yields ``/v2/me/calls``,
    ``/v2/me/*``, ``/v2/me/**``, ``/v2/**`` and ``/**``.
    """
    yield channel
    cut = channel.rfind("/")
    yield channel[:cut] + "/*"
    while cut > 0:
        yield channel[:cut] + "/**"
        cut = channel.rfind("/", 0, cut)
    yield "/**"


def matches(subscription: str, channel: str) -> bool:
    """True if ``subscription`` (possibly a wildcard) matches the concrete ``channel``."""
    return subscription in set(matching_subscriptions(channel))
