"""The ground truth is right for every fault kind at every service, and for pairs of faults.

``root_cause_services`` lists every service whose own faults alone would have
made the checkout faulty (the one the replay blames first); noise is in no list.

Each cell sends one checkout through the traffic generator (which writes the
truth line) and checks observed status == expected status, the recorded
faults and the root cause. Timeouts are short so the cells past a timeout
are quick; "below" delays stay far under them, "above" far over.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from fakesvc.faults import parse_rules
from fakesvc.traffic import TrafficConfig, run_traffic
from fakesvc.traffic.truth import Timeouts
from tests.conftest import FAST, Chain, recording_telemetry, start_chain

CONFIG = replace(FAST, inventory_timeout_s=0.5, payment_timeout_s=1.0)
TIMEOUTS = Timeouts(CONFIG.inventory_timeout_s, CONFIG.payment_timeout_s, checkout_s=1.8)
CALLER_WAIT_S = {
    "api-gateway": TIMEOUTS.checkout_s,
    "payment-service": TIMEOUTS.payment_s,
    "inventory-service": TIMEOUTS.inventory_s,
}
BELOW_S = 0.02
OVER_S = 0.4  # how far past its caller's timeout an "above" delay lasts


@pytest.fixture
async def matrix_chain() -> AsyncIterator[Chain]:
    started = await start_chain(recording_telemetry(), CONFIG)
    yield started
    await started.running.stop()


async def one_checkout(chain: Chain, tmp_path: Path, rules: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    """Set ``rules`` per service, send one checkout through the generator, return its truth line."""
    for service, service_rules in rules.items():
        chain.chaos(service).set_rules(parse_rules(service_rules))
    truth = tmp_path / "truth.jsonl"
    report = await run_traffic(
        TrafficConfig(
            target=chain.gateway,
            rate=10,
            count=1,
            mix={"success": 1},
            seed=1,
            truth_path=str(truth),
            progress=False,
            timeouts=TIMEOUTS,
        )
    )
    (line,) = [json.loads(text) for text in truth.read_text().splitlines()]
    assert report["mismatches"] == (line["status"] != line["expected_status"])
    return line


def cell(service: str, kind: str) -> tuple[dict[str, Any], int | None, dict[str, Any]]:
    """The rule for one cell, the status the generator should see, and the structured fields expected."""
    above_s = round(CALLER_WAIT_S[service] + OVER_S, 3)
    failed = None if service == "api-gateway" else 500  # the generator gets no answer from a gateway that fails so
    return {
        "error": ({"kind": "error", "status": 503}, 503 if service == "api-gateway" else 500, {"status": 503}),
        "latency below": ({"kind": "latency", "latency_ms": BELOW_S * 1000}, 200, {"delay_ms": BELOW_S * 1000}),
        "latency above": ({"kind": "latency", "latency_ms": above_s * 1000}, failed, {"delay_ms": above_s * 1000}),
        "hang below": ({"kind": "hang", "hang_s": BELOW_S}, 200, {"delay_ms": BELOW_S * 1000}),
        "hang above": ({"kind": "hang", "hang_s": above_s}, failed, {"delay_ms": above_s * 1000}),
        "drop": ({"kind": "drop"}, failed, {"status": None, "delay_ms": None}),
    }[kind]


@pytest.mark.parametrize("kind", ["error", "latency below", "latency above", "hang below", "hang above", "drop"])
@pytest.mark.parametrize("service", ["api-gateway", "payment-service", "inventory-service"])
async def test_every_fault_kind_at_every_service(matrix_chain: Chain, tmp_path: Path, service: str, kind: str) -> None:
    rule, expected, fields = cell(service, kind)
    line = await one_checkout(matrix_chain, tmp_path, {service: [rule]})
    assert line["status"] == line["expected_status"] == expected, line
    assert line["root_cause_service"] == service and line["root_cause_services"] == [service]
    (fault,) = line["faults"]
    assert (fault["service"], fault["kind"]) == (service, rule["kind"])
    assert {key: fault[key] for key in fields} == fields


PAIRS = [
    pytest.param(
        {"inventory-service": [{"kind": "latency", "latency_ms": 20}], "payment-service": [{"kind": "error"}]},
        500,
        "payment-service",
        [("payment-service", "error")],  # payment failed before it called inventory
        ["payment-service"],
        id="latency at inventory + error at payment",
    ),
    pytest.param(
        {"api-gateway": [{"kind": "latency", "latency_ms": 20}], "inventory-service": [{"kind": "error"}]},
        500,
        "inventory-service",
        [("api-gateway", "latency"), ("inventory-service", "error")],
        ["inventory-service", "api-gateway"],
        id="latency at the gateway + error at inventory",
    ),
    pytest.param(
        {
            "payment-service": [{"kind": "latency", "latency_ms": 20}],
            "inventory-service": [{"kind": "hang", "hang_s": CONFIG.inventory_timeout_s + OVER_S}],
        },
        500,
        "inventory-service",
        [("payment-service", "latency"), ("inventory-service", "hang")],
        ["inventory-service", "payment-service"],
        id="latency at payment + a long hang at inventory",
    ),
    pytest.param(
        {"api-gateway": [{"kind": "hang", "hang_s": BELOW_S}], "payment-service": [{"kind": "drop"}]},
        500,
        "payment-service",
        [("api-gateway", "hang"), ("payment-service", "drop")],
        ["payment-service", "api-gateway"],
        id="short hang at the gateway + drop at payment",
    ),
    pytest.param(
        {"api-gateway": [{"kind": "error", "status": 429}], "inventory-service": [{"kind": "drop"}]},
        429,
        "api-gateway",
        [("api-gateway", "error")],
        ["api-gateway"],
        id="error at the gateway + drop at inventory",
    ),
    pytest.param(
        {"inventory-service": [{"kind": "error"}, {"kind": "latency", "latency_ms": 20}]},
        500,
        "inventory-service",
        [("inventory-service", "error")],  # a fault after the error never happened
        ["inventory-service"],
        id="error then latency at inventory",
    ),
    pytest.param(
        # each within its own caller's timeout, together past the gateway's: the gateway asks payment, which
        # answers for inventory too
        {
            "payment-service": [{"kind": "latency", "latency_ms": 550}],
            "inventory-service": [{"kind": "latency", "latency_ms": 470}],
        },
        500,
        "payment-service",
        [("payment-service", "latency"), ("inventory-service", "latency")],
        ["payment-service", "inventory-service"],
        id="latencies that add up past the gateway's timeout",
    ),
    pytest.param(
        {"payment-service": [{"kind": "noise"}], "inventory-service": [{"kind": "error", "status": 503}]},
        500,
        "inventory-service",
        [("payment-service", "noise"), ("inventory-service", "error")],
        ["inventory-service"],  # the noise is recorded, never a cause
        id="noise at payment + error at inventory",
    ),
    pytest.param(
        {"api-gateway": [{"kind": "noise"}], "inventory-service": [{"kind": "noise"}]},
        200,
        None,
        [("api-gateway", "noise"), ("inventory-service", "noise")],
        [],  # only noise: healthy
        id="noise at the gateway and at inventory",
    ),
    pytest.param(
        {
            "payment-service": [{"kind": "noise"}, {"kind": "latency", "latency_ms": 20}],
            "inventory-service": [{"kind": "drop"}],
        },
        500,
        "inventory-service",
        [("payment-service", "noise"), ("payment-service", "latency"), ("inventory-service", "drop")],
        ["inventory-service", "payment-service"],  # two services' faults, each faulty alone
        id="noise and latency at payment + drop at inventory",
    ),
]


@pytest.mark.parametrize(("rules", "expected", "cause", "faults", "causes"), PAIRS)
async def test_pairs_of_faults(
    matrix_chain: Chain,
    tmp_path: Path,
    rules: dict[str, list[dict[str, Any]]],
    expected: int,
    cause: str | None,
    faults: list[tuple[str, str]],
    causes: list[str],
) -> None:
    line = await one_checkout(matrix_chain, tmp_path, rules)
    assert line["status"] == line["expected_status"] == expected, line
    assert line["root_cause_service"] == cause and line["root_cause_services"] == causes
    assert [(f["service"], f["kind"]) for f in line["faults"]] == faults


@pytest.mark.parametrize("service", ["api-gateway", "payment-service", "inventory-service"])
async def test_noise_at_every_service_logs_its_error_and_changes_nothing(
    matrix_chain: Chain, tmp_path: Path, service: str
) -> None:
    line = await one_checkout(matrix_chain, tmp_path, {service: [{"kind": "noise"}]})
    assert line["status"] == line["expected_status"] == 200, line
    assert line["root_cause_service"] is None and line["root_cause_services"] == []
    (fault,) = line["faults"]
    assert (fault["service"], fault["kind"], fault["status"], fault["delay_ms"]) == (service, "noise", None, None)
    (noise,) = matrix_chain.logs(service=service, level="ERROR")
    assert noise["event"] == f"Cache miss for {line['order_id']}: cache read timed out (retried, served from DB)"
    assert noise["request_id"] == line["trace_id"] and noise["error_type"] == "TimeoutError"
    assert not matrix_chain.logs(level="WARNING")  # and nothing else went wrong anywhere
