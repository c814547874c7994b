"""The traffic generator's own accuracy: achieved arrival rate against the bare chain."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

from harness import Server, free_port, start_traffic


async def traffic_rate(rates: tuple[float, ...], duration_s: float) -> dict[str, Any]:
    ports = [free_port() for _ in range(3)]
    server = await Server.start(["bench/bare_chain.py", *map(str, ports)], {}, "bare chain listening")
    results = {}
    try:
        with tempfile.TemporaryDirectory() as tmp:
            for rate in rates:
                report_path = Path(tmp) / f"r{rate}.json"
                process = await start_traffic(
                    f"http://127.0.0.1:{ports[0]}", rate, duration_s, "--mix", "success=1", "--report", str(report_path)
                )
                await process.wait()
                report = json.loads(report_path.read_text())
                results[str(rate)] = {
                    "achieved": report["rate_achieved"],
                    "error": round(report["rate_achieved"] / rate - 1, 4),
                    "skipped": report["skipped"],
                    "p99_ms": report["latency_ms"]["p99"],
                }
    finally:
        await server.stop()
    return results


def print_traffic_rate(results: dict[str, Any]) -> None:
    print(f"{'traffic generator vs bare chain':32} {'achieved/s':>10} {'error':>8} {'skipped':>8} {'p99 ms':>8}")
    for rate, row in results.items():
        print(
            f"{f'  target {rate}/s':32} {row['achieved']:>10} {row['error']:>8.2%} {row['skipped']:>8} {row['p99_ms']:>8}"
        )
