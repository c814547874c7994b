"""Open-loop traffic against the real chain, and the ground truth it writes."""

from __future__ import annotations

import argparse
import asyncio
import json
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import replace
from itertools import islice
from pathlib import Path
from typing import Any

import pytest

from fakesvc.faults import parse_rules
from fakesvc.settings import ConfigError
from fakesvc.traffic import (
    TrafficConfig,
    add_traffic_arguments,
    exit_status,
    format_summary,
    run_traffic,
    traffic_config_from_args,
)
from fakesvc.traffic.plan import Checkout, plan
from fakesvc.traffic.truth import Timeouts, judge
from tests.conftest import FAST, OBSERVED_TRUTH_KEYS, Chain
from tests.telemetry_fixtures import free_port


def config(chain: Chain, tmp_path: Path, **changes: object) -> TrafficConfig:
    base = TrafficConfig(
        target=chain.gateway,
        rate=200,
        count=60,
        seed=5,
        truth_path=str(tmp_path / "truth.jsonl"),
        report_path=str(tmp_path / "report.json"),
        progress=False,
        timeouts=Timeouts(FAST.inventory_timeout_s, FAST.payment_timeout_s),
    )
    return replace(base, **changes)


def truth_lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


async def test_a_run_sends_on_schedule_and_writes_truth_and_report(chain: Chain, tmp_path: Path) -> None:
    report = await run_traffic(config(chain, tmp_path))
    assert report["sent"] == report["completed"] == 60 and report["skipped"] == 0 and report["errors"] == 0
    # the chain shares this loop and CI machines are busy: accuracy is measured in bench/, here only "never early"
    assert report["scheduled"] == 60 and report["rate_achieved"] <= 201  # a busy host stretches the window only
    assert report["mismatches"] == 0
    assert json.loads((tmp_path / "report.json").read_text()) == report
    lines = truth_lines(tmp_path / "truth.jsonl")
    assert len(lines) == 60 and all(list(line) == OBSERVED_TRUTH_KEYS for line in lines)
    for line in lines:
        assert line["status"] == line["expected_status"] == (200 if line["scenario"] == "success" else 500)
        assert line["scenario"] in line["order_id"]
        if line["scenario"] == "fail-pay":
            assert line["root_cause_service"] == "payment-service"
            assert [f["kind"] for f in line["faults"]] == ["error"]
        elif line["scenario"] == "timeout":
            assert line["root_cause_service"] == "inventory-service"
            assert ("inventory-service", "hang") in [(f["service"], f["kind"]) for f in line["faults"]]
        else:
            assert line["root_cause_service"] is None and line["faults"] == []
    summary = format_summary(report)
    assert "success" in summary and "p99 ms" in summary


async def test_arrivals_do_not_wait_for_slow_answers_and_latency_counts_from_the_schedule(
    chain: Chain, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # every checkout takes >= 1 s (payment's inventory timeout); 40 arrivals at 100/s are due within 0.39 s, and
    # the generator is held up 0.5 s once the first is out (a blocked loop, as on a busy host): all go late
    def held_up(*args: Any, **kwargs: Any) -> Iterator[Checkout]:
        planned = plan(*args, **kwargs)
        yield next(planned)
        time.sleep(0.5)
        yield from planned

    monkeypatch.setattr("fakesvc.traffic.run.plan", held_up)
    report = await run_traffic(config(chain, tmp_path, rate=100, count=40, mix={"timeout": 1}))
    assert report["sent"] == 40 and report["skipped"] == 0
    # open loop: every checkout reached the gateway before the first one was answered (a closed loop: one at a time)
    at_gateway = [
        (s.start_time or 0, s.end_time or 0)
        for s in chain.spans.get_finished_spans()
        if s.name == "POST /checkout/{order_id}"
    ]
    first_answered = min(end for _, end in at_gateway)
    assert len(at_gateway) == 40 and all(start < first_answered for start, _ in at_gateway)
    # latency from the scheduled start: the i-th includes its 500 - 10 i ms late start (from the send: ~1000 ms)
    lines = sorted(truth_lines(tmp_path / "truth.jsonl"), key=lambda line: line["start"])
    latencies = [line["latency_ms"] for line in lines]
    assert all(latency >= 1000 + 500 - 10 * i for i, latency in enumerate(latencies)), latencies


async def test_the_in_flight_cap_turns_excess_arrivals_into_counted_skips(chain: Chain, tmp_path: Path) -> None:
    report = await run_traffic(config(chain, tmp_path, rate=200, count=40, mix={"timeout": 1}, max_in_flight=5))
    assert report["skipped"] > 0 and report["sent"] >= 5
    assert report["sent"] + report["skipped"] == report["scheduled"] == 40
    assert len(truth_lines(tmp_path / "truth.jsonl")) == report["sent"]


def test_the_plan_follows_the_mix_and_repeats_under_a_seed() -> None:
    mix = {"success": 90, "fail-pay": 5, "timeout": 5}
    first = list(islice(plan(mix, 9), 10_000))
    assert first == list(islice(plan(mix, 9), 10_000))
    assert [c.order_id for c in islice(plan(mix, 10), 50)] != [c.order_id for c in first[:50]]
    counts = Counter(c.scenario for c in first)
    assert 8800 < counts["success"] < 9200 and 400 < counts["fail-pay"] < 600 and 400 < counts["timeout"] < 600
    assert len({c.trace_id for c in first}) == 10_000


async def test_same_seed_same_order_ids_scenarios_trace_ids_and_faults(chain: Chain, tmp_path: Path) -> None:
    chain.chaos("inventory-service").set_rules(parse_rules([{"kind": "error", "probability": 0.3, "status": 503}]))
    runs = []
    for name in ("a", "b"):
        await run_traffic(config(chain, tmp_path, truth_path=str(tmp_path / f"{name}.jsonl"), count=50))
        runs.append(
            sorted(
                (l["order_id"], l["scenario"], l["trace_id"], json.dumps(l["faults"]), l["status"])
                for l in truth_lines(tmp_path / f"{name}.jsonl")
            )
        )
    assert runs[0] == runs[1]
    assert any("inventory-service" in faults for _, scenario, _, faults, _ in runs[0] if scenario == "success")


async def test_rule_faults_and_fault_windows_reach_the_truth_and_the_report(chain: Chain, tmp_path: Path) -> None:
    chain.chaos("payment-service").set_rules(parse_rules([{"kind": "latency", "latency_ms": 20}]))
    chain.chaos("inventory-service").set_rules(parse_rules([{"kind": "drop", "start_s": 3600, "duration_s": 60}]))
    report = await run_traffic(config(chain, tmp_path, count=10, mix={"success": 1}))
    for line in truth_lines(tmp_path / "truth.jsonl"):
        assert line["faults"] == [
            {
                "service": "payment-service",
                "kind": "latency",
                "detail": "latency 20 ms (rule 0)",
                "status": None,
                "delay_ms": 20.0,
                "hop": "0.0",  # reached by the gateway's first call
            }
        ]
        assert line["root_cause_service"] == "payment-service" and line["expected_status"] == 200 == line["status"]
    assert [(w["service"], w["kind"]) for w in report["fault_windows"]] == [
        ("payment-service", "latency"),  # always on: from when it was set, still on
        ("inventory-service", "drop"),
    ]


async def test_an_injected_drop_is_an_expected_transport_error_and_the_run_passes(chain: Chain, tmp_path: Path) -> None:
    chain.chaos("api-gateway").set_rules(parse_rules([{"kind": "drop"}]))
    report = await run_traffic(config(chain, tmp_path, count=5, mix={"success": 1}))
    assert report["errors"] == 5 and report["mismatches"] == report["unexpected_errors"] == 0
    assert report["causes"] == {"healthy": 0, "fault": 5, "load": 0, "harness": 0, "incomplete": 0}
    assert exit_status(report) == 0 and format_summary(report).endswith(
        "passed: every checkout's outcome is explained; exit 0"
    )


async def test_transport_errors_nobody_injected_fail_the_run(tmp_path: Path) -> None:
    nobody = TrafficConfig(target=f"http://127.0.0.1:{free_port()}", rate=100, count=3, progress=False)
    report = await run_traffic(nobody)
    assert report["errors"] == report["mismatches"] == report["unexpected_errors"] == 3
    assert report["causes"]["harness"] == 3, "a refused connection is no injected fault"
    assert exit_status(report) == 1 and not report["interrupted"]
    assert format_summary(report).endswith(
        "3 checkouts not explained by injected faults (3 harness-caused, 0 incomplete); exit 1"
    )


def fault(service: str, kind: str, *, status: int | None = None, delay_ms: float | None = None) -> dict:
    """A structured fault record whose prose ``detail`` says nothing: the verdict must not read it."""
    return {"service": service, "kind": kind, "detail": "", "status": status, "delay_ms": delay_ms}


def test_the_verdict_replays_the_chain_from_structured_records() -> None:
    inv_error = fault("inventory-service", "error", status=503)
    pay_latency = fault("payment-service", "latency", delay_ms=900)
    gw_latency = fault("api-gateway", "latency", delay_ms=50)
    gw_error = fault("api-gateway", "error", status=429)
    assert judge([]) == (200, None, ())
    assert judge([pay_latency, inv_error]).root_cause_service == "inventory-service"
    assert (
        judge([gw_latency, pay_latency])[:2] == judge([pay_latency])[:2] and judge([pay_latency]).expected_status == 200
    )
    assert judge([gw_latency, pay_latency]).root_cause_service == "payment-service"
    assert judge([inv_error]).expected_status == 500
    assert judge([gw_error]).expected_status == 429 and judge([gw_error]).root_cause_service == "api-gateway"
    slow_inventory = fault("inventory-service", "latency", delay_ms=2500)
    assert judge([slow_inventory]).expected_status == 500  # past payment's 2 s
    assert judge([slow_inventory], Timeouts(inventory_s=3.0)).expected_status == 200
    short_hang = fault("payment-service", "hang", delay_ms=200)
    assert judge([short_hang]).expected_status == 200  # a hang within its caller's patience is harmless
    gateway_hang = fault("api-gateway", "hang", delay_ms=5000)
    assert judge([gateway_hang]).expected_status == 200
    assert judge([gateway_hang], Timeouts(checkout_s=4.0)) == (None, "api-gateway", ("api-gateway",))  # gave up
    assert judge([fault("api-gateway", "drop")]) == (None, "api-gateway", ("api-gateway",))


def test_noise_is_recorded_but_never_a_cause_nor_a_change_of_status() -> None:
    noise = fault("inventory-service", "noise")
    assert judge([noise]) == (200, None, ())  # a checkout with only noise is healthy
    assert judge([fault("api-gateway", "noise"), noise, fault("payment-service", "noise")]) == (200, None, ())
    pay_error = fault("payment-service", "error", status=503)
    assert judge([noise, pay_error]) == judge([pay_error]) == (500, "payment-service", ("payment-service",))
    slow_payment = fault("payment-service", "latency", delay_ms=900)
    assert judge([slow_payment, noise]) == (200, "payment-service", ("payment-service",))  # the red herring


def test_every_service_whose_faults_alone_make_the_checkout_faulty_is_a_root_cause() -> None:
    slow_payment = fault("payment-service", "latency", delay_ms=2000)
    inv_error = fault("inventory-service", "error", status=503)
    # two-faults: payment slowed it, inventory failed it; the replay blames inventory, both are causes
    assert judge([slow_payment, inv_error]) == (500, "inventory-service", ("inventory-service", "payment-service"))
    # the blamed service comes first, the others most downstream first
    gw_latency = fault("api-gateway", "latency", delay_ms=50)
    verdict = judge([gw_latency, slow_payment, inv_error, fault("inventory-service", "noise")])
    assert verdict.root_cause_services == ("inventory-service", "payment-service", "api-gateway")
    # past the gateway's 5 s: it blames the slowest behind it (payment); inventory's hang alone would slow it
    slowest = judge(
        [fault("payment-service", "latency", delay_ms=4000), fault("inventory-service", "hang", delay_ms=1900)]
    )
    assert slowest == (500, "payment-service", ("payment-service", "inventory-service"))
    assert judge([inv_error]).root_cause_services == ("inventory-service",)
    # a slow payment plus a slow (but not too slow) inventory together outlast the gateway's patience
    nested = [fault("payment-service", "latency", delay_ms=4000), fault("inventory-service", "latency", delay_ms=1500)]
    assert judge(nested).expected_status == 500 and judge(nested).root_cause_service == "payment-service"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--rate", "0"], "--rate: must be > 0"),
        (["--rate", "10", "--mix", "success=1,crash=2"], "--mix: must be SCENARIO=WEIGHT"),
        (["--rate", "10", "--mix", "success=0"], "--mix: at least one weight must be > 0"),
        (["--rate", "10", "--count", "5", "--duration", "2"], "--count: give --count or --duration"),
        (["--count", "5"], "--count: needs --rate"),
    ],
)
def test_bad_traffic_flags_are_one_clear_line(argv: list[str], message: str) -> None:
    parser = argparse.ArgumentParser()
    add_traffic_arguments(parser, with_target=True)
    with pytest.raises(ConfigError) as info:
        traffic_config_from_args(parser.parse_args(argv))
    assert str(info.value).startswith(message)


async def test_the_last_truth_write_waits_for_the_one_a_cancelled_caller_left_writing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The progress task is cancelled at the run's end, maybe while its append runs in a thread: the run's
    last write must wait for that one, or the file is read short (a loaded host lost 63 of 200 lines)."""
    from fakesvc.traffic import run as traffic_run

    gate = threading.Event()
    appended: list[list[str]] = []
    real_append = traffic_run._append

    def held_append(path: str, lines: list[str]) -> None:
        appended.append(lines)
        if len(appended) == 1:
            gate.wait(30)  # the first append is slow: the host is busy
        real_append(path, lines)

    monkeypatch.setattr(traffic_run, "_append", held_append)
    truth = tmp_path / "truth.jsonl"
    run = traffic_run.Run(TrafficConfig(target="http://127.0.0.1:9", rate=1.0, count=1, truth_path=str(truth)))
    run.truth = ["first"]
    progress = asyncio.ensure_future(traffic_run._write_truth(run))
    while not appended:  # its thread has started
        await asyncio.sleep(0.001)
    progress.cancel()
    run.truth = ["second"]
    last = asyncio.ensure_future(traffic_run._write_truth(run))
    await asyncio.sleep(0.01)
    assert not last.done()  # it waits for the append before it
    gate.set()
    await last
    assert truth.read_text() == "first\nsecond\n"
