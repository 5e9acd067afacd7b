"""Streaming stereo WAV recorder and crash repair, read back with the stdlib ``wave`` module."""

from __future__ import annotations

import shutil
import struct
import wave
from pathlib import Path

import numpy as np
import pytest

from media.errors import MediaError
from media.recorder import WavRecorder, repair_recordings


def _frame(value: int, n: int = 160) -> bytes:
    return struct.pack(f"<{n}h", *([value] * n))


def _read(path: Path) -> tuple[int, int, int, np.ndarray]:
    with wave.open(str(path), "rb") as w:
        data = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").reshape(-1, w.getnchannels())
        return w.getnchannels(), w.getframerate(), w.getnframes(), data


def test_channels_are_remote_left_local_right(tmp_path: Path) -> None:
    rec = WavRecorder(tmp_path / "sub" / "call.wav")  # parent directories are created
    for k in range(10):
        rec.write_frame(_frame(1000 + k), _frame(-2000 - k))
    assert rec.frames == 1600 and rec.duration_s == 0.2
    path = rec.close()
    assert rec.close() == path and rec.closed  # idempotent
    channels, rate, frames, data = _read(path)
    assert (channels, rate, frames) == (2, 8000, 1600)
    assert np.array_equal(data[:, 0], np.repeat(np.arange(1000, 1010), 160))
    assert np.array_equal(data[:, 1], np.repeat(-np.arange(2000, 2010), 160))


def test_file_grows_frame_by_frame_and_header_is_refreshed(tmp_path: Path) -> None:
    path = tmp_path / "live.wav"
    rec = WavRecorder(path, header_interval=5)
    for _ in range(7):
        rec.write_frame(_frame(1), _frame(2))
    # Not closed: the header already counts the 5 frames of the last refresh (and they are on disk).
    _, _, frames, _ = _read(path)
    assert frames == 5 * 160
    rec.close()
    assert _read(path)[2] == 7 * 160


def test_unequal_frames_are_padded(tmp_path: Path) -> None:
    rec = WavRecorder(tmp_path / "p.wav")
    rec.write_frame(_frame(5, 160), _frame(6, 100))
    _, _, frames, data = _read(rec.close())
    assert frames == 160 and data[99, 1] == 6 and data[100, 1] == 0


def test_repair_after_crash(tmp_path: Path) -> None:
    live = tmp_path / "live.wav"
    rec = WavRecorder(live, header_interval=50)
    for k in range(73):  # header last refreshed at 50 frames, 23 frames more on disk after a flush
        rec.write_frame(_frame(k), _frame(-k))
    rec._file.flush()  # type: ignore[union-attr]  # what the OS has when the process dies now
    crashed_dir = tmp_path / "recordings"
    crashed_dir.mkdir()
    crashed = crashed_dir / "crashed.wav"
    shutil.copyfile(live, crashed)
    with open(crashed, "ab") as f:
        f.write(b"\x01\x02\x03")  # a torn write: not a whole stereo frame
    rec.close()
    shutil.copyfile(live, crashed_dir / "clean.wav")
    (crashed_dir / "notes.wav").write_bytes(b"garbage")  # not a WAV: skipped, not raised

    assert _read(crashed)[2] == 50 * 160  # what a player sees before the repair
    assert repair_recordings(crashed_dir) == [crashed]
    channels, rate, frames, data = _read(crashed)
    assert (channels, rate, frames) == (2, 8000, 73 * 160)
    assert np.array_equal(data[:, 0], np.repeat(np.arange(73), 160))
    assert np.array_equal(data[:, 1], -np.repeat(np.arange(73), 160))
    assert crashed.stat().st_size == 44 + 73 * 160 * 4
    assert repair_recordings(crashed_dir) == []  # now consistent
    assert repair_recordings(tmp_path / "missing") == []


def test_repair_a_file_whose_header_was_never_refreshed(tmp_path: Path) -> None:
    path = tmp_path / "early.wav"
    rec = WavRecorder(path, header_interval=1000)
    for _ in range(3):
        rec.write_frame(_frame(7), _frame(8))
    rec._file.flush()  # type: ignore[union-attr]
    copy = tmp_path / "copy" / "early.wav"
    copy.parent.mkdir()
    shutil.copyfile(path, copy)
    rec.close()
    assert _read(copy)[2] == 0
    assert repair_recordings(copy.parent) == [copy]
    assert _read(copy)[2] == 480


def test_a_recording_whose_header_cannot_be_written_is_refused_cleanly() -> None:
    """Disk full at StartCallRecording: a MediaError for the API to report, no file handle left open."""
    import gc
    import os

    fds_before = len(os.listdir("/proc/self/fd"))
    with pytest.raises(MediaError, match="cannot open for writing"):
        WavRecorder(Path("/dev/full"))  # every write fails with ENOSPC
    gc.collect()
    assert len(os.listdir("/proc/self/fd")) == fds_before
    assert Path("/dev/full").exists()
