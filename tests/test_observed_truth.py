"""The observed truth: assembled from the hops' records after a checkout, never looked up inside one.

Unit tests read hand-made records of the checkout graph (gateway ``0`` ->
payment ``0.0`` -> inventory ``0.0.0``); the others run the real services and
the real generator, near a timeout, and with the whole supervisor frozen by
SIGSTOP (a starved machine) in the middle of a run.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from fakesvc.faults import ChaosConfig
from fakesvc.faults.inputs import InputError
from fakesvc.faults.rules import parse_rules
from fakesvc.service.records import KEEP_S, HopRecords, merge, parse_request
from fakesvc.traffic import TrafficConfig, run_traffic
from fakesvc.traffic.observed import EdgeView, observe
from fakesvc.traffic.truth import Timeouts, checkout_graph, tree_of
from tests.conftest import FAST, Chain, hop_records, recording_telemetry, start_chain

ROOT = Path(__file__).resolve().parent.parent
TREE = tree_of(checkout_graph(Timeouts()), None)  # payment waits 2 s for inventory, the gateway 5 s for payment
GATEWAY, PAYMENT, INVENTORY = "api-gateway", "payment-service", "inventory-service"


def hop(
    at: str,
    service: str,
    status: int | None = 200,
    *,
    faults: tuple[dict[str, Any], ...] = (),
    calls: tuple[dict[str, Any], ...] = (),
    work_ms: float = 0.0,
    outcome: str = "answered",
) -> dict[str, Any]:
    return {
        "trace_id": "t",
        "run": "r",
        "hop": at,
        "service": service,
        "outcome": outcome,
        "status": status,
        "work_ms": work_ms,
        "faults": list(faults),
        "calls": list(calls),
        "lag_ms": 0.0,
        "process": "test:1",
    }


def called(at: str, service: str, outcome: str = "answered", status: int | None = 200, **more: Any) -> dict[str, Any]:
    return {
        "hop": at,
        "service": service,
        "outcome": outcome,
        "status": status,
        "waited_ms": 1.0,
        "lag_ms": 0.0,
        **more,
    }


def latency(service: str, at: str, ms: float) -> dict[str, Any]:
    return {"service": service, "kind": "latency", "delay_ms": ms, "status": None, "hop": at}


def answered(status: int) -> EdgeView:
    return EdgeView(status, None, False, 10.0, 30_000.0)


def timed_out_chain(injected_ms: float, work_ms: float, lag_ms: float = 0.0) -> list[dict[str, Any]]:
    """Payment waited 2 s for inventory and gave up; inventory had ``injected_ms`` of latency and ``work_ms`` of work."""
    wait = called("0.0.0", INVENTORY, "timeout", None, timeout_ms=2000.0, waited_ms=2003.0, lag_ms=lag_ms)
    return [
        hop("0", GATEWAY, 500, calls=(called("0.0", PAYMENT, status=504),)),
        hop("0.0", PAYMENT, 504, calls=(wait,), work_ms=150.0),
        hop(
            "0.0.0",
            INVENTORY,
            499,
            outcome="cancelled",
            faults=(latency(INVENTORY, "0.0.0", injected_ms),),
            work_ms=work_ms,
        ),
    ]


def test_a_timeout_behind_an_injected_delay_near_it_is_the_faults() -> None:
    found = observe(TREE, timed_out_chain(1950.0, 40.0), answered(500))
    assert (found.cause, found.root_cause_services) == ("fault", (INVENTORY,))


def test_a_timeout_with_little_injected_is_the_harnesss_with_the_figures() -> None:
    found = observe(TREE, timed_out_chain(500.0, 40.0, lag_ms=2400.0), answered(500))
    assert found.cause == "harness" and found.root_cause_services == ()
    assert found.harness is not None
    assert found.harness["hop"] == "0.0" and found.harness["service"] == PAYMENT
    assert (found.harness["injected_ms"], found.harness["simulated_ms"]) == (500.0, 40.0)
    assert (found.harness["timeout_ms"], found.harness["loop_lag_ms"]) == (2000.0, 2400.0)
    assert found.faults == [latency(INVENTORY, "0.0.0", 500.0)]  # the faults stay on the line


def test_the_margin_is_100_ms_of_injected_plus_simulated_time() -> None:
    assert observe(TREE, timed_out_chain(1850.0, 50.0), answered(500)).cause == "fault"  # 1,900 ms: within 100
    assert observe(TREE, timed_out_chain(1850.0, 49.0), answered(500)).cause == "harness"  # 1,899 ms
    assert observe(TREE, timed_out_chain(0.0, 2500.0), answered(500)).cause == "harness"  # work alone is no fault


def test_a_slowed_checkout_that_answered_in_time_keeps_its_root_cause() -> None:
    records = [
        hop("0", GATEWAY, calls=(called("0.0", PAYMENT),)),
        hop("0.0", PAYMENT, calls=(called("0.0.0", INVENTORY),)),
        hop("0.0.0", INVENTORY, faults=(latency(INVENTORY, "0.0.0", 1950.0),)),
    ]
    assert observe(TREE, records, answered(200)).root_cause_services == (INVENTORY,)
    records[2]["faults"] = [{"service": INVENTORY, "kind": "noise", "delay_ms": None, "status": None, "hop": "0.0.0"}]
    assert observe(TREE, records, answered(200)).cause == "healthy"


def test_an_error_is_followed_down_the_failing_calls() -> None:
    error = {"service": INVENTORY, "kind": "error", "status": 503, "delay_ms": None, "hop": "0.0.0"}
    slow = latency(PAYMENT, "0.0", 300.0)
    records = [
        hop("0", GATEWAY, 500, calls=(called("0.0", PAYMENT, status=502),)),
        hop("0.0", PAYMENT, 502, faults=(slow,), calls=(called("0.0.0", INVENTORY, status=503),)),
        hop("0.0.0", INVENTORY, 503, faults=(error,)),
    ]
    found = observe(TREE, records, answered(500))
    assert (found.cause, found.root_cause_service) == ("fault", INVENTORY)


def test_a_drop_is_the_dropping_hops_fault_and_a_lost_connection_without_one_the_harnesss() -> None:
    drop = {"service": INVENTORY, "kind": "drop", "status": None, "delay_ms": None, "hop": "0.0.0"}
    lost = called("0.0.0", INVENTORY, "connection", None, reached=True, error="ServerDisconnectedError: gone")
    records = [
        hop("0", GATEWAY, 500, calls=(called("0.0", PAYMENT, status=502),)),
        hop("0.0", PAYMENT, 502, calls=(lost,)),
        hop("0.0.0", INVENTORY, None, outcome="dropped", faults=(drop,)),
    ]
    assert observe(TREE, records, answered(500)).root_cause_services == (INVENTORY,)
    records[2] = hop("0.0.0", INVENTORY, 200)  # it answered: the connection was lost on the way
    found = observe(TREE, records, answered(500))
    assert found.cause == "harness" and "ServerDisconnectedError" in found.harness["what"]  # type: ignore[index]


def test_a_missing_record_makes_the_checkout_incomplete_and_names_the_hop() -> None:
    records = timed_out_chain(1950.0, 40.0)[:2]
    found = observe(TREE, records, answered(500))
    assert (found.cause, found.missing_hops) == ("incomplete", ["0.0.0"])
    assert observe(TREE, [], answered(200)).missing_hops == ["0"]


def test_refused_connections_expect_no_record() -> None:
    refused = EdgeView(None, "ClientConnectorError: refused", False, 1.0, 30_000.0)
    found = observe(TREE, [], refused)
    assert found.cause == "harness" and "refused" in found.harness["what"]  # type: ignore[index]


def test_the_generators_own_timeout_is_judged_like_a_call() -> None:
    slow = [
        hop("0", GATEWAY, 499, outcome="cancelled", faults=(latency(GATEWAY, "0", 29_950.0),)),
    ]
    gave_up = EdgeView(None, "TimeoutError: ", True, 30_001.0, 30_000.0)
    assert observe(TREE, slow, gave_up).root_cause_services == (GATEWAY,)
    slow[0]["faults"] = [latency(GATEWAY, "0", 100.0)]
    found = observe(TREE, slow, gave_up)
    assert found.cause == "harness" and found.harness["hop"] == "generator"  # type: ignore[index]


def test_records_stay_until_released_or_15_minutes_old_with_no_count_cap() -> None:
    now = [0.0]
    store = HopRecords(clock=lambda: now[0])
    for index in range(30_000):  # more than the old 10,000-trace cap
        store.add({"trace_id": f"t{index}", "hop": "0"})
    assert len(store) == 30_000 and store.read(["t0"]) == {"t0": [{"trace_id": "t0", "hop": "0"}]}
    assert store.read(["t0"]), "reading does not forget"
    store.release(["t0"])
    assert store.read(["t0"]) == {}
    now[0] = KEEP_S - 1
    store.add({"trace_id": "late", "hop": "0"})
    assert store.read(["t1"]), "not yet 15 minutes old"
    now[0] = KEEP_S + 1
    assert store.read(["t1"]) == {} and store.read(["late"]) and store.expired == 29_999


@pytest.mark.parametrize(
    "body",
    [
        [],
        {"read": "t"},
        {"read": [1]},
        {"read": [""]},
        {"read": ["x" * 257]},
        {"read": [["t"]]},
        {"other": []},
        {"read": ["t"] * 1001},
    ],
)
def test_a_bad_records_request_is_refused(body: Any) -> None:
    with pytest.raises(InputError):
        parse_request(body)


def test_merging_keeps_each_record_once_and_every_process() -> None:
    mine = {"records": {"t": [hop("0", GATEWAY)]}, "processes": {"a": {"services": [GATEWAY]}}, "unreachable": []}
    twice = {"records": {"t": [hop("0.0", PAYMENT)]}, "processes": {"b": {"services": [PAYMENT]}}, "unreachable": []}
    merge(mine, twice)
    merge(mine, twice)  # a service behind two callers answers both
    assert [record["hop"] for record in mine["records"]["t"]] == ["0", "0.0"]
    assert sorted(mine["processes"]) == ["a", "b"]


async def test_a_run_near_a_timeout_labels_every_checkout_by_what_happened(tmp_path: Path) -> None:
    """1,950 ms of latency behind payment's 2 s timeout: some time out, some answer; each names inventory."""
    rules = parse_rules([{"kind": "latency", "latency_ms": 1950}])
    config = replace(FAST, inventory_timeout_s=2.0)
    chain = await start_chain(recording_telemetry(), config, ChaosConfig(rules={INVENTORY: rules}))
    try:
        truth = tmp_path / "truth.jsonl"
        traffic = TrafficConfig(
            target=chain.gateway,
            rate=20.0,
            count=20,
            mix={"success": 1.0},
            seed=3,
            truth_path=str(truth),
            progress=False,
            timeouts=Timeouts(config.inventory_timeout_s, config.payment_timeout_s),
        )
        report = await run_traffic(traffic)
    finally:
        await chain.running.stop()
    lines = [json.loads(line) for line in truth.read_text().splitlines()]
    assert len(lines) == 20
    assert all(line["cause"] == "fault" and line["root_cause_services"] == [INVENTORY] for line in lines), lines
    assert report["causes"] == {"healthy": 0, "fault": 20, "load": 0, "harness": 0, "incomplete": 0}
    assert report["loop_lag"] and report["loop_lag"][0]["services"] == sorted([GATEWAY, PAYMENT, INVENTORY])


def test_a_frozen_supervisor_labels_what_it_broke_as_the_harnesss(tmp_path: Path) -> None:
    """SIGSTOP for 2.5 s mid-run: waits that ran out behind 500 ms of latency are the harness's, the rest still right."""
    rules = tmp_path / "rules.json"
    rules.write_text(json.dumps({INVENTORY: [{"kind": "latency", "latency_ms": 500}]}))
    truth, report = tmp_path / "truth.jsonl", tmp_path / "report.json"
    command = [sys.executable, str(ROOT / "supervisor.py"), "--rate", "20", "--count", "200", "--seed", "1"]
    command += ["--chaos", str(rules), "--truth", str(truth), "--report", str(report), "--quiet", "--base-port", "0"]
    env = {
        **os.environ,
        "FAKESVC_TELEMETRY": "",
        "OTEL_TRACES_EXPORTER": "none",
        "FAKESVC_GATEWAY_PORT": "0",
        "FAKESVC_PAYMENT_PORT": "0",
        "FAKESVC_INVENTORY_PORT": "0",
    }
    process = subprocess.Popen(
        command, cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    try:
        deadline = time.monotonic() + 60
        while not (truth.exists() and len(truth.read_text().splitlines()) >= 5):  # checkouts are flowing
            assert process.poll() is None and time.monotonic() < deadline, "the run did not start"
            time.sleep(0.05)
        process.send_signal(signal.SIGSTOP)  # the machine starved: nothing in the supervisor runs
        time.sleep(2.5)
        process.send_signal(signal.SIGCONT)
        _, stderr = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGCONT)
            process.kill()
            process.wait()
    assert process.returncode == 1, stderr
    lines = [json.loads(line) for line in truth.read_text().splitlines()]
    harness = [line for line in lines if line["cause"] == "harness"]
    assert harness, "the 2.5 s stall broke no checkout"
    for line in harness:
        evidence = line["harness"]
        assert line["root_cause_services"] == [] and evidence["injected_ms"] == 500.0
        assert evidence["waited_ms"] >= evidence["timeout_ms"] and evidence["loop_lag_ms"] >= 1000, evidence
    for line in lines:
        if line["scenario"] == "fail-pay":  # payment's own error: whatever the stall did to its neighbours
            assert (line["cause"], line["root_cause_services"]) == ("fault", [PAYMENT]), line
        elif line["scenario"] == "timeout":
            assert (line["cause"], line["root_cause_service"]) == ("fault", INVENTORY), line
        else:
            assert line["cause"] in ("fault", "harness") and line["root_cause_services"] in ([], [INVENTORY]), line
    summary = json.loads(report.read_text())
    assert summary["causes"]["harness"] == len(harness) and summary["loop_lag"][0]["max_ms"] >= 2000
    assert f"harness overloaded: {len(harness)} checkouts failed with no injected cause" in stderr
    assert "in the supervisor" in stderr


@pytest.mark.parametrize(
    "body",
    [
        b"not json",
        b'{"read": [NaN]}',
        b'{"read": [Infinity]}',
        b'{"read": ["' + b"\xe2\x80\xae" * 300 + b'"]}',
        b'{"read": {"t": 1}}',
        b"[" * 100_000 + b"]" * 100_000,
        b'{"release": [' + b'"t",' * 1001 + b'"t"]}',
    ],
    ids=["text", "nan", "infinity", "unicode-too-long", "object", "nested", "huge-list"],
)
async def test_a_bad_records_request_over_http_is_a_400_and_releases_nothing(chain: Chain, body: bytes) -> None:
    async with aiohttp.ClientSession() as session:
        async with session.post(f"{chain.gateway}/checkout/success", headers={"x-request-id": "t"}) as response:
            assert response.status == 200
        before = await hop_records(chain.gateway, "t", 3)
        async with session.post(
            f"{chain.gateway}/chaos/records", data=body, headers={"Content-Type": "application/json"}
        ) as response:
            assert response.status in (400, 413), await response.text()
    assert await hop_records(chain.gateway, "t", 3) == before, "a refused request changed nothing"
