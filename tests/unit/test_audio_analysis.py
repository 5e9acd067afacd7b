"""The e2e audio helpers (tests/e2e/peers/audio.py) on generated signals: they must be right before any
gateway audio assertion built on them means anything."""

from __future__ import annotations

import math
import struct
import wave
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.e2e.peers.audio import (
    WavError,
    analyze,
    assert_duration,
    assert_silence,
    assert_tone,
    dominant_frequency,
    read_wav,
    read_wav_info,
    rms_dbfs,
    tone,
    tone_profile,
    wav_is_complete,
    write_tone_wav,
    write_wav,
)


@pytest.mark.parametrize("freq", [440.0, 1000.0])
@pytest.mark.parametrize("rate", [8000, 16000, 48000])
def test_dominant_frequency_of_a_sine(tmp_path: Path, freq: float, rate: int) -> None:
    path = write_tone_wav(tmp_path / "t.wav", freq, 1.0, rate=rate)
    a = analyze(path)
    assert abs(a.frequency_hz - freq) < 0.5
    assert a.rate == rate
    assert a.duration_s == pytest.approx(1.0)
    assert a.rms_dbfs == pytest.approx(20 * math.log10(0.5 / math.sqrt(2)), abs=0.05)


def test_440_and_1000_are_told_apart(tmp_path: Path) -> None:
    path = write_tone_wav(tmp_path / "t.wav", 440.0, 1.0)
    assert_tone(path, 440, tol_hz=2)
    with pytest.raises(AssertionError, match=r"expected 1000 Hz ± 5.0 Hz, got 440.0 Hz"):
        assert_tone(path, 1000)


@given(freq=st.floats(min_value=100.0, max_value=3800.0))
@settings(max_examples=30, deadline=None)
def test_any_tone_in_the_telephone_band_is_found_within_1_hz(freq: float) -> None:
    assert abs(dominant_frequency(tone(freq, 0.5), 8000) - freq) < 1.0


def test_tone_in_noise(tmp_path: Path) -> None:
    rng = np.random.default_rng(7)
    x = tone(697.0, 1.0, amplitude=0.3) + rng.normal(0.0, 0.1, 8000)  # ~ 10 dB SNR
    a = assert_tone(write_wav(tmp_path / "n.wav", x), 697, tol_hz=2)
    assert -16 < a.rms_dbfs < -12


def test_rms_dbfs_reference_points() -> None:
    assert rms_dbfs(tone(1000.0, 1.0, amplitude=1.0)) == pytest.approx(-3.01, abs=0.01)
    assert rms_dbfs(np.full(100, 0.5)) == pytest.approx(-6.02, abs=0.01)
    assert rms_dbfs(np.zeros(100)) == -math.inf
    assert rms_dbfs(np.zeros(0)) == -math.inf


def test_silence(tmp_path: Path) -> None:
    path = write_wav(tmp_path / "s.wav", np.zeros(8000))
    a = assert_silence(path)
    assert (a.frequency_hz, a.rms_dbfs) == (0.0, -math.inf)
    with pytest.raises(AssertionError, match=r"too quiet.*RMS -inf dBFS"):
        assert_tone(path, 440)
    with pytest.raises(AssertionError, match=r"expected silence <= -50.0 dBFS, got -9.0 dBFS"):
        assert_silence(write_tone_wav(tmp_path / "t.wav", 440.0, 1.0))


def test_stereo_channels_are_analysed_separately(tmp_path: Path) -> None:
    path = write_tone_wav(tmp_path / "st.wav", (440.0, 1000.0), 1.0, rate=48000)  # like baresip's opus dumps
    audio = read_wav(path)
    assert (audio.rate, audio.channels, audio.samples.shape) == (48000, 2, (48000, 2))
    assert_tone(path, 440, channel=0, tol_hz=1)
    assert_tone(path, 1000, channel=1, tol_hz=1)
    one_sided = write_tone_wav(tmp_path / "half.wav", (0.0, 1000.0), 1.0)
    assert_silence(one_sided, channel=0)
    assert_tone(one_sided, 1000, channel=1)
    with pytest.raises(IndexError, match="channel 2 out of range"):
        analyze(path, channel=2)


def test_trimmed_middle_and_explicit_window(tmp_path: Path) -> None:
    x = np.concatenate([np.zeros(8000), tone(440.0, 2.0), np.zeros(8000)])  # 1 s silence, 2 s tone, 1 s silence
    path = write_wav(tmp_path / "w.wav", x)
    a = assert_tone(path, 440, trim=0.25)  # analyses exactly the tone
    assert (a.start_s, a.end_s) == (1.0, 3.0)
    assert_silence(path, start=0.0, end=0.9)
    assert_silence(path, start=3.1)
    with pytest.raises(AssertionError, match="only 0.000 s to analyse"):
        assert_tone(path, 440, start=5.0)


def test_tone_profile_shows_where_the_tone_is(tmp_path: Path) -> None:
    path = write_wav(tmp_path / "p.wav", np.concatenate([np.zeros(4000), tone(1000.0, 0.5)]))
    frames = tone_profile(path, frame_s=0.1)
    assert len(frames) == 10
    assert all(f.rms_dbfs == -math.inf for f in frames[:5])
    assert all(abs(f.frequency_hz - 1000) < 5 and f.rms_dbfs > -12 for f in frames[5:])
    assert frames[5].start_s == pytest.approx(0.5)


@pytest.mark.parametrize("width", [1, 2])
def test_reads_what_stdlib_wave_writes(tmp_path: Path, width: int) -> None:
    path = tmp_path / "std.wav"
    rng = np.random.default_rng(1)
    if width == 1:
        raw = rng.integers(0, 256, 2 * 800, dtype=np.uint8)
        expected = (raw.astype(np.float64) - 128) / 128
    else:
        raw = rng.integers(-32768, 32768, 2 * 800, dtype=np.int16)
        expected = raw.astype(np.float64) / 32768
    with wave.open(str(path), "wb") as w:
        w.setnchannels(2)
        w.setsampwidth(width)
        w.setframerate(16000)
        w.writeframes(raw.astype("<i2" if width == 2 else np.uint8).tobytes())
    audio = read_wav(path)
    assert (audio.rate, audio.channels) == (16000, 2)
    np.testing.assert_array_equal(audio.samples, expected.reshape(-1, 2))
    assert wav_is_complete(path)


@pytest.mark.parametrize("width", [3, 4])
def test_24_and_32_bit_pcm(tmp_path: Path, width: int) -> None:
    path = write_tone_wav(tmp_path / "hi.wav", 440.0, 0.5, sample_width=width)
    audio = read_wav(path)
    np.testing.assert_allclose(audio.channel(0), tone(440.0, 0.5), atol=1e-6)


def _header(fmt_body: bytes, data: bytes, *, data_size: int | None = None, riff_size: int | None = None) -> bytes:
    fmt = b"fmt " + struct.pack("<I", len(fmt_body)) + fmt_body
    body = b"WAVE" + fmt + b"data" + struct.pack("<I", len(data) if data_size is None else data_size) + data
    return b"RIFF" + struct.pack("<I", len(body) if riff_size is None else riff_size) + body


def test_float_and_extensible_formats(tmp_path: Path) -> None:
    x = tone(1000.0, 0.5).astype("<f4")
    float_fmt = struct.pack("<HHIIHH", 3, 1, 8000, 32000, 4, 32)
    p1 = tmp_path / "f.wav"
    p1.write_bytes(_header(float_fmt, x.tobytes()))
    assert_tone(p1, 1000, tol_hz=1)
    guid_pcm = struct.pack("<H", 1) + bytes.fromhex("000000001000800000aa00389b71")
    ext_fmt = struct.pack("<HHIIHH", 0xFFFE, 1, 8000, 16000, 2, 16) + struct.pack("<HHI", 22, 16, 4) + guid_pcm
    p2 = tmp_path / "e.wav"
    p2.write_bytes(_header(ext_fmt, np.round(tone(440.0, 0.5) * 32767).astype("<i2").tobytes()))
    assert read_wav_info(p2).sample_width == 2
    assert_tone(p2, 440, tol_hz=1)


@pytest.mark.parametrize("declared", [0, 0xFFFFFFFF, 10**8])
def test_unfinished_recording_is_read_but_not_complete(tmp_path: Path, declared: int) -> None:
    pcm = np.round(tone(440.0, 0.5) * 32767).astype("<i2").tobytes()
    fmt = struct.pack("<HHIIHH", 1, 1, 8000, 16000, 2, 16)
    path = tmp_path / "open.wav"
    path.write_bytes(_header(fmt, pcm + b"\x01", data_size=declared, riff_size=declared and 0xFFFFFFFF))
    info = read_wav_info(path)
    assert (info.frames, info.complete) == (4000, False)  # the odd trailing byte is not a frame
    assert not wav_is_complete(path)
    assert_tone(path, 440)
    assert_duration(path, 0.5, tol=0.001)


def test_complete_file_and_duration(tmp_path: Path) -> None:
    path = write_tone_wav(tmp_path / "d.wav", 440.0, 2.5)
    assert wav_is_complete(path)
    assert assert_duration(path, 2.5, tol=0.001) == pytest.approx(2.5)
    with pytest.raises(AssertionError, match=r"expected 1.00 s ± 0.5 s, got 2.500 s"):
        assert_duration(path, 1.0)
    assert not wav_is_complete(tmp_path / "missing.wav")


def test_bad_files_name_the_problem(tmp_path: Path) -> None:
    junk = tmp_path / "junk.wav"
    junk.write_bytes(b"ID3\x03 not a wave file at all")
    with pytest.raises(WavError, match="junk.wav: not a RIFF/WAVE file"):
        read_wav(junk)
    ulaw = tmp_path / "ulaw.wav"
    ulaw.write_bytes(_header(struct.pack("<HHIIHH", 7, 1, 8000, 8000, 1, 8), b"\xff" * 100))
    with pytest.raises(WavError, match="format tag 0x0007 is not PCM"):
        read_wav(ulaw)
    nodata = tmp_path / "nodata.wav"
    nodata.write_bytes(
        b"RIFF"
        + struct.pack("<I", 28)
        + b"WAVE"
        + b"fmt "
        + struct.pack("<I", 16)
        + struct.pack("<HHIIHH", 1, 1, 8000, 16000, 2, 16)
    )
    with pytest.raises(WavError, match="no data chunk"):
        read_wav(nodata)
    assert not wav_is_complete(junk)
