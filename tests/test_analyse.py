"""The reference analyser: its rule on hand-built traces, the messages it reads, the CLI on a real run."""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import json
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from fakesvc.analyse import full_view, judge, summarise
from fakesvc.analyse.__main__ import main
from fakesvc.faults import ChaosConfig, parse_rules
from fakesvc.telemetry.signals import log_signal, metric_signal, span_signal
from fakesvc.traffic import TrafficConfig, run_traffic
from tests.conftest import FAST, recording_telemetry, start_chain
from tests.processes import spawn
from tests.telemetry_fixtures import free_port, remote_telemetry, sink_on, stored_signals

GATEWAY, PAYMENT, INVENTORY = "api-gateway", "payment-service", "inventory-service"
_ids = itertools.count()


def item(signal: dict[str, Any]) -> dict[str, Any]:
    """A signal as ``GET /query/traces/{trace_id}`` answers it (ProdSentinel's ``SignalRead``)."""
    keys = ("trace_id", "service_name", "timestamp", "signal_type")
    return {"id": signal["signal_id"], **{key: signal[key] for key in keys}, "payload": signal}


def log(service: str, level: str, message: str, **attributes: Any) -> dict[str, Any]:
    return item(log_signal(service, "t", level, message, attributes))


def span(service: str, duration_ms: float, parent: str | None = None, status: str = "UNSET") -> dict[str, Any]:
    return item(span_signal(service, "t", f"s{next(_ids)}", parent, duration_ms, status, {}))


def chain_spans(gateway_ms: float, payment_ms: float, inventory_ms: float, failed: str | None = None) -> list[dict]:
    """One server span per service, each the parent of the next (as the instrumentation links them)."""
    spans, parent = [], None
    for service, duration in ((GATEWAY, gateway_ms), (PAYMENT, payment_ms), (INVENTORY, inventory_ms)):
        status = "ERROR" if failed in (service, "all") else "UNSET"
        spans.append(span(service, duration, parent, status))
        parent = spans[-1]["payload"]["span_id"]
    return spans


FAIL_PAY = [
    *chain_spans(12, 10, 0, failed="all")[:2],
    log(PAYMENT, "ERROR", "Payment failed: ValueError: Payment declined by issuer", error_type="ValueError"),
    log(GATEWAY, "ERROR", "Checkout failed: payment-service answered 500 (ValueError: Payment declined by issuer)"),
]
TIMEOUT = [
    *chain_spans(2012, 2010, 2008, failed="all"),
    log(INVENTORY, "WARNING", "Inventory check failed: slow query, the caller gave up after 2008 ms", slow=True),
    log(PAYMENT, "ERROR", "Payment timeout: inventory-service did not answer within 2 s"),
    log(GATEWAY, "ERROR", "Checkout failed: payment-service answered 504 (Payment timeout: ...)"),
]
DROP = [
    *chain_spans(8, 6, 1, failed="all"),
    log(INVENTORY, "ERROR", "Inventory check failed: connection reset before the answer was sent"),
    log(PAYMENT, "ERROR", "Payment failed: connection to inventory-service failed (ServerDisconnectedError: x)"),
]
# Only the gateway's log arrived: its message still tells the whole chain.
NESTED = [
    log(
        GATEWAY,
        "ERROR",
        "Checkout failed: payment-service answered 502 (Payment failed: inventory-service answered 503 "
        "(ConnectionError: Inventory DB connection pool exhausted))",
    )
]
SLOW_PAYMENT = [
    *chain_spans(1310, 1300, 30),
    log(PAYMENT, "WARNING", "Payment authorized: slow response, took 1300 ms", slow=True),
    log(GATEWAY, "WARNING", "Checkout completed: slow response, took 1310 ms", slow=True),
]
HEALTHY = [
    *chain_spans(300, 290, 40),
    log(GATEWAY, "INFO", "Checkout initiated"),
    log(INVENTORY, "INFO", "Inventory check completed"),
    item(metric_signal(PAYMENT, "t", "request_latency", 290.0, "ms", {})),
]


@pytest.mark.parametrize("evidence", [full_view, summarise])
@pytest.mark.parametrize(
    ("signals", "ranked_first", "kind"),
    [
        (FAIL_PAY, PAYMENT, "error"),
        (TIMEOUT, INVENTORY, "hang"),
        (DROP, INVENTORY, "drop"),
        (NESTED, INVENTORY, "error"),
        (SLOW_PAYMENT, PAYMENT, "latency"),
        # no WARNING: the spans alone show where the time went (payment's own 1,200 ms)
        (chain_spans(1310, 1300, 100), PAYMENT, "latency"),
    ],
)
def test_the_rule_blames_the_deepest_service_with_its_own_evidence(
    evidence: Any, signals: list[dict[str, Any]], ranked_first: str, kind: str
) -> None:
    judgement = judge(evidence(signals))
    assert judgement is not None and (judgement.services[0], judgement.kind) == (ranked_first, kind)
    assert len(judgement.services) == len(set(judgement.services))


@pytest.mark.parametrize("evidence", [full_view, summarise])
def test_healthy_traces_and_harmless_errors_are_no_incident(evidence: Any) -> None:
    assert judge(evidence(HEALTHY)) is None
    # A busy host: every hop a little slower, the gateway past its slow WARNING, no service 1 s of its own.
    busy = [*chain_spans(1385, 1100, 225), log(GATEWAY, "WARNING", "Checkout completed: slow response, took 1385 ms")]
    assert judge(evidence(busy)) is None
    assert judge(evidence([])) is None
    # An ERROR in a service whose spans all ended well did not fail the request.
    noise = log(INVENTORY, "ERROR", "Cache miss: KeyError: 'sku-1' (retried)")
    assert judge(evidence([*HEALTHY, noise])) is None
    judgement = judge(evidence([*FAIL_PAY, noise]))
    assert judgement is not None and judgement.services[0] == PAYMENT


def test_full_evidence_reads_attributes_the_summary_drops() -> None:
    """A message without its evidence (fakesvc before issue 12): only the attributes name the dependency."""
    bare = [
        *chain_spans(9, 7, 2, failed="all"),
        log(PAYMENT, "ERROR", "Payment failed", upstream_service=INVENTORY, upstream_reason="status"),
    ]
    full = judge(full_view(bare))
    assert full is not None and full.services[0] == INVENTORY
    summary = judge(summarise(bare))
    assert summary is not None and summary.services[0] == PAYMENT


def test_summarise_keeps_what_prodsentinels_summariser_keeps() -> None:
    signals = [*chain_spans(3, 2, 1)[:1], *FAIL_PAY[2:3], HEALTHY[-1], log(GATEWAY, "DEBUG", "noise")]
    first_span, error, metric = summarise(signals)
    assert set(first_span) == {"timestamp", "service", "type", "span_id", "duration_ms", "status"}
    assert set(error) == {"timestamp", "service", "type", "level", "message"}
    assert metric == {"timestamp": signals[2]["timestamp"], "service": PAYMENT, "type": "metric"}
    many = [log(GATEWAY, "INFO", f"i{i}") for i in range(30)] + [log(PAYMENT, "ERROR", f"e{i}") for i in range(45)]
    kept = summarise(many)
    assert [v["message"] for v in kept] == [f"e{i}" for i in range(40)] + [f"i{i}" for i in range(10)]


async def test_messages_name_what_happened_and_where_within_bounds() -> None:
    chain = await start_chain(recording_telemetry())
    try:
        rules = {
            "a": (INVENTORY, [{"kind": "error", "status": 503, "exception": "ConnectionError", "message": "DB down"}]),
            "b": (INVENTORY, [{"kind": "drop"}]),
            "c": (INVENTORY, [{"kind": "error", "status": 503, "message": "x" * 1024}]),
        }
        answers = {}
        for order_id in ("order-fail-pay", "order-timeout", *rules):
            for service in (PAYMENT, INVENTORY):
                chain.chaos(service).set_rules(
                    parse_rules(rules[order_id][1]) if rules.get(order_id, ("",))[0] == service else []
                )
            answers[order_id] = await _checkout_trace(chain.gateway, order_id)
        await chain.wait_for_log(event="Inventory check failed", request_id=answers["order-timeout"], level="WARNING")
        events = {
            order_id: [(line["service"], line["level"], line["event"]) for line in chain.logs(request_id=trace_id)]
            for order_id, trace_id in answers.items()
        }
    finally:
        await chain.running.stop()
    assert (PAYMENT, "ERROR", "Payment failed: ValueError: Payment declined by issuer") in events["order-fail-pay"]
    gateway_fail_pay = "Checkout failed: payment-service answered 500 (ValueError: Payment declined by issuer)"
    assert (GATEWAY, "ERROR", gateway_fail_pay) in events["order-fail-pay"]
    timeout = f"Payment timeout: inventory-service did not answer within {FAST.inventory_timeout_s:g} s"
    assert (PAYMENT, "ERROR", timeout) in events["order-timeout"]
    assert (GATEWAY, "ERROR", f"Checkout failed: payment-service answered 504 ({timeout})") in events["order-timeout"]
    assert any(
        e[2].startswith("Inventory check failed: slow query, the caller gave up after ")
        for e in events["order-timeout"]
    )
    assert (INVENTORY, "ERROR", "Inventory check failed: ConnectionError: DB down") in events["a"]
    assert (PAYMENT, "ERROR", "Payment failed: inventory-service answered 503 (ConnectionError: DB down)") in events[
        "a"
    ]
    assert (INVENTORY, "ERROR", "Inventory check failed: connection reset before the answer was sent") in events["b"]
    assert any(e[2].startswith("Payment failed: connection to inventory-service failed (") for e in events["b"])
    longest = max(len(event) for *_, event in events["c"])
    assert 300 < longest <= 512  # the 1,024-character message is quoted, cut, in every hop's line


async def _checkout_trace(gateway: str, order_id: str) -> str:
    async with aiohttp.ClientSession() as session:
        async with session.post(f"{gateway}/checkout/{order_id}") as response:
            return response.headers["x-request-id"]


# Timeouts far above what a busy test host adds, so only the injected faults fail checkouts.
PATIENT = dataclasses.replace(FAST, inventory_timeout_s=1.0, hang_s=1.5)
# A small run with every kind of evidence: the two scenarios, inventory errors, drops and a slow payment.
RUN_RULES = {
    INVENTORY: [
        {"kind": "error", "probability": 0.2, "status": 503, "exception": "ConnectionError", "message": "pool"},
        {"kind": "drop", "probability": 0.1},
    ],
    PAYMENT: [{"kind": "latency", "probability": 0.1, "latency_ms": 1200}],
}


async def test_the_cli_on_a_real_run_reaches_the_targets_and_the_sink_answers_signal_reads(tmp_path: Path) -> None:
    sink = await sink_on(0, tmp_path / "s.db")
    try:
        telemetry = remote_telemetry(sink.url, tmp_path / "spill")
        await telemetry.start()
        chaos = ChaosConfig(rules={service: tuple(parse_rules(rules)) for service, rules in RUN_RULES.items()})
        chain = await start_chain(telemetry, PATIENT, chaos)
        truth = tmp_path / "truth.jsonl"
        try:
            config = TrafficConfig(
                target=chain.gateway,
                rate=60,
                count=120,
                mix={"success": 70, "fail-pay": 15, "timeout": 15},
                seed=5,
                truth_path=str(truth),
                progress=False,
            )
            await run_traffic(config)
        finally:
            await chain.running.stop()
            await telemetry.close()
        # What stdout said is what the backend stored, word for word.
        said = {
            (line["request_id"], line["event"])
            for line in chain.logs()
            if line.get("level") in ("ERROR", "WARNING") and not line.get("harness")
        }
        stored = {
            (s["trace_id"], s["payload"]["message"])
            for s in await stored_signals(sink.url, signal_type="log")
            if s["payload"]["level"] in ("ERROR", "WARNING")
        }
        assert said == stored and len(said) > 50
        trace_id = json.loads(truth.read_text().splitlines()[0])["trace_id"]
        signals = await _get_json(f"{sink.url}/query/traces/{trace_id}")
        assert signals and all(
            set(s) == {"id", "signal_type", "trace_id", "service_name", "timestamp", "payload"} for s in signals
        )
        assert [s["timestamp"] for s in signals] == sorted(s["timestamp"] for s in signals)  # one clock, oldest first
        assert all(s["timestamp"].endswith("Z") for s in signals)
        scores = {}
        for evidence in ("full", "summary"):
            out = tmp_path / f"{evidence}.jsonl"
            process = await spawn(
                [
                    "-m",
                    "fakesvc.analyse",
                    "--truth",
                    str(truth),
                    "--from",
                    sink.url,
                    "--evidence",
                    evidence,
                    "--out",
                    str(out),
                ],
                {},
            )
            status, stderr = await process.exited(timeout=120)
            assert status == 0, stderr
            scores[evidence] = _ac_at_1(truth, out)
    finally:
        await sink.stop()
    faulty, healthy_flagged = scores["full"][1:]
    # A healthy checkout can be slow on a busy host (a stalled loop is time a hop spent itself); it never errs.
    assert faulty >= 40 and all(p["kind"] == "latency" for _, p in healthy_flagged), healthy_flagged[:2]
    assert scores["full"][0] >= 0.95 and scores["summary"][0] >= 0.9, scores


def _ac_at_1(truth: Path, predictions: Path) -> tuple[float, int, list[Any]]:
    """AC@1 over faulty checkouts, how many were faulty, and the healthy ones predicted incidents."""
    lines = [json.loads(line) for line in truth.read_text().splitlines()]
    predicted = {p["trace_id"]: p for p in map(json.loads, predictions.read_text().splitlines())}
    faulty = [line for line in lines if line["root_cause_service"]]
    hits = sum(
        predicted.get(line["trace_id"], {"services": []})["services"][:1] == [line["root_cause_service"]]
        for line in faulty
    )
    healthy = [line for line in lines if not line["root_cause_service"] and line["status"] == line["expected_status"]]
    flagged = [(line, predicted[line["trace_id"]]) for line in healthy if line["trace_id"] in predicted]
    return hits / len(faulty), len(faulty), flagged


async def _get_json(url: str) -> Any:
    async with aiohttp.ClientSession() as session:
        async with session.get(url) as response:
            return await response.json()


def _truth_file(tmp_path: Path, *lines: str) -> Path:
    path = tmp_path / "truth.jsonl"
    path.write_text("".join(f"{line}\n" for line in lines))
    return path


GOOD_LINE = json.dumps({"run_id": "r", "trace_id": "t1", "root_cause_service": None})


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["--from", "http://127.0.0.1:1"], "No such file"),
        (["--from", "ftp://x"], "not an http(s) URL"),
        (["--from", "http://127.0.0.1:1", "--concurrency", "NaN"], "--concurrency"),
        (["--from", "http://127.0.0.1:1", "--concurrency", "1e9"], "--concurrency"),
        (["--from", "http://127.0.0.1:1", "--slow-ms", "inf"], "--slow-ms"),
        (["--from", "http://127.0.0.1:1", "--slow-ms", "١٠٠"], "--slow-ms"),
    ],
)
def test_bad_flags_and_a_missing_truth_are_one_line_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str], says: str
) -> None:
    truth = tmp_path / "missing.jsonl" if says == "No such file" else _truth_file(tmp_path, GOOD_LINE)
    assert main(["--truth", str(truth), *argv]) == 2
    err = capsys.readouterr().err
    assert says in err and err.count("\n") == 1 and "Traceback" not in err


@pytest.mark.parametrize(
    "lines",
    [
        ('{"trace_id": 7}',),
        ('{"run_id": "r"}',),
        (json.dumps({"trace_id": "x" * 2000}),),
        ("[" * 100_000,),
    ],
)
def test_a_bad_truth_file_is_one_line_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], lines: tuple[str, ...]
) -> None:
    truth = _truth_file(tmp_path, *lines)
    if lines[0].startswith("["):
        truth.write_bytes(b"\xff\xfe" + truth.read_bytes())  # not UTF-8 either
    assert main(["--truth", str(truth), "--from", "http://127.0.0.1:1"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("fakesvc: ") and err.count("\n") == 1


def test_an_unreachable_backend_is_one_line_and_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    truth = _truth_file(tmp_path, GOOD_LINE, json.dumps({"trace_id": "t2", "interrupted": True}))
    url = f"http://127.0.0.1:{free_port()}"
    assert main(["--truth", str(truth), "--from", url]) == 2
    err = capsys.readouterr().err
    assert f"{url} cannot be reached after 4 attempts" in err and err.count("\n") == 1


@pytest.mark.parametrize(
    ("status", "body", "says"),
    [
        (200, b"<html>not json</html>", "not JSON"),
        (200, b'{"items": []}', "not a list of signals"),
        (200, b"[1, 2]", "not a list of signals"),
        (404, b'{"detail": "Not Found"}', "answered 404"),
        (503, b"busy", "answered 503"),
    ],
)
async def test_a_backend_answering_garbage_is_one_line_and_exit_2(
    aiohttp_server: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str], status: int, body: bytes, says: str
) -> None:
    asked: list[str] = []

    async def answer(request: web.Request) -> web.Response:
        asked.append(request.match_info["trace_id"])
        return web.Response(status=status, body=body)

    app = web.Application()
    app.router.add_get("/query/traces/{trace_id}", answer)
    server = await aiohttp_server(app)
    truth = _truth_file(tmp_path, GOOD_LINE)
    assert await asyncio.to_thread(main, ["--truth", str(truth), "--from", str(server.make_url("/"))]) == 2
    err = capsys.readouterr().err
    assert says in err and err.count("\n") == 1
    assert len(asked) == (4 if status >= 500 else 1)  # a 5xx is retried, an answer that is wrong is not


async def test_a_healthy_checkout_writes_no_line_and_a_faulty_one_its_prediction(
    aiohttp_server: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    traces = {"ok": HEALTHY, "bad": FAIL_PAY}

    async def answer(request: web.Request) -> web.Response:
        return web.json_response(traces.get(request.match_info["trace_id"], []))

    app = web.Application()
    app.router.add_get("/query/traces/{trace_id}", answer)
    server = await aiohttp_server(app)
    truth = _truth_file(tmp_path, *(json.dumps({"run_id": "r1", "trace_id": t}) for t in ("ok", "bad", "none")))
    url = str(server.make_url("")).rstrip("/")
    assert await asyncio.to_thread(main, ["--truth", str(truth), "--from", url, "--evidence", "summary"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert [json.loads(line) for line in out] == [
        {"trace_id": "bad", "run_id": "r1", "services": [PAYMENT, GATEWAY], "kind": "error"}
    ]
