"""Media clock: deadline arithmetic with chosen ``now`` values, and the asyncio task driving members."""

from __future__ import annotations

import asyncio

import pytest

from media.clock import MediaClock, TickSchedule


def test_deadlines_are_absolute() -> None:
    s = TickSchedule(100.0, 0.020)
    assert s.next_deadline() == pytest.approx(100.0)
    assert s.tick(99.999) == 0  # early wake-up: not due
    assert s.tick(100.0) == 1
    assert s.next_deadline() == pytest.approx(100.020)
    # Waking 15 ms late does not shift the grid: the next deadline is still start + 2 * ptime.
    assert s.tick(100.035) == 1
    assert s.next_deadline() == pytest.approx(100.040)
    assert (s.ticks, s.skipped) == (2, 0)


def test_exact_deadline_float_values_are_due() -> None:
    s = TickSchedule(0.1, 0.02)
    for n in range(1000):
        assert s.tick(0.1 + n * 0.02) == 1, n
    assert s.skipped == 0


def test_stall_skips_missed_ticks_instead_of_bursting() -> None:
    s = TickSchedule(0.0, 0.020)
    assert s.tick(0.0) == 1
    # Stalled for 105 ms: deadlines 20, 40, 60, 80, 100 ms have passed. One tick runs now and reports
    # 5 elapsed frame periods (4 skipped); the next deadline is the first one in the future.
    assert s.tick(0.105) == 5
    assert s.skipped == 4
    assert s.next_deadline() == pytest.approx(0.120)
    assert s.tick(0.110) == 0
    assert s.tick(0.1201) == 1
    assert (s.ticks, s.skipped) == (3, 4)


def test_bad_ptime() -> None:
    with pytest.raises(ValueError):
        TickSchedule(0.0, 0)


class _Member:
    def __init__(self, stop_after: int, done: asyncio.Event) -> None:
        self.calls: list[tuple[int, float]] = []
        self.stop_after = stop_after
        self.done = done

    def _on_tick(self, frames: int, now: float) -> None:
        self.calls.append((frames, now))
        if len(self.calls) == self.stop_after:
            self.done.set()


class _Broken:
    def _on_tick(self, frames: int, now: float) -> None:
        raise RuntimeError("boom")


async def test_clock_task_ticks_members_on_the_grid_and_survives_errors() -> None:
    clock = MediaClock(0.010)
    done = asyncio.Event()
    good = _Member(5, done)
    clock.add(_Broken())
    clock.add(good)
    clock.add(good)  # idempotent
    assert len(clock) == 2
    clock.start()
    await asyncio.wait_for(done.wait(), 5)
    await clock.stop()
    assert not clock.running
    assert clock.errors >= 5
    assert clock.schedule is not None
    start = clock.schedule.start
    # Every call ran at or after the deadline it stands for: index (periods before) + (frames - 1).
    elapsed = 0
    for frames, now in good.calls:
        elapsed += frames
        assert now >= start + (elapsed - 1) * 0.010 - 1e-6
    clock.remove(good)
    clock.remove(good)
    assert len(clock) == 1


async def test_wait_periods_counts_media_time() -> None:
    clock = MediaClock(0.005)
    with pytest.raises(RuntimeError):
        await clock.wait_periods(1)
    clock.start()
    await asyncio.wait_for(clock.wait_periods(4), 5)
    assert clock.schedule is not None and clock.schedule.index >= 4
    pending = asyncio.ensure_future(clock.wait_periods(10_000))
    await asyncio.sleep(0)
    await clock.stop()
    with pytest.raises(asyncio.CancelledError):
        await pending
