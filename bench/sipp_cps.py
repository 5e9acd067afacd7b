"""Calls per second a gateway sustains: SIPp at increasing rates into an auto-answering line.

A `voice-gateway serve` child process (generated config, line 1001 auto-answers playing a 1 kHz tone)
receives SIPp's uac_pcmu scenario: INVITE with a PCMU offer, 100/180/200, ACK, hold, BYE, 200.  SIPp runs
with -rtp_echo, so every call carries RTP both ways (20 ms packets out of the gateway, echoed back in).
Each step offers RATE calls/s for --seconds; it prints the calls SIPp completed per second of offering,
failures, retransmissions, mean INVITE->200 time, and the CPU of the gateway and of SIPp (100 % = one
core).  The ramp stops after the first step with a failure or below 95 % of the offered rate.

Baseline in the same run: the same ramp against SIPp's own UAS (uas_pcmu), i.e. what the load generator
and the loopback manage on this machine without the gateway.

    python bench/sipp_cps.py                           # rates 10,20,50,100,150,200,300,400,500; 5 s each
    python bench/sipp_cps.py --rates 20,40 --seconds 10 --hold-ms 2000 --no-baseline
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _gateway import GatewayProcess, start_gateway  # noqa: E402

from tests.e2e.peers.sipp import Sipp, SippResult  # noqa: E402

LINE = "1001"


@dataclass(frozen=True)
class Step:
    rate: float
    created: int
    successful: int
    failed: int
    retrans: int
    offer_s: float
    rtd_ms: float
    gw_cpu: float | None
    sipp_cpu: float

    @property
    def achieved(self) -> float:
        return self.successful / self.offer_s if self.offer_s else 0.0

    @property
    def sustained(self) -> bool:
        return self.failed == 0 and self.created == self.successful and self.achieved >= 0.95 * self.rate


def _hms_ms(value: str) -> float:
    """SIPp's hh:mm:ss:usec duration -> milliseconds (nan if absent)."""
    try:
        h, m, s, us = (int(x) for x in value.split(":"))
    except (AttributeError, ValueError):
        return float("nan")
    return ((h * 60 + m) * 60 + s) * 1000 + us / 1000


def _children_cpu() -> float:
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)  # reaped children only: the SIPp runs, not the gateway
    return ru.ru_utime + ru.ru_stime


async def run_step(workdir: Path, remote: str, rate: float, seconds: float, hold_ms: int,
                   gw: GatewayProcess | None) -> Step:
    calls = max(1, round(rate * seconds))
    limit = int(rate * hold_ms / 1000 * 3) + 20  # concurrency cap far above rate*hold: never the limiter
    sipp = Sipp(workdir / f"uac-{rate:g}", "uac_pcmu", remote=remote, service=LINE, calls=calls, rate=rate,
                limit=limit, pause_ms=hold_ms, timeout_s=seconds + hold_ms / 1000 + 60,
                extra_args=["-rtp_echo"], name=f"uac-{rate:g}")
    g0 = gw.cpu() if gw else 0.0
    c0, t0 = _children_cpu(), time.perf_counter()
    result: SippResult = await sipp.run()
    t1 = time.perf_counter()
    g1 = gw.cpu() if gw else 0.0
    wall = t1 - t0
    # calls were offered for (calls-1)/rate seconds, then the last one took hold + setup: divide the
    # completed calls by the offering window so the figure is comparable with the offered rate
    offer_s = max(wall - hold_ms / 1000, calls / rate)
    return Step(rate=rate, created=result.created, successful=result.successful, failed=result.failed,
                retrans=result.retransmissions, offer_s=offer_s,
                rtd_ms=_hms_ms(result.stats.get("ResponseTime1(C)", "")),
                gw_cpu=(g1 - g0) / wall if gw else None, sipp_cpu=(_children_cpu() - c0) / wall)


def print_header(title: str) -> None:
    print(f"\n{title}")
    head = (f"{'offered':>8} {'done/s':>7} {'calls':>6} {'failed':>6} {'retrans':>7} {'INV->200':>9} "
            f"{'gw CPU':>7} {'SIPp CPU':>8}")
    print(head)
    print("-" * len(head))


def print_step(s: Step) -> None:
    gw = f"{s.gw_cpu * 100:6.1f}%" if s.gw_cpu is not None else f"{'-':>7}"
    print(f"{s.rate:8g} {s.achieved:7.1f} {s.successful:6d} {s.failed:6d} {s.retrans:7d} {s.rtd_ms:7.1f}ms "
          f"{gw} {s.sipp_cpu * 100:7.1f}%", flush=True)


async def ramp(workdir: Path, remote: str, rates: list[float], seconds: float, hold_ms: int,
               gw: GatewayProcess | None) -> list[Step]:
    steps = []
    for rate in rates:
        step = await run_step(workdir, remote, rate, seconds, hold_ms, gw)
        steps.append(step)
        print_step(step)
        if gw is not None:
            await gw.wait_idle()  # calls, sessions and RTP legs of this step are gone before the next
        if not step.sustained:
            break
    return steps


def best(steps: list[Step]) -> str:
    ok = [s for s in steps if s.sustained]
    return f"{max(ok, key=lambda s: s.achieved).achieved:.1f} calls/s" if ok else "none"


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rates", default="10,20,50,100,150,200,300,400,500", help="offered calls/s, comma-separated")
    ap.add_argument("--seconds", type=float, default=5.0, help="how long each rate is offered")
    ap.add_argument("--hold-ms", type=int, default=1000, help="call length after ACK (SIPp -d)")
    ap.add_argument("--no-baseline", action="store_true", help="skip the SIPp-to-SIPp baseline ramp")
    args = ap.parse_args()
    rates = [float(x) for x in args.rates.split(",")]
    print(f"python {sys.version.split()[0]}, {args.seconds:g} s per rate, hold {args.hold_ms} ms, "
          f"RTP echoed by SIPp; CPU 100% = one core")
    with tempfile.TemporaryDirectory(prefix="sipp-cps-") as tmp:
        work = Path(tmp)
        gw = await start_gateway(work / "gateway", auto_answer={LINE: "tone:1000"})
        try:
            print_header(f"gateway (pid {gw.pid}) line {LINE} auto-answer, udp {gw.sip_ports['udp']}")
            steps = await ramp(work, f"127.0.0.1:{gw.sip_ports['udp']}", rates, args.seconds, args.hold_ms, gw)
            stats = await gw.wait_idle()
            print(f"after the ramp: calls={stats['calls']} rtp_ports={stats['rtp_ports']} "
                  f"sip_transactions={stats['sip_transactions']} (UDP transactions wait Timer J/K, RFC 3261 §17)")
        finally:
            gw.stop()

        base: list[Step] = []
        if not args.no_baseline:
            # -timeout bounds the whole SIPp run: it must outlive every step of the ramp
            uas = Sipp(work / "uas", "uas_pcmu", calls=None, name="uas", timeout_s=24 * 3600)
            await uas.start()
            try:
                print_header(f"baseline: SIPp uac -> SIPp uas_pcmu {uas.hostport} (no gateway)")
                base = await ramp(work, uas.hostport, rates, args.seconds, args.hold_ms, None)
            finally:
                await uas.stop()
    print(f"\nsustained with 0 failures: gateway {best(steps)}"
          + (f"; SIPp-to-SIPp baseline {best(base)}" if base else ""))


if __name__ == "__main__":
    asyncio.run(main())
