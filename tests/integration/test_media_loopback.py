"""Two legs of a started MediaEngine talking to each other over 127.0.0.1: tones both ways, recordings
checked by content (frequency, energy, duration), and DTMF sent by A reported by B."""

from __future__ import annotations

import asyncio
import time
import wave
from pathlib import Path

import numpy as np

from media.dtmf import DtmfEvent
from media.engine import MediaEngine
from media.sources import make_source


def _channels(path: Path) -> tuple[int, np.ndarray, np.ndarray]:
    with wave.open(str(path)) as w:
        assert (w.getnchannels(), w.getsampwidth(), w.getframerate()) == (2, 2, 8000)
        n = w.getnframes()
        data = np.frombuffer(w.readframes(n), dtype="<i2").reshape(-1, 2).astype(np.float64)
    return n, data[:, 0], data[:, 1]


def _peak_hz(x: np.ndarray) -> float:
    spectrum = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    return float(np.fft.rfftfreq(len(x), 1 / 8000)[int(spectrum.argmax())])


def _rms(x: np.ndarray) -> float:
    return float(np.sqrt((x**2).mean()))


async def test_two_legs_tones_recordings_and_dtmf(tmp_path: Path) -> None:
    engine = MediaEngine(port_min=0, port_max=0)
    await engine.start()
    try:
        a = await engine.open_leg()
        b = await engine.open_leg()
        a.set_remote("127.0.0.1", b.local_port, 0, "PCMU", 101)
        b.set_remote("127.0.0.1", a.local_port, 0, "PCMU", 101)
        a.set_source(make_source("tone:440"))
        b.set_source(make_source("tone:1000"))
        digits: list[DtmfEvent] = []
        got_all = asyncio.Event()

        def on_dtmf(ev: DtmfEvent) -> None:
            digits.append(ev)
            if len(digits) == 4:
                got_all.set()

        b.on_dtmf = on_dtmf
        a.start_recording(tmp_path / "a.wav")
        b.start_recording(tmp_path / "b.wav")
        t0 = time.monotonic()
        a.start()
        b.start()
        while a.recorded_frames < 8000 or b.recorded_frames < 8000:  # ~1 s each, counted in media ticks
            await asyncio.wait_for(engine.wait_ticks(1), 1)
        elapsed = time.monotonic() - t0
        path_a = a.stop_recording()
        path_b = b.stop_recording()
        a.send_dtmf("19*#")
        await asyncio.wait_for(got_all.wait(), 5)
        stats = engine.stats()
    finally:
        await engine.stop()

    assert [d.digit for d in digits] == ["1", "9", "*", "#"]
    assert all(d.duration_ms == 100 for d in digits)

    for path, own_hz, remote_hz in ((path_a, 440, 1000), (path_b, 1000, 440)):
        assert path is not None
        frames, left, right = _channels(path)
        # Duration: one frame per tick, so the recording is as long as the time it ran (± a few ticks).
        assert frames % 160 == 0
        assert abs(frames / 8000 - elapsed) <= 0.1
        # LEFT = what this leg received (the other's tone), RIGHT = what it sent (its own tone).
        played = left[3 * 160 :]  # skip the playout delay at the start
        assert abs(_peak_hz(played) - remote_hz) <= 5
        assert abs(_peak_hz(right) - own_hz) <= 5
        full_scale_rms = 0.3 * 32767 / np.sqrt(2)
        assert abs(_rms(right) - full_scale_rms) / full_scale_rms < 0.02
        assert abs(_rms(played) - full_scale_rms) / full_scale_rms < 0.05  # G.711 round trip

    assert stats["malformed"] == 0 and stats["late"] == 0
    # Nothing lost on loopback: at most the last tick's two packets are still in flight.
    assert stats["packets_out"] > 2 * 50
    assert 0 <= stats["packets_out"] - stats["packets_in"] <= 2
