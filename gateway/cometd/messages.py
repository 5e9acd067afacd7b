"""Bayeux message parsing and reply construction.

Bayeux 1.0 §3: a request body is one message object or an array of them; every reply to a meta
message carries ``channel``, ``successful`` and the request's ``id`` when it had one. Errors use the
``"<code>::<text>"`` form (§3.3.4, codes borrowed from HTTP).
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import parse_qs

from gateway.cometd.channels import channel_error

Message = dict[str, Any]

HANDSHAKE = "/meta/handshake"
CONNECT = "/meta/connect"
SUBSCRIBE = "/meta/subscribe"
UNSUBSCRIBE = "/meta/unsubscribe"
DISCONNECT = "/meta/disconnect"

BAYEUX_VERSION = "1.0"
CONNECTION_TYPES = ("websocket", "long-polling")

ERR_UNKNOWN_CLIENT = "402::Unknown client"
ERR_UNAUTHORIZED = "403::Unauthorized"
ERR_PUBLISH_DENIED = "403::Publish denied"
ERR_SUBSCRIBE_DENIED = "403::Subscription denied"
MAX_BATCH = 100


class BayeuxFormatError(ValueError):
    """The request body is not a Bayeux message batch; ``str(error)`` names the offending field."""


def decode_body(body: bytes, content_type: str) -> Any:
    """Decode a POST body into JSON.

    Clients send ``application/json``, ``text/plain`` (to avoid CORS preflights) or, in the Bayeux
    1.0 long-polling form (§5.1), ``application/x-www-form-urlencoded`` with a ``message`` field.
    """
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BayeuxFormatError(f"body is not UTF-8 (byte {exc.start})") from None
    if content_type.split(";", 1)[0].strip().lower() == "application/x-www-form-urlencoded":
        fields = parse_qs(text, keep_blank_values=True)
        if "message" not in fields:
            raise BayeuxFormatError("form body has no 'message' field")
        text = fields["message"][0]
    if not text.strip():
        raise BayeuxFormatError("body is empty")
    try:
        return json.loads(text)
    except (json.JSONDecodeError, RecursionError) as exc:
        raise BayeuxFormatError(f"body is not JSON: {exc}") from None


def parse_batch(payload: Any) -> list[Message]:
    """Validate decoded JSON as a batch: one object or a non-empty array of objects, each with a channel."""
    batch = [payload] if isinstance(payload, dict) else payload
    if not isinstance(batch, list):
        raise BayeuxFormatError(f"body must be a JSON object or array, not {type(payload).__name__}")
    if not batch:
        raise BayeuxFormatError("message array is empty")
    if len(batch) > MAX_BATCH:
        raise BayeuxFormatError(f"message array has {len(batch)} messages (at most {MAX_BATCH})")
    for index, message in enumerate(batch):
        if not isinstance(message, dict):
            raise BayeuxFormatError(f"message[{index}] must be an object, not {type(message).__name__}")
        if "channel" not in message:
            raise BayeuxFormatError(f"message[{index}].channel is missing")
        problem = channel_error(message["channel"], allow_wildcard=False)
        if problem is not None:
            raise BayeuxFormatError(f"message[{index}].channel: {problem}")
    return batch


def reply(message: Message, successful: bool, **fields: Any) -> Message:
    """A reply to ``message`` echoing its channel and id (Bayeux §3.3)."""
    out: Message = {"channel": message.get("channel"), "successful": successful}
    if "id" in message:
        out["id"] = message["id"]
    out.update(fields)
    return out


def error_reply(message: Message, error: str, advice: dict[str, Any] | None = None, **fields: Any) -> Message:
    """A failed reply; ``advice`` tells the client whether to retry, handshake again or stop."""
    out = reply(message, False, error=error, **fields)
    if advice is not None:
        out["advice"] = advice
    return out


def unknown_client_reply(message: Message) -> Message:
    """Bayeux §3.3.4 / CometD: an unknown or expired client id must handshake again."""
    return error_reply(message, ERR_UNKNOWN_CLIENT, {"reconnect": "handshake", "interval": 0})


def unauthorized_replies(payload: Any) -> list[Message]:
    """One ``403::Unauthorized`` reply per message the client sent (or a single one if unreadable)."""
    items = payload if isinstance(payload, list) else [payload]
    messages = [m for m in items if isinstance(m, dict)][:MAX_BATCH] or [{"channel": HANDSHAKE}]
    advice = {"reconnect": "none", "interval": 0}
    return [
        error_reply({**m, "channel": m.get("channel") if isinstance(m.get("channel"), str) else HANDSHAKE},
                    ERR_UNAUTHORIZED, advice)
        for m in messages
    ]


def format_error_reply(payload: Any, problem: str) -> Message:
    """The reply to a malformed batch: names the problem, echoes what it can of the first message."""
    first = payload[0] if isinstance(payload, list) and payload else payload
    echo: Message = {"channel": "/meta/unknown"}
    if isinstance(first, dict):
        if isinstance(first.get("channel"), str):
            echo["channel"] = first["channel"]
        if "id" in first:
            echo["id"] = first["id"]
    return error_reply(echo, f"400::{problem}")


def dumps(value: Any) -> str:
    """Compact JSON for the wire."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def join_wire(events: list[str], replies: list[Message]) -> str:
    """A JSON array of pre-serialised events followed by replies, without re-encoding the events."""
    parts = list(events)
    parts.extend(dumps(r) for r in replies)
    return "[" + ",".join(parts) + "]"
