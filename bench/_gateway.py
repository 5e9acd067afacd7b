"""Shared by the bench scripts: a real `voice-gateway serve` child process on free loopback ports.

The gateway gets its own generated TOML (HTTP, SIP and RTP on port 0 = any free port) so it runs exactly
as deployed, in its own process: its CPU time is read from /proc/<pid>/stat and is not mixed with the
load generator's.  The bound ports come from its "gateway ready" log line and GET /health.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run from a checkout without installing
    sys.path.insert(0, str(ROOT))

from tests.e2e.peers.process import ManagedProcess, PeerError, tail  # noqa: E402

CLK_TCK = os.sysconf("SC_CLK_TCK")
_READY = re.compile(r"gateway ready: http=[^:\s]+:(\d+)")

USERS = [(f"agent{i}", f"100{i}") for i in (1, 2, 3)] + [("supervisor1", "1004")]


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process (RUSAGE-free: works for any live PID we own)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # fields 14 and 15 of proc(5), after "pid (comm)"


def _toml(value: Any) -> str:
    return json.dumps(value)  # JSON strings, numbers, booleans and arrays are valid TOML values


def write_config(path: Path, *, auto_answer: dict[str, str] | None = None, sip: dict[str, Any] | None = None,
                 csrf: bool = True) -> Path:
    """A config with users agent1..3 + supervisor1 on lines 1001..1004; ``auto_answer`` maps a line to
    its audio source (e.g. {"1001": "tone:1000"}) and makes it answer by itself."""
    auto_answer = auto_answer or {}
    lines = [
        "[http]", 'host = "127.0.0.1"', "port = 0", f"csrf = {_toml(csrf)}",
        "[sip]", 'host = "127.0.0.1"', "port = 0",
        *(f"{k} = {_toml(v)}" for k, v in (sip or {}).items()),
        "[media]", "rtp_port_min = 0", "rtp_port_max = 0",
        f"recordings_dir = {_toml(str(path.parent / 'recordings'))}",
        f"audio_dir = {_toml(str(path.parent / 'audio'))}",
        "[storage]", f"data_dir = {_toml(str(path.parent / 'data'))}",
    ]
    for user, number in USERS:
        roles = ["agent", "supervisor"] if user.startswith("supervisor") else ["agent"]
        lines += ["[[users]]", f"username = {_toml(user)}", f"password = {_toml(user + 'pw')}",
                  f"roles = {_toml(roles)}", f"devices = {_toml([number])}"]
    for _, number in USERS:
        lines += ["[[devices]]", f"number = {_toml(number)}", f"sip_password = {_toml('pw' + number)}"]
        if number in auto_answer:
            lines += ["auto_answer = true", f"audio_source = {_toml(auto_answer[number])}"]
    path.write_text("\n".join(lines) + "\n")
    return path


@dataclass
class GatewayProcess:
    process: ManagedProcess
    http_port: int
    sip_ports: dict[str, int]

    @property
    def pid(self) -> int:
        assert self.process.pid is not None
        return self.process.pid

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def cpu(self) -> float:
        return cpu_seconds(self.pid)

    async def health(self) -> dict[str, Any]:
        async with httpx.AsyncClient(base_url=self.base_url, timeout=10) as http:
            r = await http.get("/health")
        r.raise_for_status()
        return r.json()  # type: ignore[no-any-return]

    async def wait_idle(self, keys: tuple[str, ...] = ("calls", "sip_sessions", "rtp_legs"),
                        timeout: float = 60.0) -> dict[str, int]:
        """Poll /health until the given per-call counters are 0 (transactions may linger for Timer J)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            stats: dict[str, int] = (await self.health())["stats"]
            if all(stats[k] == 0 for k in keys):
                return stats
            if loop.time() > deadline:
                raise PeerError(f"gateway not idle after {timeout}s: {stats}")
            await asyncio.sleep(0.2)

    def stop(self) -> int | None:
        return self.process.stop(timeout=10)


async def start_gateway(workdir: Path, *, log_level: str = "INFO", **config: Any) -> GatewayProcess:
    """Write a config under ``workdir`` and start ``voice-gateway serve`` on it; wait for /health ok."""
    workdir.mkdir(parents=True, exist_ok=True)
    cfg = write_config(workdir / "gateway.toml", **config)
    exe = shutil.which("voice-gateway", path=str(Path(sys.executable).parent)) or shutil.which("voice-gateway")
    argv = [exe] if exe else [sys.executable, "-m", "gateway"]
    argv += ["serve", "--config", str(cfg), "--log-level", log_level]
    proc = ManagedProcess("voice-gateway", argv, workdir / "gateway.log", cwd=workdir)
    proc.start()
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 30
    while True:
        proc.check_alive("starting")
        found = _READY.search(proc.log_text())
        if found:
            break
        if loop.time() > deadline:
            proc.stop()
            raise PeerError(f"gateway did not report ready in 30 s:\n{tail(proc.log_text())}")
        await asyncio.sleep(0.05)
    gw = GatewayProcess(proc, int(found.group(1)), {})
    body = await gw.health()
    gw.sip_ports = {k: int(v) for k, v in body["sip"].items() if k in ("udp", "tcp")}
    return gw
