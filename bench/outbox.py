"""What the durable outbox costs and what it promises, measured.

- cost: checkouts per CPU-second of ``supervisor.py`` with the outbox against the
  same at ``--before`` (a revision from before the outbox, checked out with
  ``git archive`` into a temporary directory), each pair run back to back
  (this host drifts), full telemetry and logs only; the median ratio of the pairs.
- durability: how long after ``emit()`` a signal is committed, in process, at a
  steady rate (the write-ahead promise is 50 ms).
- kill: SIGKILL the supervisor under load, start it again on the same outbox,
  and find the latest checkout that ended before the kill and is not whole in
  the sink: the loss window a user can count on.
"""

from __future__ import annotations

import asyncio
import signal
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import aiohttp
from harness import (
    FULL_TELEMETRY,
    LOGS_ONLY,
    ROOT,
    checkout_cost,
    checkout_tree,
    median,
    start_sink,
    start_supervisor,
    wait_delivered,
)

BEFORE_OUTBOX = "efb4818"  # the last revision with the spill files


async def _checkouts_per_cpu_s(root: Path, workdir: Path, sink_url: str, env: dict[str, str], count: int) -> float:
    return float((await checkout_cost(root, workdir, sink_url, env, count))["per_cpu_s"])


async def outbox_cost(rounds: int, count: int, before_rev: str = BEFORE_OUTBOX) -> dict[str, Any]:
    variants = {"full": FULL_TELEMETRY, "logs": LOGS_ONLY}
    figures: dict[str, Any] = {"before": before_rev}
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        before_root = checkout_tree(before_rev, workdir / "before")
        sink, sink_url = await start_sink(workdir)
        try:
            for name, env in variants.items():
                pairs = []
                for i in range(rounds):
                    old = await _checkouts_per_cpu_s(before_root, workdir / f"b{name}{i}", sink_url, env, count)
                    new = await _checkouts_per_cpu_s(ROOT, workdir / f"a{name}{i}", sink_url, env, count)
                    pairs.append((old, new))
                ratios = [new / old for old, new in pairs]
                figures[name] = {
                    "before_checkouts_per_cpu_s": round(median([old for old, _ in pairs]), 1),
                    "after_checkouts_per_cpu_s": round(median([new for _, new in pairs]), 1),
                    "after_over_before": round(median(ratios), 3),
                    "range": [round(min(ratios), 3), round(max(ratios), 3)],
                    "within_10_percent": median(ratios) >= 0.90,
                }
        finally:
            await sink.stop()
    return figures


async def durability(rate: float, seconds: float) -> dict[str, Any]:
    """Emit ``rate`` signals/s in ticks of 5 ms; sample every 1 ms how many are committed."""
    from fakesvc.telemetry.batcher import Batcher, BatcherConfig
    from fakesvc.telemetry.signals import LOG_KIND, log_signal

    latencies: list[float] = []
    with tempfile.TemporaryDirectory() as tmp:
        sink, sink_url = await start_sink(Path(tmp))
        batcher = Batcher(BatcherConfig(sink_url, str(Path(tmp) / "outbox")))
        await batcher.start()
        try:
            loop = asyncio.get_running_loop()
            emitted: list[float] = []
            per_tick = max(1, round(rate * 0.005))
            started = loop.time()
            while loop.time() - started < seconds:
                for _ in range(per_tick):
                    batcher.emit(LOG_KIND, log_signal("payment-service", "bench", "INFO", "Payment authorized", {}))
                    emitted.append(loop.time())
                for _ in range(5):
                    await asyncio.sleep(0.001)
                    durable = batcher.ledger.queued - batcher.ledger.pending - batcher.ledger.dropped
                    now = loop.time()
                    while len(latencies) < durable:
                        latencies.append(now - emitted[len(latencies)])
            await batcher.flush(60)
        finally:
            await batcher.close()
            await sink.stop()
    latencies.sort()
    return {
        "rate": rate,
        "signals": len(latencies),
        "p50_ms": round(latencies[len(latencies) // 2] * 1000, 1),
        "p99_ms": round(latencies[int(len(latencies) * 0.99)] * 1000, 1),
        "max_ms": round(latencies[-1] * 1000, 1),
    }


async def _stats(gateway: str) -> dict[str, Any]:
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{gateway}/telemetry") as response:
            return dict(await response.json())


async def kill_window(load_s: float, concurrency: int) -> dict[str, Any]:
    """SIGKILL under load, restart, and measure which ended checkouts are not whole in the sink."""
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        sink, sink_url = await start_sink(workdir)
        loop = asyncio.get_running_loop()
        ended: list[tuple[float, str]] = []
        try:
            first, gateway = await start_supervisor(workdir, sink_url, FAKESVC_LATENCY_SCALE="0")

            async def worker(session: aiohttp.ClientSession, index: int) -> None:
                n = 0
                while True:
                    async with session.post(f"{gateway}/checkout/kill-{index}-{n}") as response:
                        await response.read()
                        if response.status == 200:
                            ended.append((loop.time(), response.headers["x-request-id"]))
                    n += 1

            async with aiohttp.ClientSession() as session:
                workers = [asyncio.ensure_future(worker(session, i)) for i in range(concurrency)]
                await asyncio.sleep(load_s)
                first.process.send_signal(signal.SIGKILL)
                killed_at = loop.time()
                await asyncio.gather(*workers, return_exceptions=True)
            await first.process.wait()
            second, gateway = await start_supervisor(workdir, sink_url)
            try:
                stats = await wait_delivered(gateway)
            finally:
                await second.stop()
            async with aiohttp.ClientSession() as session:
                async with session.get(f"{sink_url}/stats") as response:
                    duplicates = (await response.json())["duplicates"]
                per_trace: Counter[str] = Counter()
                offset = 0
                while True:
                    params = {"limit": "1000", "offset": str(offset)}
                    async with session.get(f"{sink_url}/query/signals", params=params) as response:
                        page = await response.json()
                    rows = page["items"]
                    per_trace.update(row["trace_id"] for row in rows)
                    if len(rows) < 1000:
                        break
                    offset += 1000
        finally:
            await sink.stop()
    whole = max(per_trace.values())
    broken = [killed_at - at for at, trace in ended if per_trace[trace] != whole]
    return {
        "checkouts_ended": len(ended),
        "not_whole": len(broken),
        "latest_not_whole_ended_ms_before_kill": round(max(broken) * 1000, 1) if broken else None,
        "adopted": stats.get("adopted"),
        "resent_uncertain": stats.get("resent_uncertain"),
        "sink_duplicates": duplicates,
    }


def print_outbox(result: dict[str, Any]) -> None:
    cost = result.get("cost")
    if cost:
        for name in ("full", "logs"):
            row = cost[name]
            print(
                f"outbox cost, {name}: {row['after_checkouts_per_cpu_s']} vs {row['before_checkouts_per_cpu_s']} "
                f"checkouts/CPU-s at {cost['before']} = {row['after_over_before']} (range {row['range']}); "
                f"within 10 %: {row['within_10_percent']}"
            )
    lag = result["durability"]
    print(
        f"durability at {lag['rate']:.0f} signals/s: committed p50 {lag['p50_ms']} ms, p99 {lag['p99_ms']} ms, "
        f"max {lag['max_ms']} ms after emit()"
    )
    for run in result["kill"]:
        print(
            f"SIGKILL under load: {run['checkouts_ended']} checkouts ended, {run['not_whole']} not whole, the latest "
            f"of them ended {run['latest_not_whole_ended_ms_before_kill']} ms before the kill; adopted "
            f"{run['adopted']}, resent_uncertain {run['resent_uncertain']}, sink duplicates {run['sink_duplicates']}"
        )


async def outbox_figures(rounds: int, count: int, before_rev: str | None) -> dict[str, Any]:
    result: dict[str, Any] = {}
    if before_rev:
        result["cost"] = await outbox_cost(rounds, count, before_rev)
    result["durability"] = await durability(2800.0, 10.0)
    result["kill"] = [await kill_window(3.0, 16) for _ in range(3)]
    return result


if __name__ == "__main__":  # a quick look without the cost pairs
    started = time.monotonic()
    print_outbox(asyncio.run(outbox_figures(0, 0, None)))
    print(f"{time.monotonic() - started:.0f} s")
