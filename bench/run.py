"""fakesvc's benchmarks, each beside a baseline measured in the same run.

``python bench/run.py`` prints the figures and writes ``bench/results/latest.json``
(about 20 minutes: the memory section alone holds a load for 5 + 2 minutes).
Overhead: checkouts per CPU-second of the serving process, fakesvc (the
telemetry settings in ``VARIANTS``), each run between two runs of a bare aiohttp chain driven
by the same client and compared with their mean;
CPU is counted from a warmed-up process (lazy imports, pools and caches are paid
before) until every signal of the run has reached the sink.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
from delivery import batcher_cost, plain_post_cpu_us, sink_throughput
from fidelity import fidelity, print_fidelity
from graph_cost import GRAPH_DEFAULTS, graph_cost, print_graph_cost
from harness import (
    FULL_TELEMETRY,
    LOGS_ONLY,
    ROOT,
    Server,
    closed_loop,
    cpu_seconds,
    free_port,
    median,
    start_sink,
    start_supervisor,
    wait_delivered,
)
from memory import memory, print_memory
from outbox import BEFORE_OUTBOX, outbox_figures, print_outbox
from records_cost import print_records_cost, records_cost
from traffic_rate import print_traffic_rate, traffic_rate


@dataclass(frozen=True)
class Variant:
    """One way of running fakesvc for the overhead figure, and the ratio to the bare chain it must reach."""

    label: str
    env: dict[str, str]
    target: float | None = None


VARIANTS = {
    "full": Variant("fakesvc logs+spans+metrics", FULL_TELEMETRY, 0.20),
    "logs": Variant("fakesvc logs only", LOGS_ONLY, 0.30),
    "logs_c8": Variant("  same, 8 POSTs in flight", {**LOGS_ONLY, "FAKESVC_BATCH_CONCURRENCY": "8"}),
    "off": Variant("fakesvc remote off", {"FAKESVC_TELEMETRY": "", "OTEL_TRACES_EXPORTER": "none"}, 0.60),
}


async def stored_in_sink(sink_url: str) -> int:
    """How many signals the sink holds (its ``/stats``)."""
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{sink_url}/stats") as response:
            return sum((await response.json())["stored"].values())


def check_all_stored(variant: str, telemetry: dict[str, Any], stored: int) -> None:
    """Every signal the process emitted is in the sink, once: the CPU paid for all of them."""
    lost = {key: telemetry.get(key, 0) for key in ("dead_lettered", "dropped") if telemetry.get(key, 0)}
    if lost or stored != telemetry.get("queued", 0):
        raise RuntimeError(f"{variant}: {telemetry.get('queued')} signals emitted, {stored} stored in the sink {lost}")


WARMUP_CHECKOUTS = 300


async def _nothing_to_deliver(_gateway: str) -> dict[str, Any]:
    return {}


async def overhead_run(variant: str, count: int, concurrency: int, sink_url: str, workdir: Path) -> dict[str, Any]:
    if variant == "bare":
        ports = [free_port() for _ in range(3)]
        server = await Server.start(["bench/bare_chain.py", *map(str, ports)], {}, "bare chain listening")
        gateway = f"http://127.0.0.1:{ports[0]}"
    else:
        env = {"FAKESVC_LATENCY_SCALE": "0", **VARIANTS[variant].env}
        server, gateway = await start_supervisor(workdir / variant, sink_url, root=ROOT, **env)
    delivered = wait_delivered if variant != "bare" else _nothing_to_deliver
    try:
        stored_before = await stored_in_sink(sink_url)
        await closed_loop(lambda i: f"{gateway}/checkout/warmup-{i}", WARMUP_CHECKOUTS, concurrency)
        await delivered(gateway)
        cpu_before = cpu_seconds(server.pid)
        load = await closed_loop(lambda i: f"{gateway}/checkout/bench-{i}", count, concurrency)
        telemetry = await delivered(gateway)
        cpu = cpu_seconds(server.pid) - cpu_before
    finally:
        await server.stop()
    if load["ok"] != count:
        raise RuntimeError(f"{variant}: only {load['ok']} of {count} checkouts succeeded: {load['statuses']}")
    if telemetry.get("remote"):
        check_all_stored(variant, telemetry, await stored_in_sink(sink_url) - stored_before)
    return {
        "variant": variant,
        "signals_per_checkout": telemetry.get("queued", 0) / (WARMUP_CHECKOUTS + count),
        "cpu_s": cpu,
        "checkouts_per_cpu_s": count / cpu,
        "wall_s": load["wall_s"],
        "p50_ms": load["p50_ms"],
        "p99_ms": load["p99_ms"],
        "telemetry": telemetry,
    }


async def overhead(rounds: int, count: int, concurrency: int) -> dict[str, Any]:
    """Each variant runs between two bare-chain runs and is compared with their mean.

    This machine's speed drifts by tens of percent within minutes; a ratio to the bare runs
    made just before and after a variant cancels most of that, a ratio of medians does not.
    """
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        sink, sink_url = await start_sink(workdir)
        runs: dict[str, list[dict[str, Any]]] = {name: [] for name in ("bare", *VARIANTS)}
        plain_post_us: list[float] = []
        try:
            for _ in range(rounds):
                before = await overhead_run("bare", count, concurrency, sink_url, workdir)
                runs["bare"].append(before)
                for variant in VARIANTS:
                    run = await overhead_run(variant, count, concurrency, sink_url, workdir)
                    after = await overhead_run("bare", count, concurrency, sink_url, workdir)
                    bare_around = (before["checkouts_per_cpu_s"] + after["checkouts_per_cpu_s"]) / 2
                    run["ratio_to_bare_around"] = run["checkouts_per_cpu_s"] / bare_around
                    runs[variant].append(run)
                    runs["bare"].append(after)
                    before = after
                plain_post_us.append(await plain_post_cpu_us(sink_url, 5000))
        finally:
            await sink.stop()
    bare = median([run["checkouts_per_cpu_s"] for run in runs["bare"]])
    figures: dict[str, Any] = {"bare_checkouts_per_cpu_s": round(bare, 1)}
    for name, spec in VARIANTS.items():
        ratios = [run["ratio_to_bare_around"] for run in runs[name]]
        ratio = median(ratios)
        figures[name] = {
            "checkouts_per_cpu_s": round(median([run["checkouts_per_cpu_s"] for run in runs[name]]), 1),
            "ratio_to_bare": round(ratio, 3),
            "ratio_range": [round(min(ratios), 3), round(max(ratios), 3)],
            "target_ratio": spec.target,
            "met": None if spec.target is None else ratio >= spec.target,
        }
    figures["full_ceiling"] = clientsession_ceiling(
        bare, runs["full"][-1]["signals_per_checkout"], median(plain_post_us)
    )
    return {"figures": figures, "runs": runs}


def clientsession_ceiling(bare_per_cpu_s: float, signals_per_checkout: float, post_us: float) -> dict[str, float]:
    """The best ratio full telemetry could reach if its only cost were one plain ClientSession POST per signal."""
    bare_us = 1e6 / bare_per_cpu_s
    return {
        "signals_per_checkout": round(signals_per_checkout, 2),
        "plain_post_cpu_us": round(post_us, 1),
        "ratio": round(bare_us / (bare_us + signals_per_checkout * post_us), 3),
    }


def print_overhead(result: dict[str, Any]) -> None:
    figures = result["figures"]
    print(f"{'overhead (latency scale 0)':32} {'checkouts/CPU-s':>16} {'x bare':>8} {'(range)':>13} {'target':>8}")
    print(f"{'bare aiohttp chain (baseline)':32} {figures['bare_checkouts_per_cpu_s']:>16.1f} {1.0:>8.3f}")
    for name, variant in VARIANTS.items():
        fig = figures[name]
        target = "" if variant.target is None else f"{variant.target:>7.2f} {'ok' if fig['met'] else 'MISSED'}"
        low, high = fig["ratio_range"]
        print(
            f"{variant.label:32} {fig['checkouts_per_cpu_s']:>16.1f} {fig['ratio_to_bare']:>8.3f} "
            f"{f'{low:.3f}-{high:.3f}':>13} {target}"
        )
    ceiling = figures["full_ceiling"]
    print(
        f"  ceiling of full with one ClientSession POST per signal: {ceiling['ratio']:.2f} x bare "
        f"({ceiling['signals_per_checkout']:g} signals/checkout x {ceiling['plain_post_cpu_us']:.0f} us CPU per POST, "
        "everything else free)"
    )


def print_delivery(sink: dict[str, Any], batcher: dict[str, Any]) -> None:
    print(f"{'sink ingest (signals/s)':32} {'sink':>10} {'bare 202':>10} {'x bare':>8}")
    for concurrency in (8, 32):
        print(
            f"{f'  {concurrency} concurrent POSTs':32} {sink[f'sink_c{concurrency}']:>10.1f} "
            f"{sink[f'bare_c{concurrency}']:>10.1f} {sink[f'ratio_c{concurrency}']:>8.2f}"
        )
    print(f"{'sender CPU per signal (us)':32} {'batcher':>10} {'plain POST':>10} {'x plain':>8}")
    print(
        f"{'':32} {batcher['batcher_cpu_us_per_signal']:>10.1f} {batcher['plain_post_cpu_us_per_signal']:>10.1f} "
        f"{batcher['ratio_to_plain']:>8.2f}"
    )
    print(f"{'emit() hot path (us/signal)':32} {batcher['emit_us_per_signal']:>10.2f}")


def machine() -> dict[str, Any]:
    import os
    import platform

    return {"python": platform.python_version(), "cpus": os.cpu_count(), "platform": platform.platform()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, allow_abbrev=False)
    parser.add_argument(
        "--rounds", type=int, default=None, help=f"default 5; the graph section {GRAPH_DEFAULTS['rounds']}"
    )
    parser.add_argument(
        "--count", type=int, default=None, help=f"default 2000; the graph section {GRAPH_DEFAULTS['count']}"
    )
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--signals", type=int, default=5000, help="signals per sink/batcher run")
    parser.add_argument(
        "--only",
        choices=("overhead", "delivery", "fidelity", "traffic", "memory", "outbox", "graph", "records"),
        default=None,
    )
    parser.add_argument("--before", default=BEFORE_OUTBOX, help="revision the outbox's cost is measured against")
    parser.add_argument(
        "--shop-count", type=int, default=GRAPH_DEFAULTS["shop_count"], help="shop requests per run (graph section)"
    )
    parser.add_argument("--memory-rate", type=float, default=200.0)
    parser.add_argument("--memory-duration", type=float, default=300.0, help="seconds of steady load")
    parser.add_argument("--outage-duration", type=float, default=120.0, help="seconds with the backend down")
    parser.add_argument("--fidelity-share", type=float, default=0.5, help="of the measured saturating rate")
    parser.add_argument("--fidelity-rate", type=float, default=None, help="a fixed rate instead of the share")
    parser.add_argument("--fidelity-duration", type=float, default=20.0)
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "latest.json"))
    args = parser.parse_args()
    graph_rounds, graph_count = args.rounds or GRAPH_DEFAULTS["rounds"], args.count or GRAPH_DEFAULTS["count"]
    args.rounds, args.count = args.rounds or 5, args.count or 2000
    result: dict[str, Any] = {"machine": machine()}
    if args.only in (None, "overhead"):
        result["overhead"] = asyncio.run(overhead(args.rounds, args.count, args.concurrency))
        print_overhead(result["overhead"])
    if args.only in (None, "delivery"):
        result["sink"] = asyncio.run(sink_throughput(args.rounds, args.signals))
        result["batcher"] = asyncio.run(batcher_cost(args.rounds, args.signals))
        print_delivery(result["sink"], result["batcher"])
    if args.only in (None, "fidelity"):
        result["fidelity"] = asyncio.run(fidelity(args.fidelity_share, args.fidelity_duration, args.fidelity_rate))
        print_fidelity(result["fidelity"])
    if args.only in (None, "traffic"):
        result["traffic"] = asyncio.run(traffic_rate((500.0, 1000.0), 10.0))
        print_traffic_rate(result["traffic"])
    if args.only in (None, "memory"):
        result["memory"] = asyncio.run(memory(args.memory_rate, args.memory_duration, args.outage_duration))
        print_memory(result["memory"])
    if args.only in (None, "outbox"):
        result["outbox"] = asyncio.run(outbox_figures(args.rounds, args.count, args.before))
        print_outbox(result["outbox"])
    if args.only in (None, "graph"):
        result["graph"] = asyncio.run(graph_cost(graph_rounds, graph_count, args.shop_count))
        print_graph_cost(result["graph"])
    if args.only in (None, "records"):
        result["records"] = asyncio.run(records_cost(args.rounds, args.count))
        print_records_cost(result["records"])
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2))
    print(f"written: {args.out}")


if __name__ == "__main__":
    main()
