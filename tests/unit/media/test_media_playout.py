"""Playout buffer: reorder, duplicates, late packets, gaps, re-anchoring and 32-bit wrap-around."""

from __future__ import annotations

import pytest

from media.playout import PlayoutBuffer

SPF = 160


def _drain(buf: PlayoutBuffer[str], n: int) -> list[str | None]:
    return [buf.pop() for _ in range(n)]


def test_nothing_before_the_first_packet() -> None:
    buf: PlayoutBuffer[str] = PlayoutBuffer(SPF, depth=2)
    assert buf.pop() is None and buf.next_timestamp is None


def test_plays_in_timestamp_order_after_depth_frames() -> None:
    buf: PlayoutBuffer[str] = PlayoutBuffer(SPF, depth=2)
    base = 1000
    for k in (0, 2, 1, 4, 3):  # reordered on the way
        assert buf.push(base + k * SPF, f"f{k}")
    assert _drain(buf, 8) == [None, None, "f0", "f1", "f2", "f3", "f4", None]
    assert buf.played == 5 and buf.late == 0


def test_duplicates_and_late_packets_are_dropped() -> None:
    buf: PlayoutBuffer[str] = PlayoutBuffer(SPF, depth=1)
    buf.push(0, "a")
    assert not buf.push(0, "a-again")
    assert buf.duplicates == 1
    assert _drain(buf, 2) == [None, "a"]
    assert not buf.push(0, "a-late")  # already played
    assert not buf.push(-SPF & 0xFFFFFFFF, "older")
    assert buf.late == 2
    buf.push(SPF, "b")
    assert buf.pop() == "b"


def test_gap_is_filled_with_silence() -> None:
    buf: PlayoutBuffer[str] = PlayoutBuffer(SPF, depth=0)
    buf.push(0, "a")
    buf.push(3 * SPF, "d")  # frames 1 and 2 lost
    assert _drain(buf, 4) == ["a", None, None, "d"]
    assert buf.missing == 2


def test_timestamp_wraps_around_32_bits() -> None:
    buf: PlayoutBuffer[str] = PlayoutBuffer(SPF, depth=0)
    start = 0xFFFFFFFF - SPF + 1  # next frame is at 0 after wrapping
    buf.push(start, "a")
    buf.push((start + SPF) & 0xFFFFFFFF, "b")
    buf.push((start + 2 * SPF) & 0xFFFFFFFF, "c")
    assert _drain(buf, 3) == ["a", "b", "c"]


def test_far_jump_reanchors_and_stays_bounded() -> None:
    buf: PlayoutBuffer[str] = PlayoutBuffer(SPF, depth=1, capacity=4)
    buf.push(0, "a")
    buf.push(SPF, "b")
    buf.push(100 * SPF, "x")  # new talkspurt far ahead: re-anchor behind it, drop what can't play
    assert buf.resyncs == 1 and len(buf) == 1
    assert _drain(buf, 2) == [None, "x"]


def test_off_grid_timestamp_reanchors() -> None:
    buf: PlayoutBuffer[str] = PlayoutBuffer(SPF, depth=0)
    buf.push(0, "a")
    buf.push(SPF + 7, "odd")  # not a whole frame after the stream: a new timeline
    assert buf.resyncs == 1
    assert buf.pop() == "odd"


def test_persistently_late_sender_reanchors() -> None:
    buf: PlayoutBuffer[str] = PlayoutBuffer(SPF, depth=0, late_limit=3)
    buf.push(10 * SPF, "ahead")
    _drain(buf, 1)
    assert not buf.push(0, "l1") and not buf.push(SPF, "l2")
    assert buf.push(2 * SPF, "l3")  # third late one in a row: the sender's clock is behind ours
    assert buf.resyncs == 1
    assert buf.pop() == "l3"


def test_bad_sizes() -> None:
    with pytest.raises(ValueError):
        PlayoutBuffer(SPF, depth=4, capacity=4)
