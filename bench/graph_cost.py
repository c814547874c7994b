"""What running every service from a graph file costs (the graph engine, fakesvc/service/script.py + hop.py).

- checkout: checkouts per CPU-second of ``supervisor.py`` (the overhead section's
  setup: 300 warm-up checkouts, then ``count`` at latency scale 0, CPU counted until
  the batcher's backlog is empty) for the hand-written gateway, payment and
  inventory at :data:`BASELINE` (its files taken with ``git archive`` into a
  temporary directory and run from there, ``PYTHONPATH`` on that tree) and for the
  graph engine of this working tree, back to back in pairs whose order alternates,
  full telemetry and logs only. Each pair gives engine / hand-written; the bound
  is a median of at least 0.95.
- shop: hop requests per CPU-second (every request its services served, counted
  from the graph: an entry request is one hop plus every call it makes, nested;
  the entry routes are sent in the graph's weights) of the engine, beside
  ``bench/bare_graph.py`` (bare aiohttp services of the same shape, no telemetry)
  in alternating pairs: the ceiling. The services' own request counters
  (``/metrics``) are checked against the graph's count.
"""

from __future__ import annotations

import os
import random
import re
import subprocess
import tempfile
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
from harness import (
    FULL_TELEMETRY,
    LOGS_ONLY,
    ROOT,
    Request,
    Server,
    checkout_cost,
    checkout_tree,
    cpu_per_load,
    graph_ports,
    median,
    start_graph,
    start_sink,
)

from fakesvc.graph.load import load_graph
from fakesvc.graph.model import Graph, Route, calls_of, fill

BASELINE = "21c6b36"  # the last revision with the hand-written gateway.py, payment.py and inventory.py
BOUND = 0.95  # engine / hand-written: within 5 %
TELEMETRY = {"full": FULL_TELEMETRY, "logs": LOGS_ONLY}
SHOP_WARMUP = 100  # requests (~900 hops)
SHOP_CONCURRENCY = 8  # the shop's fallbacks time out at 0.3-0.5 s: a deeper queue would trip them and change the work
GRAPH_DEFAULTS = {"rounds": 4, "count": 800, "shop_count": 300}  # about 3 minutes on the 2-core VM
Run = Callable[[int], Awaitable[dict[str, Any]]]


def baseline_tree(into: Path) -> tuple[Path | None, str]:
    """The hand-written services' tree under ``into``, or None and why not (no git, no such commit)."""
    try:
        found = subprocess.run(
            ["git", "rev-parse", "--verify", "--quiet", f"{BASELINE}^{{commit}}"], cwd=ROOT, capture_output=True
        )
    except FileNotFoundError:
        return None, "git is not installed"
    if found.returncode != 0:
        return None, f"no git history with {BASELINE} here (a tarball?)"
    return checkout_tree(BASELINE, into), f"{BASELINE} (git archive)"


async def pairs(rounds: int, first: Run, second: Run) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """``rounds`` pairs run back to back, ``second`` going first in every other one (this host drifts)."""
    out = []
    for i in range(rounds):
        if i % 2 == 0:
            a = await first(i)
            b = await second(i)
        else:
            b = await second(i)
            a = await first(i)
        out.append((a, b))
    return out


def summary(runs: list[tuple[dict[str, Any], dict[str, Any]]], figure: str) -> dict[str, Any]:
    ratios = [b[figure] / a[figure] for a, b in runs]
    return {
        "pairs": [[round(a[figure], 1), round(b[figure], 1), round(b[figure] / a[figure], 3)] for a, b in runs],
        "first": round(median([a[figure] for a, _ in runs]), 1),
        "second": round(median([b[figure] for _, b in runs]), 1),
        "ratio": round(median(ratios), 3),
        "range": [round(min(ratios), 3), round(max(ratios), 3)],
        "signals_per_request": [round(median([run["signals_per_request"] for run in side]), 2) for side in zip(*runs)],
    }


def hops(graph: Graph, service: str, route: Route) -> int:
    """Requests served in the graph for one request to ``route``: its own, and those of every call, nested."""
    total = 1
    for call in calls_of(route.script):
        callee = graph.service(call.service)
        target = next(r for r in callee.routes if r.path == call.route and r.method == call.method)
        total += hops(graph, callee.name, target)
    return total


def entry_mix(graph: Graph, count: int, seed: int = 1) -> list[Route]:
    """``count`` entry routes drawn in the graph's weights (the traffic generator's mix), the same every run."""
    entries = graph.entry_routes()
    return random.Random(seed).choices([route for _, route in entries], [r.weight for _, r in entries], k=count)


def mix_request(routes: list[Route]) -> Request:
    def request(tag: str, index: int) -> tuple[str, str]:
        route = routes[index]
        return route.method, fill(route.path, {route.key: f"{tag}-{index}"})

    return request


_COUNT = re.compile(r"^http_server_request_duration_seconds_count\{(.*)\} (\S+)$", re.M)


async def served(graph: Graph, ports: dict[str, int]) -> dict[str, int]:
    """Business requests each service counted itself (``/metrics``), by status."""
    business = {route.path for service in graph.services for route in service.routes}
    statuses: dict[str, int] = {}
    async with aiohttp.ClientSession() as session:
        for port in ports.values():
            async with session.get(f"http://127.0.0.1:{port}/metrics") as response:
                text = await response.text()
            for labels, value in _COUNT.findall(text):
                fields = dict(re.findall(r'(\w+)="([^"]*)"', labels))
                if fields["http_route"] in business:
                    status = fields["http_response_status_code"]
                    statuses[status] = statuses.get(status, 0) + int(float(value))
    return statuses


async def checkout_pairs(rounds: int, count: int, workdir: Path, sink_url: str, old: Path) -> dict[str, Any]:
    figures: dict[str, Any] = {}
    for name, env in TELEMETRY.items():

        def side(root: Path, tag: str, env: dict[str, str] = env, name: str = name) -> Run:
            return lambda i: checkout_cost(root, workdir / f"{tag}-{name}-{i}", sink_url, env, count)

        found = summary(await pairs(rounds, side(old, "hand"), side(ROOT, "engine")), "per_cpu_s")
        figures[name] = {**found, "pass": found["ratio"] >= BOUND}
    return figures


async def shop_pairs(rounds: int, count: int, workdir: Path, sink_url: str) -> dict[str, Any]:
    graph = load_graph("shop")
    routes = entry_mix(graph, max(count, SHOP_WARMUP))
    per_request = {route.name: hops(graph, service.name, route) for service, route in graph.entry_routes()}
    hop_count = sum(per_request[route.name] for route in routes[:count])
    expected = sum(per_request[route.name] for route in routes[:SHOP_WARMUP]) + hop_count
    checks: list[dict[str, int]] = []

    async def measure(server: Server, ports: dict[str, int], telemetry: bool) -> dict[str, Any]:
        edge = f"http://127.0.0.1:{ports[graph.edge.name]}"
        try:
            request = mix_request(routes)
            run = await cpu_per_load(
                server, edge, count, request, concurrency=SHOP_CONCURRENCY, telemetry=telemetry, warmup=SHOP_WARMUP
            )
            if telemetry:
                checks.append(await served(graph, ports))
        finally:
            await server.stop()
        return {**run, "hops_per_cpu_s": hop_count / run["cpu_s"]}

    async def bare(_i: int) -> dict[str, Any]:
        ports = graph_ports("shop")
        server = await Server.start(["bench/bare_graph.py", "shop", *map(str, ports.values())], {}, "listening")
        return await measure(server, ports, telemetry=False)

    figures: dict[str, Any] = {
        "hops_per_entry_request": per_request,
        "hops_per_request": round(hop_count / count, 2),
        "concurrency": SHOP_CONCURRENCY,
    }
    for name, env in TELEMETRY.items():

        async def engine(i: int, env: dict[str, str] = env, name: str = name) -> dict[str, Any]:
            ports = graph_ports("shop")
            where = workdir / f"shop-{name}-{i}"
            server = await start_graph(where, sink_url, "shop", ports, FAKESVC_LATENCY_SCALE="0", **env)
            return await measure(server, ports, telemetry=True)

        figures[name] = summary(await pairs(rounds, bare, engine), "hops_per_cpu_s")
    figures["counted_by_services"] = {"expected_200": expected, "runs": checks}
    figures["counts_match"] = all(check == {"200": expected} for check in checks)
    return figures


async def graph_cost(rounds: int, count: int, shop_count: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        old, baseline = baseline_tree(workdir / "baseline")
        result: dict[str, Any] = {"baseline": baseline, "rounds": rounds, "count": count, "shop_count": shop_count}
        result["load_average"] = [os.getloadavg()[0]]  # the host's other work: what widens the pairs' spread
        sink, sink_url = await start_sink(workdir)
        try:
            if old is not None:
                result["checkout"] = await checkout_pairs(rounds, count, workdir, sink_url, old)
            result["shop"] = await shop_pairs(rounds, shop_count, workdir, sink_url)
        finally:
            await sink.stop()
        result["load_average"].append(os.getloadavg()[0])
    return result


def print_graph_cost(result: dict[str, Any]) -> None:
    start, end = result["load_average"]
    print(
        f"graph engine cost: {result['rounds']} pairs per figure; host load average {start:.1f} at start, {end:.1f} at end"
    )
    checkout = result.get("checkout")
    if checkout is None:
        print(f"graph engine vs hand-written: baseline skipped: {result['baseline']}")
    for name, fig in (checkout or {}).items():
        print(f"checkout, {name} telemetry: checkouts/CPU-s, hand-written at {BASELINE} / graph engine / ratio")
        for i, (old, new, ratio) in enumerate(fig["pairs"]):
            print(f"  pair {i + 1}: {old:8.1f} {new:8.1f} {ratio:6.3f}")
        low, high = fig["range"]
        verdict = "PASS" if fig["pass"] else "FAIL"
        print(
            f"  median {fig['first']:.1f} / {fig['second']:.1f} = {fig['ratio']:.3f} (pairs {low:.3f}-{high:.3f}); "
            f"signals/checkout {fig['signals_per_request'][0]:g} / {fig['signals_per_request'][1]:g}; "
            f"within 5 % (>= {BOUND}): {verdict}"
        )
    shop = result["shop"]
    per = ", ".join(f"{route} {n}" for route, n in shop["hops_per_entry_request"].items())
    print(f"shop: hop requests per CPU-second ({per}; {shop['hops_per_request']:g} a request in the mix)")
    for name in TELEMETRY:
        fig = shop[name]
        print(f"  {name} telemetry: bare aiohttp graph (ceiling) / graph engine / ratio")
        for i, (bare, engine, ratio) in enumerate(fig["pairs"]):
            print(f"    pair {i + 1}: {bare:8.1f} {engine:8.1f} {ratio:6.3f}")
        low, high = fig["range"]
        print(
            f"    median {fig['second']:.1f} hops/CPU-s, ceiling {fig['first']:.1f}: {fig['ratio']:.3f} ({low:.3f}-{high:.3f})"
        )
    counted = shop["counted_by_services"]
    print(
        f"  the services' own counters: {'match' if shop['counts_match'] else 'DIFFER'} "
        f"({counted['expected_200']} requests answered 200 expected per run: {counted['runs']})"
    )
