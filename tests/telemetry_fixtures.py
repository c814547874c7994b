"""Helpers for tests that send telemetry to a real embedded sink over real HTTP."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp

from fakesvc.sink import SinkConfig, SinkFaults, SinkServer, start_sink
from fakesvc.telemetry.batcher import Batcher, BatcherConfig
from fakesvc.telemetry.pipeline import Telemetry, TelemetryConfig
from fakesvc.telemetry.signals import LOG_KIND


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


async def sink_on(port: int, db: Path, faults: SinkFaults | None = None, duplicate_status: int = 202) -> SinkServer:
    return await start_sink(
        SinkConfig(port=port, db_path=str(db), faults=faults or SinkFaults(), duplicate_status=duplicate_status)
    )


def remote_telemetry(sink_url: str, spill_dir: Path, **batcher: Any) -> Telemetry:
    """Logs, metrics and spans to the sink, with quick retries so tests stay fast."""
    config = BatcherConfig(
        prodsentinel_url=sink_url,
        spill_dir=str(spill_dir),
        backoff_base_s=0.01,
        backoff_max_s=0.2,
        request_timeout_s=2.0,
        **batcher,
    )
    return Telemetry(TelemetryConfig(frozenset({"logs", "metrics"}), frozenset({"prodsentinel"}), config))


async def eventually(check: Callable[[], Awaitable[bool]], timeout_s: float = 20.0, what: str = "condition") -> None:
    """Poll ``check`` until it holds (bounded): never a sleep that a test relies on to pass."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while not await check():
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


@contextlib.asynccontextmanager
async def ledger_watched(telemetry: Telemetry) -> AsyncIterator[list[int]]:
    """Check the batcher's identity (queued + adopted = sent + dead + dropped + backlog) at every
    loop turn while the body runs; yields the list of turns checked, and fails if one broke it."""
    assert telemetry.batcher is not None
    ledger = telemetry.batcher.ledger
    turns: list[int] = []
    broken: list[dict[str, Any]] = []

    async def watch() -> None:
        while True:
            if not ledger.balanced():
                broken.append(ledger.snapshot())
            turns.append(1)
            await asyncio.sleep(0)

    watcher = asyncio.ensure_future(watch())
    try:
        yield turns
    finally:
        watcher.cancel()
    assert not broken, broken[:3]


async def sink_stats(url: str) -> dict[str, Any]:
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{url}/stats") as response:
            return await response.json()


async def stored_signals(url: str, **filters: str) -> list[dict[str, Any]]:
    """Every stored signal matching ``filters`` (query items: id, signal_type, ..., payload), page by page."""
    items: list[dict[str, Any]] = []
    async with aiohttp.ClientSession() as session:
        while True:
            params = {**filters, "limit": "1000", "offset": str(len(items))}
            async with session.get(f"{url}/query/signals", params=params) as response:
                page = await response.json()
            items += page["items"]
            if not page["items"] or len(items) >= page["total"]:
                return items


async def checkouts(gateway: str, order_ids: list[str], concurrency: int = 20) -> list[tuple[int, str]]:
    """POST each checkout; return (status, trace_id) per order id, in order."""
    semaphore = asyncio.Semaphore(concurrency)

    async def one(session: aiohttp.ClientSession, order_id: str) -> tuple[int, str]:
        async with semaphore:
            async with session.post(f"{gateway}/checkout/{order_id}") as response:
                return response.status, response.headers["x-request-id"]

    async with aiohttp.ClientSession() as session:
        return await asyncio.gather(*(one(session, order_id) for order_id in order_ids))


async def outbox_left(spill: Path, url: str, signals: list[dict[str, Any]]) -> None:
    """Leave ``signals`` waiting in an outbox of ``spill``, as a process that could not reach ``url`` does."""
    batcher = Batcher(BatcherConfig(url, str(spill), backoff_base_s=0.005, backoff_max_s=0.05, commit_interval_s=0.005))
    await batcher.start()
    batcher._up.clear()  # as after a refused connection: every signal waits on disk
    for signal in signals:
        batcher.emit(LOG_KIND, signal)

    async def written() -> bool:
        return batcher.ledger.pending == 0

    await eventually(written, what="rows written")
    await batcher.close(deadline=0)
