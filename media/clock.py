"""The one media clock that paces every leg: 20 ms ticks on absolute deadlines.

``TickSchedule`` is the pure arithmetic (deadline n = start + n * ptime). Sleeping until an absolute
deadline, instead of "ptime after the last tick", keeps the send grid from drifting by the loop's latency.
After a stall (GC pause, a blocking call, overload) the missed deadlines are *skipped* and counted, instead
of being run back to back: a burst of packets would only hit the far end's jitter buffer as late audio. The
tick reports how many frame periods elapsed, so legs keep their RTP timestamps and recordings in step with
real time (RFC 3550 §5.1: the timestamp follows the sampling clock, not the packet count).

``MediaClock`` is the asyncio task: one timer per tick for all legs, work batched in a single callback.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from typing import Protocol

__all__ = ["ClockMember", "MediaClock", "TickSchedule"]

log = logging.getLogger(__name__)


class TickSchedule:
    """Deadline arithmetic, fed with ``now`` values; no I/O, no clock of its own."""

    __slots__ = ("start", "ptime", "_n", "ticks", "skipped")

    def __init__(self, start: float, ptime: float = 0.020) -> None:
        if ptime <= 0:
            raise ValueError("ptime must be > 0")
        self.start = start
        self.ptime = ptime
        self._n = 0  # index of the next deadline
        self.ticks = 0
        self.skipped = 0

    @property
    def index(self) -> int:
        """Index of the next deadline (0 before the first tick)."""
        return self._n

    def next_deadline(self) -> float:
        return self.start + self._n * self.ptime

    def tick(self, now: float) -> int:
        """Frame periods that elapsed at ``now``: 0 = not due yet, 1 = on time, 1 + k = k deadlines skipped."""
        due = math.floor((now - self.start) / self.ptime + 1e-9)
        if due < self._n:
            return 0
        skipped = due - self._n
        self._n = due + 1
        self.ticks += 1
        self.skipped += skipped
        return 1 + skipped


class ClockMember(Protocol):
    def _on_tick(self, frames: int, now: float) -> None: ...


class MediaClock:
    """Runs ``member._on_tick(frames, now)`` for every member on each deadline, in one batch."""

    def __init__(self, ptime: float = 0.020) -> None:
        self.ptime = ptime
        self._members: list[ClockMember] = []
        self._snapshot: tuple[ClockMember, ...] = ()
        self._task: asyncio.Task[None] | None = None
        self.schedule: TickSchedule | None = None
        self.busy_total = 0.0  # seconds spent inside ticks
        self.busy_max = 0.0
        self.errors = 0
        self._waiters: list[tuple[int, asyncio.Future[None]]] = []

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    @property
    def ticks(self) -> int:
        return self.schedule.ticks if self.schedule else 0

    @property
    def skipped(self) -> int:
        return self.schedule.skipped if self.schedule else 0

    def __len__(self) -> int:
        return len(self._members)

    def add(self, member: ClockMember) -> None:
        if member not in self._members:
            self._members.append(member)
            self._snapshot = tuple(self._members)

    def remove(self, member: ClockMember) -> None:
        try:
            self._members.remove(member)
        except ValueError:
            return
        self._snapshot = tuple(self._members)

    def start(self) -> None:
        if not self.running:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="media-clock")

    async def wait_periods(self, n: int = 1) -> None:
        """Return after ``n`` more frame periods have been processed (skipped ones count): lets callers
        wait on media time ("one second of audio sent") instead of sleeping on wall time."""
        if not self.running:
            raise RuntimeError("media clock is not running")
        start = self.schedule.index if self.schedule else 0
        fut = asyncio.get_running_loop().create_future()
        self._waiters.append((start + n, fut))
        await fut

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                pass
        waiters, self._waiters = self._waiters, []
        for _, fut in waiters:
            if not fut.done():
                fut.cancel()

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        sched = self.schedule = TickSchedule(loop.time(), self.ptime)
        while True:
            fut = loop.create_future()
            handle = loop.call_at(sched.next_deadline(), fut.set_result, None)
            try:
                await fut
            finally:
                handle.cancel()
            now = loop.time()
            frames = sched.tick(now)
            if frames:
                self._run_tick(frames, now)

    def _wake(self, index: int) -> None:
        still = []
        for target, fut in self._waiters:
            if fut.done():
                continue
            if target <= index:
                fut.set_result(None)
            else:
                still.append((target, fut))
        self._waiters = still

    def _run_tick(self, frames: int, now: float) -> None:
        t0 = time.perf_counter()
        for member in self._snapshot:
            try:
                member._on_tick(frames, now)
            except Exception:  # one bad leg must not stop the clock for all the others
                self.errors += 1
                if self.errors <= 10 or self.errors % 1000 == 0:
                    log.exception("media tick failed for %r (%d errors so far)", member, self.errors)
        if self._waiters:
            self._wake(self.schedule.index if self.schedule else 0)
        busy = time.perf_counter() - t0
        self.busy_total += busy
        if busy > self.busy_max:
            self.busy_max = busy
