"""Audio sources: what a leg sends. Every source yields 16-bit LE mono PCM at 8 kHz, one frame per call.

Sources are pulled by the media clock once per tick, so ``read_frame`` must be cheap and never block:
tones come from a precomputed period table, WAV files are converted once (to 8 kHz mono 16-bit) and the
converted bytes are shared by every leg that plays the same unchanged file.
"""

from __future__ import annotations

import math
import sys
import wave
from array import array
from functools import lru_cache
from pathlib import Path
from typing import Protocol, runtime_checkable

from .codecs import SAMPLE_RATE, SAMPLE_WIDTH, audioop
from .errors import AudioSourceError

__all__ = ["AudioSource", "Silence", "Tone", "WavFileSource", "make_source"]


@runtime_checkable
class AudioSource(Protocol):
    """Anything that yields PCM frames (16-bit LE mono, 8 kHz) of exactly ``samples`` samples."""

    def read_frame(self, samples: int = 160) -> bytes: ...


class Silence:
    """Digital silence; the frame bytes are cached, so reading allocates nothing."""

    __slots__ = ("_cache",)

    def __init__(self) -> None:
        self._cache: dict[int, bytes] = {}

    def read_frame(self, samples: int = 160) -> bytes:
        frame = self._cache.get(samples)
        if frame is None:
            frame = self._cache[samples] = bytes(samples * SAMPLE_WIDTH)
        return frame

    def __repr__(self) -> str:
        return "Silence()"


def _to_le_bytes(samples: array) -> bytes:
    if sys.byteorder == "big":  # pragma: no cover - little-endian CI
        samples = array("h", samples)
        samples.byteswap()
    return samples.tobytes()


class Tone:
    """A sine tone, phase-continuous across frames.

    ``amplitude`` is a fraction of full scale (0 < a <= 1). For an integer frequency the waveform repeats
    exactly every ``8000 / gcd(8000, f)`` samples, so one period is precomputed and frames are slices of it.
    """

    __slots__ = ("amplitude", "freq_hz", "_period", "_pos", "_table", "_phase")

    def __init__(self, freq_hz: float, amplitude: float = 0.3) -> None:
        if not 0 < freq_hz < SAMPLE_RATE / 2:
            raise AudioSourceError(f"tone: freq_hz must be in (0, {SAMPLE_RATE // 2}) Hz, got {freq_hz!r}")
        if not 0 < amplitude <= 1:
            raise AudioSourceError(f"tone: amplitude must be in (0, 1], got {amplitude!r}")
        self.freq_hz = float(freq_hz)
        self.amplitude = float(amplitude)
        self._pos = 0
        self._phase = 0.0
        peak = 32767 * self.amplitude
        if self.freq_hz.is_integer():
            f = int(self.freq_hz)
            self._period = SAMPLE_RATE // math.gcd(SAMPLE_RATE, f)
            step = 2 * math.pi * f / SAMPLE_RATE
            one = array("h", (round(peak * math.sin(step * i)) for i in range(self._period)))
            # Enough repeats that any default-size frame is one slice, without wrapping.
            reps = 1 + -(-160 * 4 // self._period)
            self._table: bytes | None = _to_le_bytes(one * (reps + 1))
        else:
            self._period = 0
            self._table = None

    def read_frame(self, samples: int = 160) -> bytes:
        table = self._table
        if table is not None:
            start = self._pos
            end = start + samples
            self._pos = end % self._period
            if end * SAMPLE_WIDTH <= len(table):
                return table[start * SAMPLE_WIDTH : end * SAMPLE_WIDTH]
            return b"".join(self._wrapped(start, samples))
        step = 2 * math.pi * self.freq_hz / SAMPLE_RATE
        peak = 32767 * self.amplitude
        phase = self._phase
        out = array("h", (round(peak * math.sin(phase + step * i)) for i in range(samples)))
        self._phase = (phase + step * samples) % (2 * math.pi)
        return _to_le_bytes(out)

    def _wrapped(self, start: int, samples: int) -> list[bytes]:
        assert self._table is not None
        parts = []
        pos = start
        left = samples
        period = self._period
        while left:
            n = min(left, period - pos)
            parts.append(self._table[pos * SAMPLE_WIDTH : (pos + n) * SAMPLE_WIDTH])
            left -= n
            pos = (pos + n) % period
        return parts

    def __repr__(self) -> str:
        return f"Tone({self.freq_hz:g}, {self.amplitude:g})"


@lru_cache(maxsize=32)
def _load_pcm(path: str, mtime_ns: int, size: int) -> bytes:
    """Whole file as 8 kHz mono 16-bit LE; keyed by mtime/size so an edited file is reloaded."""
    try:
        with wave.open(path, "rb") as w:
            channels = w.getnchannels()
            width = w.getsampwidth()
            rate = w.getframerate()
            data = w.readframes(w.getnframes())
    except (wave.Error, EOFError) as exc:
        raise AudioSourceError(f"audio file {path}: not a PCM WAV file this player supports ({exc})") from None
    except OSError as exc:
        raise AudioSourceError(f"audio file {path}: cannot read ({exc.strerror or exc})") from None
    if width not in (1, 2, 3, 4):
        raise AudioSourceError(f"audio file {path}: unsupported sample width {width * 8} bits")
    if channels not in (1, 2):
        raise AudioSourceError(f"audio file {path}: unsupported channel count {channels} (mono or stereo only)")
    if not data:
        raise AudioSourceError(f"audio file {path}: contains no audio frames")
    if width == 1:  # 8-bit WAV is unsigned (RIFF convention); audioop expects signed.
        data = audioop.bias(data, 1, -128)
    if width != SAMPLE_WIDTH:
        data = audioop.lin2lin(data, width, SAMPLE_WIDTH)
    if channels == 2:
        data = audioop.tomono(data, SAMPLE_WIDTH, 0.5, 0.5)
    if rate != SAMPLE_RATE:
        data, _ = audioop.ratecv(data, SAMPLE_WIDTH, 1, rate, SAMPLE_RATE, None)
    return data


class WavFileSource:
    """Plays a PCM WAV file (any rate, mono/stereo, 8/16/24/32-bit), converted once to 8 kHz mono.

    With ``loop`` the file repeats; otherwise it plays once and then yields silence (``finished`` is True).
    """

    __slots__ = ("loop", "path", "_data", "_pos", "finished")

    def __init__(self, path: Path | str, loop: bool = True) -> None:
        self.path = Path(path)
        self.loop = loop
        try:
            st = self.path.stat()
        except FileNotFoundError:
            raise AudioSourceError(f"audio file {self.path}: not found") from None
        except OSError as exc:
            raise AudioSourceError(f"audio file {self.path}: cannot read ({exc.strerror or exc})") from None
        if not self.path.is_file():
            raise AudioSourceError(f"audio file {self.path}: not a regular file")
        self._data = _load_pcm(str(self.path.resolve()), st.st_mtime_ns, st.st_size)
        self._pos = 0
        self.finished = False

    @property
    def duration_s(self) -> float:
        return len(self._data) / (SAMPLE_WIDTH * SAMPLE_RATE)

    def read_frame(self, samples: int = 160) -> bytes:
        n = samples * SAMPLE_WIDTH
        data = self._data
        start = self._pos
        end = start + n
        if end <= len(data):
            self._pos = end
            if end == len(data):
                if self.loop:
                    self._pos = 0
                else:
                    self.finished = True
            return data[start:end]
        if not self.loop:
            self._pos = len(data)
            self.finished = True
            chunk = data[start:]
            return chunk + bytes(n - len(chunk))
        parts = [data[start:]]
        have = len(parts[0])
        while have + len(data) < n:
            parts.append(data)
            have += len(data)
        rest = n - have
        parts.append(data[:rest])
        self._pos = rest
        return b"".join(parts)

    def __repr__(self) -> str:
        return f"WavFileSource({str(self.path)!r}, loop={self.loop})"


def make_source(spec: str, base_dir: Path | None = None) -> AudioSource:
    """Source for a config string: ``silence``, ``tone:<Hz>`` (``tone:<Hz>:<amplitude>``), or a WAV path.

    A relative path is taken relative to ``base_dir`` (the config's audio directory) when given.
    """
    text = spec.strip()
    if not text:
        raise AudioSourceError("audio source: empty spec (use 'silence', 'tone:<Hz>' or a WAV path)")
    if text.lower() == "silence":
        return Silence()
    if text.lower().startswith("tone:"):
        parts = text[5:].split(":")
        try:
            freq = float(parts[0])
            amplitude = float(parts[1]) if len(parts) > 1 else 0.3
            if len(parts) > 2:
                raise ValueError
        except ValueError:
            raise AudioSourceError(f"audio source {spec!r}: expected tone:<Hz> or tone:<Hz>:<amplitude>") from None
        return Tone(freq, amplitude)
    path = Path(text).expanduser()
    if not path.is_absolute() and base_dir is not None:
        path = Path(base_dir) / path
    return WavFileSource(path)
