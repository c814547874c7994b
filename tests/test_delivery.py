"""Every signal reaches a real sink over real HTTP: in the normal case, through outages, errors and refusals."""

from __future__ import annotations

import asyncio
import re
import signal
from collections import defaultdict
from pathlib import Path

import aiohttp
import pytest

from fakesvc.sink import SinkFaults
from fakesvc.telemetry.batcher import Batcher, BatcherConfig
from fakesvc.telemetry.outbox import read_dead_letters
from fakesvc.telemetry.signals import LOG_KIND, log_signal
from tests.conftest import start_chain
from tests.processes import start_supervisor
from tests.telemetry_fixtures import (
    checkouts,
    eventually,
    free_port,
    ledger_watched,
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
        # inventory's slow-query evidence arrives when payment gives up and its hop is cancelled
        await chain.wait_for_log(event="Inventory check failed", request_id=results[7][1])
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
        spans = [s["payload"] for s in signals if s["signal_type"] == "trace" and s["trace_id"] == results[0][1]]
        assert {s["attributes"]["span.name"] for s in spans} >= {"POST /checkout/{order_id}", "inventory.query"}
        roots = [s for s in spans if s["parent_span_id"] is None]
        assert len(roots) == 1 and roots[0]["service_name"] == "api-gateway"
        errors = [
            s["payload"]
            for s in signals
            if s["signal_type"] == "log"
            and s["payload"]["level"] == "ERROR"
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
        while loop.time() - outage_started < 3.0:  # several seconds of load against a dead backend
            statuses = await checkouts(chain.gateway, [f"during-{during + i}" for i in range(20)])
            assert {s for s, _ in statuses} == {200}
            during += 20
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
        async with ledger_watched(telemetry) as turns:
            await checkouts(chain.gateway, [f"flaky-{i}" for i in range(60)])
            await eventually(lambda: delivered(telemetry), what="backlog 0")
        assert len(turns) > 100
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
    batcher = Batcher(
        BatcherConfig(prodsentinel_url=sink.url, spill_dir=str(tmp_path / "spill"), commit_interval_s=0.005)
    )
    await batcher.start()
    try:
        good = [log_signal("payment-service", f"t{i}", "INFO", "Payment authorized", {}) for i in range(30)]
        bad = [{**log_signal("payment-service", f"b{i}", "INFO", "x", {}), "severity": "high"} for i in range(5)]
        bad.append({**log_signal("payment-service", "b-empty", "INFO", "x", {}), "trace_id": ""})
        for signal in good[:15] + bad + good[15:]:
            batcher.emit(LOG_KIND, signal)
        assert await batcher.flush(10)
        stats = batcher.stats()
        assert stats["sent"] == 30 and stats["dead_lettered"] == 6 and stats["retried"] == 0
        assert (await sink_stats(sink.url))["rejected"] == 6  # each refused exactly once: never retried
    finally:
        summary = await batcher.close()
        await sink.stop()
    assert summary["dead_lettered"] == 6
    letters = read_dead_letters(tmp_path / "spill")
    assert sorted(letter["signal"]["trace_id"] for letter in letters) == sorted(s["trace_id"] for s in bad)
    assert all(letter["answer"]["status"] == 422 and "detail" in letter["answer"]["body"] for letter in letters)
    assert {letter["reason"] for letter in letters} == {"rejected_422"}


@pytest.mark.parametrize("duplicate_status", [202, 500])
async def test_retries_of_requests_that_succeeded_are_survived(tmp_path: Path, duplicate_status: int) -> None:
    """A 500 for a duplicate id (ProdSentinel's way) ends dead-lettered after FAKESVC_RETRY_500_S, not looped."""
    sink = await sink_on(0, tmp_path / "s.db", duplicate_status=duplicate_status)
    config = BatcherConfig(sink.url, str(tmp_path / "spill"), retry_500_s=0.3, backoff_base_s=0.01, backoff_max_s=0.05)
    batcher = Batcher(config)
    await batcher.start()
    try:
        signal = log_signal("api-gateway", "dup", "INFO", "Checkout initiated", {})
        batcher.emit(LOG_KIND, signal)
        batcher.emit(LOG_KIND, dict(signal))
        following = [log_signal("api-gateway", f"after-{i}", "INFO", "x", {}) for i in range(10)]
        for extra in following:
            batcher.emit(LOG_KIND, extra)
        assert await batcher.flush(10)
        stats = batcher.stats()
        assert (await sink_stats(sink.url))["stored"] == {"log": 11}
        if duplicate_status == 202:
            assert stats["sent"] == 12 and stats["dead_lettered"] == 0
        else:  # the connection reset that follows ProdSentinel's 500 is retried like any other
            assert stats["sent"] == 11 and stats["dead_lettered"] == 1 and stats["retried"] >= 2
    finally:
        await batcher.close()
        await sink.stop()
    if duplicate_status == 500:
        [letter] = read_dead_letters(tmp_path / "spill")
        assert letter["reason"] == "http_500" and letter["answer"]["status"] == 500


async def test_e_sigterm_with_the_sink_down_keeps_the_outbox_and_the_next_start_delivers_it_once(
    tmp_path: Path,
) -> None:
    """The real process: SIGTERM while the backend is gone, then a restart with it back."""
    port, db = free_port(), tmp_path / "s.db"
    env = {"FAKESVC_SINK": "off", "PRODSENTINEL_URL": f"http://127.0.0.1:{port}"}
    first = await start_supervisor(tmp_path, **env)
    try:
        await first.read_until("api-gateway listening on")
        assert {s for s, _ in await checkouts(first.url("gateway"), [f"spill-{i}" for i in range(30)])} == {200}
        status, rest = await first.stop(signal.SIGTERM)
        assert status == 0
    finally:
        await first.kill()
    summary = re.search(r"queued (\d+), sent (\d+), .*left in the outbox (\d+)", rest)
    assert summary, rest
    queued, sent, left = map(int, summary.groups())
    assert sent == 0 and left == queued > 0
    sink = await sink_on(port, db)
    second = await start_supervisor(tmp_path, **env)
    try:
        await second.read_until("api-gateway listening on")

        async def replayed() -> bool:
            return sum((await sink_stats(sink.url))["stored"].values()) >= queued

        await eventually(replayed, what="the outbox delivered")
        status, rest = await second.stop(signal.SIGTERM)
        own = re.search(rf"queued (\d+) \(\+{queued} adopted\)", rest)  # its own: each service's series
        assert status == 0 and own, rest
        sink_view = await sink_stats(sink.url)
        assert sum(sink_view["stored"].values()) == queued + int(own[1]) and sink_view["duplicates"] == 0
        assert not list((tmp_path / "spill").glob("outbox-*.db"))
    finally:
        await second.kill()
        await sink.stop()


async def test_f_sigkill_under_load_loses_nothing_that_ended_a_second_before(tmp_path: Path) -> None:
    """kill -9 mid-load, start again on the same outbox: every checkout that ended >1 s before is whole."""
    sink = await sink_on(0, tmp_path / "s.db")
    env = {"FAKESVC_SINK": "off", "PRODSENTINEL_URL": sink.url}
    first = await start_supervisor(tmp_path, **env)
    ended: list[tuple[float, str]] = []
    loop = asyncio.get_running_loop()
    try:
        await first.read_until("api-gateway listening on")
        started, batch = loop.time(), 0
        # load right up to the kill, and on (a busy host) until 20 checkouts ended more than a second before it
        while loop.time() - started < 2.5 or (
            sum(at < loop.time() - 1.0 for at, _ in ended) < 20 and loop.time() - started < 60
        ):
            results = await checkouts(first.url("gateway"), [f"kill-{batch}-{i}" for i in range(10)])
            ended += [(loop.time(), trace_id) for status, trace_id in results if status == 200]
            batch += 1
        first.process.send_signal(signal.SIGKILL)
        killed_at = loop.time()
        await first.exited()
        second = await start_supervisor(tmp_path, **env)
        try:
            await second.read_until("api-gateway listening on")

            async def drained() -> bool:
                async with aiohttp.ClientSession() as session:
                    async with session.get(f"{second.url('gateway')}/telemetry") as response:
                        stats = await response.json()
                return stats["backlog"] == 0 and stats["adopted"] > 0

            await eventually(drained, what="the adopted outbox delivered")
            status, rest = await second.stop(signal.SIGTERM)
            assert status == 0
        finally:
            await second.kill()
        stored = await stored_signals(sink.url)
        sink_view = await sink_stats(sink.url)
    finally:
        await first.kill()
        await sink.stop()
    per_trace: dict[str, int] = defaultdict(int)
    for row in stored:
        per_trace[row["trace_id"]] += 1
    whole = max(per_trace.values())
    settled = [trace_id for at, trace_id in ended if at < killed_at - 1.0]
    assert len(settled) >= 20
    assert [t for t in settled if per_trace[t] != whole] == []
    resent = int(re.search(r"resent_uncertain (\d+)", rest).group(1))
    assert sink_view["duplicates"] <= resent


async def test_g_a_full_disk_mid_run_the_services_keep_answering_and_say_degraded(tmp_path: Path) -> None:
    sink = await sink_on(0, tmp_path / "s.db", SinkFaults(error_rate=1.0, error_status=503))
    telemetry = remote_telemetry(sink.url, tmp_path / "spill", outbox_max_mb=0.1, queue_max=500)
    await telemetry.start()
    chain = await start_chain(telemetry)
    try:
        for batch in range(6):  # ~1,400 signals of ~500 bytes into a 100 KB outbox, the backend refusing
            statuses = await checkouts(chain.gateway, [f"full-{batch}-{i}" for i in range(20)])
            assert {status for status, _ in statuses} == {200}
        stats = telemetry.stats()
        assert stats["write_errors"] > 0 and stats["dropped"] > 0 and telemetry.batcher.ledger.balanced()
        async with aiohttp.ClientSession() as session:
            async with session.get(f"{chain.gateway}/readyz") as response:
                ready = await response.json()
        assert response.status == 200 and ready["status"] == "degraded" and "full" in ready["reason"]
    finally:
        await chain.running.stop()
        await telemetry.close(deadline_s=0)
        await sink.stop()
