"""The asyncio driver of the SIP core: the only module in ``gateway.sip`` with sockets and a clock.

Like aioquic's ``QuicConnectionProtocol``: datagrams and stream frames go into the core with
``now = loop.time()``; after every input the driver sends what the core produced, hands the
core's events to the user, and keeps exactly one ``loop.call_at`` armed for the core's earliest
deadline (called with ``max(deadline, loop.time())`` so the core never sees an early timer).
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import resource
import socket
from collections.abc import Callable
from typing import Any, TypeVar

from .core import LineConfig, SipCore
from .errors import RemoteSipError
from .events import SipEvent
from .message import NEED_DATA, SipMessage, StreamFramer
from .peer import Peer
from .sdp import LocalMedia, NegotiatedMedia
from .uri import SipUri

__all__ = ["SipEndpoint"]

log = logging.getLogger("gateway.sip")
trace_log = logging.getLogger("gateway.sip.trace")

T = TypeVar("T")

#: Largest UDP payload we read; bigger datagrams are truncated by the kernel and then dropped.
_UDP_MAX = 65535


def default_max_inbound_tcp() -> int:
    """Inbound SIP/TCP connections kept at once: a quarter of the open-file limit (16..4096).

    Anyone can open TCP connections without sending SIP; kept without a bound they use up every file
    descriptor, and then neither HTTP clients nor RTP ports can be had. The other three quarters stay
    for those (two RTP sockets per internal call, HTTP/CometD clients, recordings)."""
    try:
        soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    except (ValueError, OSError):
        return 256
    if soft == resource.RLIM_INFINITY:
        return 4096
    return max(16, min(4096, soft // 4))


class _UdpProtocol(asyncio.DatagramProtocol):
    def __init__(self, endpoint: SipEndpoint) -> None:
        self.endpoint = endpoint

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:  # type: ignore[override]
        self.endpoint._feed(data, Peer("udp", addr[0], addr[1]))

    def error_received(self, exc: Exception) -> None:
        log.debug("udp error: %s", exc)


class _TcpConnection(asyncio.Protocol):
    """One SIP-over-TCP connection: frames with ``StreamFramer`` (RFC 3261 §18.3)."""

    def __init__(self, endpoint: SipEndpoint, conn_id: int, inbound: bool = False) -> None:
        self.endpoint = endpoint
        self.conn_id = conn_id
        self.inbound = inbound
        self.framer = StreamFramer()
        self.transport: asyncio.Transport | None = None
        self.remote: tuple[str, int] = ("", 0)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        peer = transport.get_extra_info("peername") or ("", 0)
        self.remote = (peer[0], peer[1])
        if self.inbound and not self.endpoint._admit_inbound(self.remote):
            self.transport = None
            transport.abort()  # type: ignore[attr-defined]
            return
        self.endpoint._tcp_conns[self.conn_id] = self
        self.endpoint._tcp_by_addr[self.remote] = self.conn_id

    def data_received(self, data: bytes) -> None:
        if self.transport is None:
            return  # refused in connection_made
        self.framer.receive_data(data)
        peer = Peer("tcp", self.remote[0], self.remote[1], self.conn_id)
        while True:
            before = self.framer.keepalives
            try:
                frame = self.framer.next_message()
            except RemoteSipError as exc:
                log.warning("tcp %s:%s: framing error (%s); closing connection", *self.remote, exc.reason)
                if self.transport is not None:
                    self.transport.close()
                return
            if self.framer.keepalives > before and self.transport is not None:
                self.transport.write(b"\r\n")  # RFC 5626 §4.4.1 pong
            if frame is NEED_DATA:
                return
            assert isinstance(frame, bytes)
            self.endpoint._feed(frame, peer)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.endpoint._tcp_conns.pop(self.conn_id, None) is not None and self.inbound:
            self.endpoint._tcp_inbound -= 1
        if self.endpoint._tcp_by_addr.get(self.remote) == self.conn_id:
            self.endpoint._tcp_by_addr.pop(self.remote, None)


class SipEndpoint:
    """Owns the UDP socket, the TCP listener/connections and the core's timer."""

    def __init__(self, core: SipCore, *, host: str, port: int, transports: list[str],
                 on_event: Callable[[SipEvent], None], trace: bool = False,
                 max_inbound_tcp: int | None = None) -> None:
        self.core = core
        self.max_inbound_tcp = max_inbound_tcp if max_inbound_tcp is not None else default_max_inbound_tcp()
        self._tcp_inbound = 0
        self.tcp_refused = 0
        self.host = host
        self.requested_port = port
        self.transports = [t.lower() for t in transports]
        self.on_event = on_event
        self.trace = trace
        self.ports: dict[str, int] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._udp: asyncio.DatagramTransport | None = None
        self._tcp_server: asyncio.base_events.Server | None = None
        self._tcp_conns: dict[int, _TcpConnection] = {}
        self._tcp_by_addr: dict[tuple[str, int], int] = {}
        self._tcp_pending: dict[tuple[str, int], list[bytes]] = {}
        self._next_conn = 1
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None
        self._flushing = False
        self._again = False
        self._resolved: dict[str, str] = {}
        self._idle_waiters: list[asyncio.Future[None]] = []
        self.dropped = 0

    # ------------------------------------------------------------------ lifecycle
    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        last_error: OSError | None = None
        for _attempt in range(20 if self.requested_port == 0 else 1):
            try:
                await self._bind(self.requested_port)
                break
            except OSError as exc:
                last_error = exc
                await self._close_sockets()
        else:
            raise OSError(f"cannot bind SIP {'/'.join(self.transports)} on {self.host}:{self.requested_port}: "
                          f"{last_error}")
        for t, p in self.ports.items():
            self.core.set_listen(t, self.host, p)
        if self.trace:
            self.core._trace = self._trace_message
        log.info("SIP listening on %s", ", ".join(f"{t}:{self.host}:{p}" for t, p in self.ports.items()))

    async def _bind(self, port: int) -> None:
        assert self._loop is not None
        self.ports = {}
        if "udp" in self.transports:
            transport, _ = await self._loop.create_datagram_endpoint(
                lambda: _UdpProtocol(self), local_addr=(self.host, port))
            self._udp = transport  # type: ignore[assignment]
            sock = transport.get_extra_info("socket")
            try:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 * 1024 * 1024)
            except OSError:
                pass
            port = sock.getsockname()[1]
            self.ports["udp"] = port
        if "tcp" in self.transports:
            self._tcp_server = await self._loop.create_server(
                lambda: self._new_tcp(inbound=True), self.host, port, reuse_address=True)
            self.ports["tcp"] = self._tcp_server.sockets[0].getsockname()[1]

    async def stop(self, timeout: float = 2.0) -> None:
        """End calls, unregister every line (waiting up to ``timeout`` s), close sockets."""
        if self._loop is None:
            return
        now = self._loop.time()
        try:
            self.core.terminate_all(now)
            self.core.unregister_all(now)
        except Exception:
            log.exception("error while ending calls/registrations")
        self._flush()
        if self.core.registrations_pending():
            fut: asyncio.Future[None] = self._loop.create_future()
            self._idle_waiters.append(fut)
            try:
                await asyncio.wait_for(fut, timeout)
            except TimeoutError:
                log.warning("%d registration(s) still pending at shutdown", self.core.registrations_pending())
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        await self._close_sockets()

    async def _close_sockets(self) -> None:
        if self._udp is not None:
            self._udp.close()
            self._udp = None
        if self._tcp_server is not None:
            self._tcp_server.close()
            for conn in list(self._tcp_conns.values()):
                if conn.transport is not None:
                    conn.transport.close()
            await self._tcp_server.wait_closed()
            self._tcp_server = None

    # ------------------------------------------------------------------ API used by telephony
    def now(self) -> float:
        assert self._loop is not None
        return self._loop.time()

    def run(self, fn: Callable[[float], T]) -> T:
        """Call ``fn(now)`` on the core, then send/dispatch what it produced."""
        try:
            return fn(self.now())
        finally:
            self._flush()

    def add_line(self, line: LineConfig) -> None:
        self.core.add_line(line)

    def invite(self, line_id: str, target: str, local: LocalMedia, *, via_proxy: SipUri | None = None,
               headers: tuple[tuple[str, str], ...] = ()) -> str:
        return self.run(lambda now: self.core.invite(line_id, target, local, now, via_proxy=via_proxy,
                                                     headers=headers))

    def ringing(self, session_id: str) -> None:
        self.run(lambda now: self.core.ringing(session_id, now))

    def answer(self, session_id: str, local: LocalMedia) -> NegotiatedMedia | None:
        return self.run(lambda now: self.core.answer(session_id, local, now))

    def reject(self, session_id: str, status: int, reason: str | None = None) -> None:
        self.run(lambda now: self.core.reject(session_id, status, now, reason))

    def hangup(self, session_id: str) -> None:
        self.run(lambda now: self.core.hangup(session_id, now))

    def register(self, line_id: str) -> None:
        self.run(lambda now: self.core.register(line_id, now))

    # ------------------------------------------------------------------ receive path
    def _new_tcp(self, inbound: bool = False) -> _TcpConnection:
        cid = self._next_conn
        self._next_conn += 1
        return _TcpConnection(self, cid, inbound)

    def _admit_inbound(self, remote: tuple[str, int]) -> bool:
        """Count an accepted connection in, or refuse it when ``max_inbound_tcp`` are open."""
        if self._tcp_inbound < self.max_inbound_tcp:
            self._tcp_inbound += 1
            return True
        self.tcp_refused += 1
        if self.tcp_refused == 1 or self.tcp_refused % 1000 == 0:
            log.warning("tcp %s:%s refused: %d inbound SIP connections open (the limit); %d refused so far",
                        *remote, self._tcp_inbound, self.tcp_refused)
        return False

    def _feed(self, data: bytes, peer: Peer) -> None:
        assert self._loop is not None
        try:
            self.core.receive_datagram(data, peer, self._loop.time())
        except Exception:
            # The core promises not to raise on bad input; a bug must still not stop the loop.
            self.dropped += 1
            log.exception("SIP core failed on a message from %s (%d bytes); dropped", peer, len(data))
        self._flush()

    def _on_timer(self) -> None:
        assert self._loop is not None
        deadline = self._timer_at or self._loop.time()
        self._timer = None
        self._timer_at = None
        try:
            self.core.handle_timer(max(deadline, self._loop.time()))
        except Exception:
            log.exception("SIP core failed in handle_timer")
        self._flush()

    # ------------------------------------------------------------------ output path
    def _flush(self) -> None:
        if self._flushing:
            self._again = True
            return
        self._flushing = True
        try:
            while True:
                self._again = False
                for data, peer in self.core.datagrams_to_send():
                    self._send(data, peer)
                while (ev := self.core.next_event()) is not None:
                    try:
                        self.on_event(ev)
                    except Exception:
                        log.exception("SIP event handler failed on %s", type(ev).__name__)
                if not self._again:
                    break
        finally:
            self._flushing = False
        self._arm_timer()
        if self._idle_waiters and not self.core.registrations_pending():
            for fut in self._idle_waiters:
                if not fut.done():
                    fut.set_result(None)
            self._idle_waiters.clear()

    def _arm_timer(self) -> None:
        assert self._loop is not None
        deadline = self.core.get_timer()
        if deadline == self._timer_at and self._timer is not None:
            return
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._timer_at = deadline
        if deadline is not None:
            self._timer = self._loop.call_at(deadline, self._on_timer)

    def _send(self, data: bytes, peer: Peer) -> None:
        host = peer.host
        if not _is_ip(host):
            resolved = self._resolved.get(host)
            if resolved is None:
                asyncio.ensure_future(self._resolve_then_send(data, peer))
                return
            host = resolved
        if peer.transport == "udp":
            if self._udp is None:
                log.warning("no UDP socket; dropping %d bytes to %s", len(data), peer)
                return
            self._udp.sendto(data, (host, peer.port))
            return
        self._send_tcp(data, host, peer)

    def _send_tcp(self, data: bytes, host: str, peer: Peer) -> None:
        conn = self._tcp_conns.get(peer.conn_id) if peer.conn_id is not None else None
        if conn is None:
            cid = self._tcp_by_addr.get((host, peer.port))
            conn = self._tcp_conns.get(cid) if cid is not None else None
        if conn is not None and conn.transport is not None and not conn.transport.is_closing():
            conn.transport.write(data)
            return
        key = (host, peer.port)
        if key in self._tcp_pending:
            self._tcp_pending[key].append(data)
            return
        self._tcp_pending[key] = [data]
        asyncio.ensure_future(self._connect_tcp(key))

    async def _connect_tcp(self, key: tuple[str, int]) -> None:
        assert self._loop is not None
        try:
            transport, proto = await asyncio.wait_for(
                self._loop.create_connection(lambda: self._new_tcp(), key[0], key[1],
                                             local_addr=(self.host, 0)), 10)
        except (TimeoutError, OSError) as exc:
            dropped = self._tcp_pending.pop(key, [])
            log.warning("tcp connect to %s:%s failed (%s); %d message(s) dropped", key[0], key[1], exc, len(dropped))
            return
        for data in self._tcp_pending.pop(key, []):
            transport.write(data)

    async def _resolve_then_send(self, data: bytes, peer: Peer) -> None:
        assert self._loop is not None
        try:
            infos = await self._loop.getaddrinfo(peer.host, peer.port, family=socket.AF_INET)
        except OSError as exc:
            log.warning("cannot resolve %s: %s; dropping message", peer.host, exc)
            return
        self._resolved[peer.host] = infos[0][4][0]
        self._send(data, peer)

    # ------------------------------------------------------------------ tracing
    def _trace_message(self, direction: str, msg: SipMessage | bytes, peer: Peer) -> None:
        if isinstance(msg, bytes):
            text = msg.decode("utf-8", errors="replace")
        else:
            text = msg.to_bytes().decode("utf-8", errors="replace")
        trace_log.info("%s %s\n%s", {"in": "<<<", "out": ">>>", "drop": "xxx"}.get(direction, direction), peer, text)

    def stats(self) -> dict[str, Any]:
        return {"tcp_connections": len(self._tcp_conns), "tcp_refused": self.tcp_refused, "core_errors": self.dropped,
                **self.core.stats()}


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
        return True
    except ValueError:
        return False
