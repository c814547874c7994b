"""The incident profiles: their windows on a fake clock, the deploy markers, compressed time, one run end to end."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections import Counter
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from fakesvc import BUSINESS_ROUTES, SERVICE_NAMES
from fakesvc.faults import Chaos, chaos_config, parse_rules, profile_rules
from fakesvc.faults.markers import Marker
from fakesvc.settings import ConfigError
from fakesvc.traffic import TrafficConfig, run_traffic
from fakesvc.traffic.truth import Timeouts
from tests.conftest import FAST, start_chain
from tests.processes import ROOT
from tests.telemetry_fixtures import eventually, remote_telemetry, sink_on, stored_signals

KEYS = [f"trace-{i}" for i in range(4000)]
START = 1000.0  # the fake clock when the rules are set


class FakeClock:
    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> float:
        return self.now


def profile_chaos(name: str, clock: FakeClock, markers: list[Marker]) -> dict[str, Chaos]:
    """Every service's Chaos under profile ``name``, on ``clock``, its markers collected in ``markers``."""
    rules = profile_rules(name)
    return {
        service: Chaos(service, rules.get(service, ()), seed=5, clock=clock, on_marker=markers.append)
        for service in SERVICE_NAMES
    }


def sample(chaos: dict[str, Chaos], clock: FakeClock, at_s: float) -> Counter[tuple[str, str]]:
    """(service, kind) of every fault the profile injects into KEYS at ``at_s`` seconds into the run."""
    clock.now = START + at_s
    return Counter(
        (fault.service, fault.kind)
        for service, one in chaos.items()
        for key in KEYS
        for fault in one.decide(BUSINESS_ROUTES[service], key)
    )


# profile -> {time into the run: {(service, kind): (at least, at most) share of checkouts}}
WINDOWS: dict[str, dict[float, dict[tuple[str, str], tuple[float, float]]]] = {
    "slow-dependency": {
        10: {},
        15: {("inventory-service", "latency"): (0.65, 0.75)},  # two rules, 30 % and 40 %
        74.9: {("inventory-service", "latency"): (0.65, 0.75)},
        75: {},
    },
    "red-herring": {
        0: {("inventory-service", "noise"): (0.35, 0.45)},
        30: {("inventory-service", "noise"): (0.35, 0.45), ("payment-service", "latency"): (0.45, 0.55)},
        80: {("inventory-service", "noise"): (0.35, 0.45)},
    },
    "intermittent": {
        4.9: {},
        5: {("payment-service", "error"): (0.03, 0.05)},
        84.9: {("payment-service", "error"): (0.03, 0.05)},
        85: {},
    },
    "bad-deploy": {
        19.9: {},
        20: {("payment-service", "error"): (0.25, 0.35)},
        59.9: {("payment-service", "error"): (0.25, 0.35)},
        60: {},
    },
    "two-faults": {
        14.9: {},
        20: {("inventory-service", "error"): (0.25, 0.35)},
        40: {("inventory-service", "error"): (0.25, 0.35), ("payment-service", "latency"): (0.45, 0.55)},
        60: {("payment-service", "latency"): (0.45, 0.55)},
        75: {},
    },
}


@pytest.mark.parametrize("name", list(WINDOWS))
def test_each_profile_injects_what_it_says_inside_its_windows_only(name: str) -> None:
    clock = FakeClock()
    chaos = profile_chaos(name, clock, [])
    for at_s, expected in WINDOWS[name].items():
        seen = sample(chaos, clock, at_s)
        assert set(seen) == set(expected), (name, at_s, seen)
        for fault, (low, high) in expected.items():
            assert low <= seen[fault] / len(KEYS) <= high, (name, at_s, fault, seen[fault])


def test_the_deploy_and_the_rollback_are_logged_when_the_window_opens_and_closes() -> None:
    clock = FakeClock()
    markers: list[Marker] = []
    payment = profile_chaos("bad-deploy", clock, markers)["payment-service"]
    route = BUSINESS_ROUTES["payment-service"]
    for at_s, logged in ((0, 0), (19.99, 0), (20, 1), (40, 1), (59.99, 1), (60, 2), (90, 2)):
        clock.now = START + at_s
        payment.decide(route, "k")
        assert len(markers) == logged, at_s
    assert [(m.edge, m.message, m.at_s) for m in markers] == [
        ("start", "Deploy payment-service v2", 20),
        ("end", "Rollback payment-service to v1", 60),
    ]
    (window,) = payment.windows()
    assert markers[0].trace_id == markers[1].trace_id == window["trace_id"]
    assert len(window["trace_id"]) == 32 and window["end_log"] == "Rollback payment-service to v1"
    again = profile_chaos("bad-deploy", FakeClock(), [])["payment-service"]
    assert again.windows()[0]["trace_id"] == window["trace_id"]  # the same seed, the same marker trace


def test_markers_not_yet_logged_go_with_the_rules_they_belong_to() -> None:
    clock = FakeClock()
    markers: list[Marker] = []
    chaos = Chaos("payment-service", clock=clock, on_marker=markers.append)
    chaos.set_rules(parse_rules([{"kind": "drop", "duration_s": 10, "start_log": "Deploy", "end_log": "Rollback"}]))
    assert [m.message for m in markers] == ["Deploy"]  # a window open from the start is announced at once
    chaos.clear()
    clock.now += 60
    chaos.decide("/pay/{order_id}", "k")
    assert [m.message for m in markers] == ["Deploy"]


async def test_the_markers_are_logged_on_time_without_any_traffic() -> None:
    loop = asyncio.get_running_loop()
    logged: list[tuple[Marker, float]] = []
    chaos = Chaos("payment-service", on_marker=lambda marker: logged.append((marker, loop.time())))
    rules = [{"kind": "error", "start_s": 0.02, "duration_s": 0.05, "start_log": "Deploy", "end_log": "Rollback"}]
    set_at = loop.time()
    chaos.set_rules(parse_rules(rules))

    async def both() -> bool:
        return len(logged) == 2

    await eventually(both, what="both markers, from the timers alone")
    assert [marker.message for marker, _ in logged] == ["Deploy", "Rollback"]
    assert all(at - set_at >= marker.at_s for marker, at in logged)  # none before its time


def test_the_time_scale_compresses_the_windows_and_refuses_bad_values() -> None:
    environ = {"FAKESVC_CHAOS_PROFILE": "bad-deploy", "FAKESVC_CHAOS_TIME_SCALE": "0.1"}
    (rule,) = chaos_config(environ=environ).rules["payment-service"]
    assert (rule.start_s, rule.duration_s, rule.probability) == (2.0, 4.0, 0.3)
    for bad in ("0", "-1", "nan", "inf", "101", "fast", "\u0661"):
        with pytest.raises(ConfigError, match=r"^FAKESVC_CHAOS_TIME_SCALE: "):
            chaos_config(environ={**environ, "FAKESVC_CHAOS_TIME_SCALE": bad})


@pytest.mark.parametrize("bad", ["0", "soon"])
def test_a_bad_time_scale_stops_the_supervisor_with_one_line(bad: str) -> None:
    done = subprocess.run(
        [sys.executable, str(ROOT / "supervisor.py"), "--chaos-profile", "two-faults", "--chaos-time-scale", bad],
        cwd=ROOT,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2 and done.stdout == ""
    (line,) = done.stderr.splitlines()
    assert line.startswith("fakesvc: --chaos-time-scale: must be a ") and bad in line


def rule_errors(logs: list[dict[str, Any]], message: str) -> list[int]:
    """Where, in the log stream, payment logged an ERROR caused by the rule with ``message``."""
    return [
        index
        for index, line in enumerate(logs)
        if line["service"] == "payment-service"
        and line["level"] == "ERROR"
        and line.get("exception.message") == message
    ]


async def test_a_bad_deploy_run_in_compressed_time(tmp_path: Path) -> None:
    """bad-deploy at a 20th of its time (window 1-3 s), 4 s of traffic, telemetry to the sink.

    Timeouts are generous: on a busy host a healthy checkout must not time out.
    """
    sink = await sink_on(0, tmp_path / "s.db")
    telemetry = remote_telemetry(sink.url, tmp_path / "spill")
    await telemetry.start()
    config = chaos_config(environ={"FAKESVC_CHAOS_PROFILE": "bad-deploy", "FAKESVC_CHAOS_TIME_SCALE": "0.05"})
    services = replace(FAST, inventory_timeout_s=10.0, payment_timeout_s=20.0)
    chain = await start_chain(telemetry, services, config)
    (rule,) = config.rules["payment-service"]
    try:
        truth_path = tmp_path / "truth.jsonl"
        report = await run_traffic(
            TrafficConfig(
                target=chain.gateway,
                rate=50,
                count=200,
                mix={"success": 9, "fail-pay": 1},
                seed=4,
                truth_path=str(truth_path),
                progress=False,
                timeouts=Timeouts(services.inventory_timeout_s, services.payment_timeout_s),
            )
        )
        await chain.wait_for_log(event="Rollback payment-service to v1")
    finally:
        await chain.running.stop()
        await telemetry.close()
    try:
        truth = [json.loads(line) for line in truth_path.read_text().splitlines()]
        assert report["mismatches"] == 0 and len(truth) == 200
        designed = {"payment-service": ("error",)}  # the deploy's errors and the fail-pay scenario's
        for line in truth:
            assert line["status"] == line["expected_status"]
            assert line["root_cause_services"] == ([line["root_cause_service"]] if line["root_cause_service"] else [])
            assert all(f["kind"] in designed[f["service"]] for f in line["faults"]), line
        logs = chain.logs()
        (deploy,) = [i for i, line in enumerate(logs) if line["event"] == "Deploy payment-service v2"]
        (rollback,) = [i for i, line in enumerate(logs) if line["event"] == "Rollback payment-service to v1"]
        errors = rule_errors(logs, rule.message)
        assert errors and deploy < min(errors) and max(errors) < rollback  # the errors start and stop with them
        assert logs[deploy]["service"] == "payment-service" and logs[deploy]["level"] == "INFO"
        trace_id = logs[deploy]["request_id"]
        assert logs[rollback]["request_id"] == trace_id != truth[0]["trace_id"]
        stored = await stored_signals(sink.url, trace_id=trace_id)
        assert sorted(s["payload"]["message"] for s in stored) == [
            "Deploy payment-service v2",
            "Rollback payment-service to v1",
        ]
        assert {(s["service_name"], s["payload"]["level"]) for s in stored} == {("payment-service", "INFO")}
    finally:
        await sink.stop()
