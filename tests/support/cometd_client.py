"""A GWS-style CometD subscriber for tests, built on the real PyPI client ``aiocometd_ng``.

It connects to ``{base}/api/v2/notifications`` the way an agent desktop does (HTTP Basic on every
request, plus the ``JSESSIONID`` cookie when one is given), subscribes to ``/v2/me/devices`` and
``/v2/me/calls``, and keeps every message it receives, in arrival order, so a test can
``await client.wait_for(predicate)`` and afterwards check the order of what arrived.

Notes on aiocometd_ng 0.5.6 (see the peers recipe):
* it handshakes over long-polling and then switches to the negotiated transport, reusing the
  clientId; headers come from extensions, so an extension adds Authorization/Cookie (for websocket
  they go on the upgrade request);
* its aiohttp session ignores cookies set for IP hosts (127.0.0.1), hence the explicit header;
* ``close()`` logs a harmless CancelledError traceback from ``TransportBase._connect_done``.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import time
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import aiocometd_ng
from aiocometd_ng.extensions import Extension

__all__ = [
    "CALLS",
    "DEVICES",
    "CometdClient",
    "CometdMessage",
    "call_message",
    "cometd_client",
]

DEVICES = "/v2/me/devices"
CALLS = "/v2/me/calls"

Predicate = Callable[["CometdMessage"], bool]


@dataclass(frozen=True, slots=True)
class CometdMessage:
    """One event delivered on a subscribed channel, with its arrival index and time."""

    index: int
    channel: str
    data: dict[str, Any]
    received_at: float

    @property
    def message_type(self) -> str | None:
        return self.data.get("messageType")

    @property
    def notification_type(self) -> str | None:
        return self.data.get("notificationType")

    @property
    def call(self) -> dict[str, Any]:
        """The call resource of a CallStateChangeMessage ({} otherwise)."""
        call = self.data.get("call")
        return call if isinstance(call, dict) else {}

    @property
    def call_state(self) -> str | None:
        return self.call.get("state")

    def summary(self) -> str:
        if self.message_type == "CallStateChangeMessage":
            c = self.call
            return (f"#{self.index} {self.channel} {self.notification_type} call={str(c.get('id'))[:8]} "
                    f"state={c.get('state')} rec={c.get('recordingState')} caps={c.get('capabilities')}")
        if self.message_type == "DeviceStateChangeMessage":
            devs = self.data.get("devices") or [{}]
            return f"#{self.index} {self.channel} device {devs[0].get('phoneNumber')} {devs[0].get('userState')}"
        return f"#{self.index} {self.channel} {self.data}"


def call_message(state: str | None = None, *, call_id: str | None = None, notification: str | None = "StatusChange",
                 **call_fields: Any) -> Predicate:
    """Predicate for a CallStateChangeMessage (optionally of one call, state, notificationType, call fields)."""

    def match(msg: CometdMessage) -> bool:
        if msg.channel != CALLS or msg.message_type != "CallStateChangeMessage":
            return False
        if notification is not None and msg.notification_type != notification:
            return False
        call = msg.call
        if state is not None and call.get("state") != state:
            return False
        if call_id is not None and call.get("id") != call_id:
            return False
        return all(call.get(k) == v for k, v in call_fields.items())

    return match


class _GwsAuth(Extension):
    """Adds the desktop's credentials to every outgoing request (and the websocket upgrade)."""

    def __init__(self, username: str, password: str, cookies: Mapping[str, str]) -> None:
        token = base64.b64encode(f"{username}:{password}".encode()).decode()
        self._headers = {"Authorization": f"Basic {token}"}
        if cookies:
            self._headers["Cookie"] = "; ".join(f"{k}={v}" for k, v in cookies.items())

    async def outgoing(self, payload: list[dict[str, Any]], headers: dict[str, str]) -> None:
        headers.update(self._headers)

    async def incoming(self, payload: list[dict[str, Any]], headers: Any = None) -> None:
        return None


class CometdClient:
    """aiocometd_ng client subscribed to the GWS user topics; every event kept in ``messages``."""

    def __init__(self, base_url: str, username: str, password: str, *, transport: str = "long-polling",
                 cookies: Mapping[str, str] | None = None,
                 channels: Iterable[str] = (DEVICES, CALLS)) -> None:
        self.url = base_url.rstrip("/") + "/api/v2/notifications"
        self.username = username
        self.connection_type = aiocometd_ng.ConnectionType(transport)
        self.channels = tuple(channels)
        self.messages: list[CometdMessage] = []
        self._client = aiocometd_ng.Client(
            self.url, [self.connection_type], extensions=[_GwsAuth(username, password, cookies or {})],
            max_pending_count=0, connection_timeout=5.0)
        self._changed = asyncio.Condition()
        self._reader: asyncio.Task[None] | None = None
        self._failure: BaseException | None = None

    async def start(self) -> CometdClient:
        """Handshake, connect, subscribe; returns once every subscription was confirmed."""
        await self._client.open()
        for channel in self.channels:
            await self._client.subscribe(channel)
        self._reader = asyncio.create_task(self._read(), name=f"cometd-{self.username}")
        return self

    @property
    def negotiated_transport(self) -> str | None:
        ct = self._client.connection_type
        return ct.value if ct is not None else None

    async def _read(self) -> None:
        try:
            async for raw in self._client:
                data = raw.get("data")
                msg = CometdMessage(index=len(self.messages), channel=str(raw.get("channel")),
                                    data=data if isinstance(data, dict) else {"value": data},
                                    received_at=time.monotonic())
                self.messages.append(msg)
                async with self._changed:
                    self._changed.notify_all()
        except asyncio.CancelledError:
            raise
        except BaseException as exc:  # the server dropped us or the transport failed: waiters must know
            self._failure = exc
            async with self._changed:
                self._changed.notify_all()

    def mark(self) -> int:
        """Index to pass as ``since=`` so a wait only looks at later messages."""
        return len(self.messages)

    def find(self, predicate: Predicate, since: int = 0) -> CometdMessage | None:
        for msg in self.messages[since:]:
            if predicate(msg):
                return msg
        return None

    def all(self, predicate: Predicate, since: int = 0) -> list[CometdMessage]:
        return [m for m in self.messages[since:] if predicate(m)]

    async def wait_for(self, predicate: Predicate, timeout: float = 5.0, since: int = 0) -> CometdMessage:
        """First message at index >= ``since`` satisfying ``predicate``, waiting up to ``timeout`` s."""
        try:
            async with asyncio.timeout(timeout):
                async with self._changed:
                    while (msg := self.find(predicate, since)) is None:
                        if self._failure is not None:
                            raise AssertionError(f"cometd client {self.username} failed: {self._failure!r}")
                        await self._changed.wait()
                    return msg
        except TimeoutError:
            seen = "\n  ".join(m.summary() for m in self.messages[since:]) or "(nothing)"
            raise AssertionError(
                f"cometd client {self.username} ({self.negotiated_transport}): no matching message within "
                f"{timeout}s; received since #{since}:\n  {seen}") from None

    async def close(self) -> None:
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._reader
        # disconnect answers the held /meta/connect; bound it anyway so teardown never hangs a test
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._client.close(), 5.0)


@contextlib.asynccontextmanager
async def cometd_client(base_url: str, username: str, password: str | None = None, *,
                        transport: str = "long-polling", cookies: Mapping[str, str] | None = None,
                        channels: Iterable[str] = (DEVICES, CALLS)) -> AsyncIterator[CometdClient]:
    """``async with cometd_client(gw.base_url, "agent1") as c: ...`` (password defaults to ``<user>pw``)."""
    client = CometdClient(base_url, username, password or f"{username}pw", transport=transport,
                          cookies=cookies, channels=channels)
    await client.start()
    try:
        yield client
    finally:
        await client.close()
