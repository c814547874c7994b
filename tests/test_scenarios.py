"""The three scenarios end to end, in one process over real HTTP: answers, logs and one trace."""

from __future__ import annotations

import io
import json
from collections import Counter
from dataclasses import replace

import aiohttp
import structlog

from fakesvc.telemetry.logs import ShipToProdSentinel, configure_logging
from tests.conftest import FAST, Chain, hop_records, recording_telemetry, start_chain


async def post_checkout(chain: Chain, order_id: str, **headers: str) -> tuple[int, dict, aiohttp.typedefs.LooseHeaders]:
    async with aiohttp.ClientSession() as session:
        async with session.post(f"{chain.gateway}/checkout/{order_id}", headers=headers) as response:
            return response.status, await response.json(), response.headers


def spans_of(chain: Chain, trace_id: str) -> list:
    return [s for s in chain.spans.get_finished_spans() if s.attributes.get("fakesvc.trace_id") == trace_id]


async def test_success_answers_200_and_every_hop_logs_the_same_trace(chain: Chain) -> None:
    status, body, headers = await post_checkout(chain, "success")
    assert status == 200
    assert body == {
        "status": "SUCCESS",
        "order_id": "success",
        "trace_id": body["trace_id"],
        "latency_ms": body["latency_ms"],
    }
    trace_id = body["trace_id"]
    assert len(trace_id) == 32 and int(trace_id, 16)
    assert headers["x-request-id"] == trace_id
    events = [(line["service"], line["event"]) for line in chain.logs(request_id=trace_id)]
    assert events == [
        ("api-gateway", "Checkout initiated"),
        ("inventory-service", "Inventory check completed"),
        ("payment-service", "Payment authorized"),
        ("api-gateway", "Checkout completed"),
    ]
    assert "x-fakesvc-faults" not in headers


async def test_fail_pay_is_a_500_with_the_declined_value_error_and_its_traceback(chain: Chain) -> None:
    status, body, headers = await post_checkout(chain, "order-fail-pay")
    assert status == 500
    assert body["trace_id"] and "Payment declined by issuer" in body["detail"]
    failed = chain.logs(event="Payment failed", request_id=body["trace_id"])
    assert len(failed) == 1
    log = failed[0]
    assert log["level"] == "ERROR" and log["service"] == "payment-service"
    assert log["error_code"] == "PAYMENT_DECLINED"
    assert log["exception.type"] == "builtins.ValueError" and log["error_type"] == "ValueError"
    assert log["exception.message"] == "Payment declined by issuer"
    assert log["exception.stacktrace"].startswith("Traceback (most recent call last):")
    assert "raise ValueError" in log["exception.stacktrace"]
    assert log["order_id"] == "order-fail-pay" and log["latency_ms"] >= 0
    gateway_log = chain.logs(event="Checkout failed", request_id=body["trace_id"])[0]
    assert gateway_log["upstream_service"] == "payment-service" and gateway_log["upstream_status"] == 500
    assert '"payment-service"' in headers["x-fakesvc-faults"]
    assert not chain.logs(service="inventory-service", request_id=body["trace_id"])


async def test_timeout_is_a_500_after_payment_504_and_inventory_logs_its_slow_query(chain: Chain) -> None:
    status, body, _ = await post_checkout(chain, "order-timeout")
    assert status == 500
    trace_id = body["trace_id"]
    timeout = chain.logs(event="Payment timeout", request_id=trace_id)
    assert len(timeout) == 1
    assert timeout[0]["level"] == "ERROR" and timeout[0]["error_code"] == "PAYMENT_TIMEOUT"
    assert timeout[0]["status"] == 504 and timeout[0]["upstream_service"] == "inventory-service"
    assert chain.logs(event="Checkout failed", request_id=trace_id)[0]["upstream_status"] == 504
    # The hang ends (on its own, or cancelled once payment gave up, with aiohttp's handler_cancellation)
    # and inventory leaves evidence of the slow query either way.
    slow = await chain.wait_for_log(service="inventory-service", error_code="SLOW_QUERY", request_id=trace_id)
    assert slow["level"] == "WARNING" and slow["event"].startswith("Inventory check")
    assert slow["latency_ms"] >= FAST.inventory_timeout_s * 1000 / 2  # it hung (at least until payment gave up)
    records = await hop_records(chain.gateway, trace_id, 3)
    assert [fault["kind"] for fault in records["inventory-service"]["faults"]] == ["hang"]


async def test_spans_of_one_checkout_form_one_trace_with_each_service_name(chain: Chain) -> None:
    status, body, _ = await post_checkout(chain, "success")
    assert status == 200
    spans = spans_of(chain, body["trace_id"])
    assert {s.resource.attributes["service.name"] for s in spans} == {
        "api-gateway",
        "payment-service",
        "inventory-service",
    }
    assert len({s.context.trace_id for s in spans}) == 1
    assert format(spans[0].context.trace_id, "032x") == body["trace_id"]
    by_id = {s.context.span_id: s for s in spans}
    roots = [s for s in spans if s.parent is None]
    assert len(roots) == 1 and roots[0].resource.attributes["service.name"] == "api-gateway"
    for span in spans:
        if span.parent is not None:
            assert span.parent.span_id in by_id, f"{span.name} has a parent outside the trace"
    server = {s.resource.attributes["service.name"]: s for s in spans if s.kind.name == "SERVER"}
    client = [s for s in spans if s.kind.name == "CLIENT"]
    assert len(client) == 2
    # payment's server span is the child of the gateway's client span; inventory's of payment's.
    assert by_id[server["payment-service"].parent.span_id].resource.attributes["service.name"] == "api-gateway"
    assert by_id[server["inventory-service"].parent.span_id].resource.attributes["service.name"] == "payment-service"


async def test_a_valid_request_id_becomes_the_trace_id_everywhere(chain: Chain) -> None:
    status, body, headers = await post_checkout(chain, "success", **{"x-request-id": "req-42.a:b_c"})
    assert status == 200 and body["trace_id"] == "req-42.a:b_c" == headers["x-request-id"]
    services = Counter(line["service"] for line in chain.logs(request_id="req-42.a:b_c"))
    assert set(services) == {"api-gateway", "payment-service", "inventory-service"}
    assert {s.resource.attributes["service.name"] for s in spans_of(chain, "req-42.a:b_c")} == set(services)


async def test_a_bad_request_id_is_replaced_and_never_echoed_or_logged(chain: Chain) -> None:
    bad = "bad id<script>" + "x" * 10
    status, body, headers = await post_checkout(chain, "success", **{"x-request-id": bad})
    assert status == 200
    assert body["trace_id"] != bad and len(body["trace_id"]) == 32
    assert headers["x-request-id"] == body["trace_id"]
    assert bad not in chain.log_stream.getvalue()
    too_long = "a" * 129
    status, body, _ = await post_checkout(chain, "success", **{"x-request-id": too_long})
    assert status == 200 and body["trace_id"] != too_long


async def test_log_lines_have_the_spec_keys_in_order(chain: Chain) -> None:
    await post_checkout(chain, "success")
    for line in chain.logs(event="Payment authorized"):
        assert list(line)[:5] == ["timestamp", "level", "event", "service", "request_id"]
        assert line["timestamp"].endswith(("Z", "+00:00"))
        assert isinstance(line["latency_ms"], float)


def test_harness_bookkeeping_stays_local() -> None:
    shipped: list = []
    ship = ShipToProdSentinel(lambda path, signal: shipped.append(signal))
    ship(
        None,
        "warning",
        {"event": "Fault lookup failed", "request_id": "t1", "service": "payment-service", "harness": True},
    )
    ship(None, "info", {"event": "started", "service": "payment-service"})  # no trace: stays local
    ship(None, "debug", {"event": "detail", "request_id": "t1", "service": "payment-service"})
    assert shipped == []
    ship(
        None, "error", {"event": "Payment failed", "request_id": "t1", "service": "payment-service", "error_code": "X"}
    )
    assert [(s["level"], s["message"], s["attributes"]) for s in shipped] == [
        ("ERROR", "Payment failed", {"error_code": "X"})
    ]


def test_a_shipped_log_and_its_local_line_share_one_timestamp() -> None:
    """The local line and the ProdSentinel signal of one event join exactly, to the microsecond."""
    stream, shipped = io.StringIO(), []
    configure_logging(stream, ship=lambda path, signal: shipped.append(signal))
    with structlog.contextvars.bound_contextvars(service="payment-service", request_id="t-join"):
        structlog.get_logger().info("Payment authorized", latency_ms=1.5)
    (line,) = [json.loads(text) for text in stream.getvalue().splitlines()]
    (signal,) = shipped
    assert signal["timestamp"] == line["timestamp"] and signal["timestamp"].endswith("Z")
    assert (signal["trace_id"], signal["level"], signal["attributes"]) == ("t-join", "INFO", {"latency_ms": 1.5})


async def test_a_request_cut_at_shutdown_still_exports_its_spans() -> None:
    """Stopping mid-hang cancels inventory's handler; its spans must end before the providers shut down."""
    telemetry = recording_telemetry()
    chain = await start_chain(telemetry, replace(FAST, hang_s=30.0, inventory_timeout_s=0.1, shutdown_grace_s=0.1))
    status, body, _ = await post_checkout(chain, "order-timeout")
    assert status == 500  # payment gave up; inventory is still hanging
    await chain.running.stop()
    await telemetry.close()
    services = {span.resource.attributes["service.name"] for span in spans_of(chain, body["trace_id"])}
    assert services == {"api-gateway", "payment-service", "inventory-service"}
