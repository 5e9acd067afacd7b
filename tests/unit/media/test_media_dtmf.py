"""RFC 4733 receiver (crafted packet sequences) and the paced sender's packet sequence."""

from __future__ import annotations

import pytest

from media.dtmf import DtmfEvent, DtmfReceiver, DtmfSender, decode_event, encode_event


def _press(
    rx: DtmfReceiver,
    ts: int,
    code: int,
    t0: float,
    frames: int = 5,
    unit: int = 160,
    ends: int = 3,
    updates: bool = True,
) -> list[DtmfEvent]:
    """Feed one key press as a sender does: updates every 20 ms, then `ends` end packets."""
    out: list[DtmfEvent] = []
    now = t0
    if updates:
        for k in range(1, frames):
            out += rx.feed(ts, encode_event(code, False, 10, k * unit), now)
            now += 0.02
    for _ in range(ends):
        out += rx.feed(ts, encode_event(code, True, 10, frames * unit), now)
        now += 0.02
    return out


def test_payload_round_trip() -> None:
    p = encode_event(11, True, 10, 800)
    assert p == bytes([11, 0x80 | 10]) + (800).to_bytes(2, "big")
    assert decode_event(p) == (11, True, 10, 800)
    with pytest.raises(ValueError):
        decode_event(b"\x01\x02")


def test_digit_reported_once_on_end_with_duration() -> None:
    rx = DtmfReceiver()
    got = _press(rx, 5000, 1, 0.0)  # 4 updates + 3 end packets, same timestamp
    assert got == [DtmfEvent("1", 100)]
    assert not rx.pending and rx.events == 1


def test_sequence_of_digits_in_order_including_repeats() -> None:
    rx = DtmfReceiver()
    got: list[DtmfEvent] = []
    t = 0.0
    for i, code in enumerate([5, 5, 10, 11, 12, 0]):
        got += _press(rx, 1000 + i * 1280, code, t)
        t += 0.16
    assert [e.digit for e in got] == ["5", "5", "*", "#", "A", "0"]


def test_retransmitted_and_late_packets_are_deduplicated() -> None:
    rx = DtmfReceiver()
    assert _press(rx, 100, 3, 0.0, ends=3) == [DtmfEvent("3", 100)]
    # A late update and yet another end packet of the same event (same timestamp): ignored.
    assert rx.feed(100, encode_event(3, False, 10, 480), 0.2) == []
    assert rx.feed(100, encode_event(3, True, 10, 800), 0.2) == []
    assert _press(rx, 1380, 4, 0.3) == [DtmfEvent("4", 100)]
    # A straggler of the first event after the second one: older timestamp, ignored.
    assert rx.feed(100, encode_event(3, True, 10, 800), 0.5) == []
    assert rx.events == 2


def test_all_end_packets_lost_reported_by_timeout() -> None:
    rx = DtmfReceiver(timeout=0.3)
    assert _press(rx, 100, 7, 0.0, ends=0) == []  # last update at t = 0.06 s, duration 640
    assert rx.pending
    assert rx.poll(0.2) is None
    assert rx.poll(0.37) == DtmfEvent("7", 80)
    assert rx.poll(1.0) is None and not rx.pending
    assert rx.feed(100, encode_event(7, True, 10, 800), 1.1) == []  # its end finally arrives: already reported


def test_end_lost_then_next_event_reports_previous_first() -> None:
    rx = DtmfReceiver()
    assert _press(rx, 100, 8, 0.0, ends=0) == []
    got = _press(rx, 1380, 9, 0.1)
    assert [e.digit for e in got] == ["8", "9"]


def test_only_end_packets_received() -> None:
    rx = DtmfReceiver()
    assert _press(rx, 100, 2, 0.0, updates=False) == [DtmfEvent("2", 100)]


def test_48khz_clocked_durations_are_detected() -> None:
    # baresip 1.0 + opus: durations (and timestamps) advance 960 per 20 ms although the SDP says 8000.
    rx = DtmfReceiver(clock_rate=8000)
    first = _press(rx, 960_000, 1, 0.0, unit=960)
    assert first == [DtmfEvent("1", 100)]
    assert rx.duration_rate == 48000
    second = _press(rx, 960_000 + 7680, 2, 0.2, unit=960, frames=10)
    assert second == [DtmfEvent("2", 200)]
    # A press seen only as end packets now uses the measured rate too.
    assert _press(rx, 960_000 + 20000, 3, 0.5, unit=960, updates=False) == [DtmfEvent("3", 100)]


def test_long_event_segments_are_merged() -> None:
    # RFC 4733 §2.5.1.3: at the 16-bit limit the sender restarts the same event at ts + 65535.
    rx = DtmfReceiver()
    assert rx.feed(0, encode_event(6, False, 10, 65000), 8.1) == []
    assert rx.feed(0, encode_event(6, False, 10, 65535), 8.19) == []
    got = rx.feed(65535, encode_event(6, False, 10, 800), 8.29)
    got += rx.feed(65535, encode_event(6, True, 10, 1600), 8.39)
    assert got == [DtmfEvent("6", round((65535 + 1600) / 8))]


def test_non_dtmf_events_and_junk_are_ignored() -> None:
    rx = DtmfReceiver()
    assert rx.feed(1, encode_event(16, True, 10, 800), 0.0) == []  # flash
    assert rx.feed(2, b"\x01", 0.0) == []
    assert (rx.ignored, rx.malformed) == (1, 1)


def _run(tx: DtmfSender, ticks: int, ts0: int = 1000) -> list[tuple[int, bytes, bool, int] | None]:
    out: list[tuple[int, bytes, bool, int] | None] = []
    for k in range(ticks):
        ts = ts0 + k * 160
        pkt = tx.next_packet(ts)
        out.append(None if pkt is None else (k, *pkt))
    return out


def test_sender_packet_sequence_for_one_digit() -> None:
    tx = DtmfSender()
    tx.queue("5")
    assert tx.active
    seq = _run(tx, 9)
    sent = [p for p in seq if p is not None]
    assert [k for k, *_ in sent] == [0, 1, 2, 3, 4, 5, 6]  # one packet per frame
    assert {ts for *_, ts in sent} == {1000}  # the event's start timestamp throughout
    assert [marker for _, _, marker, _ in sent] == [True] + [False] * 6
    decoded = [decode_event(payload) for _, payload, _, _ in sent]
    assert [d[3] for d in decoded] == [160, 320, 480, 640, 800, 800, 800]  # duration grows, then final
    assert [d[1] for d in decoded] == [False] * 4 + [True] * 3  # 3 end packets
    assert {d[0] for d in decoded} == {5}
    assert seq[7] is None and seq[8] is None and not tx.active  # audio resumes


def test_sender_paces_digits_with_gap_and_new_timestamps() -> None:
    tx = DtmfSender()
    tx.queue("1#", duration_ms=100, gap_ms=50)
    seq = _run(tx, 20)
    starts = [(k, ts) for p in seq if p is not None for k, _, marker, ts in [p] if marker]
    # Tone 100 ms (5 frames) + gap 50 ms (3 frames): the second digit starts 8 frames later.
    assert starts == [(0, 1000), (8, 1000 + 8 * 160)]
    assert seq[7] is None  # one audio frame between the last end packet and the next digit
    codes = [decode_event(p[1])[0] for p in seq if p is not None]
    assert codes == [1] * 7 + [11] * 7


def test_sender_validates() -> None:
    tx = DtmfSender()
    with pytest.raises(ValueError, match="'x'"):
        tx.queue("12x")
    with pytest.raises(ValueError, match="duration_ms"):
        tx.queue("1", duration_ms=10_000)
    tx.queue("abcd*#0")  # letters are case-insensitive
    assert tx.queued == 7
    tx.clear()
    assert not tx.active
