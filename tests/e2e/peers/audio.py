"""WAV reading and tone analysis for end-to-end audio checks (numpy FFT).

Recordings come from many writers: the gateway's recorder, baresip's sndfile module (8 kHz mono with
G.711, 48 kHz stereo with opus, and a header that is only final once the file is closed), sox, SIPp.
The reader is a small RIFF parser rather than the stdlib `wave` module because Python 3.11's `wave`
rejects WAVE_FORMAT_EXTENSIBLE and float files and trusts a data size that an unfinished file has not
written yet; for plain PCM it returns exactly what `wave` returns (the unit tests check that).

Levels are dBFS = 20*log10(RMS) with full scale = 1.0, so a full-scale sine reads -3.01 dBFS and
digital silence reads -inf.
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

WAVE_FORMAT_PCM = 0x0001
WAVE_FORMAT_IEEE_FLOAT = 0x0003
WAVE_FORMAT_EXTENSIBLE = 0xFFFE


class WavError(ValueError):
    """The file is not a RIFF/WAVE file this reader understands; the message names the field."""


@dataclass(frozen=True, slots=True)
class WavInfo:
    path: Path
    rate: int
    channels: int
    sample_width: int  # bytes per sample
    is_float: bool
    data_offset: int
    data_bytes: int  # bytes actually readable (whole frames)
    declared_bytes: int  # what the data chunk header says
    complete: bool  # header sizes agree with the file (writer has closed it)

    @property
    def frames(self) -> int:
        return self.data_bytes // (self.sample_width * self.channels)

    @property
    def duration(self) -> float:
        return self.frames / self.rate


@dataclass(frozen=True, slots=True)
class Audio:
    """Decoded samples as float64 in [-1, 1], shape (frames, channels)."""

    path: Path
    rate: int
    channels: int
    samples: np.ndarray

    @property
    def duration(self) -> float:
        return self.samples.shape[0] / self.rate

    def channel(self, index: int) -> np.ndarray:
        if not 0 <= index < self.channels:
            raise IndexError(f"{self.path}: channel {index} out of range (file has {self.channels})")
        return self.samples[:, index]


@dataclass(frozen=True, slots=True)
class Analysis:
    """What one channel of a recording contains, over the analysed window [start_s, end_s)."""

    path: Path
    channel: int
    rate: int
    duration_s: float
    start_s: float
    end_s: float
    frequency_hz: float  # 0.0 when the window is digital silence
    rms_dbfs: float
    peak_dbfs: float

    def describe(self) -> str:
        return (
            f"{self.path.name} ch{self.channel} @ {self.rate} Hz, {self.duration_s:.2f} s long, analysed "
            f"{self.start_s:.2f}-{self.end_s:.2f} s: dominant {self.frequency_hz:.1f} Hz, RMS {self.rms_dbfs:.1f} dBFS,"
            f" peak {self.peak_dbfs:.1f} dBFS"
        )


# ---- reading --------------------------------------------------------------------------------------


def read_wav_info(path: str | Path) -> WavInfo:
    """Parse the RIFF header; tolerant of unfinished files (data size 0 / 0xFFFFFFFF / past EOF)."""
    path = Path(path)
    with open(path, "rb") as f:
        data = f.read(1 << 16)
        f.seek(0, 2)
        size = f.tell()
    if len(data) < 12 or data[:4] not in (b"RIFF", b"RIFX") or data[8:12] != b"WAVE":
        raise WavError(f"{path}: not a RIFF/WAVE file (header {data[:12]!r})")
    if data[:4] == b"RIFX":
        raise WavError(f"{path}: big-endian RIFX files are not supported")
    riff_size = struct.unpack_from("<I", data, 4)[0]
    pos = 12
    fmt: tuple[int, int, int, int, int] | None = None
    while pos + 8 <= len(data):
        cid, csize = data[pos : pos + 4], struct.unpack_from("<I", data, pos + 4)[0]
        body = pos + 8
        if cid == b"fmt ":
            if csize < 16 or body + 16 > len(data):
                raise WavError(f"{path}: fmt chunk too short ({csize} bytes)")
            tag, channels, rate, _byte_rate, block_align, bits = struct.unpack_from("<HHIIHH", data, body)
            if tag == WAVE_FORMAT_EXTENSIBLE:
                if csize < 40:
                    raise WavError(f"{path}: WAVE_FORMAT_EXTENSIBLE fmt chunk too short ({csize} bytes)")
                tag = struct.unpack_from("<H", data, body + 24)[0]  # first two bytes of the SubFormat GUID
            fmt = (tag, channels, rate, block_align, bits)
        elif cid == b"data":
            if fmt is None:
                raise WavError(f"{path}: data chunk before fmt chunk")
            tag, channels, rate, block_align, bits = fmt
            if tag not in (WAVE_FORMAT_PCM, WAVE_FORMAT_IEEE_FLOAT):
                raise WavError(f"{path}: format tag 0x{tag:04x} is not PCM or IEEE float")
            if channels < 1 or rate < 1:
                raise WavError(f"{path}: bad fmt (channels={channels}, rate={rate})")
            width = (bits + 7) // 8
            if tag == WAVE_FORMAT_PCM and width not in (1, 2, 3, 4):
                raise WavError(f"{path}: {bits}-bit PCM is not supported")
            if tag == WAVE_FORMAT_IEEE_FLOAT and width not in (4, 8):
                raise WavError(f"{path}: {bits}-bit float is not supported")
            if block_align and block_align != width * channels:
                raise WavError(f"{path}: block_align {block_align} != {width} bytes x {channels} channels")
            available = size - body
            readable = available if csize in (0, 0xFFFFFFFF) or csize > available else csize
            frame = width * channels
            # a closed file has real sizes: the data chunk fits in the file and the RIFF size covers it
            complete = csize not in (0, 0xFFFFFFFF) and csize <= available and body + csize <= riff_size + 8 <= size + 1
            return WavInfo(
                path=path,
                rate=rate,
                channels=channels,
                sample_width=width,
                is_float=tag == WAVE_FORMAT_IEEE_FLOAT,
                data_offset=body,
                data_bytes=readable - readable % frame,
                declared_bytes=csize,
                complete=complete,
            )
        pos = body + csize + (csize & 1)
    raise WavError(f"{path}: no data chunk found" if fmt else f"{path}: no fmt chunk found")


def read_wav_header(path: str | Path) -> tuple[int, int, int]:
    """(rate, channels, sample width in bytes)."""
    info = read_wav_info(path)
    return info.rate, info.channels, info.sample_width


def wav_is_complete(path: str | Path) -> bool:
    """True once the writer has closed the file (header sizes match the bytes on disk, data non-empty)."""
    try:
        info = read_wav_info(path)
    except (OSError, WavError):
        return False
    return info.complete and info.frames > 0


def read_wav(path: str | Path) -> Audio:
    info = read_wav_info(path)
    with open(info.path, "rb") as f:
        f.seek(info.data_offset)
        raw = f.read(info.data_bytes)
    raw = raw[: len(raw) - len(raw) % (info.sample_width * info.channels)]
    w = info.sample_width
    if info.is_float:
        x = np.frombuffer(raw, dtype="<f4" if w == 4 else "<f8").astype(np.float64)
    elif w == 1:
        x = (np.frombuffer(raw, dtype=np.uint8).astype(np.float64) - 128.0) / 128.0
    elif w == 2:
        x = np.frombuffer(raw, dtype="<i2").astype(np.float64) / 32768.0
    elif w == 3:
        b = np.frombuffer(raw, dtype=np.uint8).reshape(-1, 3).astype(np.int32)
        v = b[:, 0] | (b[:, 1] << 8) | (b[:, 2] << 16)
        v = np.where(v & 0x800000, v - 0x1000000, v)
        x = v.astype(np.float64) / 8388608.0
    else:
        x = np.frombuffer(raw, dtype="<i4").astype(np.float64) / 2147483648.0
    return Audio(path=info.path, rate=info.rate, channels=info.channels, samples=x.reshape(-1, info.channels))


# ---- analysis -------------------------------------------------------------------------------------


def rms_dbfs(x: np.ndarray) -> float:
    if x.size == 0:
        return -math.inf
    rms = float(np.sqrt(np.mean(np.square(x, dtype=np.float64))))
    return 20.0 * math.log10(rms) if rms > 0 else -math.inf


def peak_dbfs(x: np.ndarray) -> float:
    peak = float(np.max(np.abs(x))) if x.size else 0.0
    return 20.0 * math.log10(peak) if peak > 0 else -math.inf


def dominant_frequency(x: np.ndarray, rate: int, *, min_hz: float = 20.0) -> float:
    """Frequency of the strongest spectral peak (Hann window, zero-padded FFT, parabolic interpolation).

    Returns 0.0 for an empty or all-zero signal.
    """
    x = np.asarray(x, dtype=np.float64)
    if x.size < 4 or not np.any(x):
        return 0.0
    x = x - np.mean(x)
    n_fft = 1 << int(math.ceil(math.log2(x.size * 4)))
    spectrum = np.abs(np.fft.rfft(x * np.hanning(x.size), n=n_fft))
    lo = max(1, int(math.ceil(min_hz * n_fft / rate)))
    if lo >= spectrum.size - 1:
        return 0.0
    k = lo + int(np.argmax(spectrum[lo:-1]))
    a, b, c = (math.log(max(v, 1e-300)) for v in spectrum[k - 1 : k + 2])
    denom = a - 2 * b + c
    offset = 0.5 * (a - c) / denom if denom != 0 else 0.0
    return (k + offset) * rate / n_fft


def window(audio: Audio, *, trim: float = 0.2, start: float | None = None, end: float | None = None) -> tuple[int, int]:
    """Sample range to analyse: [start, end) seconds if given, else the middle part without `trim` at each end."""
    n = audio.samples.shape[0]
    if start is not None or end is not None:
        i = int(round((start or 0.0) * audio.rate))
        j = n if end is None else int(round(end * audio.rate))
    else:
        if not 0.0 <= trim < 0.5:
            raise ValueError(f"trim must be in [0, 0.5), got {trim}")
        i, j = int(n * trim), n - int(n * trim)
    i, j = max(0, min(i, n)), max(0, min(j, n))
    return i, max(i, j)


def analyze(
    path: str | Path | Audio,
    channel: int = 0,
    *,
    trim: float = 0.2,
    start: float | None = None,
    end: float | None = None,
) -> Analysis:
    audio = path if isinstance(path, Audio) else read_wav(path)
    x = audio.channel(channel)
    i, j = window(audio, trim=trim, start=start, end=end)
    part = x[i:j]
    return Analysis(
        path=audio.path,
        channel=channel,
        rate=audio.rate,
        duration_s=audio.duration,
        start_s=i / audio.rate,
        end_s=j / audio.rate,
        frequency_hz=dominant_frequency(part, audio.rate) if part.size else 0.0,
        rms_dbfs=rms_dbfs(part),
        peak_dbfs=peak_dbfs(part),
    )


def assert_tone(
    path: str | Path | Audio,
    freq: float,
    *,
    channel: int = 0,
    tol_hz: float = 5.0,
    min_dbfs: float = -30.0,
    min_duration: float = 0.2,
    trim: float = 0.2,
    start: float | None = None,
    end: float | None = None,
) -> Analysis:
    """Assert the analysed window holds a tone of `freq` ± tol_hz at least `min_dbfs` loud; returns the analysis."""
    a = analyze(path, channel, trim=trim, start=start, end=end)
    if a.end_s - a.start_s < min_duration:
        span = a.end_s - a.start_s
        raise AssertionError(f"expected {freq} Hz tone, but only {span:.3f} s to analyse: {a.describe()}")
    if a.rms_dbfs < min_dbfs:
        raise AssertionError(f"expected {freq} Hz tone >= {min_dbfs} dBFS, but the audio is too quiet: {a.describe()}")
    if abs(a.frequency_hz - freq) > tol_hz:
        raise AssertionError(f"expected {freq} Hz ± {tol_hz} Hz, got {a.frequency_hz:.1f} Hz: {a.describe()}")
    return a


def assert_silence(
    path: str | Path | Audio,
    *,
    channel: int = 0,
    max_dbfs: float = -50.0,
    trim: float = 0.2,
    start: float | None = None,
    end: float | None = None,
) -> Analysis:
    """Assert the analysed window is at most `max_dbfs` loud (RMS)."""
    a = analyze(path, channel, trim=trim, start=start, end=end)
    if a.rms_dbfs > max_dbfs:
        raise AssertionError(f"expected silence <= {max_dbfs} dBFS, got {a.rms_dbfs:.1f} dBFS: {a.describe()}")
    return a


def assert_duration(path: str | Path | Audio, seconds: float, *, tol: float = 0.5) -> float:
    """Assert the file lasts `seconds` ± tol; returns the duration."""
    audio = path if isinstance(path, Audio) else read_wav(path)
    if abs(audio.duration - seconds) > tol:
        raise AssertionError(f"{audio.path.name}: expected {seconds:.2f} s ± {tol} s, got {audio.duration:.3f} s")
    return audio.duration


@dataclass(frozen=True, slots=True)
class Frame:
    start_s: float
    frequency_hz: float
    rms_dbfs: float


def tone_profile(path: str | Path | Audio, channel: int = 0, *, frame_s: float = 0.1) -> list[Frame]:
    """Dominant frequency and level per `frame_s` slice: for checks like "tone, then silence, then tone"."""
    audio = path if isinstance(path, Audio) else read_wav(path)
    x = audio.channel(channel)
    step = max(8, int(round(frame_s * audio.rate)))
    return [
        Frame(i / audio.rate, dominant_frequency(x[i : i + step], audio.rate), rms_dbfs(x[i : i + step]))
        for i in range(0, x.size - step + 1, step)
    ]


# ---- writing test signals --------------------------------------------------------------------------


def tone(freq: float, seconds: float, rate: int = 8000, amplitude: float = 0.5) -> np.ndarray:
    t = np.arange(int(round(seconds * rate))) / rate
    return amplitude * np.sin(2 * np.pi * freq * t)


def write_wav(path: str | Path, samples: np.ndarray, rate: int = 8000, sample_width: int = 2) -> Path:
    """Write float samples in [-1, 1] (shape (n,) or (n, channels)) as little-endian PCM."""
    path = Path(path)
    x = np.asarray(samples, dtype=np.float64)
    if x.ndim == 1:
        x = x[:, None]
    channels = x.shape[1]
    x = np.clip(x, -1.0, 1.0)
    if sample_width == 1:
        raw = np.round(x * 127.0 + 128.0).astype(np.uint8).tobytes()
    elif sample_width == 2:
        raw = np.round(x * 32767.0).astype("<i2").tobytes()
    elif sample_width == 3:
        v = np.round(x * 8388607.0).astype(np.int32).reshape(-1)
        raw = np.stack([v & 0xFF, (v >> 8) & 0xFF, (v >> 16) & 0xFF], axis=1).astype(np.uint8).tobytes()
    elif sample_width == 4:
        raw = np.round(x * 2147483647.0).astype("<i4").tobytes()
    else:
        raise ValueError(f"sample_width {sample_width}: expected 1, 2, 3 or 4 bytes")
    block = channels * sample_width
    header = b"RIFF" + struct.pack("<I", 36 + len(raw)) + b"WAVE"
    fmt = struct.pack("<IHHIIHH", 16, WAVE_FORMAT_PCM, channels, rate, rate * block, block, 8 * sample_width)
    header += b"fmt " + fmt
    header += b"data" + struct.pack("<I", len(raw))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(header + raw + (b"\0" if len(raw) & 1 else b""))
    return path


def write_tone_wav(
    path: str | Path,
    freq: float | tuple[float, ...],
    seconds: float = 5.0,
    *,
    rate: int = 8000,
    amplitude: float = 0.5,
    sample_width: int = 2,
) -> Path:
    """A sine WAV; a tuple of frequencies gives one channel per frequency (0 = silent channel)."""
    freqs = freq if isinstance(freq, tuple) else (freq,)
    cols = [tone(f, seconds, rate, amplitude) if f else np.zeros(int(round(seconds * rate))) for f in freqs]
    return write_wav(path, np.stack(cols, axis=1), rate=rate, sample_width=sample_width)
