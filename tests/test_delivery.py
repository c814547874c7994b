"""Every signal reaches a real sink over real HTTP: in the normal case, through outages, errors and refusals."""

from __future__ import annotations

import asyncio
import json
from collections import defaultdict
from pathlib import Path

import pytest

from fakesvc.sink import SinkFaults
from fakesvc.telemetry.batcher import Batcher, BatcherConfig
from fakesvc.telemetry.signals import LOGS_PATH, log_signal
from tests.conftest import start_chain
from tests.telemetry_fixtures import (
    checkouts,
    eventually,
    free_port,
    remote_telemetry,
    sink_on,
    sink_stats,
    stored_signals,
)

MIXED = [f"ord-{i:03d}-{'fail-pay' if i % 10 == 3 else 'timeout' if i % 10 == 7 else 'success'}" for i in range(200)]


async def delivered(chain_telemetry: object) -> bool:
    stats = chain_telemetry.stats()
    return stats["backlog"] == 0


async def test_a_200_mixed_checkouts_every_signal_stored_valid_and_grouped_by_trace(tmp_path: Path) -> None:
    sink = await sink_on(0, tmp_path / "s.db")
    telemetry = remote_telemetry(sink.url, tmp_path / "spill")
    await telemetry.start()
    chain = await start_chain(telemetry)
    try:
        results = await checkouts(chain.gateway, MIXED)
        assert [status for status, _ in results] == [500 if "fail-pay" in o or "timeout" in o else 200 for o in MIXED]
        await eventually(lambda: delivered(telemetry), what="backlog 0")
        # inventory's slow-query evidence arrives after the hang: wait for the count to settle
        await chain.wait_for_log(event="Inventory check completed", request_id=results[7][1])
        await eventually(lambda: delivered(telemetry), what="backlog 0 after the hangs")
        stats = telemetry.stats()
        sink_view = await sink_stats(sink.url)
        assert stats["sent"] == stats["queued"] == sink_view["accepted_total"]
        assert sink_view["rejected"] == sink_view["duplicates"] == stats["dead_lettered"] == 0
        signals = await stored_signals(sink.url)
        assert len(signals) == stats["sent"]
        by_trace: dict[str, set[str]] = defaultdict(set)
        kinds: dict[str, set[str]] = defaultdict(set)
        for signal in signals:
            by_trace[signal["trace_id"]].add(signal["service_name"])
            kinds[signal["trace_id"]].add(signal["signal_type"])
        for order_id, (_, trace_id) in zip(MIXED, results):
            expected = {"api-gateway", "payment-service"} | (set() if "fail-pay" in order_id else {"inventory-service"})
            assert by_trace[trace_id] == expected, order_id
            assert kinds[trace_id] == {"log", "trace", "metric"}
        spans = [s for s in signals if s["signal_type"] == "trace" and s["trace_id"] == results[0][1]]
        assert {s["attributes"]["span.name"] for s in spans} >= {"POST /checkout/{order_id}", "inventory.query"}
        roots = [s for s in spans if s["parent_span_id"] is None]
        assert len(roots) == 1 and roots[0]["service_name"] == "api-gateway"
        errors = [
            s
            for s in signals
            if s["signal_type"] == "log"
            and s.get("level") == "ERROR"
            and s["trace_id"] == results[3][1]
            and s["service_name"] == "payment-service"
        ]
        assert errors[0]["attributes"]["exception.type"] == "builtins.ValueError"
    finally:
        await chain.running.stop()
        await telemetry.close()
        await sink.stop()


async def test_b_the_sink_down_mid_load_checkouts_still_served_then_every_signal_delivered_once(tmp_path: Path) -> None:
    port, db = free_port(), tmp_path / "s.db"
    sink = await sink_on(port, db)
    telemetry = remote_telemetry(sink.url, tmp_path / "spill")
    await telemetry.start()
    chain = await start_chain(telemetry)
    try:
        assert {s for s, _ in await checkouts(chain.gateway, [f"before-{i}" for i in range(50)])} == {200}
        await sink.stop()
        loop = asyncio.get_running_loop()
        outage_started, during = loop.time(), 0
        slowest = 0.0
        while loop.time() - outage_started < 3.0:  # several seconds of load against a dead backend
            batch_started = loop.time()
            statuses = await checkouts(chain.gateway, [f"during-{during + i}" for i in range(20)])
            slowest = max(slowest, loop.time() - batch_started)
            assert {s for s, _ in statuses} == {200}
            during += 20
        assert slowest < 1.0  # 20 checkouts at latency scale 0: the dead backend costs them nothing
        assert telemetry.stats()["backend_up"] is False
        sink = await sink_on(port, db)
        await eventually(lambda: delivered(telemetry), what="backlog 0 after the outage")
        stats, sink_view = telemetry.stats(), await sink_stats(sink.url)
        assert stats["retried"] > 0
        assert sink_view["duplicates"] == 0
        assert sum(sink_view["stored"].values()) == stats["queued"] == stats["sent"]
    finally:
        await chain.running.stop()
        await telemetry.close()
        await sink.stop()


async def test_c_a_sink_answering_30_percent_503_still_gets_every_signal(tmp_path: Path) -> None:
    sink = await sink_on(0, tmp_path / "s.db", SinkFaults(error_rate=0.3, error_status=503, seed=3))
    telemetry = remote_telemetry(sink.url, tmp_path / "spill")
    await telemetry.start()
    chain = await start_chain(telemetry)
    try:
        await checkouts(chain.gateway, [f"flaky-{i}" for i in range(60)])
        await eventually(lambda: delivered(telemetry), what="backlog 0")
        stats, sink_view = telemetry.stats(), await sink_stats(sink.url)
        assert sink_view["errors_injected"] > 0 and stats["retried"] >= sink_view["errors_injected"]
        assert stats["dead_lettered"] == 0 and sink_view["duplicates"] == 0
        assert sum(sink_view["stored"].values()) == stats["queued"] == stats["sent"]
    finally:
        await chain.running.stop()
        await telemetry.close()
        await sink.stop()


async def test_d_refused_signals_are_dead_lettered_and_never_retried(tmp_path: Path) -> None:
    sink = await sink_on(0, tmp_path / "s.db")
    batcher = Batcher(BatcherConfig(prodsentinel_url=sink.url, spill_dir=str(tmp_path / "spill"), backoff_base_s=0.01))
    await batcher.start()
    try:
        good = [log_signal("payment-service", f"t{i}", "INFO", "Payment authorized", {}) for i in range(30)]
        bad = [{**log_signal("payment-service", f"b{i}", "INFO", "x", {}), "severity": "high"} for i in range(5)]
        bad.append({**log_signal("payment-service", "b-empty", "INFO", "x", {}), "trace_id": ""})
        for signal in good[:15] + bad + good[15:]:
            batcher.emit(LOGS_PATH, signal)
        assert await batcher.flush(10)
        stats = batcher.stats()
        assert stats["sent"] == 30 and stats["dead_lettered"] == 6 and stats["retried"] == 0
        assert (await sink_stats(sink.url))["rejected"] == 6  # each refused exactly once: never retried
    finally:
        summary = await batcher.close()
        await sink.stop()
    assert summary["dead_lettered"] == 6
    lines = [
        json.loads(line)
        for path in (tmp_path / "spill").glob("dead-letter-*.jsonl")
        for line in path.read_text().splitlines()
    ]
    assert sorted(line["signal"]["trace_id"] for line in lines) == sorted(s["trace_id"] for s in bad)
    assert all(line["answer"]["status"] == 422 and "detail" in line["answer"]["body"] for line in lines)


@pytest.mark.parametrize("duplicate_status", [202, 500])
async def test_retries_of_requests_that_succeeded_are_survived(tmp_path: Path, duplicate_status: int) -> None:
    """A 500 for a duplicate id (ProdSentinel's way) ends dead-lettered, not retried forever."""
    sink = await sink_on(0, tmp_path / "s.db", duplicate_status=duplicate_status)
    batcher = Batcher(
        BatcherConfig(prodsentinel_url=sink.url, spill_dir=str(tmp_path / "spill"), backoff_base_s=0.01, max_attempts=3)
    )
    await batcher.start()
    try:
        signal = log_signal("api-gateway", "dup", "INFO", "Checkout initiated", {})
        batcher.emit(LOGS_PATH, signal)
        batcher.emit(LOGS_PATH, dict(signal))
        following = [log_signal("api-gateway", f"after-{i}", "INFO", "x", {}) for i in range(10)]
        for extra in following:
            batcher.emit(LOGS_PATH, extra)
        assert await batcher.flush(10)
        stats = batcher.stats()
        assert (await sink_stats(sink.url))["stored"] == {"log": 11}
        if duplicate_status == 202:
            assert stats["sent"] == 12 and stats["dead_lettered"] == 0
        else:  # the connection reset that follows ProdSentinel's 500 is retried like any other
            assert stats["sent"] == 11 and stats["dead_lettered"] == 1
    finally:
        await batcher.close()
        await sink.stop()


async def test_e_sigterm_with_the_sink_down_spills_and_the_next_start_replays_once(tmp_path: Path) -> None:
    """The real process: SIGTERM while the backend is gone, then a restart with it back."""
    import re
    import signal as signals

    from tests.processes import start_supervisor

    port, db = free_port(), tmp_path / "s.db"
    env = {"FAKESVC_SINK": "off", "PRODSENTINEL_URL": f"http://127.0.0.1:{port}"}
    first = await start_supervisor(tmp_path, **env)
    try:
        await first.read_until("api-gateway listening on")
        assert {s for s, _ in await checkouts(first.url("gateway"), [f"spill-{i}" for i in range(30)])} == {200}
        first.process.send_signal(signals.SIGTERM)
        rest = (await asyncio.wait_for(first.process.stderr.read(), 30)).decode()
        assert await first.process.wait() == 0
    finally:
        if first.process.returncode is None:
            first.process.kill()
    summary = re.search(r"queued (\d+), sent (\d+), .*spilled (\d+)", rest)
    assert summary, rest
    queued, sent, spilled = map(int, summary.groups())
    assert sent == 0 and spilled == queued > 0
    sink = await sink_on(port, db)
    second = await start_supervisor(tmp_path, **env)
    try:
        await second.read_until("api-gateway listening on")

        async def replayed() -> bool:
            return sum((await sink_stats(sink.url))["stored"].values()) >= queued

        await eventually(replayed, what="the spill replayed")
        second.process.send_signal(signals.SIGTERM)
        await asyncio.wait_for(second.process.stderr.read(), 30)
        assert await second.process.wait() == 0
        sink_view = await sink_stats(sink.url)
        assert sum(sink_view["stored"].values()) == queued and sink_view["duplicates"] == 0
        assert not list((tmp_path / "spill").glob("spill-*.jsonl"))
    finally:
        if second.process.returncode is None:
            second.process.kill()
        await sink.stop()
