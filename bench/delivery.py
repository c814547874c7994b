"""Delivery figures: the sink's ingest rate and the batcher's cost per signal, each beside a baseline.

- sink: signals/s a sink process accepts and stores (SQLite), against a bare aiohttp
  app in another process that answers 202 without validating or storing;
- batcher: the CPU the sending process spends per delivered signal, against a plain
  ClientSession POST loop with the same concurrency; and ``emit``'s own cost.
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
from harness import Server, free_port, median, start_sink

BARE_SINK = """
import sys
from aiohttp import web
async def ok(request):
    await request.read()
    return web.json_response({"status": "accepted"}, status=202)
app = web.Application()
app.router.add_post("/ingest/logs", ok)
print("bare sink listening", file=sys.stderr, flush=True)
web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), print=None, access_log=None)
"""


def signals(count: int) -> list[dict[str, Any]]:
    from fakesvc.telemetry.signals import log_signal

    return [
        log_signal(
            "payment-service",
            f"bench-{i // 10}",
            "INFO",
            "Payment authorized",
            {"order_id": f"ord-{i}", "latency_ms": 123.4},
        )
        for i in range(count)
    ]


async def post_all(url: str, bodies: list[bytes], concurrency: int) -> float:
    """POST every body with ``concurrency`` keep-alive workers; return signals/s."""
    queue = iter(bodies)

    async def worker(session: aiohttp.ClientSession) -> None:
        for body in queue:
            async with session.post(f"{url}/ingest/logs", data=body, headers={"Content-Type": "application/json"}) as r:
                await r.read()
                assert r.status == 202, r.status

    started = time.perf_counter()
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency)) as session:
        await asyncio.gather(*(worker(session) for _ in range(concurrency)))
    return len(bodies) / (time.perf_counter() - started)


async def plain_post_cpu_us(url: str, count: int, concurrency: int = 8) -> float:
    """CPU this process spends per signal encoded and POSTed by a plain ClientSession loop."""
    from fakesvc.jsonfast import dumps_bytes

    batch = signals(count)
    started = time.process_time()
    await post_all(url, [dumps_bytes(s) for s in batch], concurrency)
    return (time.process_time() - started) / count * 1e6


async def start_any_sink(workdir: Path, bare: bool) -> tuple[Server, str]:
    if not bare:
        return await start_sink(workdir)
    port = free_port()
    script = workdir / "bare_sink.py"
    script.write_text(BARE_SINK)
    server = await Server.start([str(script), str(port)], {}, "bare sink listening")
    return server, f"http://127.0.0.1:{port}"


async def sink_throughput(rounds: int, count: int) -> dict[str, Any]:
    from fakesvc.jsonfast import dumps_bytes

    results: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(rounds):
            for bare in (True, False):
                for concurrency in (8, 32):
                    server, url = await start_any_sink(Path(tmp), bare)
                    try:
                        rate = await post_all(url, [dumps_bytes(s) for s in signals(count)], concurrency)
                    finally:
                        await server.stop()
                    results.setdefault(f"{'bare' if bare else 'sink'}_c{concurrency}", []).append(rate)
    figures = {name: round(median(values), 1) for name, values in results.items()}
    for concurrency in (8, 32):
        figures[f"ratio_c{concurrency}"] = round(figures[f"sink_c{concurrency}"] / figures[f"bare_c{concurrency}"], 3)
    return figures


async def batcher_cost(rounds: int, count: int) -> dict[str, Any]:
    """Sender CPU per delivered signal: the batcher against a plain POST loop, same sink process."""
    from fakesvc.telemetry.batcher import Batcher, BatcherConfig
    from fakesvc.telemetry.signals import LOG_KIND

    plain, batched, emit_us = [], [], []
    with tempfile.TemporaryDirectory() as tmp:
        server, url = await start_sink(Path(tmp))
        try:
            for _ in range(rounds):
                plain.append(await plain_post_cpu_us(url, count))

                batcher = Batcher(BatcherConfig(prodsentinel_url=url, spill_dir=str(Path(tmp) / "spill")))
                await batcher.start()
                batch = signals(count)
                started = time.process_time()
                emit_started = time.perf_counter()
                for signal in batch:
                    batcher.emit(LOG_KIND, signal)
                emit_us.append((time.perf_counter() - emit_started) / count * 1e6)
                assert await batcher.flush(120)
                batched.append((time.process_time() - started) / count * 1e6)
                summary = await batcher.close()
                assert summary["sent"] == count, summary
        finally:
            await server.stop()
    return {
        "plain_post_cpu_us_per_signal": round(median(plain), 1),
        "batcher_cpu_us_per_signal": round(median(batched), 1),
        "ratio_to_plain": round(median(batched) / median(plain), 3),
        "emit_us_per_signal": round(median(emit_us), 2),
    }
