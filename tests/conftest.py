"""Shared fixtures: the three services in one loop on ephemeral ports, logs and spans captured.

The chain is started by the same ``start_services`` the supervisor uses (real
``AppRunner``/``TCPSite``, real HTTP between the services), on port 0.
"""

from __future__ import annotations

import asyncio
import io
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from fakesvc import SERVICE_NAMES
from fakesvc.config import ServiceConfig
from fakesvc.faults import Chaos, ChaosConfig
from fakesvc.service.app import HOP_STATE
from fakesvc.serving.runner import RunningServices, start_services
from fakesvc.telemetry.logs import configure_logging
from fakesvc.telemetry.pipeline import Telemetry, TelemetryConfig

# Fast and deterministic: no simulated latency, short timeouts, a hang just past payment's patience.
FAST = ServiceConfig(
    gateway_port=0,
    payment_port=0,
    inventory_port=0,
    latency_scale=0.0,
    inventory_timeout_s=1.0,
    payment_timeout_s=3.0,
    hang_s=1.5,
    seed=7,
    shutdown_grace_s=1.0,
)

# The keys of a truth line, in order (SPEC section 8, plus run_id): the contract a scorer reads.
TRUTH_KEYS = [
    "run_id",
    "trace_id",
    "order_id",
    "scenario",
    "entry",  # the entry route it was sent to ("POST /checkout/{order_id}")
    "faults",
    "root_cause_service",
    "root_cause_services",
    "expected_status",
    "status",
    "latency_ms",
    "start",
    "end",
]
OBSERVED_TRUTH_KEYS = [*TRUTH_KEYS, "cause", "graph"]  # the built-in generator's lines: what explains it, the graph


def event_is(event: object, start: str) -> bool:
    """A log message is ``start`` (the seed's wording), alone or going on with ``: what happened``."""
    return isinstance(event, str) and (event == start or event.startswith(f"{start}: "))


@dataclass
class Chain:
    """Three running services and what they emitted."""

    running: RunningServices
    log_stream: io.StringIO
    spans: InMemorySpanExporter

    @property
    def urls(self) -> dict[str, str]:
        return self.running.urls

    @property
    def gateway(self) -> str:
        return self.urls["api-gateway"]

    def chaos(self, service: str) -> Chaos:
        return self.running.app(service)[HOP_STATE].chaos

    def logs(self, **match: Any) -> list[dict[str, Any]]:
        """The log lines matching ``match``; ``event`` matches by the message's start, as dashboards do."""
        lines = [json.loads(line) for line in self.log_stream.getvalue().splitlines() if line.strip()]
        return [
            line
            for line in lines
            if all(event_is(line.get(k), v) if k == "event" else line.get(k) == v for k, v in match.items())
        ]

    async def wait_for_log(self, timeout_s: float = 5.0, **match: Any) -> dict[str, Any]:
        """The first log line matching ``match``, polling until it appears (bounded)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while loop.time() < deadline:
            found = self.logs(**match)
            if found:
                return found[0]
            await asyncio.sleep(0.01)
        raise AssertionError(f"no log line matching {match}")


async def hop_records(base_url: str, trace_id: str, count: int, timeout_s: float = 10.0) -> dict[str, dict[str, Any]]:
    """The hop records of ``trace_id`` read through ``base_url`` (``POST /chaos/records``), by service.

    Polled until ``count`` have come (bounded): a hop whose caller gave up writes its record when it is cancelled.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    async with aiohttp.ClientSession() as session:
        while True:
            async with session.post(f"{base_url}/chaos/records", json={"read": [trace_id]}) as response:
                assert response.status == 200
                found = (await response.json())["records"].get(trace_id, [])
            if len(found) >= count:
                return {record["service"]: record for record in found}
            assert loop.time() < deadline, f"only {len(found)} of {count} records came: {found}"
            await asyncio.sleep(0.01)


def recording_telemetry() -> Telemetry:
    """Spans recorded (console exporter into a buffer), nothing sent remotely."""
    config = TelemetryConfig(signals=frozenset(), trace_exporters=frozenset({"console"}), batcher=None)
    return Telemetry(config, console=io.StringIO())


async def start_chain(telemetry: Telemetry, config: ServiceConfig = FAST, chaos: ChaosConfig | None = None) -> Chain:
    """Start inventory, payment and gateway on free ports, each pointing at the next."""
    stream = io.StringIO()
    configure_logging(stream, ship=telemetry.log_shipper)
    spans = InMemorySpanExporter()
    for service in SERVICE_NAMES:
        telemetry.tracer_provider(service).add_span_processor(SimpleSpanProcessor(spans))
    running = await start_services(SERVICE_NAMES, config, telemetry, chaos or ChaosConfig())
    return Chain(running, stream, spans)


@pytest.fixture
async def chain() -> AsyncIterator[Chain]:
    """The chain with nothing sent remotely and spans kept in memory."""
    started = await start_chain(recording_telemetry())
    yield started
    await started.running.stop()
