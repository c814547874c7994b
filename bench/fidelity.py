"""Latency fidelity: under load, do the simulated latencies stay what they are configured to be?

The supervisor runs with the default latencies and full telemetry to a sink
process; the traffic generator drives it at a fraction of the saturating rate;
the work spans each hop records (``payment.authorize``: 100-400 ms,
``inventory.query``: 20-80 ms, uniform) are read back from the sink and their
p50/p99 compared with the configured distribution's. The baseline is that
distribution itself; the event-loop lag comes from the supervisor's own monitor.
"""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path
from typing import Any

import aiohttp
from harness import start_sink, start_supervisor, start_traffic

UNIFORM_MS = {"payment.authorize": (100.0, 400.0), "inventory.query": (20.0, 80.0)}


def uniform_quantile(low: float, high: float, q: float) -> float:
    return low + (high - low) * q


def quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def fidelity(rate: float, duration_s: float) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        sink, sink_url = await start_sink(Path(tmp))
        supervisor, gateway = await start_supervisor(Path(tmp), sink_url)
        try:
            traffic = await start_traffic(
                gateway, rate, duration_s, "--mix", "success=1", "--report", f"{tmp}/report.json"
            )
            await traffic.wait()
            async with aiohttp.ClientSession() as session:
                while True:
                    async with session.get(f"{gateway}/telemetry") as response:
                        stats = await response.json()
                    if stats["backlog"] == 0:
                        break
                    await asyncio.sleep(0.1)
                spans: dict[str, list[float]] = {name: [] for name in UNIFORM_MS}
                offset = 0
                while True:
                    params = {"signal_type": "trace", "limit": "10000", "offset": str(offset)}
                    async with session.get(f"{sink_url}/query/signals", params=params) as response:
                        page = await response.json()
                    for span in page:
                        name = span["attributes"].get("span.name")
                        if name in spans:
                            spans[name].append(span["duration_ms"])
                    if len(page) < 10000:
                        break
                    offset += 10000
        finally:
            await supervisor.stop()
            await sink.stop()
    import json

    report = json.loads(Path(f"{tmp}/report.json").read_text()) if Path(f"{tmp}/report.json").exists() else {}
    hops = {}
    for name, (low, high) in UNIFORM_MS.items():
        values = spans[name]
        hop = {"count": len(values)}
        for q, label in ((0.5, "p50"), (0.99, "p99")):
            measured, configured = quantile(values, q), uniform_quantile(low, high, q)
            hop[f"{label}_ms"] = round(measured, 2)
            hop[f"{label}_configured_ms"] = round(configured, 2)
            hop[f"{label}_error"] = round(measured / configured - 1, 4)
        hop["within_5_percent"] = abs(hop["p50_error"]) <= 0.05 and abs(hop["p99_error"]) <= 0.05
        hops[name] = hop
    return {
        "rate": rate,
        "duration_s": duration_s,
        "achieved_rate": report.get("rate_achieved"),
        "hops": hops,
        "loop_lag": stats.get("loop_lag", {}),
    }


def print_fidelity(result: dict[str, Any]) -> None:
    print(f"latency fidelity at {result['rate']}/s (default latencies, full telemetry)")
    print(f"{'hop work span':20} {'p50 ms':>8} {'configured':>10} {'p99 ms':>8} {'configured':>10} {'within 5%':>10}")
    for name, hop in result["hops"].items():
        print(
            f"{name:20} {hop['p50_ms']:>8} {hop['p50_configured_ms']:>10} {hop['p99_ms']:>8} "
            f"{hop['p99_configured_ms']:>10} {str(hop['within_5_percent']):>10}"
        )
    lag = result["loop_lag"]
    print(
        f"event-loop lag (supervisor): p50 {lag.get('p50_ms')} ms, p99 {lag.get('p99_ms')} ms, max {lag.get('max_ms')} ms"
    )
