"""What each service's series costs (issue #24): the shop at 20 checkouts/s, the tree before the series against this one.

``cd bench && python series_cost.py`` runs ``supervisor.py --graph shop`` of the tree at
:data:`BEFORE_SERIES` (git archive) and of this one, in turn, each serving the same open-loop
traffic (20 checkouts/s for 30 s, full telemetry to one embedded sink process), and prints the
supervisor's CPU milliseconds per checkout, counted from before the traffic until every signal of
it was delivered. At a fixed rate the sampler's share shows as it would in a user's run: a closed
loop at latency scale 0 would spread the samples over hundreds of checkouts a second.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
from pathlib import Path
from typing import Any

from harness import (
    FULL_TELEMETRY,
    ROOT,
    checkout_tree,
    cpu_seconds,
    graph_env,
    graph_ports,
    median,
    start_sink,
    start_traffic,
    start_tree_graph,
    wait_delivered,
)

BEFORE_SERIES = "e4928db"  # the last commit whose services kept no series
GRAPH, RATE, DURATION_S = "shop", 20.0, 30.0


async def cpu_ms_per_checkout(root: Path, workdir: Path, sink_url: str) -> float:
    """One run of ``root``'s supervisor: its CPU ms per checkout of the traffic, every signal delivered."""
    from fakesvc.graph.load import load_graph

    ports = graph_ports(GRAPH)
    env = graph_env(workdir, sink_url, GRAPH, ports, root) | FULL_TELEMETRY
    supervisor = await start_tree_graph(root, env, len(ports))
    edge = f"http://127.0.0.1:{ports[load_graph(GRAPH).edge.name]}"
    try:
        before = cpu_seconds(supervisor.pid)
        traffic = await start_traffic(edge, RATE, DURATION_S, "--graph", GRAPH, "--seed", "1")
        await traffic.wait()
        await wait_delivered(edge)
        return (cpu_seconds(supervisor.pid) - before) * 1000 / (RATE * DURATION_S)
    finally:
        await supervisor.stop()


async def series_cost(rounds: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        old = checkout_tree(BEFORE_SERIES, workdir / "before")
        sink, sink_url = await start_sink(workdir)
        runs: dict[str, list[float]] = {"before": [], "series": []}
        try:
            for i in range(rounds):
                runs["before"].append(await cpu_ms_per_checkout(old, workdir / f"before-{i}", sink_url))
                runs["series"].append(await cpu_ms_per_checkout(ROOT, workdir / f"series-{i}", sink_url))
        finally:
            await sink.stop()
    ratios = [after / then for then, after in zip(runs["before"], runs["series"], strict=True)]
    return {"before": BEFORE_SERIES, "runs": runs, "ratio_median": median(ratios), "ratios": ratios}


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], allow_abbrev=False)
    parser.add_argument("--rounds", type=int, default=3, help="pairs of runs, each pair back to back")
    figures = await series_cost(parser.parse_args().rounds)
    for name, values in figures["runs"].items():
        print(f"{name:>8}: CPU ms per checkout {', '.join(f'{v:.2f}' for v in values)} (median {median(values):.2f})")
    ratios = ", ".join(f"{r:.3f}" for r in figures["ratios"])
    print(f"series / before {figures['before']}: {figures['ratio_median']:.3f} (pairs {ratios}); target <= 1.03")


if __name__ == "__main__":
    asyncio.run(main())
