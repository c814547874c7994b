"""The truth matrix on graphs that are not a chain: every service and fault kind of ``shop``, and random DAGs.

Each cell puts one rule on one service, sends checkouts through the traffic
generator (which writes the truth), and checks what the services really
answered against the truth's expected status, the recorded faults and the root
cause. The root cause is checked against an oracle of its own, simpler than
the replay: a service whose every call in the checkout sits behind a fallback
(``on_error: ignore``) cannot fail it with an error or a drop; one reached on
a path without fallback fails it, and is then the root cause; a short latency
anywhere it is reached slows the checkout, and is its root cause.

The graphs run here have their ports removed (every service on a free port)
and timeouts roomy enough for a loaded host (the shop's doubled).
"""

from __future__ import annotations

import json
import random
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import yaml

from fakesvc.faults import ChaosConfig, parse_rules
from fakesvc.graph.load import parse_graph
from fakesvc.graph.model import Call, Graph, Route, calls_of
from fakesvc.service.app import HOP_STATE
from fakesvc.serving.runner import RunningServices, start_services
from fakesvc.traffic import TrafficConfig, run_traffic
from fakesvc.traffic.truth import Timeouts
from tests.conftest import FAST, recording_telemetry

SHOP = Path(__file__).parent.parent / "fakesvc" / "graph" / "graphs" / "shop.yaml"
TIME_SCALE = 2.0  # the shop's timeouts, doubled: a loaded 2-core host must not time out a healthy hop (a cart-cache timeout is the edge's 502)
CHECKOUT_S = 15.0  # the generator waits longer than any checkout here can take
OVER_S = 0.15  # how far past its longest caller's timeout a hang lasts
KINDS = ("error", "drop", "latency", "hang")


def _timeouts_scaled(node: Any, factor: float) -> Any:
    """The document with every ``timeout_s`` multiplied and every ``port`` removed."""
    if isinstance(node, dict):
        return {
            key: round(value * factor, 3) if key == "timeout_s" else _timeouts_scaled(value, factor)
            for key, value in node.items()
            if key != "port"
        }
    if isinstance(node, list):
        return [_timeouts_scaled(item, factor) for item in node]
    return node


def shop_graph() -> Graph:
    return parse_graph(_timeouts_scaled(yaml.safe_load(SHOP.read_text()), TIME_SCALE), "shop.yaml")


def random_document(seed: int) -> dict[str, Any]:
    """A random DAG of 6-12 services: each calls only later ones, every one reached, some calls parallel or fallbacks."""
    rng = random.Random(seed)
    count = rng.randint(6, 12)
    names = [f"svc{index}-{rng.choice(['api', 'db', 'cache', 'queue'])}" for index in range(count)]
    callees: list[list[int]] = [[] for _ in names]
    for index in range(1, count):
        callees[rng.randrange(index)].append(index)  # every service is called by an earlier one
    for index in range(count - 2):
        extra = rng.randrange(index + 1, count)
        if rng.random() < 0.4 and extra not in callees[index]:
            callees[index].append(extra)  # a second caller: a shared dependency
    services = []
    for index, name in enumerate(names):
        calls: list[dict[str, Any]] = [
            {
                "call": {
                    "service": names[callee],
                    "path": f"/r{callee}/{{order_id}}",
                    "timeout_s": round(
                        rng.uniform(0.8, 1.2), 2
                    ),  # roomy: a loaded host must not time out a healthy hop
                    **({"on_error": "ignore"} if rng.random() < 0.25 else {}),
                }
            }
            for callee in sorted(callees[index])
        ]
        if len(calls) >= 2 and rng.random() < 0.5:
            calls = [{"parallel": calls[:2]}, *calls[2:]]
        route = {"path": f"/r{index}/{{order_id}}", "method": "GET", "script": calls}
        if index == 0:
            route["entry"] = True
        services.append({"name": name, "routes": [route]})
    return {"name": f"random-{seed}", "services": services}


def hops(graph: Graph, route: Route, absorbed: bool = False) -> Iterator[tuple[Call, bool]]:
    """Every call a checkout on ``route`` makes, nested ones included, and whether a fallback is above it."""
    for call in calls_of(route.script):
        behind = absorbed or call.on_error == "ignore"
        yield call, behind
        yield from hops(graph, graph.service(call.service).route(call.route), behind)


def exposure(graph: Graph, entry: Route, service: str) -> str:
    """``edge``, ``exposed`` (a call path to it has no fallback), ``absorbed`` (every one has), or ``unreached``."""
    if service == graph.edge.name:
        return "edge"
    found = [behind for call, behind in hops(graph, entry) if call.service == service]
    if not found:
        return "unreached"
    return "absorbed" if all(found) else "exposed"


def longest_wait_s(graph: Graph, service: str) -> float:
    """The longest any caller waits for ``service``."""
    return max(
        call.timeout_s
        for caller in graph.services
        for route in caller.routes
        for call in calls_of(route.script)
        if call.service == service
    )


def rule_for(graph: Graph, service: str, kind: str) -> dict[str, Any]:
    if kind == "hang":
        return {"kind": "hang", "hang_s": round(longest_wait_s(graph, service) + OVER_S, 3)}
    if kind == "latency":
        return {"kind": "latency", "latency_ms": 20}
    return {"kind": kind, "status": 503} if kind == "error" else {"kind": kind}


@pytest.fixture
async def running(request: pytest.FixtureRequest) -> AsyncIterator[tuple[Graph, RunningServices]]:
    graph: Graph = request.param()
    config = replace(FAST, base_port=0)
    started = await start_services(graph.names, config, recording_telemetry(), ChaosConfig(), graph=graph)
    yield graph, started
    await started.stop()


async def checkouts(graph: Graph, running: RunningServices, tmp_path: Path, count: int) -> list[dict[str, Any]]:
    truth = tmp_path / "truth.jsonl"
    report = await run_traffic(
        TrafficConfig(
            target=running.urls[graph.edge.name],
            rate=100,
            count=count,
            mix={"success": 1},
            seed=5,
            truth_path=str(truth),
            progress=False,
            timeouts=Timeouts(checkout_s=CHECKOUT_S),
            graph=graph,
        )
    )
    lines = [json.loads(text) for text in truth.read_text().splitlines()]
    assert report["mismatches"] == sum(line["status"] != line["expected_status"] for line in lines)
    return lines


def check_cell(graph: Graph, service: str, kind: str, lines: list[dict[str, Any]]) -> None:
    """Observed == expected, the faults are the rule's, the root cause is the oracle's."""
    entries = {route.name: route for _, route in graph.entry_routes()}
    for line in lines:
        assert line["status"] == line["expected_status"], (service, kind, line["faults"], line["entry"])
        assert {(fault["service"], fault["kind"]) for fault in line["faults"]} <= {(service, kind)}, line
        where = exposure(graph, entries[line["entry"]], service)
        if where == "unreached":
            assert line["faults"] == [] and line["status"] == 200 and line["root_cause_service"] is None, line
        elif where == "absorbed" and kind in ("error", "drop"):
            assert line["status"] == 200 and line["root_cause_service"] is None, line
        elif where == "exposed" and kind in ("error", "drop", "hang"):
            assert line["status"] != 200 and line["root_cause_service"] == service, line
        elif kind == "latency":  # in time for every caller, fallback or not: the checkout was slowed by it
            assert line["status"] == 200 and line["root_cause_service"] == service, line
        assert line["root_cause_service"] in (service, None), line
        assert line["root_cause_services"] == ([] if line["root_cause_service"] is None else [service]), line


async def run_matrix(graph: Graph, running: RunningServices, tmp_path: Path, count: int) -> set[tuple[str, str]]:
    """Every (service, kind) cell of the graph but the edge's hang; returns the (entry, exposure) pairs seen."""
    seen = set()
    entries = {route.name: route for _, route in graph.entry_routes()}
    for service in graph.names:
        for kind in KINDS:
            if kind == "hang" and service == graph.edge.name:
                continue  # only the generator waits for the edge: the chain's matrix covers it
            chaos = running.app(service)[HOP_STATE].chaos
            chaos.set_rules(parse_rules([rule_for(graph, service, kind)]))
            lines = await checkouts(graph, running, tmp_path, count)
            chaos.clear()
            check_cell(graph, service, kind, lines)
            seen |= {(line["entry"], exposure(graph, entries[line["entry"]], service)) for line in lines}
    return seen


@pytest.mark.parametrize("running", [shop_graph], indirect=True, ids=["shop"])
async def test_every_service_and_fault_kind_of_the_shop(running: tuple[Graph, RunningServices], tmp_path: Path) -> None:
    graph, services = running
    seen = await run_matrix(graph, services, tmp_path, count=8)
    # both journeys ran, and the shop has services behind fallbacks, services on exposed paths, and ones a
    # browse never reaches: every branch of the oracle was exercised
    assert {entry for entry, _ in seen} == {"GET /browse/{order_id}", "POST /checkout/{order_id}"}
    assert {where for _, where in seen} == {"edge", "exposed", "absorbed", "unreached"}


@pytest.mark.parametrize(
    "running",
    [lambda seed=seed: parse_graph(random_document(seed), f"random-{seed}") for seed in (11, 12)],
    indirect=True,
    ids=["random-11", "random-12"],
)
async def test_every_service_and_fault_kind_of_a_random_graph(
    running: tuple[Graph, RunningServices], tmp_path: Path
) -> None:
    graph, services = running
    assert 6 <= len(graph.names) <= 12
    seen = await run_matrix(graph, services, tmp_path, count=2)
    assert {where for _, where in seen} >= {"edge", "exposed"}


@pytest.mark.parametrize("running", [shop_graph], indirect=True, ids=["shop"])
async def test_a_rule_on_one_method_of_a_path_is_in_the_truth_of_only_that_hop(
    running: tuple[Graph, RunningServices], tmp_path: Path
) -> None:
    """cartservice serves GET (read, in both journeys) and DELETE (empty, at the end of a checkout) on one path."""
    graph, services = running
    chaos = services.app("cartservice")[HOP_STATE].chaos
    chaos.set_rules(parse_rules([{"kind": "error", "status": 503, "route": "/cart/{order_id}", "method": "DELETE"}]))
    lines = await checkouts(graph, services, tmp_path, count=12)
    chaos.clear()
    by_entry: dict[str, list[dict[str, Any]]] = {}
    for line in lines:
        assert line["status"] == line["expected_status"], line
        by_entry.setdefault(line["entry"], []).append(line)
    assert set(by_entry) == {"GET /browse/{order_id}", "POST /checkout/{order_id}"}
    for line in by_entry["GET /browse/{order_id}"]:
        assert line["status"] == 200 and line["faults"] == [] and line["root_cause_service"] is None, line
    for line in by_entry["POST /checkout/{order_id}"]:
        assert [(fault["service"], fault["hop"]) for fault in line["faults"]] == [("cartservice", "0.0.7")], line
        assert line["status"] != 200 and line["root_cause_service"] == "cartservice", line
