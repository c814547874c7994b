"""Resource faults and capacity: the model (fakesvc/service/resources.py), their signature in the series, their truth.

Unit tests drive the model with a fake clock; the end-to-end ones run the real
supervisor with the embedded sink and read the series and the truth it wrote.
No test asserts a duration: only which samples fall inside a fault's window
(the report's own ``fault_windows``) and what the truth says.
"""

from __future__ import annotations

import asyncio
import copy
import json
import math
import random
import sqlite3
import statistics
from collections import defaultdict
from contextlib import closing
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from aiohttp.test_utils import TestClient

from fakesvc.faults import Chaos, parse_rules
from fakesvc.faults.chaos import Fault
from fakesvc.graph.load import GraphError, load_graph, parse_graph
from fakesvc.service.resources import MB, UNLIMITED_CORES, Footprint, Resources, Worked
from tests.processes import REAL_LATENCY, start_supervisor
from tests.test_chaos_bad_input import client, put_rule, refused  # noqa: F401 - the fixture is used by name

CHECKOUT_YAML = Path(__file__).resolve().parents[1] / "fakesvc" / "graph" / "graphs" / "checkout.yaml"


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Request:
    """A request in flight that notes how the service ended it."""

    def __init__(self) -> None:
        self.ended_by: Fault | None = None

    def kill(self, fault: Fault) -> None:
        self.ended_by = fault


def model(rules: list[dict[str, Any]], capacity: int | None = None) -> tuple[Resources, FakeClock]:
    clock = FakeClock()
    chaos = Chaos("cartservice", parse_rules(rules), seed=1, clock=clock)
    return Resources(chaos, capacity, Footprint.drawn(1, "cartservice"), random.Random(1), clock=clock), clock


# --- the model ------------------------------------------------------------------------------------------------


def test_a_cpu_fault_shrinks_capacity_to_its_share_and_the_stressor_saturates_cpu() -> None:
    resources, clock = model([{"kind": "cpu", "start_s": 10, "duration_s": 10, "capacity_share": 0.5}], capacity=6)
    assert resources.limit() == 6
    before = resources.reading(1.0, served=0)["cpu"]
    assert before < 1
    clock.now += 11
    assert resources.limit() == 3
    assert resources.reading(1.0, served=0)["cpu"] == pytest.approx(3.0 + resources.footprint.idle_cores, rel=0.5)
    resources._work_ms = 10_000.0  # the requests kept their 3 slots busy (and more: a reading never passes the whole)
    assert resources.reading(1.0, served=100)["cpu"] == 6.0
    clock.now += 10
    assert resources.limit() == 6


def test_a_reading_over_an_interval_the_window_opened_in_counts_its_part_only() -> None:
    resources, clock = model([{"kind": "cpu", "start_s": 10, "duration_s": 10}], capacity=8)
    clock.now += 10.5
    half = resources.reading(1.0, served=0)["cpu"]
    clock.now += 1
    whole = resources.reading(1.0, served=0)["cpu"]
    assert half == pytest.approx(3.0, abs=0.1) and whole == pytest.approx(6.0, abs=0.1)  # 8 cores, 6 stressed
    clock.now += 9
    assert resources.reading(1.0, served=0)["cpu"] == pytest.approx(3.0, abs=0.1)  # closed halfway


def test_a_service_without_capacity_counts_as_unlimited_cores_under_a_cpu_fault() -> None:
    resources, _clock = model([{"kind": "cpu"}])
    assert resources.capacity is None
    assert resources.limit() == math.floor(UNLIMITED_CORES * 0.25)


async def test_work_beyond_capacity_queues_in_order_and_the_wait_is_said() -> None:
    resources, _clock = model([], capacity=1)
    felt: dict[str, Worked] = {}

    async def work(name: str) -> None:
        await resources.work(5.0, lambda worked: felt.__setitem__(name, worked))

    await asyncio.gather(work("first"), work("second"), work("third"))
    assert felt["first"].queued_ms == 0
    assert 0 < felt["second"].queued_ms <= felt["third"].queued_ms
    assert all(worked.blamed is None for worked in felt.values())  # no fault: the wait is load


async def test_a_request_cancelled_while_it_queues_still_says_how_long_it_waited() -> None:
    resources, _clock = model([{"kind": "cpu", "capacity_share": 0.125}])  # one slot
    felt: list[Worked] = []
    holder = asyncio.ensure_future(resources.work(10_000.0, felt.append))
    await asyncio.sleep(0)
    waiter = asyncio.ensure_future(resources.work(1.0, felt.append))
    await asyncio.sleep(0.01)
    waiter.cancel()
    holder.cancel()
    await asyncio.gather(holder, waiter, return_exceptions=True)
    queued = [worked for worked in felt if worked.queued_ms > 0]
    assert len(queued) == 1 and queued[0].blamed is not None and queued[0].blamed[1].kind == "cpu"
    assert resources._busy == 0 and not resources._waiters  # nothing leaked


def test_memory_climbs_the_service_is_killed_at_its_limit_refuses_then_restarts_clean() -> None:
    rules = [{"kind": "memory", "start_s": 5, "duration_s": 100, "leak_mb_per_s": 10, "limit_mb": 400, "restart_s": 3}]
    resources, clock = model(rules)
    base = resources.reading(1.0, 0)["mem"]
    in_flight = Request()
    resources.in_flight.add(in_flight)
    clock.now += 5
    resources.check_memory()
    climb = []
    while in_flight.ended_by is None:
        clock.now += 1
        resources.check_memory()
        climb.append(resources.reading(1.0, 0)["mem"])
    *rising, last = climb
    assert rising == sorted(rising) and rising[0] > base  # it climbed, steadily
    assert last == 0.0  # killed: nothing runs, nothing is used
    assert in_flight.ended_by.kind == "memory" and in_flight.ended_by.dropped
    assert max(climb) >= (400 - 11) * MB  # it got to its limit first
    refusal = resources.refusal()
    assert refusal is not None and refusal.dropped and "restarting" in refusal.message
    clock.now += 3
    resources.check_memory()
    assert resources.refusal() is None
    assert resources.reading(1.0, 0)["mem"] < base + 20 * MB  # a clean start, and the leak begins again
    after = Request()
    resources.in_flight.add(after)
    clock.now += 1
    resources.check_memory()
    assert after.ended_by is None  # restarted clean: far from the limit again, no second kill at once


def test_the_end_of_a_memory_window_frees_the_leak() -> None:
    resources, clock = model([{"kind": "memory", "duration_s": 10, "leak_mb_per_s": 1, "limit_mb": 10_000}])
    clock.now += 9
    resources.check_memory()
    leaking = resources.reading(1.0, 0)["mem"]
    clock.now += 2
    resources.check_memory()
    assert resources.reading(1.0, 0)["mem"] < leaking - 5 * MB


def test_each_service_has_its_own_seeded_footprint() -> None:
    assert Footprint.drawn(7, "cartservice") == Footprint.drawn(7, "cartservice")
    assert Footprint.drawn(7, "cartservice") != Footprint.drawn(7, "adservice")
    assert Footprint.drawn(7, "cartservice") != Footprint.drawn(8, "cartservice")


# --- rules and graphs: bad values are refused ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("rule", "words"),
    [
        ({"kind": "cpu", "factor": float("nan")}, "rules[0].factor: must be a finite number between 1 and 100"),
        ({"kind": "cpu", "factor": 0.5}, "rules[0].factor: must be a finite number between 1 and 100"),
        ({"kind": "cpu", "capacity_share": 0}, "rules[0].capacity_share: must be a finite number"),
        ({"kind": "cpu", "capacity_share": "half"}, "rules[0].capacity_share: must be a number"),
        ({"kind": "cpu", "probability": 0.5}, "rules[0].probability: does not apply to a cpu rule"),
        ({"kind": "memory", "route": "/inventory/{item_id}"}, "rules[0].route: does not apply to a memory rule"),
        ({"kind": "memory", "limit_mb": -1}, "rules[0].limit_mb: must be a finite number"),
        ({"kind": "memory", "limit_mb": 1e400}, "rules[0].limit_mb: must be a finite number"),
        ({"kind": "memory", "leak_mb_per_s": float("inf")}, "rules[0].leak_mb_per_s: must be a finite number"),
        ({"kind": "memory", "restart_s": [5]}, "rules[0].restart_s: must be a number"),
        ({"kind": "loss", "probability": 1.5}, "rules[0].probability: must be a finite number between 0 and 1"),
        ({"kind": "loss", "delay_ms": -200}, "rules[0].delay_ms: must be a finite number"),
        ({"kind": "loss", "factor": 2}, "rules[0].factor: does not apply to a loss rule (it is for cpu)"),
        ({"kind": "cpus"}, "rules[0].kind: must be one of"),
        ({"kind": "memroy"}, "(did you mean 'memory'?)"),
    ],
)
async def test_a_bad_resource_rule_is_a_400_that_changes_nothing(
    client: TestClient,  # noqa: F811 - the fixture
    rule: dict[str, Any],
    words: str,
) -> None:
    body = put_rule(rule).replace("NaN", "NaN").replace("Infinity", "1e999")
    assert words in await refused(client, body)


def test_rules_of_the_new_kinds_read_back_as_written_with_their_defaults() -> None:
    cpu, memory, loss = parse_rules([{"kind": "cpu"}, {"kind": "memory"}, {"kind": "loss"}])
    assert cpu.to_json() == {"kind": "cpu", "factor": 4.0, "capacity_share": 0.25}
    assert memory.to_json() == {"kind": "memory", "leak_mb_per_s": 5.0, "limit_mb": 512.0, "restart_s": 5.0}
    assert loss.to_json() == {"kind": "loss", "probability": 0.1, "delay_ms": 200.0}
    scaled = memory.scaled(0.25)
    assert (scaled.restart_s, scaled.leak_mb_per_s) == (1.25, 20.0)  # a shorter window reaches the same limit


def _checkout_with(capacity: Any) -> dict[str, Any]:
    doc = yaml.safe_load(CHECKOUT_YAML.read_text(encoding="utf-8"))
    doc = copy.deepcopy(doc)
    doc["services"][2]["capacity"] = capacity
    return doc


@pytest.mark.parametrize(
    "capacity", [0, -1, 1.5, float("nan"), float("inf"), True, "4", "\u0664", "", None, 10**9, 10**400, [1], {"n": 1}]
)
def test_a_bad_capacity_is_one_line_naming_it(capacity: Any) -> None:
    with pytest.raises(GraphError) as raised:
        parse_graph(_checkout_with(capacity), "g.yaml")
    assert [line for line in raised.value.problems if "services[2].capacity" in line], raised.value.problems
    assert all("\n" not in line for line in raised.value.problems)


def test_a_graph_without_capacity_is_unlimited_as_before() -> None:
    assert all(service.capacity is None for service in load_graph("shop").services)
    assert parse_graph(_checkout_with(3), "g.yaml").service("inventory-service").capacity == 3


# --- end to end: the series and the truth of a real run ----------------------------------------------------------


def _series(db: Path) -> dict[str, dict[str, list[tuple[float, float]]]]:
    """service -> metric -> [(epoch second, value)] of the series the run sent."""
    found: dict[str, dict[str, list[tuple[float, float]]]] = defaultdict(lambda: defaultdict(list))
    with closing(sqlite3.connect(db)) as connection:
        for (payload,) in connection.execute("SELECT payload FROM raw_signals WHERE signal_type = 'metric'"):
            signal = json.loads(payload)
            if signal.get("attributes", {}).get("series"):
                at = datetime.fromisoformat(signal["timestamp"]).timestamp()
                found[signal["service_name"]][signal["metric_name"]].append((at, signal["value"]))
    for metrics in found.values():
        for samples in metrics.values():
            samples.sort()
    return found


def _window(report: dict[str, Any], service: str, kind: str) -> tuple[float, float]:
    window = next(w for w in report["fault_windows"] if w["service"] == service and w["kind"] == kind)
    return datetime.fromisoformat(window["start"]).timestamp(), datetime.fromisoformat(window["end"]).timestamp()


def _truth(tmp_path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (tmp_path / "truth.jsonl").read_text().splitlines()]


async def test_cpu_and_memory_faults_show_in_the_series_and_the_truth(tmp_path: Path) -> None:
    """inventory under a cpu fault, then payment leaking to a kill: each signature, and checkouts labelled by them."""
    rules = {
        "inventory-service": [{"kind": "cpu", "start_s": 2, "duration_s": 2.5}],
        "payment-service": [
            {"kind": "memory", "start_s": 5, "duration_s": 3, "leak_mb_per_s": 600, "limit_mb": 600, "restart_s": 0.75}
        ],
    }
    (tmp_path / "rules.json").write_text(json.dumps(rules))
    supervisor = await start_supervisor(
        tmp_path,
        *("--rate", "20", "--duration", "9", "--mix", "success=1", "--seed", "5"),
        *("--chaos", str(tmp_path / "rules.json")),
        *("--truth", str(tmp_path / "truth.jsonl"), "--report", str(tmp_path / "report.json")),
        **REAL_LATENCY,
        FAKESVC_SERIES_INTERVAL_S="0.25",
        FAKESVC_TELEMETRY="metrics",
        OTEL_TRACES_EXPORTER="none",
    )
    status, stderr = await supervisor.exited(120)
    assert status == 0, stderr[-3000:]  # every failure explained by a fault: none left to the harness
    report = json.loads((tmp_path / "report.json").read_text())
    series = _series(supervisor.db)

    start, end = _window(report, "inventory-service", "cpu")
    cpu = series["inventory-service"]["cpu"]
    latency = series["inventory-service"]["latency-90"]
    assert max(value for at, value in cpu if at < start) < UNLIMITED_CORES / 2
    assert max(value for at, value in cpu if start + 0.3 < at <= end) == UNLIMITED_CORES  # saturated
    # against the typical second before it (a median: one second a busy host stalled is no baseline)
    assert max(value for at, value in latency if start + 0.3 < at <= end) > 2 * statistics.median(
        value for at, value in latency if at < start
    )

    start, end = _window(report, "payment-service", "memory")
    mem = [value for at, value in series["payment-service"]["mem"] if start <= at <= end + 0.3]
    before = [value for at, value in series["payment-service"]["mem"] if at < start]
    peak = mem.index(max(mem))
    assert max(mem) > max(before) + 300 * MB  # it climbed
    assert 0.0 in mem[peak:]  # killed: the process is gone
    assert any(0 < value < max(mem) - 300 * MB for value in mem[mem.index(0.0, peak) :])  # and back, clean

    lines = _truth(tmp_path)
    slowed = [line for line in lines if any(f["kind"] == "cpu" for f in line["faults"])]
    killed = [line for line in lines if any(f["kind"] == "memory" and f["dropped"] for f in line["faults"])]
    assert slowed and all(f["delay_ms"] > 0 for line in slowed for f in line["faults"] if f["kind"] == "cpu")
    assert {line["root_cause_service"] for line in slowed if line["status"] != 200} <= {"inventory-service"}
    assert killed and {(line["cause"], line["root_cause_service"], line["status"]) for line in killed} == {
        ("fault", "payment-service", 500)  # the gateway answers a lost payment call 500 (as the graph says)
    }
    assert not [line for line in lines if line["cause"] in ("harness", "incomplete")]


async def test_queueing_for_capacity_with_no_fault_is_labelled_load(tmp_path: Path) -> None:
    graph = tmp_path / "narrow.yaml"
    doc = _checkout_with(1)
    doc["name"] = "narrow"
    graph.write_text(yaml.safe_dump(doc, sort_keys=False))
    supervisor = await start_supervisor(
        tmp_path,
        *("--graph", str(graph), "--rate", "40", "--count", "40", "--mix", "success=1", "--seed", "2"),
        *("--truth", str(tmp_path / "truth.jsonl")),
        **REAL_LATENCY,
        FAKESVC_TELEMETRY="metrics",
        OTEL_TRACES_EXPORTER="none",
    )
    status, stderr = await supervisor.exited(120)
    assert status == 0, stderr[-3000:]
    lines = _truth(tmp_path)
    assert {line["cause"] for line in lines} <= {"healthy", "load"}
    load = [line for line in lines if line["cause"] == "load"]
    assert load and {line["root_cause_service"] for line in load} == {"inventory-service"}
    assert all(line["load"]["queued_ms"] > 0 and not line["faults"] for line in load)


def test_loss_cuts_some_calls_and_delays_the_rest_by_the_seed() -> None:
    chaos = Chaos("cartservice", parse_rules([{"kind": "loss", "probability": 1, "delay_ms": 150}]), seed=3)
    decided = [chaos.decide("/cart/{order_id}", f"trace-{n}") for n in range(400)]
    assert all(len(faults) == 1 and faults[0].kind == "loss" for faults in decided)
    cut = [faults[0] for faults in decided if faults[0].dropped]
    late = [faults[0] for faults in decided if not faults[0].dropped]
    assert 150 < len(cut) < 250  # one in two, drawn by the seed
    assert all(fault.ends and fault.truth()["delay_ms"] is None for fault in cut)
    assert all(not fault.ends and fault.truth()["delay_ms"] == 150.0 for fault in late)
    again = Chaos("cartservice", parse_rules([{"kind": "loss", "probability": 1, "delay_ms": 150}]), seed=3)
    assert [again.decide("/cart/{order_id}", f"trace-{n}") for n in range(400)] == decided  # the same seed


def test_the_default_loss_takes_one_call_in_ten() -> None:
    chaos = Chaos("cartservice", parse_rules([{"kind": "loss"}]), seed=3)
    lost = sum(bool(chaos.decide("/cart/{order_id}", f"trace-{n}")) for n in range(2000))
    assert 140 < lost < 260
