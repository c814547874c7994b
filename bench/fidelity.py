"""Latency fidelity: under load, do the simulated latencies stay what they are configured to be?

The supervisor runs with the default latencies and full telemetry to a sink
process. The saturating rate is measured first, on a supervisor of its own: a
closed-loop load with more checkouts in flight than it can serve fills its one
core, and its CPU per checkout there (telemetry delivered) says how many
checkouts a second that core takes. The traffic generator then drives a fresh
supervisor at half that rate;
the work spans each hop records (``payment.authorize``: 100-400 ms,
``inventory.query``: 20-80 ms, uniform) are read back from the sink and their
p50/p99 compared with the configured distribution's. The baseline is that
distribution itself; the event-loop lag comes from the supervisor's own monitor.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
from harness import closed_loop, cpu_seconds, start_sink, start_supervisor, start_traffic, wait_delivered

# ~300 ms a checkout with the default latencies: 96 in flight offer ~320/s, more than one core serves
SATURATING_IN_FLIGHT = 96
SATURATING_CHECKOUTS = 1500

UNIFORM_MS = {"payment.authorize": (100.0, 400.0), "inventory.query": (20.0, 80.0)}


def uniform_quantile(low: float, high: float, q: float) -> float:
    return low + (high - low) * q


def quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def _stored_spans(session: aiohttp.ClientSession, sink_url: str) -> dict[str, list[float]]:
    """Durations of every stored work span, by span name."""
    spans: dict[str, list[float]] = {name: [] for name in UNIFORM_MS}
    offset = 0
    while True:
        params = {"signal_type": "trace", "limit": "1000", "offset": str(offset)}
        async with session.get(f"{sink_url}/query/signals", params=params) as response:
            page = await response.json()
        for item in page["items"]:
            span = item["payload"]
            name = span["attributes"].get("span.name")
            if name in spans:
                spans[name].append(span["duration_ms"])
        offset += len(page["items"])
        if not page["items"] or offset >= page["total"]:
            return spans


@asynccontextmanager
async def _fakesvc() -> AsyncIterator[tuple[int, str, str, Path]]:
    """A sink process and the supervisor (default latencies, full telemetry): its pid, gateway, sink URL, workdir."""
    with tempfile.TemporaryDirectory() as tmp:
        sink, sink_url = await start_sink(Path(tmp))
        try:
            supervisor, gateway = await start_supervisor(Path(tmp), sink_url)
            try:
                yield supervisor.pid, gateway, sink_url, Path(tmp)
            finally:
                await supervisor.stop()
        finally:
            await sink.stop()


async def saturating_rate() -> dict[str, float]:
    """Checkouts/s that fill the supervisor's one core: 1 / its CPU-s per checkout under a saturating load.

    A process of its own, so the fidelity run's loop-lag window holds none of this overload.
    """
    async with _fakesvc() as (pid, gateway, _, _):
        cpu_before = cpu_seconds(pid)
        load = await closed_loop(
            lambda i: f"{gateway}/checkout/saturate-{i}", SATURATING_CHECKOUTS, SATURATING_IN_FLIGHT
        )
        await wait_delivered(gateway)
        cpu_per_checkout = (cpu_seconds(pid) - cpu_before) / SATURATING_CHECKOUTS
    return {
        "cpu_ms_per_checkout": round(cpu_per_checkout * 1000, 3),
        "rate": round(1 / cpu_per_checkout, 1),
        "closed_loop_rate": round(SATURATING_CHECKOUTS / load["wall_s"], 1),
    }


async def fidelity(share: float, duration_s: float, rate: float | None = None) -> dict[str, Any]:
    """Hop latencies at ``share`` of the measured saturating rate (or at ``rate`` when given)."""
    saturating = await saturating_rate()
    rate = rate or round(share * saturating["rate"])
    async with _fakesvc() as (_, gateway, sink_url, workdir), aiohttp.ClientSession() as session:
        report_path = workdir / "report.json"
        traffic = await start_traffic(gateway, rate, duration_s, "--mix", "success=1", "--report", str(report_path))
        await traffic.wait()
        stats = await wait_delivered(gateway)
        spans = await _stored_spans(session, sink_url)
        report = json.loads(report_path.read_text()) if report_path.exists() else {}
    hops = {}
    for name, (low, high) in UNIFORM_MS.items():
        values = spans[name]
        hop: dict[str, Any] = {"count": len(values)}
        for q, label in ((0.5, "p50"), (0.99, "p99")):
            measured, configured = quantile(values, q), uniform_quantile(low, high, q)
            hop[f"{label}_ms"] = round(measured, 2)
            hop[f"{label}_configured_ms"] = round(configured, 2)
            hop[f"{label}_error"] = round(measured / configured - 1, 4)
        hop["within_5_percent"] = abs(hop["p50_error"]) <= 0.05 and abs(hop["p99_error"]) <= 0.05
        hops[name] = hop
    return {
        "rate": rate,
        "saturating": saturating,
        "duration_s": duration_s,
        "achieved_rate": report.get("rate_achieved"),
        "hops": hops,
        "loop_lag": stats.get("loop_lag", {}),
    }


def print_fidelity(result: dict[str, Any]) -> None:
    saturating = result["saturating"]
    print(
        f"latency fidelity at {result['rate']}/s, achieved {result['achieved_rate']}/s (default latencies, "
        f"full telemetry; saturating rate {saturating['rate']}/s: {saturating['cpu_ms_per_checkout']} ms CPU per checkout at "
        f"{saturating['closed_loop_rate']}/s closed loop)"
    )
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
