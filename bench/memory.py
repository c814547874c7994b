"""Memory: the supervisor's RSS stays flat under steady load, and bounded while the backend is down.

Phase 1 drives the supervisor (default latencies, full telemetry to a sink
process) at a steady rate and samples its RSS; phase 2 stops the sink while
the load goes on, so memory fills and the outbox on disk must take the rest.
"""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path
from typing import Any

import aiohttp
from harness import rss_mb, start_sink, start_supervisor, start_traffic


async def _sample(pid: int, seconds: float, every_s: float = 5.0) -> list[float]:
    samples = []
    loop = asyncio.get_running_loop()
    end = loop.time() + seconds
    while loop.time() < end:
        samples.append(round(rss_mb(pid), 1))
        await asyncio.sleep(every_s)
    samples.append(round(rss_mb(pid), 1))
    return samples


async def _telemetry(gateway: str) -> dict[str, Any]:
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{gateway}/telemetry") as response:
            return dict(await response.json())


async def memory(rate: float, steady_s: float, outage_s: float) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        sink, sink_url = await start_sink(Path(tmp))
        supervisor, gateway = await start_supervisor(Path(tmp), sink_url)
        try:
            traffic = await start_traffic(gateway, rate, steady_s)
            steady = await _sample(supervisor.pid, steady_s)
            await traffic.wait()
            kept_up = await _telemetry(gateway)
            await sink.stop()
            traffic = await start_traffic(gateway, rate, outage_s)
            outage = await _sample(supervisor.pid, outage_s)
            await traffic.wait()
            telemetry = await _telemetry(gateway)
        finally:
            await supervisor.stop()
            await sink.stop()
    warm = steady[len(steady) // 5 :]  # after the first fifth: caches and pools are warm
    return {
        "rate": rate,
        "steady": {
            "seconds": steady_s,
            "rss_mb": steady,
            "range_after_warmup_mb": round(max(warm) - min(warm), 1),
            "flat_within_20_mb": max(warm) - min(warm) <= 20,
            # a flat RSS only counts if delivery kept up: a backlog here waits on disk, not sent
            "backlog_at_end": kept_up.get("backlog"),
            "on_disk": kept_up.get("on_disk"),
        },
        "outage": {
            "seconds": outage_s,
            "rss_mb": outage,
            "max_mb": max(outage),
            "on_disk": telemetry.get("on_disk"),
            "outbox_mb": round(telemetry.get("outbox", {}).get("bytes", 0) / 1e6, 1),
            "in_memory": telemetry.get("in_memory"),
            "dropped": telemetry.get("dropped"),
        },
    }


def print_memory(result: dict[str, Any]) -> None:
    steady, outage = result["steady"], result["outage"]
    print(
        f"memory at {result['rate']}/s: steady {steady['seconds']:.0f} s RSS {steady['rss_mb'][0]} -> "
        f"{steady['rss_mb'][-1]} MB (after warm-up: range {steady['range_after_warmup_mb']} MB, "
        f"flat within 20 MB: {steady['flat_within_20_mb']}); at its end: backlog {steady['backlog_at_end']}, "
        f"on disk {steady['on_disk']} (0 and 0: delivery kept up)"
    )
    print(
        f"  backend down {outage['seconds']:.0f} s: RSS max {outage['max_mb']} MB, in memory {outage['in_memory']}, "
        f"on disk {outage['on_disk']} (outbox {outage['outbox_mb']} MB), dropped {outage['dropped']}"
    )
