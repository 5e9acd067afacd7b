"""SIPp (Debian package sip-tester, /usr/bin/sipp) runs for load and interop tests.

A run is a child process with its statistics dumped to a CSV (-trace_stat -stf), errors to a file
(-trace_err) and the final screen to a file (-trace_screen); `SippResult` carries the exit code and the
cumulative counters of the last CSV row.  SIPp exit codes: 0 all calls succeeded, 1 some failed,
97 exit on internal command, 99 normal exit without calls processed, 255/254 fatal errors.
"""

from __future__ import annotations

import asyncio
import csv
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from .ports import HOST, free_port
from .process import ManagedProcess, PeerError, require_binary, tail

SCENARIO_DIR = Path(__file__).with_name("scenarios")
BUILTIN = frozenset(
    {"uac", "uas", "regexp", "branchc", "branchs", "uac_pcap", "3pcc-A", "3pcc-B", "3pcc-C-A", "3pcc-C-B"}
)


@dataclass(frozen=True, slots=True)
class SippResult:
    returncode: int
    successful: int
    failed: int
    created: int
    retransmissions: int
    stats: dict[str, str] = field(repr=False)
    errors: str = field(repr=False)
    screen: str = field(repr=False)
    log: str = field(repr=False)
    argv: tuple[str, ...] = field(repr=False)

    @property
    def ok(self) -> bool:
        return self.returncode == 0 and self.failed == 0

    def describe(self) -> str:
        return (
            f"sipp rc={self.returncode} created={self.created} successful={self.successful} failed={self.failed}"
            f" retransmissions={self.retransmissions}\n$ {' '.join(self.argv)}\n"
            f"--- errors ---\n{tail(self.errors, 3000)}\n--- screen ---\n{tail(self.screen, 3000)}"
        )


def scenario_args(scenario: str | Path) -> list[str]:
    """-sn NAME for a built-in, -sf PATH for one of ours ("uac_pcmu" / "uac_pcmu.xml") or any XML path."""
    if isinstance(scenario, str) and scenario in BUILTIN:
        return ["-sn", scenario]
    path = Path(scenario)
    if not path.exists():
        name = path.name if path.suffix == ".xml" else path.name + ".xml"
        path = SCENARIO_DIR / name
    if not path.exists():
        raise PeerError(f"sipp scenario {scenario!r}: not a built-in and no file {path}")
    return ["-sf", str(path)]


class Sipp:
    """One sipp process.  UAC: give `remote` ("127.0.0.1:5060") and `service` (the R-URI user).

    UAS: no `remote`; it listens on `port`; `calls` makes it exit after that many calls.
    `await run()` = start + wait for exit; `start()` + `await wait()` for a UAS in the background.
    """

    def __init__(
        self,
        workdir: Path,
        scenario: str | Path,
        *,
        remote: str | None = None,
        service: str | None = None,
        calls: int | None = 1,
        rate: float = 10.0,
        limit: int | None = None,
        pause_ms: int | None = None,
        port: int | None = None,
        media_port: int | None = None,
        transport: str = "u1",
        auth: tuple[str, str] | None = None,
        keys: Mapping[str, str] | None = None,
        timeout_s: float = 30.0,
        extra_args: Sequence[str] = (),
        name: str = "sipp",
    ) -> None:
        if transport not in ("u1", "un", "t1", "tn"):
            raise ValueError(f"sipp transport {transport!r}: expected u1, un, t1 or tn")
        self.workdir = Path(workdir)
        self.name = name
        self.port = port or free_port(udp=True, tcp=True)
        self.media_port = media_port or free_port(udp=True, tcp=False, span=2)  # RTP + RTCP
        self.stat_file = self.workdir / f"{name}.stat.csv"
        self.error_file = self.workdir / f"{name}.errors.log"
        self.screen_file = self.workdir / f"{name}.screen.log"
        argv = [require_binary("sipp")]
        if remote:
            argv.append(remote)
        argv += scenario_args(scenario)
        argv += ["-i", HOST, "-p", str(self.port), "-mi", HOST, "-mp", str(self.media_port), "-t", transport]
        argv += ["-nostdin", "-timeout", f"{int(timeout_s)}s", "-timeout_error"]
        argv += ["-trace_stat", "-stf", str(self.stat_file), "-fd", "1"]
        argv += ["-trace_err", "-error_file", str(self.error_file)]
        argv += ["-trace_screen", "-screen_file", str(self.screen_file)]
        if service is not None:
            argv += ["-s", service]
        if calls is not None:
            argv += ["-m", str(calls)]
        if remote:
            argv += ["-r", f"{rate:g}"]
        if limit is not None:
            argv += ["-l", str(limit)]
        if pause_ms is not None:
            argv += ["-d", str(pause_ms)]
        all_keys = dict(keys or {})
        if auth is not None:
            argv += ["-au", auth[0], "-ap", auth[1]]
            all_keys.setdefault("from_user", auth[0])
        for k, v in all_keys.items():
            argv += ["-key", k, v]
        argv += list(extra_args)
        self.timeout_s = timeout_s
        self.process = ManagedProcess(name, argv, self.workdir / f"{name}.log", cwd=self.workdir)

    @property
    def hostport(self) -> str:
        return f"{HOST}:{self.port}"

    async def start(self) -> Sipp:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.process.start()
        return self

    async def wait(self, timeout: float | None = None) -> SippResult:
        """Wait for sipp to exit by itself (it has -m and -timeout), then parse its statistics."""
        limit = self.timeout_s + 10.0 if timeout is None else timeout
        rc = await asyncio.to_thread(self.process.wait_exit, limit)
        return self.result(rc)

    async def run(self, timeout: float | None = None) -> SippResult:
        await self.start()
        return await self.wait(timeout)

    async def stop(self) -> int | None:
        return await asyncio.to_thread(self.process.stop)

    def log_text(self) -> str:
        parts = [self.process.log_text()]
        for f in (self.error_file, self.screen_file):
            if f.exists():
                parts.append(f"--- {f.name} ---\n{f.read_text(errors='replace')}")
        return "\n".join(parts)

    def result(self, returncode: int) -> SippResult:
        stats = read_stat_csv(self.stat_file)

        def num(key: str) -> int:
            try:
                return int(stats.get(key, "0") or 0)
            except ValueError:
                return 0

        def text(path: Path) -> str:
            return path.read_text(errors="replace") if path.exists() else ""

        return SippResult(
            returncode=returncode,
            successful=num("SuccessfulCall(C)"),
            failed=num("FailedCall(C)"),
            created=num("TotalCallCreated"),
            retransmissions=num("Retransmissions(C)"),
            stats=stats,
            errors=text(self.error_file),
            screen=text(self.screen_file),
            log=self.process.log_text(),
            argv=tuple(self.process.argv),
        )


def read_stat_csv(path: Path) -> dict[str, str]:
    """The last row of a sipp -trace_stat CSV (';'-separated, cumulative columns end in '(C)'); {} if absent."""
    if not path.exists():
        return {}
    with open(path, newline="") as f:
        rows = [r for r in csv.reader(f, delimiter=";") if r]
    if len(rows) < 2:
        return {}
    return dict(zip(rows[0], rows[-1], strict=False))
