"""The ground truth joined with what the sink stored: a user can score an analyser with it."""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

from fakesvc.faults import parse_rules
from fakesvc.traffic import TrafficConfig, run_traffic
from tests.conftest import start_chain
from tests.processes import start_supervisor
from tests.telemetry_fixtures import eventually, remote_telemetry, sink_on, stored_signals


async def test_every_truth_trace_is_in_the_sink_and_its_root_cause_left_evidence(tmp_path: Path) -> None:
    sink = await sink_on(0, tmp_path / "s.db")
    telemetry = remote_telemetry(sink.url, tmp_path / "spill")
    await telemetry.start()
    chain = await start_chain(telemetry)
    chain.chaos("inventory-service").set_rules(
        parse_rules(
            [
                {
                    "kind": "error",
                    "probability": 0.2,
                    "status": 503,
                    "message": "Inventory DB unavailable",
                    "exception": "ConnectionError",
                },
            ]
        )
    )
    chain.chaos("payment-service").set_rules(parse_rules([{"kind": "latency", "probability": 0.2, "latency_ms": 30}]))
    try:
        truth_path = tmp_path / "truth.jsonl"
        await run_traffic(
            TrafficConfig(target=chain.gateway, rate=100, count=80, seed=21, truth_path=str(truth_path), progress=False)
        )

        truth = [json.loads(line) for line in truth_path.read_text().splitlines()]
        hung = {line["trace_id"] for line in truth if line["scenario"] == "timeout"}

        async def delivered() -> bool:
            """Backlog empty, and inventory's evidence of every hang arrived (it comes when the hang ends)."""
            if telemetry.stats()["backlog"]:
                return False
            stored = await stored_signals(sink.url, service_name="inventory-service", signal_type="log")
            return hung <= {s["trace_id"] for s in stored}

        await eventually(delivered, what="telemetry delivered")
        assert {line["root_cause_service"] for line in truth} >= {None, "inventory-service", "payment-service"}
        signals = await stored_signals(sink.url)
        by_trace = defaultdict(list)
        for signal in signals:
            by_trace[signal["trace_id"]].append(signal)
        for line in truth:
            stored = by_trace[line["trace_id"]]
            assert stored, f"trace {line['trace_id']} of {line['order_id']} is not in the sink"
            cause = line["root_cause_service"]
            if cause is None:
                continue
            evidence = [
                s
                for s in stored
                if s["service_name"] == cause
                and (
                    s["signal_type"] == "log"
                    and s["payload"]["level"] in ("WARNING", "ERROR", "CRITICAL")
                    or s["signal_type"] == "metric"
                    and "latency" in s["payload"]["metric_name"]
                )
            ]
            assert evidence, f"{cause} left no error or latency signal in {line['order_id']}"
            if any(f["kind"] == "error" and f["service"] == cause for f in line["faults"]):
                errors = [
                    s["payload"] for s in evidence if s["signal_type"] == "log" and s["payload"]["level"] == "ERROR"
                ]
                assert errors and errors[0]["attributes"]["exception.stacktrace"].startswith("Traceback")
    finally:
        await chain.running.stop()
        await telemetry.close()
        await sink.stop()


async def test_supervisor_with_rate_runs_the_traffic_prints_the_summary_and_exits_0(tmp_path: Path) -> None:
    supervisor = await start_supervisor(
        tmp_path,
        "--rate",
        "50",
        "--count",
        "40",
        "--seed",
        "3",
        "--chaos-profile",
        "classic",
        "--truth",
        str(tmp_path / "truth.jsonl"),
        "--report",
        str(tmp_path / "report.json"),
    )
    stderr = (await supervisor.process.stderr.read()).decode()
    assert await supervisor.process.wait() == 0, stderr
    assert "traffic to http://127.0.0.1" in stderr and "scenario" in stderr and "telemetry to" in stderr
    lines = (tmp_path / "truth.jsonl").read_text().splitlines()
    assert len(lines) == 40
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["sent"] == 40 and report["seed"] == 3
