"""Voice API operation latency against a `voice-gateway serve` child process, with GET /health as baseline.

One client (httpx, keep-alive, Basic auth + JSESSIONID + CSRF like an agent desktop) sends one request at
a time, so each figure is the latency of that operation alone: p50 / p99 / max in ms, plus the gateway's
CPU time per request.  GET /health (no auth, no session, a few counters) is the floor set by HTTP, uvicorn
and the loopback in the same run; "over base" is p50 minus the health p50.

Call operations are line to line: agent1 on 1001 dials 1002, which auto-answers (1 kHz tone), then hangs up.
Besides the HTTP latency of Dial and Hangup it prints, from an aiocometd_ng client subscribed to
/v2/me/calls (long-polling), the time from sending Dial to the Established event (the INVITE, 100, 180,
200 and ACK between the two lines and the media legs opening included) and from sending Hangup to
Released (the BYE and its 200).

    python bench/api_latency.py                     # 300 requests per operation, 50 calls
    python bench/api_latency.py -n 1000 --calls 100
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _gateway import GatewayProcess, start_gateway  # noqa: E402

from tests.support.cometd_client import CALLS, CometdClient, call_message  # noqa: E402
from tests.support.gateway import GwsClient  # noqa: E402

VOICE = "/api/v2/me/channels/voice"


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))] if values else float("nan")


class Table:
    def __init__(self) -> None:
        self.base_p50: float | None = None
        head = f"{'operation':<34} {'n':>5} {'p50':>8} {'p99':>8} {'max':>8} {'over base':>9} {'gw CPU/req':>10}"
        print(head)
        print("-" * len(head))

    def row(self, name: str, samples: list[float], cpu_s: float | None = None) -> None:
        p50 = pct(samples, 0.5)
        if self.base_p50 is None:
            self.base_p50 = p50
        over = p50 - self.base_p50
        cpu = f"{cpu_s / len(samples) * 1000:8.2f}ms" if cpu_s is not None and samples else f"{'-':>10}"
        print(f"{name:<34} {len(samples):5d} {p50:6.2f}ms {pct(samples, 0.99):6.2f}ms {max(samples):6.2f}ms "
              f"{over:+7.2f}ms {cpu}", flush=True)


async def timed(n: int, fn: Callable[[int], Awaitable[Any]], gw: GatewayProcess) -> tuple[list[float], float]:
    """Run ``fn(i)`` n times one after the other: latencies in ms and the gateway CPU seconds used."""
    out = []
    c0 = gw.cpu()
    for i in range(n):
        t0 = time.perf_counter()
        await fn(i)
        out.append((time.perf_counter() - t0) * 1000)
    return out, gw.cpu() - c0


def ok(r: Any) -> None:
    if r.status_code != 200 or (r.headers.get("content-type", "").startswith("application/json")
                                and r.json().get("statusCode", 0) != 0):
        raise RuntimeError(f"{r.request.method} {r.request.url}: HTTP {r.status_code} {r.text[:300]}")


async def bench(gw: GatewayProcess, n: int, calls: int) -> None:
    table = Table()
    async with GwsClient(gw.base_url, "agent1", "agent1pw") as a1, GwsClient(gw.base_url, "agent2", "agent2pw") as a2:
        await a1.start_session()
        await a2.start_session()
        device = await a1.device_id()

        async def health(_: int) -> None:
            ok(await a1.http.get("/health"))

        async def me(_: int) -> None:
            ok(await a1.get("/api/v2/me"))

        async def me_calls(_: int) -> None:
            ok(await a1.get("/api/v2/me/calls"))

        async def devices_all(_: int) -> None:
            ok(await a1.get("/api/v2/me/devices", fields="*"))

        for fn in (health, me, me_calls):  # warm-up: connections, caches, first-call imports
            for i in range(20):
                await fn(i)

        samples, cpu = await timed(n, health, gw)
        table.row("GET /health (baseline)", samples, cpu)
        table.row("GET /api/v2/me", *await timed(n, me, gw))
        table.row("GET /api/v2/me/calls", *await timed(n, me_calls, gw))
        table.row("GET /api/v2/me/devices?fields=*", *await timed(n, devices_all, gw))

        ready: list[float] = []
        not_ready: list[float] = []
        c0 = gw.cpu()
        for _ in range(n // 2):
            for op, bucket in (("Ready", ready), ("NotReady", not_ready)):
                t0 = time.perf_counter()
                ok(await a1.post(VOICE, {"operationName": op}))
                bucket.append((time.perf_counter() - t0) * 1000)
        cpu = gw.cpu() - c0
        table.row("POST channels/voice Ready", ready, cpu / 2)
        table.row("POST channels/voice NotReady", not_ready, cpu / 2)

        events = CometdClient(gw.base_url, "agent1", "agent1pw", channels=(CALLS,))
        await events.start()
        try:
            dial_http, hang_http, to_established, to_released = [], [], [], []
            c0 = gw.cpu()
            for _ in range(calls):
                mark = events.mark()
                t0 = time.perf_counter()
                r = await a1.post(f"/api/v2/me/devices/{device}/calls",
                                  {"operationName": "Dial", "destination": "1002"})
                dial_http.append((time.perf_counter() - t0) * 1000)
                ok(r)
                est = await events.wait_for(call_message("Established"), timeout=10, since=mark)
                to_established.append((time.perf_counter() - t0) * 1000)
                call_id = est.call["id"]
                mark = events.mark()
                t0 = time.perf_counter()
                r = await a1.post(f"/api/v2/me/calls/{call_id}", {"operationName": "Hangup"})
                hang_http.append((time.perf_counter() - t0) * 1000)
                ok(r)
                await events.wait_for(call_message("Released", call_id=call_id), timeout=10, since=mark)
                to_released.append((time.perf_counter() - t0) * 1000)
                while await a2.calls():  # the callee's side is gone too before the next call
                    await asyncio.sleep(0.01)
            cpu = gw.cpu() - c0
        finally:
            await events.close()
        table.row("POST Dial 1001->1002 (HTTP)", dial_http)
        table.row("  Dial -> Established (CometD)", to_established)
        table.row("POST Hangup (HTTP)", hang_http)
        table.row("  Hangup -> Released (CometD)", to_released, cpu)
        print("gw CPU/req of the last row = gateway CPU per whole call (Dial, both legs, media, Hangup)")


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("-n", type=int, default=300, help="requests per operation")
    ap.add_argument("--calls", type=int, default=50, help="Dial+Hangup cycles")
    args = ap.parse_args()
    loop = asyncio.get_running_loop()

    def quiet_cancel(lp: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        # aiocometd_ng's close() leaves a cancelled connect callback that asyncio would print as an error
        if not isinstance(context.get("exception"), asyncio.CancelledError):
            lp.default_exception_handler(context)

    loop.set_exception_handler(quiet_cancel)
    print(f"python {sys.version.split()[0]}, one request at a time, keep-alive; latencies in ms")
    with tempfile.TemporaryDirectory(prefix="api-latency-") as tmp:
        gw = await start_gateway(Path(tmp) / "gateway", auto_answer={"1002": "tone:1000"})
        try:
            await bench(gw, args.n, args.calls)
            stats = await gw.wait_idle()
            print(f"after: calls={stats['calls']} rtp_ports={stats['rtp_ports']} sip_sessions={stats['sip_sessions']}")
        finally:
            gw.stop()


if __name__ == "__main__":
    asyncio.run(main())
