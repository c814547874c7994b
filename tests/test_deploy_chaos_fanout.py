"""``/chaos/services`` when the gateway runs apart from payment and inventory (containers, hosts).

The downstream services run in their own "process" (their own ``start_services``)
on loopback and require the admin token, so a change reaches them only if the
gateway's fan-out sends it over real HTTP.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from typing import Any

import aiohttp
import pytest

from fakesvc.faults import ChaosConfig
from fakesvc.service.app import HOP_STATE
from fakesvc.serving.runner import RunningServices, start_services
from tests.conftest import FAST, recording_telemetry
from tests.telemetry_fixtures import free_port

TOKEN = "deploy-s3cret"
RULE = {"kind": "error", "status": 503, "message": "Inventory DB unavailable", "probability": 0.5}


@dataclass
class Apart:
    """A gateway alone, and payment + inventory in another runner, as in two containers."""

    gateway: RunningServices
    downstream: RunningServices

    @property
    def url(self) -> str:
        return f"{self.gateway.urls['api-gateway']}/chaos/services"

    def rules(self, service: str) -> list[dict[str, Any]]:
        running = self.gateway if service == "api-gateway" else self.downstream
        return [rule.to_json() for rule in running.app(service)[HOP_STATE].chaos.rules]


async def start_apart(gateway_token: str | None, downstream_token: str | None = TOKEN) -> Apart:
    downstream = await start_services(
        ("payment-service", "inventory-service"), FAST, recording_telemetry(), ChaosConfig(admin_token=downstream_token)
    )
    config = replace(
        FAST,
        payment_url=downstream.urls["payment-service"],
        inventory_url=downstream.urls["inventory-service"],
    )
    try:
        gateway = await start_services(
            ("api-gateway",), config, recording_telemetry(), ChaosConfig(admin_token=gateway_token)
        )
    except BaseException:
        await downstream.stop()
        raise
    return Apart(gateway, downstream)


@pytest.fixture
async def apart() -> AsyncIterator[Apart]:
    started = await start_apart(TOKEN)
    yield started
    await started.gateway.stop()
    await started.downstream.stop()


async def put(url: str, body: Any, token: str | None = TOKEN) -> tuple[int, Any]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with aiohttp.ClientSession() as session, session.put(url, json=body, headers=headers) as response:
        return response.status, await response.json()


async def test_the_gateway_fans_a_change_out_to_services_in_other_processes_with_the_token(apart: Apart) -> None:
    body = {"inventory-service": [RULE], "payment-service": [{"kind": "latency", "latency_ms": [5, 10]}]}
    status, answer = await put(apart.url, body)
    assert status == 200, answer
    assert apart.rules("inventory-service") == [RULE | {"exception": "RuntimeError"}]
    assert apart.rules("payment-service") == [{"kind": "latency", "probability": 1.0, "latency_ms": [5.0, 10.0]}]
    assert answer["inventory-service"]["rules"] == apart.rules("inventory-service")  # read back over HTTP
    async with aiohttp.ClientSession() as session, session.get(apart.url) as response:
        assert set(await response.json()) == {"api-gateway", "payment-service", "inventory-service"}


async def test_a_caller_without_the_token_changes_nothing_anywhere(apart: Apart) -> None:
    status, answer = await put(apart.url, {"inventory-service": [RULE]}, token=None)
    assert status == 401 and "admin token" in answer["detail"]
    assert apart.rules("inventory-service") == []


async def test_a_bad_rule_for_a_remote_service_is_a_400_and_nothing_changes(apart: Apart) -> None:
    body = {"payment-service": [RULE], "inventory-service": [{"kind": "latency", "latency_ms": float("nan")}]}
    status, answer = await put(apart.url, body)
    assert status == 400 and answer["detail"].startswith("body[inventory-service][0].latency_ms")
    assert apart.rules("payment-service") == [] and apart.rules("inventory-service") == []


async def test_a_downstream_that_refuses_is_a_502_naming_it_and_the_gateway_keeps_its_rules() -> None:
    started = await start_apart(gateway_token=TOKEN, downstream_token="another-token")
    try:
        body = {"api-gateway": [{"kind": "drop"}], "inventory-service": [RULE]}
        status, answer = await put(started.url, body)
        assert status == 502
        assert (
            answer["detail"].startswith("inventory-service answered 401")
            and "already changed: none" in answer["detail"]
        )
        assert started.rules("api-gateway") == [] and started.rules("inventory-service") == []
    finally:
        await started.gateway.stop()
        await started.downstream.stop()


async def test_an_unreachable_downstream_is_a_502_for_reads_and_changes() -> None:
    nobody = f"http://127.0.0.1:{free_port()}"
    config = replace(FAST, payment_url=nobody, inventory_url=nobody)
    gateway = await start_services(("api-gateway",), config, recording_telemetry(), ChaosConfig(admin_token=TOKEN))
    try:
        url = f"{gateway.urls['api-gateway']}/chaos/services"
        status, answer = await put(url, {"payment-service": []})
        assert status == 502 and answer["detail"].startswith(f"payment-service at {nobody}")
        async with aiohttp.ClientSession() as session, session.get(url) as response:
            assert response.status == 502 and response.content_type == "application/json"
    finally:
        await gateway.stop()
