"""What each entry point's exit status says, run as a user runs it: real subprocesses, real signals.

A traffic run exits 0 when every checkout answered as its truth expected, 1
when any did not, 128 + the signal that cut it (130, 143); serving mode exits 0
after a clean stop on either signal; a bad setting exits 2.
"""

from __future__ import annotations

import json
import re
import signal
from pathlib import Path

import pytest

from tests.conftest import TRUTH_KEYS
from tests.processes import FAST_TIMEOUTS, Process, spawn, start_supervisor, start_traffic

STOPS = [pytest.param(signal.SIGINT, id="SIGINT"), pytest.param(signal.SIGTERM, id="SIGTERM")]
# No telemetry backend to wait for: these tests are about the processes' lives, not their signals.
QUIET = {"FAKESVC_SINK": "off", "FAKESVC_TELEMETRY": "", "OTEL_TRACES_EXPORTER": "none"}
# A "timeout" checkout hangs far longer than the 3 s drain grace (and nobody times out first): a stop cuts it.
CUT = {**QUIET, "FAKESVC_HANG_S": "20", "FAKESVC_INVENTORY_TIMEOUT_S": "25", "FAKESVC_PAYMENT_TIMEOUT_S": "28"}
# Seed 1 plans "timeout" as the 3rd checkout: one hangs once three have started.
RUN = ("--rate", "50", "--mix", "success=1,timeout=1", "--seed", "1", "--quiet")
LONG_RUN = (*RUN, "--count", "5000")


def outputs(tmp_path: Path) -> tuple[str, ...]:
    return ("--truth", str(tmp_path / "truth.jsonl"), "--report", str(tmp_path / "report.json"))


def assert_cut_by(signum: int, status: int, stderr: str, summary: str, tmp_path: Path) -> None:
    """Exit 128 + signum, no traceback, the summary ends on the interruption, the report and truth are whole."""
    assert status == 128 + signum, stderr
    assert "Traceback" not in stderr
    name = signal.Signals(signum).name
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["interrupted"] is True and report["signal"] == name
    assert re.search(rf"traffic run {report['run_id']}: ", stderr), "the startup line names the run"
    assert summary.strip().splitlines()[-1].startswith(f"run {report['run_id']} interrupted by {name}: ")
    assert summary.strip().endswith(f"exit {128 + signum}")
    lines = [json.loads(line) for line in (tmp_path / "truth.jsonl").read_text().splitlines()]
    assert len(lines) == report["sent"] > 0, "a truth line for every checkout that started"
    assert all(set(TRUTH_KEYS) <= set(line) and line["run_id"] == report["run_id"] for line in lines)
    cut = [line for line in lines if line.get("interrupted")]
    assert len(cut) == report["cut_short"] > 0
    for line in cut:  # the gateway still answered what it had injected
        assert line["status"] is None and line["scenario"] == "timeout"
        assert ("inventory-service", "hang") in [(f["service"], f["kind"]) for f in line["faults"]]


@pytest.mark.parametrize(
    ("signum", "count"),
    [
        *[pytest.param(stop.values[0], 5000, id=f"{stop.id}-while-sending") for stop in STOPS],
        pytest.param(signal.SIGINT, 3, id="SIGINT-all-sent"),  # a stop while only the last checkouts run
    ],
)
async def test_a_signal_cuts_a_supervisor_run_short_and_says_so(tmp_path: Path, signum: int, count: int) -> None:
    supervisor = await start_supervisor(tmp_path, *RUN, "--count", str(count), *outputs(tmp_path), **CUT)
    try:
        await supervisor.read_until("traffic run ")
        await supervisor.wait_stdout('"Checkout initiated"', count=min(count, 10), timeout=30)
        status, stderr = await supervisor.stop(signum)
    finally:
        await supervisor.kill()
    assert "traffic stopped by a signal" in stderr
    summary = stderr[stderr.index("stopping: finishing in-flight requests") :]  # said after the final flush
    assert_cut_by(signum, status, "".join(supervisor.stderr_lines) + stderr, summary, tmp_path)


@pytest.mark.parametrize("signum", STOPS)
async def test_a_signal_cuts_a_standalone_run_short_and_serving_stops_with_0(tmp_path: Path, signum: int) -> None:
    supervisor = await start_supervisor(tmp_path, **CUT)
    traffic: Process | None = None
    try:
        await supervisor.read_until("api-gateway listening on")
        traffic = await start_traffic(supervisor.url("gateway"), *LONG_RUN, *outputs(tmp_path), **CUT)
        await traffic.read_until("traffic run ")
        await supervisor.wait_stdout('"Checkout initiated"', count=10, timeout=30)
        status, stderr = await traffic.stop(signum)
        assert_cut_by(signum, status, "".join(traffic.stderr_lines) + stderr, "".join(traffic.stdout_lines), tmp_path)
        other = signal.SIGTERM if signum == signal.SIGINT else signal.SIGINT
        served, stderr = await supervisor.stop(other)  # serving mode: a clean stop is a success
        assert served == 0 and "Traceback" not in stderr
    finally:
        await supervisor.kill()
        if traffic is not None:
            await traffic.kill()


async def test_a_finished_run_exits_0_when_every_outcome_is_explained_whatever_the_replay_expected(
    tmp_path: Path,
) -> None:
    supervisor = await start_supervisor(tmp_path, **QUIET)  # inventory hangs 1.5 s; payment waits 1 s
    run = ("--rate", "200", "--count", "20", "--mix", "success=1,timeout=1", "--seed", "1")
    try:
        await supervisor.read_until("api-gateway listening on")
        same = {**QUIET, **FAST_TIMEOUTS}  # the verdict replays the services' timeouts
        passed = await start_traffic(supervisor.url("gateway"), *run, *outputs(tmp_path), **same)
        status, _ = await passed.exited()
        assert status == 0, passed.stdout_lines
        assert "".join(passed.stdout_lines).strip().endswith("passed: every checkout's outcome is explained; exit 0")
        report = json.loads((tmp_path / "report.json").read_text())
        assert report["interrupted"] is False and report["replay_agreement"] == 1.0
        # The same run with another timeout than the services' told to the generator: its replay expects
        # payment to outwait the hang, but the truth is what the hops recorded, and the run still passes.
        differs = await start_traffic(
            supervisor.url("gateway"), *run, *outputs(tmp_path), FAKESVC_INVENTORY_TIMEOUT_S="5", **QUIET
        )
        status, _ = await differs.exited()
        assert status == 0, differs.stdout_lines
        report = json.loads((tmp_path / "report.json").read_text())
        assert report["causes"]["harness"] == 0 and report["replay_agreement"] < 1.0
    finally:
        await supervisor.kill()


async def test_a_supervisor_run_exits_1_when_checkouts_fail_with_no_injected_cause(tmp_path: Path) -> None:
    """Inventory's baseline latency (20-80 ms, no fault) outlasts payment's 20 ms patience: the harness's failures.

    20 ms is inventory's least work, the shortest timeout a run accepts at latency scale 1 (test_feasibility.py).
    """
    run = ("--rate", "200", "--count", "10", "--mix", "success=1", "--seed", "1", "--quiet", *outputs(tmp_path))
    supervisor = await start_supervisor(
        tmp_path, *run, **{**QUIET, "FAKESVC_LATENCY_SCALE": "1", "FAKESVC_INVENTORY_TIMEOUT_S": "0.02"}
    )
    try:
        status, stderr = await supervisor.exited()
    finally:
        await supervisor.kill()
    assert status == 1 and "Traceback" not in stderr
    assert "FAILED: 10 checkouts not explained by injected faults (10 harness-caused, 0 incomplete); exit 1" in stderr
    assert "harness overloaded: 10 checkouts failed with no injected cause" in stderr


@pytest.mark.parametrize("signum", STOPS)
@pytest.mark.parametrize("module", ["fakesvc.inventory", "fakesvc.sink"])
async def test_serving_entry_points_exit_0_after_a_clean_stop(tmp_path: Path, module: str, signum: int) -> None:
    env = {**QUIET, "INVENTORY_PORT": "0", "FAKESVC_SINK_PORT": "0", "FAKESVC_SINK_DB": str(tmp_path / "s.db")}
    process = await spawn(["-m", module], env)
    try:
        await process.read_until("listening on")
        status, stderr = await process.stop(signum)
    finally:
        await process.kill()
    assert status == 0 and "Traceback" not in stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["-m", "fakesvc.traffic", "--rate", "0"], "fakesvc: --rate: must be > 0"),
        (["-m", "fakesvc.sink", "--port", "70000"], "fakesvc: --sink-port: must be a port number"),
        (["-m", "fakesvc.payment", "--latency-scale", "fast"], "fakesvc: --latency-scale: must be a number"),
    ],
)
async def test_a_bad_setting_exits_2_with_one_line(args: list[str], message: str) -> None:
    process = await spawn(args, QUIET)
    status, stderr = await process.exited()
    assert status == 2
    assert stderr.strip().startswith(message) and len(stderr.strip().splitlines()) == 1, stderr
