"""A small playout (jitter) buffer keyed by RTP timestamp, popped once per media tick.

The receiver side of RFC 3550 §6.4.1/§A.8 thinking, reduced to what a softphone needs: frames are placed by
their timestamp, so reordered packets land in the right slot, duplicates and packets older than the playout
point are dropped, and a missing frame plays as silence (``pop`` returns None). The buffer starts
``depth`` frames behind the first packet (the jitter it absorbs). It re-anchors when the stream jumps (new
talkspurt far ahead, timestamps off the frame grid, more than ``capacity`` frames queued) or when packets keep
arriving late (the sender's clock is slower than ours), so it never grows without bound.
"""

from __future__ import annotations

from typing import Generic, TypeVar

__all__ = ["PlayoutBuffer"]

T = TypeVar("T")
_MASK = 0xFFFFFFFF
_HALF = 0x80000000


class PlayoutBuffer(Generic[T]):
    __slots__ = (
        "spf",
        "depth",
        "capacity",
        "late_limit",
        "_frames",
        "_next",
        "_late_run",
        "accepted",
        "late",
        "duplicates",
        "resyncs",
        "played",
        "missing",
    )

    def __init__(self, samples_per_frame: int = 160, depth: int = 2, capacity: int = 16, late_limit: int = 5) -> None:
        if depth < 0 or capacity <= depth:
            raise ValueError("playout: need 0 <= depth < capacity")
        self.spf = samples_per_frame
        self.depth = depth
        self.capacity = capacity
        self.late_limit = late_limit
        self._frames: dict[int, T] = {}
        self._next: int | None = None
        self._late_run = 0
        self.accepted = 0
        self.late = 0
        self.duplicates = 0
        self.resyncs = 0
        self.played = 0
        self.missing = 0

    def __len__(self) -> int:
        return len(self._frames)

    @property
    def next_timestamp(self) -> int | None:
        """Timestamp the next :meth:`pop` plays, or None before the first packet."""
        return self._next

    def reset(self) -> None:
        """Forget everything (new SSRC, receive switched off); the next packet anchors again."""
        self._frames.clear()
        self._next = None
        self._late_run = 0

    def push(self, timestamp: int, item: T) -> bool:
        """Place one frame; False if it was dropped (late or duplicate)."""
        nxt = self._next
        if nxt is None:
            self._anchor(timestamp)
            nxt = self._next
            assert nxt is not None
        d = (timestamp - nxt) & _MASK
        if d >= _HALF:
            self._late_run += 1
            if self._late_run < self.late_limit:
                self.late += 1
                return False
            self._anchor(timestamp)  # persistently late: the sender runs slow; start over behind it
        elif d % self.spf:
            self._anchor(timestamp)  # off our frame grid: a new stream / talkspurt with unrelated timestamps
        elif d >= self.capacity * self.spf:
            self._anchor(timestamp)  # far ahead: keep what is still playable after moving the playout point
        self._late_run = 0
        frames = self._frames
        if timestamp in frames:
            self.duplicates += 1
            return False
        frames[timestamp] = item
        self.accepted += 1
        return True

    def pop(self) -> T | None:
        """The frame due this tick (None = gap or not started: play silence); advances one frame."""
        nxt = self._next
        if nxt is None:
            return None
        self._next = (nxt + self.spf) & _MASK
        item = self._frames.pop(nxt, None)
        if item is None:
            self.missing += 1
        else:
            self.played += 1
        return item

    def _anchor(self, timestamp: int) -> None:
        new_next = (timestamp - self.depth * self.spf) & _MASK
        if self._next is not None:
            self.resyncs += 1
        self._next = new_next
        frames = self._frames
        if frames:
            span = self.capacity * self.spf
            spf = self.spf
            keep = {}
            for ts, v in frames.items():
                d = (ts - new_next) & _MASK
                if d < span and not d % spf:
                    keep[ts] = v
            frames.clear()
            frames.update(keep)
