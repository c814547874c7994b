"""The batcher's own mechanics: the retry policy, timeouts, the outbox across outages and restarts, close."""

from __future__ import annotations

import asyncio
import json
import socket
import sqlite3
import subprocess
import sys
from contextlib import closing
from dataclasses import replace
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from fakesvc.settings import ConfigError
from fakesvc.sink import SinkFaults
from fakesvc.telemetry.batcher import Batcher, BatcherConfig
from fakesvc.telemetry.outbox import read_dead_letters
from fakesvc.telemetry.pipeline import telemetry_config
from fakesvc.telemetry.retry import is_permanent, retry_after_s
from fakesvc.telemetry.signals import LOG_KIND, ROUTES, log_signal
from tests.telemetry_fixtures import eventually, free_port, outbox_left, sink_on, sink_stats

QUICK = {"backoff_base_s": 0.005, "backoff_max_s": 0.05, "commit_interval_s": 0.005}


def signal(i: int) -> dict[str, Any]:
    return log_signal("inventory-service", f"trace-{i}", "INFO", "Inventory check completed", {"i": i})


def waiting_rows(spill_dir: Path) -> list[tuple[int, int, int]]:
    """(i, attempts, maybe_seen) of every signal waiting in the outboxes of ``spill_dir``."""
    rows = []
    for path in spill_dir.glob("outbox-*.db"):
        with closing(sqlite3.connect(path)) as db:
            for body, attempts, seen in db.execute("SELECT body, attempts, maybe_seen FROM signals WHERE state = 0"):
                rows.append((int(body.split(b'"i":')[1].split(b"}")[0]), attempts, seen))
    return sorted(rows)


async def set_sink_faults(url: str, faults: dict[str, Any] | None) -> None:
    async with aiohttp.ClientSession() as session:
        request = session.put(f"{url}/sink/faults", json=faults) if faults else session.delete(f"{url}/sink/faults")
        async with request as response:
            assert response.status == 200


def test_which_answers_are_permanent() -> None:
    assert [status for status in (400, 404, 408, 409, 422, 429, 500, 503) if is_permanent(status)] == [
        400,
        404,
        409,
        422,
    ]


@pytest.mark.parametrize(
    ("header", "seconds"),
    [(None, None), ("", None), ("2", 2.0), ("-5", 0.0), ("1e309", 60.0), ("nan", None), ("soon", None)],
)
def test_retry_after_is_read_safely(header: str | None, seconds: float | None) -> None:
    assert retry_after_s(header) == seconds


async def test_a_burst_while_the_writer_cannot_run_loses_nothing(tmp_path: Path) -> None:
    """A fan-out emits faster than one commit interval: every signal waits for the writer, none is dropped."""
    batcher = Batcher(BatcherConfig(f"http://127.0.0.1:{free_port()}", str(tmp_path / "spill"), queue_max=10))
    await batcher.start()
    try:
        for i in range(500):  # no await in between: the writer never gets to commit
            batcher.emit(LOG_KIND, signal(i))
        stats = batcher.stats()
        assert (stats["queued"], stats["pending"], stats["dropped"], stats["backlog"]) == (500, 500, 0, 500)
        assert batcher.ledger.balanced()
        await eventually(lambda: _durable(batcher), what="the burst written to the outbox")
    finally:
        summary = await batcher.close(deadline=0)
    assert (summary["dropped"], summary["backlog"]) == (0, 500)
    assert len(waiting_rows(tmp_path / "spill")) == 500


async def test_retry_after_is_honoured(aiohttp_server: Any, tmp_path: Path) -> None:
    arrivals: list[float] = []

    async def busy_once(request: web.Request) -> web.Response:
        arrivals.append(asyncio.get_running_loop().time())
        await request.read()
        if len(arrivals) == 1:
            return web.json_response({"detail": "slow down"}, status=429, headers={"Retry-After": "0.3"})
        return web.json_response({"status": "accepted"}, status=202)

    app = web.Application()
    app.router.add_post(ROUTES[LOG_KIND], busy_once)
    server = await aiohttp_server(app)
    batcher = Batcher(BatcherConfig(str(server.make_url("")).rstrip("/"), str(tmp_path), batch_concurrency=1, **QUICK))
    await batcher.start()
    try:
        batcher.emit(LOG_KIND, signal(1))
        assert await batcher.flush(10)
        assert batcher.stats()["sent"] == 1 and batcher.stats()["retried"] == 1
        assert arrivals[1] - arrivals[0] >= 0.3  # the backoff alone would have been ~5 ms
    finally:
        await batcher.close()


async def test_the_backend_url_keeps_its_path_prefix(aiohttp_server: Any, tmp_path: Path) -> None:
    seen: list[str] = []

    async def accept(request: web.Request) -> web.Response:
        seen.append(request.path)
        return web.json_response({"status": "accepted"}, status=202)

    app = web.Application()
    app.router.add_post("/prodsentinel/ingest/logs", accept)
    server = await aiohttp_server(app)
    batcher = Batcher(BatcherConfig(str(server.make_url("/prodsentinel/")), str(tmp_path), **QUICK))
    await batcher.start()
    try:
        batcher.emit(LOG_KIND, signal(1))
        assert await batcher.flush(10)
    finally:
        await batcher.close()
    assert seen == ["/prodsentinel/ingest/logs"]


async def test_a_post_past_its_timeout_is_retried_marked_maybe_seen_and_expires_with_its_reason(tmp_path: Path) -> None:
    sink = await sink_on(0, tmp_path / "s.db", SinkFaults(latency_ms=1500))
    config = BatcherConfig(sink.url, str(tmp_path / "spill"), batch_concurrency=1, max_age_s=0.5, **QUICK)
    batcher = Batcher(replace(config, request_timeout_s=0.2))
    await batcher.start()
    try:
        started = asyncio.get_running_loop().time()
        batcher.emit(LOG_KIND, signal(1))

        async def dead_lettered() -> bool:
            return batcher.stats()["dead_lettered"] == 1

        await eventually(dead_lettered, what="the timed-out signal expired")
        assert asyncio.get_running_loop().time() - started >= 0.5  # transient: never dead before max_age_s
        assert batcher.stats()["retried"] >= 1
        await set_sink_faults(sink.url, None)

        async def back_up() -> bool:
            return batcher.stats()["backend_up"]

        await eventually(back_up, what="the prober finding the sink answering again")
        batcher.emit(LOG_KIND, signal(2))  # the one sender was cut, not lost
        assert await batcher.flush(10)
        assert batcher.stats()["sent"] == 1
    finally:
        await batcher.close()
        await sink.stop()
    [letter] = read_dead_letters(tmp_path / "spill")
    assert letter["signal"]["attributes"]["i"] == 1 and letter["reason"] == "expired"
    assert letter["answer"] == {"status": None, "error": "timeout after 0.2 s"}
    assert letter["resent_uncertain"] is True and letter["attempts"] >= 2


async def test_a_connection_never_made_is_kept_in_the_outbox_not_marked_seen(tmp_path: Path) -> None:
    with socket.socket() as listener, socket.socket() as queued:
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)  # never accepts: once one connection waits in its queue, connects hang
        queued.connect(listener.getsockname())
        url = "http://{}:{}".format(*listener.getsockname())
        batcher = Batcher(BatcherConfig(url, str(tmp_path), batch_concurrency=1, request_timeout_s=0.4, **QUICK))
        await batcher.start()
        try:
            batcher.emit(LOG_KIND, signal(1))

            async def retried() -> bool:
                return batcher.stats()["retried"] >= 1

            await eventually(retried, what="the connect to time out")
        finally:
            summary = await batcher.close(deadline=0)
    assert (summary["dead_lettered"], summary["on_disk"], summary["backend_up"]) == (0, 1, False)
    assert [(i, seen) for i, _, seen in waiting_rows(tmp_path)] == [(1, 0)]


async def test_outage_then_recovery_with_no_new_traffic_delivers_everything_once(tmp_path: Path) -> None:
    port = free_port()
    config = BatcherConfig(f"http://127.0.0.1:{port}", str(tmp_path / "spill"), queue_max=10, **QUICK)
    batcher = Batcher(config)
    await batcher.start()
    sink = None
    try:
        for i in range(50):  # bursts of 10: the pending list holds queue_max until the next commit
            batcher.emit(LOG_KIND, signal(i))
            assert batcher.ledger.balanced()
            if i % 10 == 9:
                await eventually(lambda: _durable(batcher), what="the burst written to the outbox")
        stats = batcher.stats()
        assert stats["dropped"] == 0 and stats["on_disk"] >= 40 and stats["backlog"] == 50
        assert stats["outbox"]["bytes"] > 0 and stats["outbox"]["oldest_age_s"] >= 0  # what /telemetry shows
        sink = await sink_on(port, tmp_path / "s.db")

        async def all_stored() -> bool:
            assert batcher.ledger.balanced()
            return sum((await sink_stats(sink.url))["stored"].values()) == 50

        await eventually(all_stored, what="every signal stored without new traffic")
        await eventually(lambda: _zero_backlog(batcher), what="backlog 0")
        assert batcher.stats()["dead_lettered"] == 0 and (await sink_stats(sink.url))["duplicates"] == 0
    finally:
        await batcher.close()
        if sink is not None:
            await sink.stop()
    assert not list((tmp_path / "spill").glob("outbox-*.db"))  # an empty outbox is removed at close


async def _zero_backlog(batcher: Batcher) -> bool:
    return batcher.stats()["backlog"] == 0


async def test_a_503_storm_longer_than_any_attempt_budget_dead_letters_nothing(tmp_path: Path) -> None:
    sink = await sink_on(0, tmp_path / "s.db", SinkFaults(error_rate=1.0, error_status=503))
    batcher = Batcher(BatcherConfig(sink.url, str(tmp_path / "spill"), **QUICK))
    await batcher.start()
    try:
        for i in range(100):
            batcher.emit(LOG_KIND, signal(i))

        async def many_retries() -> bool:
            return batcher.stats()["retried"] >= 300  # far past the 8 attempts that used to dead-letter

        await eventually(many_retries, what="the storm to go on")
        assert batcher.stats()["dead_lettered"] == 0 and batcher.ledger.balanced()
        await set_sink_faults(sink.url, None)
        await eventually(lambda: _zero_backlog(batcher), what="everything delivered after the storm")
        stats = batcher.stats()
        assert (stats["sent"], stats["dead_lettered"]) == (100, 0)
        assert sum((await sink_stats(sink.url))["stored"].values()) == 100
    finally:
        await batcher.close()
        await sink.stop()


async def test_emit_after_close_is_counted_as_dropped_and_close_is_idempotent(tmp_path: Path) -> None:
    batcher = Batcher(BatcherConfig(f"http://127.0.0.1:{free_port()}", str(tmp_path), **QUICK))
    await batcher.start()
    batcher.emit(LOG_KIND, signal(1))
    first = await batcher.close(deadline=0)
    batcher.emit(LOG_KIND, signal(2))
    assert await batcher.close() is first
    stats = batcher.stats()
    assert (stats["queued"], stats["dropped"], stats["on_disk"]) == (2, 1, 1) and batcher.ledger.balanced()


async def test_close_with_the_backend_down_stores_everything_with_its_attempts(tmp_path: Path) -> None:
    batcher = Batcher(BatcherConfig(f"http://127.0.0.1:{free_port()}", str(tmp_path), **QUICK))
    await batcher.start()
    for i in range(25):
        batcher.emit(LOG_KIND, signal(i))
    summary = await batcher.close(deadline=0.2)
    assert summary["flushed"] is False and summary["sent"] == 0
    assert summary["on_disk"] == 25 == summary["backlog"] and summary["dropped"] == 0
    rows = waiting_rows(tmp_path)
    assert [i for i, _, _ in rows] == list(range(25))
    assert sum(attempts for _, attempts, _ in rows) >= 1 and not any(seen for _, _, seen in rows)


async def test_close_during_a_slow_post_keeps_it_marked_maybe_seen(aiohttp_server: Any, tmp_path: Path) -> None:
    arrived = asyncio.Semaphore(0)

    async def stall(request: web.Request) -> web.Response:
        await request.read()
        arrived.release()
        await asyncio.Event().wait()  # never answers: the POST is cut by close
        raise AssertionError("unreachable")

    app = web.Application()
    app.router.add_post(ROUTES[LOG_KIND], stall)
    server = await aiohttp_server(app)
    batcher = Batcher(BatcherConfig(str(server.make_url("")).rstrip("/"), str(tmp_path), request_timeout_s=30, **QUICK))
    await batcher.start()
    for i in range(3):
        batcher.emit(LOG_KIND, signal(i))
    for _ in range(3):
        await arrived.acquire()  # all three POSTs reached the backend, which may store them
    summary = await batcher.close(deadline=0.1)
    assert (summary["on_disk"], summary["dead_lettered"], summary["retried"]) == (3, 0, 0)
    assert [(i, seen) for i, _, seen in waiting_rows(tmp_path)] == [(0, 1), (1, 1), (2, 1)]


async def test_an_outbox_left_by_a_dead_process_is_adopted_and_resent_as_uncertain(tmp_path: Path) -> None:
    spill = tmp_path / "spill"
    port = free_port()
    down = Batcher(BatcherConfig(f"http://127.0.0.1:{port}", str(spill), **QUICK))
    await down.start()
    for i in range(20):
        down.emit(LOG_KIND, signal(i))
    await down.close(deadline=0)
    with closing(sqlite3.connect(next(spill.glob("outbox-*.db")))) as db:  # as if its owner died mid-POST
        with db:
            db.execute("UPDATE signals SET state = 1 WHERE rowid <= 5")
    sink = await sink_on(port, tmp_path / "s.db")
    heir = Batcher(BatcherConfig(sink.url, str(spill), **QUICK))
    await heir.start()
    try:
        assert heir.stats()["adopted"] == 20
        await eventually(lambda: _zero_backlog(heir), what="the adopted signals delivered")
        stats = heir.stats()
        assert (stats["queued"], stats["adopted"], stats["sent"], stats["resent_uncertain"]) == (0, 20, 20, 5)
    finally:
        await heir.close()
        await sink.stop()


async def test_a_live_outbox_is_not_adopted(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    owner = Batcher(BatcherConfig(url, str(tmp_path), **QUICK))
    await owner.start()
    try:
        for i in range(5):
            owner.emit(LOG_KIND, signal(i))
        await eventually(lambda: _durable(owner), what="the signals written")
        other = Batcher(BatcherConfig(url, str(tmp_path), **QUICK))
        await other.start()
        assert other.stats()["adopted"] == 0
        await other.close(deadline=0)
    finally:
        summary = await owner.close(deadline=0)
    assert summary["backlog"] == 5 and len(waiting_rows(tmp_path)) == 5


async def _durable(batcher: Batcher) -> bool:
    return batcher.stats()["pending"] == 0


@pytest.mark.parametrize("damage", ["garbage", "damaged pages"])
async def test_a_corrupt_outbox_never_stops_a_start(tmp_path: Path, damage: str, capsys: Any) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    first = Batcher(BatcherConfig(url, str(tmp_path), **QUICK))
    await first.start()
    for i in range(2000):
        first.emit(LOG_KIND, signal(i))
    await first.close(deadline=0)
    [path] = tmp_path.glob("outbox-*.db")
    _damage(path, damage)
    second = Batcher(BatcherConfig(url, str(tmp_path), **QUICK))
    await second.start()
    try:
        stats = second.stats()
        assert stats["quarantined"] == 1 and stats["adopted"] < 2000
        if damage == "damaged pages":
            assert stats["adopted"] > 1900  # the rows on intact pages are saved
        assert second.ledger.balanced()
    finally:
        await second.close(deadline=0)
    assert len(list(tmp_path.glob("quarantine-*"))) == 1
    assert "did not read whole" in capsys.readouterr().err


async def _outbox_with(spill: Path, url: str, first: int, count: int) -> Path:
    """An outbox left by a process that could not deliver signals ``first`` .. ``first + count - 1``."""
    alone = spill / f"made-{first}"  # a directory of its own: a start adopts the outboxes beside it
    await outbox_left(alone, url, [signal(i) for i in range(first, first + count)])
    [made] = alone.glob("outbox-*.db")
    path = made.rename(spill / made.name)
    alone.rmdir()
    return path


def _damage(path: Path, how: str) -> None:
    data = bytearray(path.read_bytes())
    if how == "garbage":
        data = bytearray(b"not a database at all" * 100)
    else:
        data[40 * 4096 : 42 * 4096] = b"\xff" * (2 * 4096)  # two pages of rows overwritten
    path.write_bytes(bytes(data))


async def test_each_outbox_is_judged_on_its_own_and_salvage_is_kept(tmp_path: Path, capsys: Any) -> None:
    """Two damaged outboxes between healthy ones: the healthy ones are adopted whole, the damaged
    ones salvaged and set aside, the start goes on, and what was salvaged survives another start."""
    url = f"http://127.0.0.1:{free_port()}"
    sizes = [2000, 1000, 2000, 1000]  # healthy, garbage, damaged pages, healthy
    paths = [await _outbox_with(tmp_path, url, 10_000 * n, size) for n, size in enumerate(sizes)]
    _damage(paths[1], "garbage")
    _damage(paths[2], "damaged pages")
    batcher = Batcher(BatcherConfig(url, str(tmp_path), **QUICK))
    await batcher.start()
    try:
        stats = batcher.stats()
    finally:
        await batcher.close(deadline=0)
    assert stats["quarantined"] == 2 and batcher.ledger.balanced(), stats
    assert 3000 + 1900 < stats["adopted"] < 3000 + 2000  # both healthy ones whole, most of the damaged pages
    assert sorted(p.name.split("-outbox-")[-1] for p in tmp_path.glob("quarantine-*")) == sorted(
        p.name.removeprefix("outbox-") for p in paths[1:3]
    )
    waiting = {i for i, _, _ in waiting_rows(tmp_path)}
    assert set(range(0, 2000)) | set(range(30_000, 31_000)) <= waiting and len(waiting) == stats["adopted"]
    assert "did not read whole" in capsys.readouterr().err


FULL_DISK_START = """
import resource, signal, sys
from pathlib import Path
from fakesvc.telemetry.outbox import Outbox, OutboxError
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
resource.setrlimit(resource.RLIMIT_FSIZE, (0, 0))  # every write past 0 bytes fails: a full disk
try:
    Outbox(Path(sys.argv[1]), "http://127.0.0.1:9")
except OutboxError as exc:
    print(exc)
"""


def test_a_start_on_a_full_disk_leaves_no_outbox_file_behind(tmp_path: Path) -> None:
    spill = tmp_path / "spill"
    spill.mkdir()
    done = subprocess.run(
        [sys.executable, "-c", FULL_DISK_START, str(spill)], capture_output=True, text=True, timeout=60
    )
    assert "cannot open an outbox in" in done.stdout, done.stderr
    assert list(spill.iterdir()) == []


async def test_an_unwritable_spill_dir_is_one_clear_error_at_start(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")  # a directory under a regular file cannot exist, even for root
    batcher = Batcher(BatcherConfig(f"http://127.0.0.1:{free_port()}", str(blocker / "spill")))
    with pytest.raises(ConfigError, match="FAKESVC_SPILL_DIR: cannot open an outbox in"):
        await batcher.start()
    await batcher.close()  # still safe


async def test_a_full_outbox_counts_write_errors_keeps_delivering_and_bounds_memory(
    tmp_path: Path, capsys: Any
) -> None:
    sink = await sink_on(0, tmp_path / "s.db", SinkFaults(error_rate=1.0, error_status=503))
    config = BatcherConfig(sink.url, str(tmp_path / "spill"), queue_max=300, outbox_max_mb=0.1, **QUICK)
    batcher = Batcher(config)
    await batcher.start()
    try:
        for i in range(1000):  # ~500 KB of signals into a 100 KB outbox, backend refusing
            batcher.emit(LOG_KIND, signal(i))
            if i % 100 == 99:
                await eventually(lambda: _durable(batcher), what="the group committed or refused")

        async def refused() -> bool:
            return batcher.stats()["write_errors"] > 0

        await eventually(refused, what="SQLITE_FULL")
        stats = batcher.stats()
        assert stats["outbox"]["write_error"] and "full" in stats["outbox"]["write_error"]
        assert stats["dropped"] > 0 and stats["held"] <= 300 and batcher.ledger.balanced()
        assert batcher.degraded is not None
        await set_sink_faults(sink.url, None)
        await eventually(lambda: _zero_backlog(batcher), what="what was kept delivered")
        stats = batcher.stats()
        assert stats["sent"] + stats["dropped"] == 1000 and stats["dead_lettered"] == 0
    finally:
        await batcher.close()
        await sink.stop()
    assert capsys.readouterr().err.count("cannot write the outbox") == 1  # said once, not per commit


async def test_a_signal_that_will_not_encode_is_counted_and_the_writer_goes_on(tmp_path: Path) -> None:
    batcher = Batcher(BatcherConfig(f"http://127.0.0.1:{free_port()}", str(tmp_path), **QUICK))
    await batcher.start()
    try:
        loop: dict[str, Any] = {}
        loop["self"] = loop  # a cycle: JSON cannot encode it
        batcher.emit(LOG_KIND, {**signal(0), "attributes": loop})
        await eventually(lambda: _durable(batcher), what="the group refused")
        batcher.emit(LOG_KIND, signal(1))
        await eventually(lambda: _durable(batcher), what="the next group written")
        stats = batcher.stats()
        assert (stats["dropped"], stats["write_errors"], stats["backlog"]) == (1, 1, 1) and batcher.ledger.balanced()
    finally:
        await batcher.close(deadline=0)


async def test_spill_files_of_the_version_before_the_outbox_are_adopted(tmp_path: Path) -> None:
    lines = [json.dumps({"path": ROUTES[LOG_KIND], "signal": signal(i), "attempts": 2}) for i in range(5)]
    (tmp_path / "spill-20261125T120000-99-0.jsonl").write_text("\n".join(lines[:3]) + "\n")
    (tmp_path / "claimed-98-spill-20261125T110000-98-0.jsonl").write_text("\n".join(lines[3:]) + '\n{"path": "/ing')
    batcher = Batcher(BatcherConfig(f"http://127.0.0.1:{free_port()}", str(tmp_path), **QUICK))
    await batcher.start()
    stats = await batcher.close(deadline=0)
    assert (stats["adopted"], stats["quarantined"], stats["on_disk"]) == (5, 1, 5)
    assert [(i, attempts) for i, attempts, _ in waiting_rows(tmp_path)] == [(i, 2) for i in range(5)]
    assert not list(tmp_path.glob("*.jsonl"))


@pytest.mark.parametrize("value", ["nan", "inf", "-1", "1e400", "abc", "\u0661"])
@pytest.mark.parametrize("variable", ["FAKESVC_MAX_AGE_S", "FAKESVC_RETRY_500_S", "FAKESVC_OUTBOX_MAX_MB"])
def test_the_outbox_settings_refuse_bad_values_naming_the_setting(variable: str, value: str) -> None:
    with pytest.raises(ConfigError, match=f"^{variable}: "):
        telemetry_config(environ={variable: value})
