"""The media engine: RTP port pool, one media clock, and the legs. The API the telephony layer uses."""

from __future__ import annotations

import asyncio
import errno
import socket
from collections import Counter

from .clock import MediaClock
from .codecs import SAMPLE_RATE
from .errors import MediaError
from .rtp import RtpLeg

__all__ = ["MediaEngine"]

_COUNTERS = (
    "packets_sent",
    "packets_received",
    "bytes_sent",
    "bytes_received",
    "malformed",
    "late",
    "duplicates",
    "ignored",
    "send_errors",
    "dtmf_received",
)


class MediaEngine:
    """Owns every RTP leg of the process and paces them with a single clock task.

    Ports: RTP takes even ports (RFC 3550 §11: RTCP would be the next odd one), handed out round-robin
    from a cursor so a just-freed port is not reused at once (late packets of the old call would land in
    the new one). ``port_min == port_max == 0`` binds any free port instead (tests).
    """

    def __init__(
        self, host: str = "127.0.0.1", port_min: int = 20000, port_max: int = 20999, ptime_ms: int = 20
    ) -> None:
        if (port_min == 0) != (port_max == 0):
            raise MediaError("port_min and port_max must both be 0 (any free port) or both set")
        if not 0 <= port_min <= port_max <= 65535:
            raise MediaError(f"port range {port_min}-{port_max}: need 0 <= port_min <= port_max <= 65535")
        if ptime_ms <= 0 or SAMPLE_RATE * ptime_ms % 1000:
            raise MediaError(f"ptime_ms must be a positive whole number of samples at 8 kHz, got {ptime_ms}")
        self.host = host
        self.port_min = port_min
        self.port_max = port_max
        self.ptime_ms = ptime_ms
        self._family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self._clock = MediaClock(ptime_ms / 1000)
        self._legs: dict[int, RtpLeg] = {}
        first = port_min + (port_min & 1)
        self._first_port = first
        self._port_count = max(0, (port_max - first) // 2 + 1) if port_min else 0
        self._cursor = 0
        self._closed_totals: Counter[str] = Counter()

    # ---------------------------------------------------------------- lifecycle

    async def start(self) -> None:
        """Start the clock task (idempotent)."""
        self._clock.start()

    async def stop(self) -> None:
        """Close every leg (finishing recordings), then stop the clock."""
        for leg in list(self._legs.values()):
            await leg.close()
        await self._clock.stop()

    @property
    def running(self) -> bool:
        return self._clock.running

    async def wait_ticks(self, n: int = 1) -> None:
        """Return after ``n`` more media frame periods (20 ms each) have been processed by the clock."""
        await self._clock.wait_periods(n)

    # ---------------------------------------------------------------- legs

    async def open_leg(self) -> RtpLeg:
        """Bind a free even RTP port and start receiving on it; MediaError if the range is exhausted."""
        loop = asyncio.get_running_loop()
        sock = self._bind()
        leg = RtpLeg(sock, loop, self._clock, self.ptime_ms, on_closed=self._released)
        self._legs[leg.local_port] = leg
        try:
            loop.add_reader(sock.fileno(), leg._on_readable)
        except Exception:
            await leg.close()
            raise
        return leg

    def _socket(self, port: int) -> socket.socket:
        sock = socket.socket(self._family, socket.SOCK_DGRAM)
        try:
            sock.setblocking(False)
            sock.bind((self.host, port))
        except BaseException:
            sock.close()
            raise
        return sock

    def _bind(self) -> socket.socket:
        if not self.port_min:
            try:
                return self._socket(0)
            except OSError as exc:
                raise MediaError(f"cannot bind an RTP port on {self.host}: {exc.strerror or exc}") from None
        for _ in range(self._port_count):
            port = self._first_port + 2 * self._cursor
            self._cursor = (self._cursor + 1) % self._port_count
            if port in self._legs:
                continue
            try:
                return self._socket(port)
            except OSError as exc:
                if exc.errno in (errno.EADDRINUSE, errno.EACCES):
                    continue  # held by another process
                raise MediaError(f"cannot bind RTP port {self.host}:{port}: {exc.strerror or exc}") from None
        raise MediaError(
            f"no free RTP port in {self.port_min}-{self.port_max} on {self.host} ({len(self._legs)} legs open here)"
        )

    def _released(self, leg: RtpLeg) -> None:
        if self._legs.get(leg.local_port) is leg:
            del self._legs[leg.local_port]
        st = leg.stats
        for name in _COUNTERS:
            self._closed_totals[name] += getattr(st, name)

    @property
    def leg_count(self) -> int:
        return len(self._legs)

    def legs(self) -> list[RtpLeg]:
        return list(self._legs.values())

    def ports_in_use(self) -> set[int]:
        return set(self._legs)

    def stats(self) -> dict[str, float | int]:
        """Engine totals (closed legs included) and clock figures."""
        totals = Counter(self._closed_totals)
        for leg in self._legs.values():
            st = leg.stats
            for name in _COUNTERS:
                totals[name] += getattr(st, name)
        clock = self._clock
        ticks = clock.ticks
        return {
            "legs": len(self._legs),
            "legs_started": len(clock),
            "ticks": ticks,
            "skipped_ticks": clock.skipped,
            "tick_errors": clock.errors,
            "tick_busy_ms_avg": (clock.busy_total / ticks * 1000) if ticks else 0.0,
            "tick_busy_ms_max": clock.busy_max * 1000,
            "packets_in": totals["packets_received"],
            "packets_out": totals["packets_sent"],
            "bytes_in": totals["bytes_received"],
            "bytes_out": totals["bytes_sent"],
            "malformed": totals["malformed"],
            "late": totals["late"],
            "duplicates": totals["duplicates"],
            "ignored": totals["ignored"],
            "send_errors": totals["send_errors"],
            "dtmf_received": totals["dtmf_received"],
        }
