"""Media engine load: CPU and send jitter for N concurrent RTP legs on loopback (pairs calling each other).

Every leg sends a PCMU tone and receives its partner's (RTP in + out at 20 ms), all paced by the one media
clock on one event loop. For each case it prints, over a measurement window:

* CPU: process CPU seconds / wall seconds (1.00 = one core busy),
* send-interval jitter: |actual interval between two sends of a leg - 20 ms|, p50 / p99 / max over all legs,
* skipped ticks, clock busy time per tick, and packets lost (sent - received, after draining).

Baselines in the same run: the bare clock with no legs (jitter of its own ticks) and one pair.

    python bench/media_legs.py                    # 0, 2, 50, 200, 500 legs; ~30 s
    python bench/media_legs.py --legs 500 --record --window 5
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from media.engine import MediaEngine  # noqa: E402
from media.rtp import RtpLeg  # noqa: E402
from media.sources import Tone  # noqa: E402

PTIME = 0.020


class _TickProbe:
    """Stands in for a leg in the idle baseline: records when each tick ran."""

    def __init__(self) -> None:
        self.send_log: list[float] | None = None

    def _on_tick(self, frames: int, now: float) -> None:
        if self.send_log is not None:
            self.send_log.append(time.perf_counter())


def _pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


async def run_case(n_legs: int, warmup_s: float, window_s: float, record_dir: Path | None) -> dict[str, float]:
    engine = MediaEngine(port_min=0, port_max=0)
    await engine.start()
    legs: list[RtpLeg] = [await engine.open_leg() for _ in range(n_legs)]
    for a, b in zip(legs[0::2], legs[1::2], strict=True):
        a.set_remote("127.0.0.1", b.local_port, 0, "PCMU", 101)
        b.set_remote("127.0.0.1", a.local_port, 0, "PCMU", 101)
        a.set_source(Tone(440))
        b.set_source(Tone(1000))
    for i, leg in enumerate(legs):
        if record_dir is not None:
            leg.start_recording(record_dir / f"leg{n_legs}-{i}.wav")
        leg.start()
    probe = _TickProbe()
    probes: list[RtpLeg | _TickProbe] = list(legs)
    if not legs:
        engine._clock.add(probe)
        probes = [probe]

    await engine.wait_ticks(round(warmup_s / PTIME))
    for p in probes:
        p.send_log = []
    s0 = engine.stats()
    gc.collect()
    c0, w0 = time.process_time(), time.perf_counter()
    await engine.wait_ticks(round(window_s / PTIME))
    c1, w1 = time.process_time(), time.perf_counter()
    s1 = engine.stats()
    logs = [p.send_log or [] for p in probes]
    for p in probes:
        p.send_log = None

    for leg in legs:  # stop sending, let the last packets arrive, then count losses
        leg.set_direction(send=False, recv=True)
    await engine.wait_ticks(5)
    final = engine.stats()
    await engine.stop()

    deviations = [abs((b - a) - PTIME) * 1000 for log in logs for a, b in zip(log, log[1:])]
    ticks = s1["ticks"] - s0["ticks"]
    busy = s1["tick_busy_ms_avg"] * s1["ticks"] - s0["tick_busy_ms_avg"] * s0["ticks"]
    return {
        "legs": n_legs,
        "cpu": (c1 - c0) / (w1 - w0),
        "p50": _pct(deviations, 0.50),
        "p99": _pct(deviations, 0.99),
        "max": max(deviations, default=float("nan")),
        "skipped": s1["skipped_ticks"] - s0["skipped_ticks"],
        "busy_ms": busy / ticks if ticks else float("nan"),
        "pps_out": (s1["packets_out"] - s0["packets_out"]) / (w1 - w0),
        "lost": final["packets_out"] - final["packets_in"],
        "sent": final["packets_out"],
        "errors": final["send_errors"] + final["malformed"],
    }


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--legs", default="0,2,50,200,500", help="comma-separated leg counts (even; 0 = bare clock)")
    ap.add_argument("--warmup", type=float, default=1.0, help="seconds before measuring")
    ap.add_argument("--window", type=float, default=3.0, help="measurement window, seconds")
    ap.add_argument("--record", action="store_true", help="also record every leg to a temporary directory")
    args = ap.parse_args()
    counts = [int(x) for x in args.legs.split(",")]
    if any(n % 2 for n in counts):
        ap.error("--legs: counts must be even (legs are paired)")
    print(f"python {sys.version.split()[0]}, window {args.window:g} s, recording {'on' if args.record else 'off'}")
    header = (
        f"{'legs':>5} {'CPU':>6} {'jit p50':>8} {'jit p99':>8} {'jit max':>8} {'skipped':>7} "
        f"{'busy/tick':>9} {'pkt/s out':>9} {'lost':>9} {'errors':>6}"
    )
    print(header)
    print("-" * len(header))
    with tempfile.TemporaryDirectory(prefix="media-bench-") as tmp:
        for n in counts:
            r = await run_case(n, args.warmup, args.window, Path(tmp) if args.record else None)
            label = f"{n}" if n else "idle"
            print(
                f"{label:>5} {r['cpu'] * 100:5.1f}% {r['p50']:6.3f}ms {r['p99']:6.3f}ms {r['max']:6.3f}ms "
                f"{r['skipped']:7d} {r['busy_ms']:7.3f}ms {r['pps_out']:9.0f} {r['lost']:4d}/{r['sent']:<4d} "
                f"{r['errors']:6d}",
                flush=True,
            )
    print("jitter = |interval between consecutive sends of one leg - 20 ms|; idle = the clock's own ticks")


if __name__ == "__main__":
    asyncio.run(main())
