"""The embedded sink: ProdSentinel's validation answers, SQLite storage, queries, stats and faults."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import sqlite3
import uuid
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from fakesvc.sink import Outage, SinkConfig, SinkFaults, create_app
from fakesvc.sink.query import SignalQuery, parse_signal_query
from fakesvc.sink.store import INDEXES, TABLE, page_sql
from fakesvc.telemetry.logs import configure_logging
from fakesvc.telemetry.signals import log_signal, metric_signal, span_signal
from tests.telemetry_fixtures import eventually, free_port, sink_on, sink_stats


def good_log(**changes: Any) -> dict[str, Any]:
    return {**log_signal("payment-service", "trace-1", "ERROR", "Payment failed", {"error_code": "X"}), **changes}


@pytest.fixture
async def sink(aiohttp_client: Any, tmp_path: Path) -> Any:
    return await aiohttp_client(create_app(SinkConfig(db_path=str(tmp_path / "sink.db"))))


async def test_valid_signals_of_each_kind_are_accepted_and_stored(sink: Any, tmp_path: Path) -> None:
    signals = {
        "/ingest/logs": good_log(),
        "/ingest/traces": span_signal("api-gateway", "trace-1", "ab" * 8, None, 12.5, "OK", {"span.name": "x"}),
        "/ingest/metrics": metric_signal("inventory-service", "trace-1", "request_latency", 2500.0, "ms", {}),
    }
    for path, signal in signals.items():
        response = await sink.post(path, json=signal)
        assert response.status == 202 and await response.json() == {"status": "accepted"}
    with sqlite3.connect(tmp_path / "sink.db") as db:
        rows = db.execute(
            "SELECT id, signal_type, trace_id, service_name FROM raw_signals ORDER BY signal_type"
        ).fetchall()
    assert [(r[1], r[3]) for r in rows] == [
        ("log", "payment-service"),
        ("metric", "inventory-service"),
        ("trace", "api-gateway"),
    ]
    assert {r[0] for r in rows} == {s["signal_id"] for s in signals.values()}


@pytest.mark.parametrize(
    "timestamp", ["2026-11-24T10:00:00Z", "2026-11-24T10:00:00+00:00", "2026-11-24T10:00:00.123456"]
)
async def test_timestamps_with_z_offset_or_no_zone_are_accepted(sink: Any, timestamp: str) -> None:
    assert (await sink.post("/ingest/logs", json=good_log(timestamp=timestamp))).status == 202


async def test_signal_type_may_be_left_out(sink: Any) -> None:
    signal = good_log()
    del signal["signal_type"]
    assert (await sink.post("/ingest/logs", json=signal)).status == 202


@pytest.mark.parametrize(
    ("body", "loc", "kind"),
    [
        (good_log(extra="nope"), ["body", "extra"], "extra_forbidden"),
        (good_log(trace_id=""), ["body", "trace_id"], "string_too_short"),
        (good_log(signal_id="not-a-uuid"), ["body", "signal_id"], "uuid_parsing"),
        (good_log(level="DEBUG"), ["body", "level"], "enum"),
        (good_log(timestamp="yesterday"), ["body", "timestamp"], "datetime_from_date_parsing"),
        (good_log(signal_type="metric"), ["body", "signal_type"], "literal_error"),
        (good_log(attributes=[1]), ["body", "attributes"], "dict_type"),
        ({k: v for k, v in good_log().items() if k != "message"}, ["body", "message"], "missing"),
        ([good_log()], ["body"], "model_attributes_type"),
    ],
)
async def test_invalid_signals_get_pydantic_style_422s(sink: Any, body: Any, loc: list[str], kind: str) -> None:
    response = await sink.post("/ingest/logs", json=body)
    assert response.status == 422
    detail = (await response.json())["detail"]
    assert any(problem["loc"] == loc and problem["type"] == kind for problem in detail), detail


async def test_span_and_metric_fields_are_checked(sink: Any) -> None:
    span = span_signal("a", "t", "1", None, 1.0, "OK", {})
    assert (await sink.post("/ingest/traces", json={**span, "duration_ms": "slow"})).status == 422
    metric = metric_signal("a", "t", "m", 1.0, "ms", {})
    assert (await sink.post("/ingest/metrics", json={**metric, "value": True})).status == 422
    assert (await sink.post("/ingest/metrics", json={**metric, "level": "INFO"})).status == 422


async def test_bad_json_is_a_422_and_unknown_routes_are_json_errors(sink: Any) -> None:
    response = await sink.post("/ingest/logs", data=b"{not json")
    assert response.status == 422 and (await response.json())["detail"][0]["type"] == "json_invalid"
    response = await sink.get("/nowhere")
    assert response.status == 404 and (await response.json()) == {"detail": "Not Found"}
    response = await sink.get("/ingest/logs")
    assert response.status == 405 and "detail" in await response.json()
    response = await sink.post("/ingest/logs", data=b"x" * (2 * 1024 * 1024))
    assert response.status == 413 and "detail" in await response.json()


@pytest.mark.parametrize(
    "body",
    [
        "[" * 100_000 + "]" * 100_000,
        json.dumps(good_log())[:-1] + ', "attributes": ' + '{"a": ' * 5_000 + "1" + "}" * 5_000 + "}",
        json.dumps({**good_log(), "attributes": {"deep": json.loads("[" * 900 + "]" * 900)}}),
    ],
    ids=["a deep array", "deep attributes", "900 deep, within the parser"],
)
async def test_a_deeply_nested_body_is_a_422_or_stored_and_nothing_else_changes(sink: Any, body: str) -> None:
    response = await sink.post("/ingest/logs", data=body.encode())
    assert response.status in (202, 422), await response.text()
    if response.status == 422:
        assert (await response.json())["detail"][0]["type"] in (
            "json_invalid",
            "model_attributes_type",
            "extra_forbidden",
        )
    stats = await (await sink.get("/stats")).json()
    assert stats["stored"] == ({"log": 1} if response.status == 202 else {})
    assert (await sink.post("/ingest/logs", json=good_log())).status == 202  # the sink goes on


async def test_a_repeated_signal_id_is_stored_once_and_counted(sink: Any) -> None:
    signal = good_log()
    for _ in range(3):
        assert (await sink.post("/ingest/logs", json=signal)).status == 202
    stats = await (await sink.get("/stats")).json()
    assert stats["stored"] == {"log": 1} and stats["duplicates"] == 2 and stats["accepted"]["log"] == 1


async def test_duplicate_500_mode_answers_like_prodsentinel_and_drops_the_connection(aiohttp_client: Any) -> None:
    client = await aiohttp_client(create_app(SinkConfig(db_path=":memory:", duplicate_status=500)))
    signal = good_log()
    assert (await client.post("/ingest/logs", json=signal)).status == 202
    response = await client.post("/ingest/logs", json=signal)
    assert response.status == 500 and await response.json() == {"detail": "Internal server error"}
    assert response.headers.get("Connection", "").lower() == "close"


async def post_logs(sink: Any, *specs: tuple[str, str, str]) -> list[str]:
    """Store one log per (trace_id, service_name, timestamp); return their ids."""
    ids = []
    for trace_id, service, timestamp in specs:
        signal = good_log(trace_id=trace_id, service_name=service, timestamp=timestamp)
        assert (await sink.post("/ingest/logs", json=signal)).status == 202
        ids.append(signal["signal_id"])
    return ids


async def query(sink: Any, **params: str) -> dict[str, Any]:
    response = await sink.get("/query/signals", params=params)
    assert response.status == 200
    return await response.json()


async def test_query_signals_answers_newest_first_in_prodsentinels_shape(sink: Any) -> None:
    # Three ways of writing a time, out of order: one clock orders them (10:00:01Z is 11:00:01+01:00).
    ids = await post_logs(
        sink,
        ("t0", "a", "2026-11-24T10:00:02"),
        ("t1", "b", "2026-11-24T11:00:01+01:00"),
        ("t0", "b", "2026-11-24T10:00:03.5Z"),
    )
    page = await query(sink)
    assert [item["id"] for item in page["items"]] == [ids[2], ids[0], ids[1]]
    assert (page["total"], page["limit"], page["offset"]) == (3, 100, 0)
    item = page["items"][0]
    assert set(item) == {"id", "signal_type", "trace_id", "service_name", "timestamp", "payload"}
    assert item["timestamp"] == "2026-11-24T10:00:03.500000Z" and item["payload"]["message"] == "Payment failed"
    same_time = sorted(await post_logs(sink, *[("t2", "c", "2026-11-24T09:00:00Z")] * 3), reverse=True)
    assert [i["id"] for i in (await query(sink, trace_id="t2"))["items"]] == same_time  # then by id


async def test_query_signals_filters_pages_and_counts_with_the_same_filter(sink: Any) -> None:
    ids = await post_logs(sink, *[(f"t{i % 2}", f"s{i % 3}", f"2026-11-24T10:00:0{i}Z") for i in range(6)])
    await sink.post("/ingest/metrics", json=metric_signal("s0", "t0", "request_latency", 3.0, "ms", {}))
    assert (await query(sink, trace_id="t0", signal_type="log"))["total"] == 3
    assert [i["id"] for i in (await query(sink, service_name="s1"))["items"]] == [ids[4], ids[1]]
    assert [i["signal_type"] for i in (await query(sink, signal_type="metric"))["items"]] == ["metric"]
    window = await query(sink, start_time="2026-11-24T10:00:01Z", end_time="2026-11-24T12:00:04+02:00")
    assert [i["id"] for i in window["items"]] == ids[4:0:-1]  # both ends included
    page = await query(sink, signal_type="log", limit="2", offset="3")
    assert [i["id"] for i in page["items"]] == [ids[2], ids[1]] and page["total"] == 6
    assert (page["limit"], page["offset"]) == (2, 3)
    assert (await query(sink, trace_id=""))["total"] == 0  # an empty filter matches the empty value, as FastAPI's


async def test_query_traces_lists_a_traces_signals_oldest_first(sink: Any) -> None:
    ids = await post_logs(sink, ("t0", "a", "2026-11-24T10:00:02Z"), ("t1", "a", "2026-11-24T10:00:00Z"))
    ids += await post_logs(sink, ("t0", "b", "2026-11-24T10:00:01Z"))
    trace = await (await sink.get("/query/traces/t0")).json()
    assert [item["id"] for item in trace] == [ids[2], ids[0]]
    assert trace[0] == (await query(sink, trace_id="t0"))["items"][1]
    assert await (await sink.get("/query/traces/none")).json() == []


BAD_QUERIES = (
    [
        (name, value, kind)
        for name, kind in (("limit", "int_parsing"), ("offset", "int_parsing"))
        for value in ("NaN", "inf", "1.5", "", "abc", "١٢", "1_0", "9" * 5000)
    ]
    + [
        ("limit", "0", "greater_than_equal"),
        ("limit", "-1", "greater_than_equal"),
        ("limit", "1001", "less_than_equal"),
        ("limit", "9" * 25, "less_than_equal"),
        ("offset", "-1", "greater_than_equal"),
        ("offset", str(2**63), "less_than_equal"),
    ]
    + [
        (name, value, "datetime_parsing")
        for name in ("start_time", "end_time")
        for value in ("NaN", "", "yesterday", "2026-13-01T00:00:00Z", "２０２６-01-01", "1e309")
    ]
)


@pytest.mark.parametrize(("name", "value", "kind"), BAD_QUERIES)
async def test_a_bad_query_parameter_is_a_422_naming_it(sink: Any, name: str, value: str, kind: str) -> None:
    await post_logs(sink, ("t0", "a", "2026-11-24T10:00:00Z"))
    before = await sink_view(sink)
    response = await sink.get("/query/signals", params={name: value})
    assert response.status == 422
    [problem] = (await response.json())["detail"]
    assert problem["loc"] == ["query", name] and problem["type"] == kind and problem["input"] == value
    assert await sink_view(sink) == before


@pytest.mark.parametrize("name", ["trace_id", "service_name", "signal_type"])
@pytest.mark.parametrize("value", ["NaN", "", "-1", "x" * 4000, "трасса-☃", "a\x00b", "' OR 1=1 --"])
async def test_an_odd_filter_value_matches_nothing_and_changes_nothing(sink: Any, name: str, value: str) -> None:
    await post_logs(sink, ("t0", "a", "2026-11-24T10:00:00Z"))
    before = await sink_view(sink)
    assert await query(sink, **{name: value}) == {"items": [], "total": 0, "limit": 100, "offset": 0}
    assert await sink_view(sink) == before


async def sink_view(sink: Any) -> dict[str, Any]:
    stats = await (await sink.get("/stats")).json()
    return {key: value for key, value in stats.items() if key not in ("uptime_s", "accepted_per_s")}


@pytest.mark.parametrize(
    ("params", "searched"),
    [
        ({}, "INDEX raw_signals_time"),
        ({"signal_type": "log"}, "INDEX raw_signals_time"),  # a third of the rows: walked in order
        ({"trace_id": "t"}, "(trace_id=?)"),
        ({"service_name": "s"}, "(service_name=?)"),
        ({"service_name": "s", "signal_type": "log"}, "(service_name=?)"),
        ({"start_time": "2026-11-24T10:00:00Z"}, "(ts_us>?)"),
        ({"trace_id": "t", "end_time": "2026-11-24T10:00:00Z"}, "(trace_id=? AND ts_us<?)"),
    ],
)
def test_a_page_is_read_through_an_index_in_order_never_sorted(params: dict[str, str], searched: str) -> None:
    query = parse_signal_query(params)
    assert isinstance(query, SignalQuery)
    page, _, values = page_sql(query)
    with sqlite3.connect(":memory:") as db:
        db.executescript(TABLE + INDEXES)
        plan = " ".join(row[3] for row in db.execute(f"EXPLAIN QUERY PLAN {page}", (*values, 100, 0)))
    db.close()
    assert searched in plan and "TEMP B-TREE" not in plan, plan


async def test_a_database_from_before_the_time_column_is_ordered_after_an_upgrade(tmp_path: Path) -> None:
    db = tmp_path / "old.db"
    with sqlite3.connect(db) as old:
        old.execute(
            "CREATE TABLE raw_signals (id TEXT PRIMARY KEY, signal_type TEXT NOT NULL, trace_id TEXT NOT NULL,"
            " service_name TEXT NOT NULL, timestamp TEXT NOT NULL, payload TEXT NOT NULL, received_at TEXT)"
        )
        for signal_id, timestamp in (("a", "2026-11-24T10:00:00+01:00"), ("b", "2026-11-24T09:30:00Z")):
            old.execute("INSERT INTO raw_signals VALUES (?, 'log', 't', 's', ?, '{}', '')", (signal_id, timestamp))
    old.close()
    sink = await sink_on(free_port(), db)
    try:
        async with aiohttp.ClientSession() as session:
            page = await (await session.get(f"{sink.url}/query/signals")).json()
    finally:
        await sink.stop()
    assert [item["id"] for item in page["items"]] == ["b", "a"]


async def test_error_rate_with_a_seed_is_deterministic_and_carries_retry_after(aiohttp_client: Any) -> None:
    async def statuses() -> list[int]:
        faults = SinkFaults(error_rate=0.5, error_status=503, retry_after_s=1.5, seed=11)
        client = await aiohttp_client(create_app(SinkConfig(db_path=":memory:", faults=faults)))
        out = []
        for _ in range(40):
            response = await client.post("/ingest/logs", json=good_log())
            if response.status == 503:
                assert response.headers["Retry-After"] == "1.5"
            out.append(response.status)
        return out

    first, second = await statuses(), await statuses()
    assert first == second and 5 < first.count(503) < 35 and set(first) == {202, 503}


async def test_faults_are_switched_at_run_time_and_bad_input_keeps_the_old(sink: Any) -> None:
    response = await sink.put("/sink/faults", json={"error_rate": 1.0, "error_status": 429})
    assert response.status == 200
    assert (await sink.post("/ingest/logs", json=good_log())).status == 429
    for bad in ({"error_rate": 2}, {"error_status": 200}, {"outages": [{"start_s": 0}]}, {"colour": 1}, [1]):
        response = await sink.put("/sink/faults", json=bad)
        assert response.status == 400 and (await response.json())["detail"]
    assert (await (await sink.get("/sink/faults")).json())["error_status"] == 429
    assert (await sink.delete("/sink/faults")).status == 200
    assert (await sink.post("/ingest/logs", json=good_log())).status == 202


async def test_added_latency_delays_the_answer(aiohttp_client: Any) -> None:
    client = await aiohttp_client(create_app(SinkConfig(db_path=":memory:", faults=SinkFaults(latency_ms=80))))
    loop = asyncio.get_running_loop()
    started = loop.time()
    assert (await client.post("/ingest/logs", json=good_log())).status == 202
    assert loop.time() - started >= 0.08


async def test_an_outage_window_drops_connections_then_ends(aiohttp_client: Any) -> None:
    client = await aiohttp_client(create_app(SinkConfig(db_path=":memory:")))
    assert (await client.put("/sink/faults", json={"outages": [{"start_s": 0, "duration_s": 0.3}]})).status == 200
    with pytest.raises(aiohttp.ClientConnectionError):
        await client.post("/ingest/logs", json=good_log())
    with pytest.raises(aiohttp.ClientConnectionError):
        await client.get("/ingest/health")
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 5
    while True:  # poll until the window has passed (bounded)
        try:
            response = await client.get("/ingest/health")
            break
        except aiohttp.ClientConnectionError:
            assert loop.time() < deadline
            await asyncio.sleep(0.05)
    assert response.status == 200
    stats = await (await client.get("/stats")).json()
    assert stats["dropped_outage"] >= 2
    assert Outage(0, 0.3) == Outage(start_s=0, duration_s=0.3)


async def test_stop_and_restart_on_the_same_port_keeps_the_data(tmp_path: Path) -> None:
    port, db = free_port(), tmp_path / "keep.db"
    sink = await sink_on(port, db)
    signal = good_log(signal_id=str(uuid.uuid4()))
    async with aiohttp.ClientSession() as session:
        assert (await session.post(f"{sink.url}/ingest/logs", json=signal)).status == 202
        await sink.stop()
        sink = await sink_on(port, db)
        page = await (await session.get(f"{sink.url}/query/signals")).json()
        assert [item["id"] for item in page["items"]] == [signal["signal_id"]]
        assert (await session.post(f"{sink.url}/ingest/logs", json=signal)).status == 202
        assert (await (await session.get(f"{sink.url}/stats")).json())["duplicates"] == 1
    await sink.stop()


@pytest.mark.parametrize("latency_ms", [0, 50])
async def test_a_client_that_hangs_up_mid_request_leaves_no_error_in_the_logs(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, latency_ms: float
) -> None:
    """A sender's watchdog cuts POSTs: the sink counts them, and logs no ERROR and no traceback."""
    stream = io.StringIO()
    configure_logging(stream)
    caplog.set_level(logging.DEBUG)
    sink = await sink_on(0, tmp_path / "cut.db", SinkFaults(latency_ms=latency_ms))
    body = json.dumps(good_log()).encode()
    host, port = sink.url.removeprefix("http://").split(":")
    _reader, writer = await asyncio.open_connection(host, int(port))
    # half a body (the handler waits for the rest), or all of it (the handler is in the added latency)
    sent = body[: len(body) // 2] if latency_ms == 0 else body
    writer.write(f"POST /ingest/logs HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}\r\n\r\n".encode() + sent)
    await writer.drain()
    writer.close()

    def errors() -> list[str]:
        lines = [line for line in stream.getvalue().splitlines() if '"ERROR"' in line or "Traceback" in line]
        return lines + [record.getMessage() for record in caplog.records if record.levelno >= logging.ERROR]

    async def handled() -> bool:
        return bool(errors()) or (await sink_stats(sink.url))["client_disconnects"] == 1

    try:
        await eventually(handled, timeout_s=10, what="the cut request to be handled")
        assert errors() == []
    finally:
        await sink.stop()
