"""The batcher's own mechanics: Retry-After, timeouts, overflow to disk and replay after recovery, close."""

from __future__ import annotations

import asyncio
import json
import socket
from dataclasses import replace
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from fakesvc.sink import SinkFaults
from fakesvc.telemetry.batcher import Batcher, BatcherConfig, is_permanent
from fakesvc.telemetry.signals import LOGS_PATH, log_signal
from tests.telemetry_fixtures import eventually, free_port, sink_on, sink_stats


def signal(i: int) -> dict[str, Any]:
    return log_signal("inventory-service", f"trace-{i}", "INFO", "Inventory check completed", {"i": i})


async def test_a_burst_beyond_both_bounds_is_counted_as_dropped(tmp_path: Path) -> None:
    batcher = Batcher(
        BatcherConfig(prodsentinel_url=f"http://127.0.0.1:{free_port()}", spill_dir=str(tmp_path), queue_max=10)
    )
    for i in range(50):  # no await in between: nothing can reach the disk
        batcher.emit(LOGS_PATH, signal(i))
    stats = batcher.stats()
    assert (stats["queued"], stats["in_memory"], stats["dropped"]) == (50, 20, 30)


def test_which_answers_are_permanent() -> None:
    assert [status for status in (400, 404, 408, 409, 422, 429, 500, 503) if is_permanent(status)] == [
        400,
        404,
        409,
        422,
    ]


async def test_retry_after_is_honoured(aiohttp_server: Any, tmp_path: Path) -> None:
    arrivals: list[float] = []

    async def busy_once(request: web.Request) -> web.Response:
        arrivals.append(asyncio.get_running_loop().time())
        await request.read()
        if len(arrivals) == 1:
            return web.json_response({"detail": "slow down"}, status=429, headers={"Retry-After": "0.3"})
        return web.json_response({"status": "accepted"}, status=202)

    app = web.Application()
    app.router.add_post(LOGS_PATH, busy_once)
    server = await aiohttp_server(app)
    batcher = Batcher(
        BatcherConfig(
            prodsentinel_url=str(server.make_url("")).rstrip("/"),
            spill_dir=str(tmp_path),
            batch_concurrency=1,
            backoff_base_s=0.001,
        )
    )
    await batcher.start()
    try:
        batcher.emit(LOGS_PATH, signal(1))
        assert await batcher.flush(10)
        assert batcher.stats()["sent"] == 1 and batcher.stats()["retried"] == 1
        assert arrivals[1] - arrivals[0] >= 0.3  # the backoff alone would have been ~1 ms
    finally:
        await batcher.close()


async def test_a_post_past_its_timeout_is_cut_and_the_senders_carry_on(tmp_path: Path) -> None:
    sink = await sink_on(free_port(), tmp_path / "s.db", SinkFaults(latency_ms=1500))
    config = BatcherConfig(sink.url, str(tmp_path / "spill"), batch_concurrency=1, max_attempts=2)
    batcher = Batcher(replace(config, request_timeout_s=0.2, backoff_base_s=0.001))
    await batcher.start()
    try:
        started = asyncio.get_running_loop().time()
        batcher.emit(LOGS_PATH, signal(1))

        async def dead_lettered() -> bool:
            return batcher.stats()["dead_lettered"] == 1

        await eventually(dead_lettered, what="the timed-out signal dead-lettered")
        took_s = asyncio.get_running_loop().time() - started
        assert 2 * 0.2 <= took_s < 1.5  # two attempts cut at their deadline, not at the sink's answer
        assert batcher.stats()["retried"] == 1 and batcher.stats()["backend_up"] is False
        async with aiohttp.ClientSession() as session:
            async with session.delete(f"{sink.url}/sink/faults") as response:
                assert response.status == 200
        batcher.emit(LOGS_PATH, signal(2))  # the one sender was cut, not lost
        assert await batcher.flush(10)
        assert batcher.stats()["sent"] == 1 and batcher.stats()["backend_up"] is True
    finally:
        await batcher.close()
        await sink.stop()
    records = [
        json.loads(line)
        for path in (tmp_path / "spill").glob("dead-letter-*.jsonl")
        for line in path.read_text().splitlines()
    ]
    assert [(r["signal"]["attributes"]["i"], r["attempts"], r["answer"]) for r in records] == [
        (1, 2, {"status": None, "error": "timeout after 0.2 s"})
    ]


async def test_a_connection_never_made_goes_to_the_spill_not_the_dead_letters(tmp_path: Path) -> None:
    with socket.socket() as listener, socket.socket() as queued:
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)  # never accepts: once one connection waits in its queue, connects hang
        queued.connect(listener.getsockname())
        url = "http://{}:{}".format(*listener.getsockname())
        config = BatcherConfig(url, str(tmp_path), batch_concurrency=1, max_attempts=2)
        batcher = Batcher(replace(config, request_timeout_s=0.4, backoff_base_s=0.001))
        await batcher.start()
        try:
            batcher.emit(LOGS_PATH, signal(1))

            async def spilled() -> bool:
                return batcher.stats()["on_disk"] == 1

            await eventually(spilled, what="the unsent signal spilled")
        finally:
            summary = await batcher.close(deadline=0)
    assert (summary["retried"], summary["dead_lettered"], summary["spilled"]) == (1, 0, 1)


async def test_overflow_spills_to_disk_and_is_replayed_once_the_backend_is_back(tmp_path: Path) -> None:
    port = free_port()
    config = BatcherConfig(
        prodsentinel_url=f"http://127.0.0.1:{port}",
        spill_dir=str(tmp_path / "spill"),
        queue_max=10,
        backoff_base_s=0.01,
        backoff_max_s=0.05,
        max_attempts=3,
    )
    batcher = Batcher(config)
    await batcher.start()
    sink = None
    try:
        for chunk in range(5):  # bursts of 10: the queue holds 10, the rest goes to disk
            for i in range(chunk * 10, chunk * 10 + 10):
                batcher.emit(LOGS_PATH, signal(i))

            async def written(target: int = chunk * 10) -> bool:
                return batcher.stats()["on_disk"] >= target

            await eventually(written, what="the overflow on disk")
        stats = batcher.stats()
        assert stats["dropped"] == 0 and stats["on_disk"] + stats["in_memory"] == 50
        assert batcher.stats()["backend_up"] is False
        sink = await sink_on(port, tmp_path / "s.db")

        async def all_stored() -> bool:
            return sum((await sink_stats(sink.url))["stored"].values()) == 50

        await eventually(all_stored, what="every signal stored")
        stats = batcher.stats()
        assert stats["replayed"] >= 40 and stats["backlog"] == 0 and stats["dead_lettered"] == 0
        assert (await sink_stats(sink.url))["duplicates"] == 0
    finally:
        await batcher.close()
        if sink is not None:
            await sink.stop()


async def test_close_with_the_backend_down_spills_everything_with_its_attempts(tmp_path: Path) -> None:
    config = BatcherConfig(
        prodsentinel_url=f"http://127.0.0.1:{free_port()}", spill_dir=str(tmp_path), backoff_base_s=0.01
    )
    batcher = Batcher(config)
    await batcher.start()
    for i in range(25):
        batcher.emit(LOGS_PATH, signal(i))
    summary = await batcher.close(deadline=0.2)
    assert summary["flushed"] is False and summary["sent"] == 0
    assert summary["spilled"] == 25 and summary["on_disk"] == 25 and summary["backlog"] == 25
    records = [json.loads(line) for path in tmp_path.glob("spill-*.jsonl") for line in path.read_text().splitlines()]
    assert sorted(r["signal"]["attributes"]["i"] for r in records) == list(range(25))
    assert all(r["path"] == LOGS_PATH and isinstance(r["attempts"], int) for r in records)


async def test_close_during_a_slow_post_spills_it_rather_than_calling_it_a_timeout(tmp_path: Path) -> None:
    sink = await sink_on(free_port(), tmp_path / "s.db", SinkFaults(latency_ms=1500))
    config = BatcherConfig(prodsentinel_url=sink.url, spill_dir=str(tmp_path / "spill"), request_timeout_s=1.0)
    batcher = Batcher(config)
    await batcher.start()
    try:
        for i in range(3):
            batcher.emit(LOGS_PATH, signal(i))
        summary = await batcher.close(deadline=0.2)  # before any POST is due (1 s)
    finally:
        await sink.stop()
    assert (summary["spilled"], summary["dead_lettered"], summary["retried"]) == (3, 0, 0)
