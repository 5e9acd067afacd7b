"""Audio sources: silence, phase-continuous tones (checked by FFT), WAV players with conversion."""

from __future__ import annotations

import math
import struct
import wave
from pathlib import Path

import numpy as np
import pytest

from media.errors import AudioSourceError
from media.sources import AudioSource, Silence, Tone, WavFileSource, make_source


def _frames(src: AudioSource, n: int, samples: int = 160) -> np.ndarray:
    data = b"".join(src.read_frame(samples) for _ in range(n))
    assert len(data) == n * samples * 2
    return np.frombuffer(data, dtype="<i2").astype(np.float64)


def _peak_hz(x: np.ndarray, rate: int = 8000) -> float:
    spectrum = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    return float(np.fft.rfftfreq(len(x), 1 / rate)[int(spectrum.argmax())])


def _write_wav(path: Path, rate: int, channels: int, width: int, samples: np.ndarray) -> Path:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(width)
        w.setframerate(rate)
        if width == 1:
            w.writeframes((samples.astype(np.int16) // 256 + 128).astype(np.uint8).tobytes())
        else:
            w.writeframes(samples.astype("<i2").tobytes())
    return path


def _sine(freq: float, rate: int, seconds: float, amp: float = 12000) -> np.ndarray:
    t = np.arange(int(rate * seconds)) / rate
    return np.round(amp * np.sin(2 * np.pi * freq * t))


def test_silence_is_zero_and_sized() -> None:
    s = Silence()
    assert s.read_frame() == bytes(320)
    assert s.read_frame(80) == bytes(160)
    assert isinstance(s, AudioSource)


@pytest.mark.parametrize("freq", [1000, 440, 697, 440.5])
def test_tone_frequency_by_fft(freq: float) -> None:
    x = _frames(Tone(freq), 50)  # one second
    assert abs(_peak_hz(x) - freq) <= 5
    rms = math.sqrt(float((x**2).mean()))
    assert rms == pytest.approx(0.3 * 32767 / math.sqrt(2), rel=0.02)


@pytest.mark.parametrize("freq", [440, 1000, 333.3])
def test_tone_is_phase_continuous_across_frames(freq: float) -> None:
    tone = Tone(freq, 0.5)
    # Odd frame sizes make frames cross the precomputed table's period boundary.
    x = np.concatenate([_frames(tone, 1, n) for n in (160, 37, 160, 999, 1, 160) * 3])
    expected = 0.5 * 32767 * np.sin(2 * np.pi * freq * np.arange(len(x)) / 8000)
    assert np.max(np.abs(x - expected)) <= 2


def test_tone_rejects_bad_parameters() -> None:
    with pytest.raises(AudioSourceError, match="freq_hz"):
        Tone(4000)
    with pytest.raises(AudioSourceError, match="amplitude"):
        Tone(440, 1.5)


def test_wav_8k_mono_plays_directly_and_loops(tmp_path: Path) -> None:
    samples = np.arange(400) * 10  # 400 samples: 2.5 frames, distinguishable values
    path = _write_wav(tmp_path / "a.wav", 8000, 1, 2, samples)
    src = WavFileSource(path)
    x = _frames(src, 5)
    assert np.array_equal(x, np.concatenate([samples, samples]))
    assert src.duration_s == pytest.approx(0.05)


def test_wav_without_loop_pads_then_goes_silent(tmp_path: Path) -> None:
    path = _write_wav(tmp_path / "a.wav", 8000, 1, 2, np.full(200, 1000))
    src = WavFileSource(path, loop=False)
    x = _frames(src, 3)
    assert np.array_equal(x[:200], np.full(200, 1000)) and not x[200:].any()
    assert src.finished


@pytest.mark.parametrize(("rate", "channels", "width"), [(16000, 1, 2), (44100, 2, 2), (48000, 2, 2), (8000, 1, 1)])
def test_wav_is_resampled_and_mixed_down(tmp_path: Path, rate: int, channels: int, width: int) -> None:
    mono = _sine(1000, rate, 1.0)
    samples = np.repeat(mono, channels) if channels == 2 else mono
    path = _write_wav(tmp_path / "in.wav", rate, channels, width, samples)
    x = _frames(WavFileSource(path), 50)
    assert abs(_peak_hz(x) - 1000) <= 5
    assert math.sqrt(float((x**2).mean())) == pytest.approx(12000 / math.sqrt(2), rel=0.05)


def test_wav_errors_are_clear(tmp_path: Path) -> None:
    with pytest.raises(AudioSourceError, match="not found"):
        WavFileSource(tmp_path / "missing.wav")
    junk = tmp_path / "junk.wav"
    junk.write_bytes(b"this is not a wav file")
    with pytest.raises(AudioSourceError, match=r"junk\.wav.*not a PCM WAV"):
        WavFileSource(junk)
    floaty = tmp_path / "float.wav"  # WAVE_FORMAT_IEEE_FLOAT (3): the stdlib reader refuses it
    fmt = struct.pack("<HHIIHH", 3, 1, 8000, 32000, 4, 32)
    floaty.write_bytes(b"RIFF" + struct.pack("<I", 36) + b"WAVEfmt " + struct.pack("<I", 16) + fmt + b"data\0\0\0\0")
    with pytest.raises(AudioSourceError, match=r"float\.wav"):
        WavFileSource(floaty)
    empty = _write_wav(tmp_path / "empty.wav", 8000, 1, 2, np.zeros(0))
    with pytest.raises(AudioSourceError, match="no audio frames"):
        WavFileSource(empty)


def test_make_source_specs(tmp_path: Path) -> None:
    assert isinstance(make_source("silence"), Silence)
    tone = make_source(" tone:1000 ")
    assert isinstance(tone, Tone) and tone.freq_hz == 1000 and tone.amplitude == 0.3
    quiet = make_source("tone:440:0.1")
    assert isinstance(quiet, Tone) and quiet.amplitude == 0.1
    (tmp_path / "audio").mkdir()
    _write_wav(tmp_path / "audio" / "hold.wav", 8000, 1, 2, np.zeros(160))
    wav = make_source("hold.wav", base_dir=tmp_path / "audio")
    assert isinstance(wav, WavFileSource) and wav.path == tmp_path / "audio" / "hold.wav"
    for bad in ("", "tone:abc", "tone:1:2:3"):
        with pytest.raises(AudioSourceError, match="audio source"):
            make_source(bad)
    with pytest.raises(AudioSourceError, match="nope.wav: not found"):
        make_source("nope.wav", base_dir=tmp_path)
