"""Health, readiness and JSON-only error answers on every service."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import replace

import aiohttp
import pytest
from yarl import URL

from fakesvc.serving.in_flight import IN_FLIGHT
from tests.conftest import FAST, Chain, recording_telemetry, start_chain
from tests.telemetry_fixtures import eventually

SERVICES = ("api-gateway", "payment-service", "inventory-service")


@pytest.mark.parametrize("service", SERVICES)
async def test_health_and_readiness(chain: Chain, service: str) -> None:
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{chain.urls[service]}/healthz") as response:
            assert response.status == 200 and (await response.json())["status"] == "alive"
        async with session.get(f"{chain.urls[service]}/readyz") as response:
            assert response.status == 200
            assert await response.json() == {"status": "ready", "service": service}


@pytest.mark.parametrize("service", SERVICES)
async def test_every_error_is_json_with_a_trace_id(chain: Chain, service: str) -> None:
    base = chain.urls[service]
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{base}/no/such/route") as response:
            assert response.status == 404
            assert response.content_type == "application/json"
            body = await response.json()
            assert body["detail"] == "Not Found" and body["trace_id"]
            assert response.headers["x-request-id"] == body["trace_id"]
        async with session.delete(f"{base}/healthz") as response:
            assert response.status == 405 and response.content_type == "application/json"
            assert "GET" in response.headers["Allow"]
        async with session.put(f"{base}/chaos", data=b"x" * (128 * 1024)) as response:
            assert response.status == 413 and response.content_type == "application/json"
            assert (await response.json())["detail"]


async def test_wrong_method_on_a_business_route_is_a_json_405(chain: Chain) -> None:
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{chain.gateway}/checkout/success") as response:
            assert response.status == 405
            assert (await response.json())["detail"] == "Method Not Allowed"


async def test_scenario_errors_are_json_too(chain: Chain) -> None:
    async with aiohttp.ClientSession() as session:
        async with session.post(f"{chain.urls['payment-service']}/pay/x-fail-pay") as response:
            assert response.status == 500 and response.content_type == "application/json"
            body = await response.json()
            assert body["error_code"] == "PAYMENT_DECLINED" and body["order_id"] == "x-fail-pay"
        async with session.get(f"{chain.urls['inventory-service']}/inventory/sku-1") as response:
            body = await response.json()
            assert response.status == 200 and body["item_id"] == "sku-1"
            assert isinstance(body["available"], bool) and body["latency_ms"] >= 0


BAD_KEYS = [
    pytest.param("%2e", "must not be '.' or '..'", id="dot"),
    pytest.param("%2e%2e", "must not be '.' or '..'", id="dot-dot"),
    # 3,000 bytes here, 9,000 once the next hop's URL encodes each "!": past aiohttp's 8,190-byte line
    pytest.param("!" * 3000, "at most 256 characters", id="long-enough-to-break-the-next-url"),
    pytest.param("a%00b", "control characters", id="nul"),
    pytest.param("a%0d%0ab", "control characters", id="crlf"),
]


@pytest.mark.parametrize(("raw", "problem"), BAD_KEYS)
@pytest.mark.parametrize(
    ("service", "method", "route", "key"),
    [
        ("api-gateway", "POST", "/checkout/", "order_id"),
        ("payment-service", "POST", "/pay/", "order_id"),
        ("inventory-service", "GET", "/inventory/", "item_id"),
    ],
)
async def test_ids_that_would_break_the_next_hops_url_are_a_json_400_and_no_error_log(
    chain: Chain, service: str, method: str, route: str, key: str, raw: str, problem: str
) -> None:
    url = URL(chain.urls[service] + route + raw, encoded=True)  # sent as is: no client-side normalising
    async with aiohttp.ClientSession() as session:
        async with session.request(method, url) as response:
            assert response.status == 400 and response.content_type == "application/json"
            body = await response.json()
    assert body["detail"].startswith(key) and problem in body["detail"]
    assert body["error_code"].endswith("_BAD_REQUEST")
    assert chain.logs(request_id=body["trace_id"]) == []  # no hop ran: nothing to log, nothing sent on


@pytest.mark.parametrize("order_id", ["a%2Fb", "..%2Fpay", "caf%C3%A9", "%20", "a."])
async def test_ids_with_encoded_slashes_dots_and_unicode_still_check_out(chain: Chain, order_id: str) -> None:
    async with aiohttp.ClientSession() as session:
        async with session.post(URL(f"{chain.gateway}/checkout/{order_id}", encoded=True)) as response:
            assert response.status == 200, await response.text()


async def raw_exchange(base_url: str, request: bytes) -> bytes:
    """Send bytes as they are (no client would send these) and read the answer until the server closes."""
    host, port = base_url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        writer.write(request)
        return await reader.read()
    finally:
        writer.close()


UNPARSABLE = [
    pytest.param(
        b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 9000 + b"\r\n\r\n", id="header-over-8190-bytes"
    ),
    pytest.param(b"GET /a b c HTTP/1.1\r\nHost: x\r\n\r\n", id="malformed-request-line"),
    pytest.param(b"FO(O /healthz HTTP/1.1\r\nHost: x\r\n\r\n", id="bad-method"),
]


@pytest.mark.parametrize("request_bytes", UNPARSABLE)
async def test_requests_the_parser_rejects_are_a_400_and_no_traceback_in_any_log(
    chain: Chain, caplog: pytest.LogCaptureFixture, request_bytes: bytes
) -> None:
    caplog.set_level(logging.DEBUG, logger="aiohttp.server")
    answer = await raw_exchange(chain.urls["inventory-service"], request_bytes)
    assert answer.split(b"\r\n", 1)[0].endswith(b" 400 Bad Request")
    # aiohttp answers these itself, before any application code: its public API leaves the body text/plain
    server_records = [record for record in caplog.records if record.name == "aiohttp.server"]
    assert all(record.levelno < logging.WARNING and not record.exc_info for record in server_records)
    assert "Traceback" not in caplog.text
    async with aiohttp.ClientSession() as session:  # and the service carries on
        async with session.get(f"{chain.urls['inventory-service']}/healthz") as response:
            assert response.status == 200


@pytest.mark.parametrize("cancellation", [True, False], ids=["handler-cancelled", "handler-sees-reset"])
async def test_a_client_hanging_up_mid_request_leaves_no_error_in_the_logs(cancellation: bool) -> None:
    chain = await start_chain(recording_telemetry(), replace(FAST, handler_cancellation=cancellation))
    try:
        payment = chain.running.app("payment-service")[IN_FLIGHT]
        host, port = chain.urls["payment-service"].removeprefix("http://").split(":")
        _reader, writer = await asyncio.open_connection(host, int(port))
        writer.write(b'PUT /chaos HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{"rules": [')  # half a body
        await writer.drain()
        await eventually(lambda: _is(len(payment) == 1), what="the handler waiting for the rest")
        writer.close()
        await eventually(lambda: _is(len(payment) == 0), what="the handler unwound")
        assert [line for line in chain.logs() if line["level"] in ("ERROR", "CRITICAL")] == []
        assert "Traceback" not in chain.log_stream.getvalue()
        if not cancellation:
            assert chain.logs(event="Client disconnected before the answer", path="/chaos")
    finally:
        await chain.running.stop()


async def _is(value: bool) -> bool:
    return value
