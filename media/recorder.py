"""Streaming stereo WAV recorder, crash-safe.

Frames are written as the call runs (never accumulated in memory). The RIFF and ``data`` chunk sizes are
rewritten every ``header_interval`` frames (one second by default) and on close, so a file left by a crashed
process is at worst a second short of the truth; ``repair_recordings`` fixes the sizes of such files at
start-up. A write that fails (disk full, file size limit) ends the recording there: the file is closed and
its sizes fixed to the whole frames on disk, and nothing is raised into the media tick or the hang-up.
Layout: 8 kHz, 16-bit, 2 channels, LEFT = remote (received) audio, RIGHT = local (sent) audio.
"""

from __future__ import annotations

import contextlib
import logging
import struct
from array import array
from pathlib import Path
from typing import BinaryIO

from .codecs import SAMPLE_RATE, SAMPLE_WIDTH
from .errors import MediaError

__all__ = ["WavRecorder", "repair_recordings"]

log = logging.getLogger(__name__)

CHANNELS = 2
BLOCK_ALIGN = CHANNELS * SAMPLE_WIDTH
HEADER_SIZE = 44
_MAX_DATA = 0xFFFFFFFF - 36


def _header(data_size: int) -> bytes:
    """Canonical 44-byte PCM WAV header (RIFF/WAVE, 'fmt ' with format 1, then 'data')."""
    return struct.pack(
        "<4sI4s4sIHHIIHH4sI",
        b"RIFF",
        36 + data_size,
        b"WAVE",
        b"fmt ",
        16,
        1,
        CHANNELS,
        SAMPLE_RATE,
        SAMPLE_RATE * BLOCK_ALIGN,
        BLOCK_ALIGN,
        SAMPLE_WIDTH * 8,
        b"data",
        data_size,
    )


class WavRecorder:
    """Writes one stereo frame per media tick; ``write_frame(remote, local)`` takes two mono PCM frames."""

    __slots__ = ("path", "frames", "header_interval", "error", "_file", "_since_header", "_stereo", "_left",
                 "_right")

    def __init__(self, path: Path | str, header_interval: int = 50) -> None:
        self.path = Path(path)
        self.header_interval = max(1, header_interval)
        self.frames = 0
        self.error: str | None = None  # why the recording ended early (a failed write), if it did
        self._since_header = 0
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._file: BinaryIO | None = open(self.path, "wb")  # noqa: SIM115 - closed in close()
            self._file.write(_header(0))
            self._file.flush()
        except OSError as exc:
            file, self._file = getattr(self, "_file", None), None
            if file is not None:  # opened, but not even the header fits (disk full, RLIMIT_FSIZE)
                with contextlib.suppress(OSError):
                    file.close()
                with contextlib.suppress(OSError):
                    if self.path.is_file():  # only a file we created, never e.g. a device node
                        self.path.unlink()
            raise MediaError(f"recording {self.path}: cannot open for writing ({exc.strerror or exc})") from None
        self._stereo = array("h")
        self._left = array("h")
        self._right = array("h")

    @property
    def closed(self) -> bool:
        return self._file is None

    @property
    def duration_s(self) -> float:
        return self.frames / SAMPLE_RATE

    def write_frame(self, remote: bytes, local: bytes) -> None:
        """Interleave one frame of each channel (equal lengths; the shorter is padded with silence)."""
        f = self._file
        if f is None:
            return
        if len(remote) != len(local):
            n = max(len(remote), len(local))
            remote = remote.ljust(n, b"\0")
            local = local.ljust(n, b"\0")
        left = self._left
        right = self._right
        stereo = self._stereo
        del left[:], right[:]
        left.frombytes(remote)
        right.frombytes(local)
        n = len(left)
        if len(stereo) != 2 * n:
            stereo[:] = array("h", bytes(4 * n))
        stereo[0::2] = left
        stereo[1::2] = right
        try:
            f.write(stereo)  # native order == little-endian on every platform we run on
            self.frames += n
            self._since_header += 1
            if self._since_header >= self.header_interval:
                self._since_header = 0
                self._write_sizes()
        except OSError as exc:
            self._give_up(exc)

    def _write_sizes(self) -> None:
        f = self._file
        assert f is not None
        size = min(self.frames * BLOCK_ALIGN, _MAX_DATA)
        end = f.tell()
        f.seek(4)
        f.write(struct.pack("<I", 36 + size))
        f.seek(40)
        f.write(struct.pack("<I", size))
        f.seek(end)
        f.flush()

    def close(self) -> Path:
        """Final header and close; idempotent; never raises (a failed write ends it as ``_give_up``)."""
        f = self._file
        if f is not None:
            try:
                self._write_sizes()
            except OSError as exc:
                self._give_up(exc)
                return self.path
            self._file = None
            try:
                f.close()
            except OSError as exc:
                self._give_up(exc)
        return self.path

    def _give_up(self, exc: OSError) -> None:
        """A write failed: stop here, close without flushing what is left in the buffer, and make the
        header describe the whole frames that did reach the file (as the start-up repair would)."""
        self.error = f"{exc.strerror or exc}"
        f, self._file = self._file, None
        log.error("recording %s: write failed (%s); recording stopped after %.1f s", self.path, self.error,
                  self.duration_s)
        if f is not None:
            try:
                f.close()
            except OSError:
                pass  # the unwritable tail of the buffer; what is on disk stays
        try:
            _repair_one(self.path)
        except (OSError, struct.error) as repair_exc:
            log.error("recording %s: cannot fix its header (%s)", self.path, repair_exc)


def _repair_one(path: Path) -> bool:
    with open(path, "r+b") as f:
        head = f.read(12)
        if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
            return False
        size = f.seek(0, 2)
        pos = 12
        block_align = 0
        while pos + 8 <= size:
            f.seek(pos)
            cid, clen = struct.unpack("<4sI", f.read(8))
            if cid == b"fmt ":
                fmt = f.read(min(clen, 16))
                if len(fmt) >= 14:
                    block_align = struct.unpack_from("<H", fmt, 12)[0]
            elif cid == b"data":
                if not block_align:
                    return False
                start = pos + 8
                actual = (size - start) // block_align * block_align
                declared_end = start + clen
                if declared_end == size or (declared_end < size and _chunk_follows(f, declared_end, size)):
                    return False  # consistent (or a trailer chunk follows): nothing to do
                actual = min(actual, _MAX_DATA)
                f.truncate(start + actual)
                f.seek(4)
                f.write(struct.pack("<I", start + actual - 8))
                f.seek(pos + 4)
                f.write(struct.pack("<I", actual))
                return True
            pos += 8 + clen + (clen & 1)
        return False


_TRAILER_IDS = frozenset(
    {
        b"LIST",
        b"id3 ",
        b"ID3 ",
        b"cue ",
        b"bext",
        b"JUNK",
        b"junk",
        b"smpl",
        b"inst",
        b"fact",
        b"PAD ",
        b"iXML",
        b"_PMX",
    }
)


def _chunk_follows(f: BinaryIO, offset: int, size: int) -> bool:
    """A known trailer chunk that fits in the file starts at ``offset``: the sizes are not stale."""
    offset += offset & 1
    if offset + 8 > size:
        return False
    f.seek(offset)
    cid, clen = struct.unpack("<4sI", f.read(8))
    return cid in _TRAILER_IDS and offset + 8 + clen <= size


def repair_recordings(directory: Path | str) -> list[Path]:
    """Fix RIFF/data sizes of WAV files under ``directory`` left unfinished by a crash.

    The data chunk is truncated to whole frames (a torn last write is dropped). Files whose sizes already
    agree are left alone; unreadable files are logged and skipped, never raised. Call it at start-up, before
    any recorder writes into the directory.
    """
    root = Path(directory)
    repaired: list[Path] = []
    if not root.is_dir():
        return repaired
    for path in sorted(root.rglob("*.wav")):
        try:
            if path.is_file() and _repair_one(path):
                log.warning("repaired unfinished recording %s", path)
                repaired.append(path)
        except (OSError, struct.error) as exc:
            log.warning("cannot repair recording %s: %s", path, exc)
    return repaired
