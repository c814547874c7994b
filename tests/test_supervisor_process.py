"""``python supervisor.py`` as a user runs it: a subprocess on port 0, driven over HTTP, stopped by SIGTERM."""

from __future__ import annotations

import asyncio
import json
import signal
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from tests.processes import REAL_LATENCY, Supervisor, start_supervisor
from tests.telemetry_fixtures import checkouts


@pytest.fixture
async def supervisor(tmp_path: Path) -> AsyncIterator[Supervisor]:
    sup = await start_supervisor(tmp_path)
    try:
        await sup.read_until("api-gateway listening on")
        yield sup
    finally:
        await sup.kill()


async def test_supervisor_serves_the_scenarios_and_stops_cleanly_on_sigterm(supervisor: Supervisor) -> None:
    assert set(supervisor.urls) >= {"api-gateway", "payment-service", "inventory-service"}
    expected = {"success": 200, "order-fail-pay": 500, "order-timeout": 500}
    trace_ids = {}
    async with aiohttp.ClientSession() as session:
        for order_id, status in expected.items():
            async with session.post(f"{supervisor.url('gateway')}/checkout/{order_id}") as response:
                assert response.status == status, order_id
                trace_ids[order_id] = (await response.json())["trace_id"]
        for name in ("gateway", "payment", "inventory"):
            async with session.get(f"{supervisor.url(name)}/readyz") as response:
                assert response.status == 200
    status, remaining = await supervisor.stop(signal.SIGTERM)
    assert status == 0
    assert "Traceback" not in remaining
    # Every signal reached the embedded sink's SQLite file, grouped by the checkout's trace.
    with sqlite3.connect(supervisor.db) as db:
        rows = db.execute("SELECT trace_id, service_name, signal_type FROM raw_signals").fetchall()
    for order_id, trace_id in trace_ids.items():
        services = {service for tid, service, _ in rows if tid == trace_id}
        kinds = {kind for tid, _, kind in rows if tid == trace_id}
        assert kinds == {"log", "trace", "metric"}, order_id
        expected_services = {"api-gateway", "payment-service"}
        if order_id != "order-fail-pay":
            expected_services.add("inventory-service")
        assert services == expected_services, order_id


async def test_sigterm_lets_success_checkouts_in_flight_answer_200(tmp_path: Path) -> None:
    """Stopped from the edge inward, payment and inventory outlive the gateway's last checkout."""
    supervisor = await start_supervisor(tmp_path, **REAL_LATENCY)
    try:
        await supervisor.read_until("api-gateway listening on")
        order_ids = [f"late-{i}" for i in range(8)]
        sent = asyncio.ensure_future(checkouts(supervisor.url("gateway"), order_ids))
        await supervisor.wait_stdout('"Checkout initiated"', count=len(order_ids))
        status, remaining = await supervisor.stop(signal.SIGTERM)
        assert [code for code, _ in await sent] == [200] * len(order_ids)
        assert status == 0 and "Traceback" not in remaining
    finally:
        await supervisor.kill()


async def test_sigterm_under_load_fails_no_checkout(tmp_path: Path) -> None:
    """The traffic stops starting checkouts, those in flight finish, then the services stop: 0 unasked 5xx."""
    truth, report = tmp_path / "truth.jsonl", tmp_path / "report.json"
    args = ("--rate", "40", "--duration", "60", "--mix", "success=1", "--truth", str(truth), "--report", str(report))
    supervisor = await start_supervisor(tmp_path, *args, **REAL_LATENCY)
    try:
        await supervisor.read_until("api-gateway listening on")
        await supervisor.wait_stdout('"Checkout initiated"', count=30, timeout=30)
        status, remaining = await supervisor.stop(signal.SIGTERM)
    finally:
        await supervisor.kill()
    assert status == 143 and "Traceback" not in remaining  # a run cut by SIGTERM says so
    assert "traffic stopped by a signal" in remaining
    lines = [json.loads(line) for line in truth.read_text().splitlines()]
    sent = json.loads(report.read_text())["sent"]
    assert len(lines) == sent >= 30  # every checkout started was answered, none cut
    assert {line["status"] for line in lines} == {200}


async def test_stdout_stays_json_lines_with_console_spans_on(tmp_path: Path) -> None:
    """Every stdout line of a run, logs and console spans alike, is one JSON object."""
    env = {"OTEL_TRACES_EXPORTER": "console,prodsentinel"}
    supervisor = await start_supervisor(tmp_path, "--rate", "50", "--count", "10", "--mix", "success=1", **env)
    try:
        status, _ = await supervisor.exited()
    finally:
        await supervisor.kill()
    assert status == 0
    lines = [json.loads(line) for line in supervisor.stdout_lines]
    spans = [line for line in lines if line["event"] == "span"]
    assert {span["service"] for span in spans} == {"api-gateway", "payment-service", "inventory-service"}
    trace = spans[0]["request_id"]
    assert all(set(line) >= {"timestamp", "level", "event", "service", "request_id"} for line in lines)
    assert {span["span.name"] for span in spans if span["request_id"] == trace} >= {"POST /checkout/{order_id}"}
    assert all(span["trace_id"] and span["span_id"] and span["status"] for span in spans)
