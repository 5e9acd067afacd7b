"""Child processes of the test run: started with Popen, logged to a file, stopped by PID.

Peers run as direct children in their own process group (kamailio forks workers), so a stop signals the
group of the PID we started and nothing else.  Every live child is also tracked module-wide and killed at
interpreter exit, so a crashed fixture cannot leave peers behind.
"""

from __future__ import annotations

import atexit
import os
import shutil
import signal
import subprocess
from collections.abc import Sequence
from pathlib import Path

_live: dict[int, ManagedProcess] = {}


class PeerError(RuntimeError):
    """A peer failed to start, answer or stop; the message carries the tail of its log."""


def require_binary(name: str) -> str:
    """Absolute path of a peer binary, or a clear error naming the setup script (tests are never skipped)."""
    path = shutil.which(name) or next(
        (p for p in (f"/usr/sbin/{name}", f"/usr/bin/{name}") if os.access(p, os.X_OK)), None
    )
    if path is None:
        raise PeerError(f"{name!r} not found on PATH; run scripts/setup-tests.sh to install the test peers")
    return path


def tail(text: str, max_chars: int = 6000) -> str:
    return text if len(text) <= max_chars else "...\n" + text[-max_chars:]


class ManagedProcess:
    """One peer process with its combined stdout/stderr in `log_path`."""

    def __init__(self, name: str, argv: Sequence[str], log_path: Path, cwd: Path | None = None) -> None:
        self.name = name
        self.argv = list(argv)
        self.log_path = Path(log_path)
        self.cwd = cwd
        self.popen: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int | None:
        return self.popen.pid if self.popen else None

    def start(self) -> None:
        if self.popen is not None:
            raise PeerError(f"{self.name}: already started")
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            log.write(f"$ {' '.join(self.argv)}\n".encode())
            log.flush()
            self.popen = subprocess.Popen(
                self.argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.cwd,
                start_new_session=True,
            )
        _live[self.popen.pid] = self

    def returncode(self) -> int | None:
        """None while running."""
        return None if self.popen is None else self.popen.poll()

    def running(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def check_alive(self, what: str) -> None:
        """Raise with the log tail if the process has exited (used while waiting for readiness)."""
        rc = self.returncode()
        if rc is not None:
            raise PeerError(
                f"{self.name} exited with code {rc} while {what}; log {self.log_path}:\n{tail(self.log_text())}"
            )

    def stop(self, timeout: float = 5.0) -> int | None:
        """SIGTERM the PID, wait, SIGKILL its process group if needed; returns the exit code."""
        p = self.popen
        if p is None:
            return None
        try:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
                try:
                    p.wait(timeout)
                except subprocess.TimeoutExpired:
                    self._kill_group(p.pid)
                    p.wait(timeout)
            # leftovers of the group we started (e.g. kamailio workers if the main process died abruptly)
            self._kill_group(p.pid)
        finally:
            _live.pop(p.pid, None)
        return p.returncode

    def wait_exit(self, timeout: float) -> int:
        """Block until the process exits by itself (e.g. sipp with -m); kills it on timeout."""
        assert self.popen is not None
        try:
            return self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            self.stop(timeout=1.0)
            raise PeerError(
                f"{self.name} did not exit within {timeout}s; log {self.log_path}:\n{tail(self.log_text())}"
            ) from None

    @staticmethod
    def _kill_group(pgid: int) -> None:
        try:
            os.killpg(pgid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass


@atexit.register
def _kill_leftovers() -> None:
    for proc in list(_live.values()):
        proc.stop(timeout=1.0)
