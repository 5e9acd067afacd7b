"""RFC 4733 telephone-events (DTMF): a receiver that reports each key once, and a clock-paced sender.

Payload (RFC 4733 §2.3): event (8 bits), E (end) bit, R bit, volume (6 bits), duration (16 bits, in RTP
timestamp units). All packets of one event carry the same RTP timestamp, the event's start (§2.5.1.1), and
the duration grows; the final packet has E set and is sent three times (§2.5.1.4).
"""

from __future__ import annotations

import math
import struct
from collections import deque
from dataclasses import dataclass

__all__ = ["DIGITS", "DtmfEvent", "DtmfReceiver", "DtmfSender", "decode_event", "encode_event", "validate_digits"]

DIGITS = "0123456789*#ABCD"
"""Event codes 0-15 in order (RFC 4733 §3.2, table 3)."""
_CODE = {d: i for i, d in enumerate(DIGITS)}
_EVENT = struct.Struct("!BBH")
_MASK32 = 0xFFFFFFFF
_MAX_DURATION = 0xFFFF


@dataclass(frozen=True, slots=True)
class DtmfEvent:
    """One key press as received: the digit and how long it was held."""

    digit: str
    duration_ms: int


def encode_event(code: int, end: bool, volume: int, duration: int) -> bytes:
    """One 4-byte telephone-event payload (RFC 4733 §2.3)."""
    return _EVENT.pack(code, (0x80 if end else 0) | (volume & 0x3F), min(duration, _MAX_DURATION))


def decode_event(payload: bytes) -> tuple[int, bool, int, int]:
    """(event code, end bit, volume, duration) of the first event block; ValueError if too short."""
    if len(payload) < 4:
        raise ValueError(f"telephone-event payload: {len(payload)} bytes, need 4")
    code, flags, duration = _EVENT.unpack_from(payload)
    return code, bool(flags & 0x80), flags & 0x3F, duration


def validate_digits(digits: str) -> str:
    """Upper-cased digits, or ValueError naming the first bad character."""
    for ch in digits:
        if ch.upper() not in _CODE:
            raise ValueError(f"dtmf digits: {ch!r} is not one of 0-9 * # A-D")
    if not digits:
        raise ValueError("dtmf digits: empty")
    return digits.upper()


class DtmfReceiver:
    """Turns telephone-event packets into one :class:`DtmfEvent` per key press.

    A digit is reported **on its end** (the first packet with E set), with the duration from that packet,
    because only then is the duration known. Duplicates are removed by RTP timestamp: updates and the
    retransmitted end packets of a reported event, and late packets of earlier events, are ignored. If the
    end packets are all lost, the digit is reported when a new event starts or when no packet of it has
    arrived for ``timeout`` seconds (see :meth:`poll`), with the last duration seen.

    Durations are converted with ``clock_rate``; but some senders (baresip 1.0 with opus) count them on a
    48 kHz clock although the SDP says telephone-event/8000. When an event spans at least two packets the
    receiver measures units per second of arrival time and snaps to the nearest of 8/16/48 kHz; the last
    measured rate is then used for events too short to measure. The digit itself is right either way.
    Long events (§2.5.1.3) that restart at a new timestamp after the 16-bit duration overflows are merged.
    """

    __slots__ = (
        "clock_rate",
        "timeout",
        "_measured_rate",
        "_ts",
        "_code",
        "_duration",
        "_first_duration",
        "_first_at",
        "_last_at",
        "_ended",
        "_carry",
        "_recent",
        "events",
        "ignored",
        "malformed",
    )

    RATES = (8000, 16000, 48000)

    def __init__(self, clock_rate: int = 8000, timeout: float = 0.3) -> None:
        self.clock_rate = clock_rate
        self.timeout = timeout
        self._measured_rate: int | None = None
        self._ts: int | None = None
        self._code = 0
        self._duration = 0
        self._first_duration = 0
        self._first_at = 0.0
        self._last_at = 0.0
        self._ended = True
        self._carry = 0  # units of earlier segments of a long event
        self._recent: deque[int] = deque(maxlen=8)
        self.events = 0
        self.ignored = 0
        self.malformed = 0

    @property
    def pending(self) -> bool:
        """An event has started and not yet been reported (so :meth:`poll` has work)."""
        return not self._ended

    @property
    def duration_rate(self) -> int:
        """Units per second used for durations (measured if it could be, else ``clock_rate``)."""
        return self._measured_rate or self.clock_rate

    def reset(self) -> None:
        """Forget the stream (new SSRC / new remote): nothing pending is reported."""
        self._ts = None
        self._ended = True
        self._carry = 0
        self._recent.clear()

    def feed(self, timestamp: int, payload: bytes, now: float) -> list[DtmfEvent]:
        """One received telephone-event packet; returns the digits it completes (usually none or one)."""
        try:
            code, end, _volume, duration = decode_event(payload)
        except ValueError:
            self.malformed += 1
            return []
        if code >= len(DIGITS):  # flash hook, tones... not DTMF keys (RFC 4733 §3.2)
            self.ignored += 1
            return []
        out: list[DtmfEvent] = []
        ts = self._ts
        if ts is not None and timestamp == ts:
            if self._ended:
                return out  # retransmitted end / late update of the reported event
            self._update(duration, now)
            if end:
                out.append(self._finish())
            return out
        if timestamp in self._recent:
            return out
        if ts is not None:
            diff = (timestamp - ts) & _MASK32
            if diff >= 0x80000000 and (not self._ended or now - self._last_at < 1.0):
                return out  # an older event's late packet (after a quiet second: the sender restarted its clock)
            if not self._ended:
                long_event = self._duration >= _MAX_DURATION - 2000
                if code == self._code and long_event and now - self._last_at <= self.timeout:
                    # §2.5.1.3: the same long event continues in a new segment.
                    self._carry += self._duration
                    self._recent.append(ts)
                    self._start(timestamp, code, duration, now, keep_carry=True)
                    if end:
                        out.append(self._finish())
                    return out
                out.append(self._finish())
        self._start(timestamp, code, duration, now, keep_carry=False)
        if end:
            out.append(self._finish())
        return out

    def poll(self, now: float) -> DtmfEvent | None:
        """Report an event whose end packets were lost, once ``timeout`` has passed since its last packet."""
        if not self._ended and now - self._last_at > self.timeout:
            return self._finish()
        return None

    def _start(self, timestamp: int, code: int, duration: int, now: float, keep_carry: bool) -> None:
        if self._ts is not None:
            self._recent.append(self._ts)
        self._ts = timestamp
        self._code = code
        self._duration = duration
        self._first_duration = duration
        self._first_at = now
        self._last_at = now
        self._ended = False
        if not keep_carry:
            self._carry = 0

    def _update(self, duration: int, now: float) -> None:
        if duration > self._duration:
            self._duration = duration
        self._last_at = now

    def _finish(self) -> DtmfEvent:
        self._ended = True
        span_t = self._last_at - self._first_at
        span_d = self._duration - self._first_duration
        if span_t >= 0.03 and span_d > 0:
            measured = span_d / span_t
            self._measured_rate = min(self.RATES, key=lambda r: abs(math.log(measured / r)))
        total = self._carry + self._duration
        self._carry = 0
        self.events += 1
        return DtmfEvent(DIGITS[self._code], round(total * 1000 / self.duration_rate))


class DtmfSender:
    """Paces queued digits on the media clock: :meth:`next_packet` is called once per tick.

    Per digit (RFC 4733 §2.5.1): one packet per frame, all with the event's start timestamp, marker on the
    first, duration growing by one frame each; the last frame's packet has E set and is sent three times in
    total (on the following ticks); then audio resumes. The next digit starts ``gap_ms`` after the tone ends
    (and never before its predecessor's last end packet).
    """

    __slots__ = (
        "ptime_ms",
        "clock_rate",
        "volume",
        "_queue",
        "_code",
        "_ts",
        "_sent",
        "_tone",
        "_units",
        "_ends",
        "_gap",
        "_wait",
    )

    def __init__(self, ptime_ms: int = 20, clock_rate: int = 8000, volume: int = 10) -> None:
        self.ptime_ms = ptime_ms
        self.clock_rate = clock_rate
        self.volume = volume
        self._queue: deque[tuple[int, int, int, int]] = deque()
        self._code: int | None = None
        self._ts = 0
        self._sent = 0
        self._tone = 0
        self._units = 0
        self._ends = 0
        self._gap = 0
        self._wait = 0

    @property
    def active(self) -> bool:
        """Something to send or wait for: the leg must ask :meth:`next_packet` this tick."""
        return self._code is not None or self._wait > 0 or bool(self._queue)

    @property
    def queued(self) -> int:
        return len(self._queue) + (self._code is not None)

    def queue(self, digits: str, duration_ms: int = 100, gap_ms: int = 50) -> None:
        """Append digits; ValueError for a bad digit or a duration that does not fit 16 bits."""
        norm = validate_digits(digits)
        max_ms = _MAX_DURATION * 1000 // self.clock_rate
        if not 40 <= duration_ms <= max_ms:
            raise ValueError(f"dtmf duration_ms: must be in 40..{max_ms}, got {duration_ms}")
        if gap_ms < 0:
            raise ValueError(f"dtmf gap_ms: must be >= 0, got {gap_ms}")
        tone = max(1, math.ceil(duration_ms / self.ptime_ms))
        units = duration_ms * self.clock_rate // 1000
        gap = math.ceil(gap_ms / self.ptime_ms)
        for ch in norm:
            self._queue.append((_CODE[ch], tone, units, gap))

    def clear(self) -> None:
        """Drop queued digits; an event in progress still gets its end packets (never leave a key stuck)."""
        self._queue.clear()

    def next_packet(self, timestamp: int) -> tuple[bytes, bool, int] | None:
        """(payload, marker, RTP timestamp) to send this tick, or None: send audio this tick."""
        if self._code is None:
            if self._wait > 0:
                self._wait -= 1
                return None
            if not self._queue:
                return None
            self._code, self._tone, self._units, self._gap = self._queue.popleft()
            self._ts = timestamp
            self._sent = 0
            self._ends = 0
        code = self._code
        self._sent += 1
        first = self._sent == 1
        if self._sent < self._tone:
            duration = self._sent * self.clock_rate * self.ptime_ms // 1000
            return encode_event(code, False, self.volume, min(duration, self._units)), first, self._ts
        self._ends += 1
        if self._ends >= 3:
            self._code = None
            # The tone ended after `tone` frames; the next starts `gap` frames later, after the 2 extra ends.
            self._wait = max(0, self._gap - 2)
        return encode_event(code, True, self.volume, self._units), first, self._ts
