"""A hop whose caller gave up is cancelled (aiohttp's handler_cancellation) and still leaves its evidence."""

from __future__ import annotations

import asyncio
import io
import json
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

from fakesvc import inventory
from fakesvc.faults import Chaos, parse_rules
from fakesvc.telemetry.logs import configure_logging
from tests.conftest import FAST, recording_telemetry

CLIENT_TIMEOUT_S = 0.2


async def test_a_hung_hop_cancelled_by_its_caller_logs_measures_and_ends_its_span() -> None:
    telemetry = recording_telemetry()
    stream = io.StringIO()
    configure_logging(stream)
    spans = InMemorySpanExporter()
    telemetry.tracer_provider(inventory.SERVICE).add_span_processor(SimpleSpanProcessor(spans))
    metrics: list[tuple[str, float, dict[str, Any]]] = []
    telemetry.metric = lambda _service, name, value, _unit, attributes: metrics.append((name, value, attributes))  # type: ignore[method-assign]
    chaos = Chaos(inventory.SERVICE, parse_rules([{"kind": "hang", "hang_s": 60}]))
    app = inventory.create_app(FAST, telemetry, chaos=chaos)
    runner = web.AppRunner(app, handler_cancellation=True, shutdown_timeout=1.0)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    try:
        async with aiohttp.ClientSession() as session:
            with pytest.raises(TimeoutError):  # the caller gives up and closes the connection
                await session.get(
                    f"http://{host}:{port}/inventory/sku-1",
                    headers={"x-request-id": "gave-up-1"},
                    timeout=aiohttp.ClientTimeout(total=CLIENT_TIMEOUT_S),
                )
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 5.0
        while not metrics and loop.time() < deadline:  # the handler unwinds once the server sees the close
            await asyncio.sleep(0.01)
    finally:
        await runner.cleanup()
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    (warning,) = [line for line in lines if line.get("request_id") == "gave-up-1" and line["level"] == "WARNING"]
    assert warning["event"].startswith("Inventory check failed: slow query, the caller gave up after ")
    assert warning["error_code"] == "SLOW_QUERY"
    assert warning["cancelled"] is True and warning["status"] == 499
    assert warning["latency_ms"] >= CLIENT_TIMEOUT_S * 1000 / 2
    ((name, value, attributes),) = metrics
    assert name == "request_latency" and value == warning["latency_ms"] and attributes["status"] == 499
    (span,) = [s for s in spans.get_finished_spans() if s.attributes.get("fakesvc.trace_id") == "gave-up-1"]
    assert span.status.status_code is StatusCode.ERROR and "caller gave up" in span.status.description
