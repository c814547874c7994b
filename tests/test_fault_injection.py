"""Chaos rules applied by the hop skeleton: each kind's answer, its evidence, and the faults header."""

from __future__ import annotations

import json
from pathlib import Path

import aiohttp

from fakesvc.faults import Rule, parse_rules
from fakesvc.faults.report import HEADER_BUDGET_BYTES
from fakesvc.traffic import TrafficConfig, run_traffic
from tests.conftest import FAST, Chain, hop_records


async def checkout(chain: Chain, order_id: str = "success") -> tuple[int, dict, list[dict]]:
    async with aiohttp.ClientSession() as session:
        async with session.post(f"{chain.gateway}/checkout/{order_id}") as response:
            faults = json.loads(response.headers.get("x-fakesvc-faults", "[]"))
            return response.status, await response.json(), faults


async def test_an_error_rule_in_inventory_fails_the_checkout_with_evidence_at_each_hop(chain: Chain) -> None:
    chain.chaos("inventory-service").set_rules(
        parse_rules(
            [{"kind": "error", "status": 503, "message": "Inventory DB unavailable", "exception": "ConnectionError"}]
        )
    )
    status, body, faults = await checkout(chain)
    assert status == 500
    trace_id = body["trace_id"]
    assert [(f["service"], f["kind"]) for f in faults] == [("inventory-service", "error")]
    inventory = chain.logs(event="Inventory check failed", request_id=trace_id)[0]
    assert inventory["level"] == "ERROR" and inventory["error_code"] == "INVENTORY_UNAVAILABLE"
    assert inventory["exception.type"] == "builtins.ConnectionError"
    assert inventory["exception.message"] == "Inventory DB unavailable"
    assert "Traceback" in inventory["exception.stacktrace"]
    payment = chain.logs(event="Payment failed", request_id=trace_id)[0]
    assert payment["upstream_service"] == "inventory-service" and payment["upstream_status"] == 503
    assert payment["error_code"] == "PAYMENT_UPSTREAM_ERROR" and payment["status"] == 502


async def test_a_latency_rule_slows_the_hop_and_is_reported(chain: Chain) -> None:
    chain.chaos("payment-service").set_rules(parse_rules([{"kind": "latency", "latency_ms": 60}]))
    status, body, faults = await checkout(chain)
    assert status == 200
    assert [(f["service"], f["kind"]) for f in faults] == [("payment-service", "latency")]
    authorized = chain.logs(event="Payment authorized", request_id=body["trace_id"])[0]
    assert authorized["latency_ms"] >= 60


async def test_a_hang_rule_times_payment_out_and_the_hops_records_say_so(chain: Chain) -> None:
    chain.chaos("inventory-service").set_rules(
        parse_rules([{"kind": "hang", "hang_s": FAST.inventory_timeout_s + 0.5}])
    )
    status, body, _ = await checkout(chain)
    assert status == 500
    timeout = chain.logs(event="Payment timeout", request_id=body["trace_id"])[0]
    assert timeout["error_code"] == "PAYMENT_TIMEOUT"
    records = await hop_records(chain.gateway, body["trace_id"], 3)
    wait = records["payment-service"]["calls"][0]
    assert (wait["outcome"], wait["timeout_ms"]) == ("timeout", FAST.inventory_timeout_s * 1000)
    hung = records["inventory-service"]
    assert hung["outcome"] == "cancelled" and hung["status"] == 499  # payment gave up, inventory was cancelled
    assert [(f["kind"], f["delay_ms"]) for f in hung["faults"]] == [("hang", (FAST.inventory_timeout_s + 0.5) * 1000)]
    assert hung["faults"][0]["applied_ms"] < hung["faults"][0]["delay_ms"], "cut short when payment gave up"


async def test_a_drop_rule_resets_the_connection_and_the_caller_reports_it(chain: Chain) -> None:
    chain.chaos("inventory-service").set_rules(parse_rules([{"kind": "drop"}]))
    status, body, _ = await checkout(chain)
    assert status == 500
    payment = chain.logs(event="Payment failed", request_id=body["trace_id"])[0]
    assert payment["error_code"] == "PAYMENT_UPSTREAM_UNREACHABLE"
    assert payment["exception.type"].endswith("UpstreamFailure")
    dropped = chain.logs(event="Inventory check failed", request_id=body["trace_id"])[0]
    assert dropped["error_code"] == "INVENTORY_CONNECTION_RESET"
    records = await hop_records(chain.gateway, body["trace_id"], 3)
    assert records["inventory-service"]["outcome"] == "dropped"
    assert [f["kind"] for f in records["inventory-service"]["faults"]] == ["drop"]
    assert records["payment-service"]["calls"][0]["outcome"] == "connection"


async def test_an_error_rule_in_the_gateway_answers_its_own_status(chain: Chain) -> None:
    chain.chaos("api-gateway").set_rules(
        parse_rules(
            [{"kind": "error", "status": 429, "message": "Too many checkouts", "route": "/checkout/{order_id}"}]
        )
    )
    status, body, faults = await checkout(chain)
    assert status == 429 and body["detail"] == "Too many checkouts"
    assert body["error_code"] == "GATEWAY_RATE_LIMITED"
    assert faults == [f for f in faults if f["service"] == "api-gateway"] and len(faults) == 1
    assert not chain.logs(service="payment-service", request_id=body["trace_id"])


async def test_a_rule_for_another_route_does_not_fire(chain: Chain) -> None:
    chain.chaos("inventory-service").set_rules(parse_rules([{"kind": "error", "route": "/somewhere/{else}"}]))
    status, _, faults = await checkout(chain)
    assert status == 200 and faults == []


async def test_the_supervisor_gateway_sets_every_services_rules_in_one_call(chain: Chain) -> None:
    body = {
        "inventory-service": [{"kind": "error", "status": 503}],
        "payment-service": [{"kind": "latency", "latency_ms": 5}],
    }
    async with aiohttp.ClientSession() as session:
        async with session.put(f"{chain.gateway}/chaos/services", json=body) as response:
            assert response.status == 200
            snapshot = await response.json()
        assert snapshot["inventory-service"]["rules"][0]["status"] == 503
        assert snapshot["api-gateway"]["rules"] == []
        bad = {"inventory-service": [{"kind": "drop"}], "payment-service": [{"kind": "nope"}]}
        async with session.put(f"{chain.gateway}/chaos/services", json=bad) as response:
            assert response.status == 400 and "body[payment-service][0].kind" in (await response.json())["detail"]
        assert chain.chaos("inventory-service").rules[0].kind == "error"  # nothing changed
    status, _, faults = await checkout(chain)
    assert status == 500 and {f["service"] for f in faults} == {"inventory-service", "payment-service"}


async def answer_of(chain: Chain, order_id: str = "success") -> tuple[int, dict, dict[str, str]]:
    async with aiohttp.ClientSession() as session:
        async with session.post(f"{chain.gateway}/checkout/{order_id}") as response:
            return response.status, await response.json(), dict(response.headers)


async def truth_of_one_checkout(chain: Chain, tmp_path: Path) -> dict:
    truth = tmp_path / "truth.jsonl"
    await run_traffic(
        TrafficConfig(target=chain.gateway, rate=10, count=1, mix={"success": 1}, truth_path=str(truth), progress=False)
    )
    return json.loads(truth.read_text())


async def test_300_rules_keep_the_faults_header_bounded_and_the_truth_whole(chain: Chain, tmp_path: Path) -> None:
    chain.chaos("inventory-service").set_rules([Rule("latency", latency_ms=(0.0, 0.0))] * 300)
    status, body, headers = await answer_of(chain)
    assert status == 200, body
    assert len(headers["x-fakesvc-faults"]) <= HEADER_BUDGET_BYTES
    assert headers["x-fakesvc-faults-trimmed"] == f"/chaos/injected/{body['trace_id']}"
    line = await truth_of_one_checkout(chain, tmp_path)
    assert line["status"] == line["expected_status"] == 200
    assert len(line["faults"]) == 300 and line["root_cause_service"] == "inventory-service"


async def test_an_8_kb_error_message_keeps_the_header_bounded_and_the_truth_whole(chain: Chain, tmp_path: Path) -> None:
    message = "Inventory DB unavailable " + "x" * 8192
    chain.chaos("inventory-service").set_rules([Rule("error", status=503, message=message)])
    status, body, headers = await answer_of(chain)
    assert status == 500
    assert len(headers["x-fakesvc-faults"]) <= HEADER_BUDGET_BYTES and "x-fakesvc-faults-trimmed" in headers
    payment = chain.logs(event="Payment failed", request_id=body["trace_id"])[0]
    assert payment["error_code"] == "PAYMENT_UPSTREAM_ERROR" and payment["upstream_status"] == 503
    line = await truth_of_one_checkout(chain, tmp_path)
    assert line["status"] == line["expected_status"] == 500
    (fault,) = line["faults"]
    assert message in fault["detail"] and fault["status"] == 503


async def test_a_dot_dot_trace_id_still_has_its_records_read_back(chain: Chain) -> None:
    chain.chaos("inventory-service").set_rules(parse_rules([{"kind": "drop"}]))
    async with aiohttp.ClientSession() as session:
        async with session.post(f"{chain.gateway}/checkout/success", headers={"x-request-id": ".."}) as response:
            assert response.status == 500 and response.headers["x-request-id"] == ".."
    records = await hop_records(chain.gateway, "..", 3)
    assert [(f["service"], f["kind"]) for f in records["inventory-service"]["faults"]] == [
        ("inventory-service", "drop")
    ]
    assert not chain.logs(event="Hop records unavailable, asking again later")
