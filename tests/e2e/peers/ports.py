"""Free loopback ports for test peers, found by probing (never assumed).

Other sessions on shared machines hold 5060, 5070, 5080, 8080 and more, so every port a peer gets is
probed by binding it on 127.0.0.1 (UDP and/or TCP) right before it is handed out.  Ports handed out by
this process are remembered, so two peers started in one test never get the same port even though the
probe sockets are closed before the peer binds.
"""

from __future__ import annotations

import random
import socket
import threading

HOST = "127.0.0.1"
# Well-known ports other services on shared machines use; never hand them out even if free right now.
AVOID: frozenset[int] = frozenset({5060, 5061, 5070, 5071, 5080, 5081, 8080})

_lock = threading.Lock()
_reserved: set[int] = set()


def _ephemeral_range() -> tuple[int, int]:
    """The kernel's range for port-0 binds; blocks are picked below it so port-0 binds cannot land inside."""
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            lo, hi = (int(x) for x in f.read().split())
            return lo, hi
    except (OSError, ValueError):
        return 32768, 60999


def port_is_free(port: int, *, udp: bool = True, tcp: bool = True) -> bool:
    """True when `port` can be bound on 127.0.0.1 for every requested protocol (no SO_REUSEADDR)."""
    kinds = ([socket.SOCK_DGRAM] if udp else []) + ([socket.SOCK_STREAM] if tcp else [])
    socks: list[socket.socket] = []
    try:
        for kind in kinds:
            s = socket.socket(socket.AF_INET, kind)
            socks.append(s)
            s.bind((HOST, port))
        return True
    except OSError:
        return False
    finally:
        for s in socks:
            s.close()


def _usable(ports: range, udp: bool, tcp: bool) -> bool:
    return all(
        0 < p < 65536 and p not in AVOID and p not in _reserved and port_is_free(p, udp=udp, tcp=tcp) for p in ports
    )


def free_port(*, udp: bool = True, tcp: bool = True, span: int = 1, attempts: int = 200) -> int:
    """A port P such that P..P+span-1 are all free on 127.0.0.1 (UDP and/or TCP); reserved for this process.

    baresip needs span=2: it binds SIP/TLS on sip_listen port + 1.
    """
    if span < 1:
        raise ValueError(f"span must be >= 1, got {span}")
    with _lock:
        for _ in range(attempts):
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM if udp else socket.SOCK_STREAM) as s:
                s.bind((HOST, 0))
                port = s.getsockname()[1]
            if _usable(range(port, port + span), udp, tcp):
                _reserved.update(range(port, port + span))
                return port
    raise RuntimeError(f"no free 127.0.0.1 port (udp={udp}, tcp={tcp}, span={span}) after {attempts} attempts")


def free_port_block(
    size: int, *, udp: bool = True, tcp: bool = False, low: int = 10000, high: int | None = None, attempts: int = 500
) -> int:
    """First port of a block of `size` consecutive free ports (even-aligned, for RTP/RTCP pairs); reserved.

    The block is searched in [low, high), by default below the kernel's ephemeral range so that port-0
    binds of other processes cannot take a port of the block between the probe and the peer's bind.
    """
    if size < 1:
        raise ValueError(f"size must be >= 1, got {size}")
    if high is None:
        high = _ephemeral_range()[0]
    if high - low < size:
        raise ValueError(f"range [{low}, {high}) cannot hold a block of {size} ports")
    rng = random.Random()
    with _lock:
        for _ in range(attempts):
            base = rng.randrange(low, high - size + 1)
            base -= base % 2
            if _usable(range(base, base + size), udp, tcp):
                _reserved.update(range(base, base + size))
                return base
    raise RuntimeError(f"no free block of {size} ports in [{low}, {high}) after {attempts} attempts")


def release(*ports: int) -> None:
    """Forget reservations (optional; a test session has far more ports than it uses)."""
    with _lock:
        _reserved.difference_update(ports)
