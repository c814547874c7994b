"""Delivery against a backend that refuses: lanes, the 500 rule, resets, outages, foreign rows, final counts."""

from __future__ import annotations

import asyncio
import json
import socket
import sqlite3
import struct
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from contextlib import closing
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from fakesvc.sink import SinkConfig, start_sink
from fakesvc.telemetry.backend_status import BackendStatus
from fakesvc.telemetry.batcher import Batcher, BatcherConfig, format_summary
from fakesvc.telemetry.outbox import discard, read_dead_letters, waiting_by_backend
from fakesvc.telemetry.retry import RetryPolicy
from fakesvc.telemetry.send_backlog import send_backlog
from fakesvc.telemetry.signals import LOG_KIND, log_signal
from tests.processes import start_supervisor
from tests.telemetry_fixtures import eventually, free_port, outbox_left, sink_on, sink_stats, stored_signals

QUICK = {"backoff_base_s": 0.005, "backoff_max_s": 0.05, "commit_interval_s": 0.005}


def signal(trace: str, i: int = 0) -> dict[str, Any]:
    return log_signal("payment-service", trace, "INFO", "Payment authorized", {"i": i})


async def healthy(_request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


class Backend:
    """A ProdSentinel stand-in whose answers a test decides per signal; it counts every attempt."""

    def __init__(self) -> None:
        self.attempts: Counter[str] = Counter()  # signal_id -> attempts
        self.stored: set[str] = set()
        self.retries_in_flight = 0
        self.most_retries_in_flight = 0
        self.release_retries = asyncio.Event()

    async def ingest(self, request: web.Request) -> web.Response:
        body = await request.json()
        signal_id, trace = body["signal_id"], body["trace_id"]
        self.attempts[signal_id] += 1
        if trace.startswith("refused") and self.attempts[signal_id] > 1:  # a retry: held until released
            self.retries_in_flight += 1
            self.most_retries_in_flight = max(self.most_retries_in_flight, self.retries_in_flight)
            try:
                await self.release_retries.wait()
            finally:
                self.retries_in_flight -= 1
        if trace.startswith("refused"):
            return web.json_response({"detail": "busy"}, status=503)
        if trace.startswith("poisoned"):
            return web.json_response({"detail": "Internal server error"}, status=500)
        self.stored.add(signal_id)
        return web.json_response({"status": "accepted"}, status=202)

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/ingest/logs", self.ingest)
        app.router.add_get("/ingest/health", healthy)
        return app


async def test_retries_never_take_more_than_half_the_senders(aiohttp_server: Any, tmp_path: Path, capsys: Any) -> None:
    """Refused signals whose retries hang hold at most half the senders: every fresh signal still goes."""
    backend = Backend()
    server = await aiohttp_server(backend.app())
    config = BatcherConfig(str(server.make_url("")), str(tmp_path), batch_concurrency=4, **QUICK)
    batcher = Batcher(config)
    await batcher.start()
    try:
        refused = [signal(f"refused-{i}") for i in range(20)]
        for item in refused:
            batcher.emit(LOG_KIND, item)
        await eventually(lambda: _at_least(backend, "retries_in_flight", 2), what="retries hanging")
        fresh = [signal(f"fresh-{i}", i) for i in range(60)]
        for item in fresh:
            batcher.emit(LOG_KIND, item)
        await eventually(lambda: _all_stored(backend, fresh), what="every fresh signal stored beside hung retries")
        assert backend.most_retries_in_flight == 2  # half of 4 senders
        assert "unreachable" not in capsys.readouterr().err  # refusing with a healthy health route is no outage
    finally:
        backend.release_retries.set()
        await batcher.close(deadline=0)


async def _at_least(backend: Backend, attribute: str, value: int) -> bool:
    return getattr(backend, attribute) >= value


async def _all_stored(backend: Backend, signals: list[dict[str, Any]]) -> bool:
    return {item["signal_id"] for item in signals} <= backend.stored


def test_the_age_limit_counts_from_the_second_failed_attempt_on() -> None:
    policy = RetryPolicy(max_age_s=10)
    long_ago = time.time() - 1000
    kwargs = {"first_500_at": None, "answers_500": 0, "maybe_seen": False}
    assert policy.dead_reason(503, first_try_at=long_ago, attempts=1, now=time.time(), **kwargs) is None
    assert policy.dead_reason(503, first_try_at=long_ago, attempts=2, now=time.time(), **kwargs) == "expired"
    assert policy.dead_reason(503, first_try_at=time.time() - 5, attempts=9, now=time.time(), **kwargs) is None


async def test_signals_that_waited_long_in_the_outbox_are_not_expired_by_waiting(
    aiohttp_server: Any, tmp_path: Path
) -> None:
    """Rows 1,000 s old, never offered: a 503 on their first attempt is retried, not taken as too old."""
    first_answer: dict[str, int] = {}

    async def busy_first(request: web.Request) -> web.Response:
        signal_id = (await request.json())["signal_id"]
        first_answer[signal_id] = first_answer.get(signal_id, 0) + 1
        return web.json_response({}, status=503 if first_answer[signal_id] == 1 else 202)

    app = web.Application()
    app.router.add_post("/ingest/logs", busy_first)
    app.router.add_get("/ingest/health", healthy)
    server = await aiohttp_server(app)
    url = str(server.make_url("")).rstrip("/")
    await outbox_left(tmp_path, url, [signal(f"old-{i}") for i in range(5)])
    _age_rows(tmp_path, 1000)
    batcher = Batcher(BatcherConfig(url, str(tmp_path), max_age_s=10, **QUICK))
    await batcher.start()
    try:
        assert await batcher.flush(20)
    finally:
        summary = await batcher.close()
    assert (summary["sent"], summary["dead_lettered"]) == (5, 0)


async def _nothing_pending(batcher: Batcher) -> bool:
    return batcher.ledger.pending == 0


def _age_rows(spill: Path, seconds: float) -> None:
    for path in spill.glob("outbox-*.db"):
        with closing(sqlite3.connect(path)) as db, db:
            db.execute("UPDATE signals SET first_at = first_at - ?", (seconds,))


async def test_a_500_gets_three_attempts_then_is_dead_lettered_with_its_answer(
    aiohttp_server: Any, tmp_path: Path, capsys: Any
) -> None:
    backend = Backend()
    server = await aiohttp_server(backend.app())
    # a window wide enough that a slow answer never cuts the 3 attempts short (half of it: the 2nd answer's bound)
    config = BatcherConfig(str(server.make_url("")), str(tmp_path), retry_500_s=1.0, **QUICK)
    batcher = Batcher(config)
    await batcher.start()
    try:
        poisoned = [signal(f"poisoned-{i}") for i in range(4)]
        for item in [*poisoned, signal("fine")]:
            batcher.emit(LOG_KIND, item)
        assert await batcher.flush(20)
        stats = batcher.stats()
    finally:
        summary = await batcher.close()
    assert [backend.attempts[item["signal_id"]] for item in poisoned] == [3, 3, 3, 3]
    assert (stats["sent"], stats["dead_lettered"], stats["uncertain"], stats["dead_by"]) == (1, 4, 0, {"http_500": 4})
    assert "dead-lettered 4 (http_500 4), uncertain 0" in format_summary(summary)
    assert "; backend refusals HTTP 500 12" in format_summary(summary)
    [said] = [line for line in capsys.readouterr().err.splitlines() if "refused" in line]  # 12 answers, 1 line
    assert 'HTTP 500 ({"detail": "Internal server error"}); such signals get 3 attempts within 1 s' in said
    letters = read_dead_letters(tmp_path)
    assert {(letter["reason"], letter["answer"]["status"], letter["kind"]) for letter in letters} == {
        ("http_500", 500, "log")
    }


async def test_a_500_after_an_attempt_that_may_have_been_stored_is_uncertain(
    aiohttp_server: Any, tmp_path: Path
) -> None:
    """Cut by the timeout (maybe stored), then 500: neither sent nor dead, a term of the ledger."""
    attempts: Counter[str] = Counter()
    never = asyncio.Event()

    async def slow_then_500(request: web.Request) -> web.Response:
        signal_id = (await request.json())["signal_id"]
        attempts[signal_id] += 1
        if attempts[signal_id] == 1:
            await never.wait()  # the watchdog cuts it: the backend may have stored it
        return web.json_response({"detail": "Internal server error"}, status=500)

    app = web.Application()
    app.router.add_post("/ingest/logs", slow_then_500)
    app.router.add_get("/ingest/health", healthy)
    server = await aiohttp_server(app)
    config = BatcherConfig(str(server.make_url("")), str(tmp_path), retry_500_s=0.05, request_timeout_s=0.2, **QUICK)
    batcher = Batcher(config)
    await batcher.start()
    try:
        batcher.emit(LOG_KIND, signal("seen-maybe"))
        assert await batcher.flush(20)
        stats = batcher.stats()
        assert batcher.ledger.balanced()
    finally:
        never.set()
        await batcher.close()
    assert (stats["sent"], stats["dead_lettered"], stats["uncertain"]) == (0, 0, 1)
    [letter] = read_dead_letters(tmp_path)
    assert (letter["reason"], letter["resent_uncertain"]) == ("uncertain", True)


class ResettingBackend:
    """A raw HTTP/1.1 backend that answers each connection's first request, then resets the connection
    when the next request arrives on it (as ProdSentinel does after a 500): a reused connection fails."""

    def __init__(self) -> None:
        self.answered: list[str] = []
        self.resets = 0
        self.server: asyncio.Server | None = None

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        first = True
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = next(
                    int(line.split(b":")[1])
                    for line in head.split(b"\r\n")
                    if line.lower().startswith(b"content-length")
                )
                body = await reader.readexactly(length) if length else b""
                if head.startswith(b"GET"):
                    writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}")
                    continue
                if not first:
                    self.resets += 1
                    sock = writer.get_extra_info("socket")
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    writer.transport.abort()  # RST: the request was never read
                    return
                first = False
                self.answered.append(json.loads(body)["signal_id"])
                writer.write(b"HTTP/1.1 202 Accepted\r\nContent-Length: 2\r\n\r\n{}")
        except (asyncio.IncompleteReadError, ConnectionError, StopIteration):
            writer.close()

    async def start(self) -> str:
        self.server = await asyncio.start_server(self.serve, "127.0.0.1", 0)
        port = self.server.sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}"


async def test_a_reset_on_a_reused_connection_is_retried_on_a_fresh_one_and_is_no_outage(
    tmp_path: Path, capsys: Any
) -> None:
    backend = ResettingBackend()
    url = await backend.start()
    batcher = Batcher(BatcherConfig(url, str(tmp_path), batch_concurrency=1, **QUICK))
    await batcher.start()
    try:
        sent = [signal(f"t-{i}", i) for i in range(10)]
        for item in sent:
            batcher.emit(LOG_KIND, item)
        assert await batcher.flush(20)
        stats = batcher.stats()
    finally:
        await batcher.close()
        assert backend.server is not None
        backend.server.close()
    assert sorted(backend.answered) == sorted(item["signal_id"] for item in sent)
    assert backend.resets >= 5  # each reused connection was reset ...
    assert (stats["sent"], stats["retried"], stats["resent_uncertain"]) == (10, 0, 0)  # ... and none was a retry
    assert stats["backend_status"]["resets_retried"] == backend.resets
    assert "unreachable" not in capsys.readouterr().err


async def test_a_refused_connection_is_an_outage_said_once_and_its_end_once(tmp_path: Path, capsys: Any) -> None:
    await _an_outage_then_the_backend(tmp_path, _down, "the outage noticed")
    lines = [line for line in capsys.readouterr().err.splitlines() if "backend" in line]
    assert [("unreachable" in line, "is back" in line) for line in lines] == [(True, False), (False, True)]


async def _an_outage_then_the_backend(
    tmp_path: Path, noticed: Callable[[Batcher], Awaitable[bool]], what: str
) -> dict[str, Any]:
    """Signals while nothing listens at the backend's address; once ``noticed``, a sink there: the stats
    as soon as every signal is sent."""
    port = free_port()
    batcher = Batcher(BatcherConfig(f"http://127.0.0.1:{port}", str(tmp_path / "spill"), **QUICK))
    await batcher.start()
    sink = None
    try:
        for i in range(20):
            batcher.emit(LOG_KIND, signal(f"t-{i}"))
        await eventually(lambda: noticed(batcher), what=what)
        sink = await sink_on(port, tmp_path / "s.db")
        await eventually(lambda: _zero_backlog(batcher), what="the backlog sent once the backend is back")
        return batcher.stats()
    finally:
        await batcher.close()
        if sink is not None:
            await sink.stop()


async def _zero_backlog(batcher: Batcher) -> bool:
    return batcher.ledger.backlog == 0


async def _down(batcher: Batcher) -> bool:
    return not batcher.stats()["backend_up"]


async def test_a_flapping_backend_gets_a_line_per_interval_with_the_counts() -> None:
    lines: list[str] = []
    status = BackendStatus("http://backend", write=lines.append, clock=lambda: 100.0)
    for _ in range(12):
        status.unreachable("ConnectionRefusedError")
        status.probed()
        status.back()
    status.reset()
    assert len(lines) == 1 and "unreachable (ConnectionRefusedError)" in lines[0]
    status.close()  # the interval's end: the state then, and what happened since
    assert len(lines) == 2
    assert lines[1].startswith("telemetry: backend http://backend is back")
    assert "(since the last line: 11 outages, 12 probes, 1 resets)" in lines[1]
    assert status.to_json()["outages"] == 12


async def test_rows_remember_their_backend_and_wait_for_it(tmp_path: Path, capsys: Any) -> None:
    """Leftovers of a run against A are not sent to B: B says how to send or drop them; --send delivers them."""
    spill = tmp_path / "spill"
    port_a = free_port()
    url_a = f"http://127.0.0.1:{port_a}"
    await outbox_left(spill, url_a, [signal(f"for-a-{i}") for i in range(7)])
    sink_b = await sink_on(0, tmp_path / "b.db")
    batcher = Batcher(BatcherConfig(sink_b.url, str(spill), **QUICK))
    await batcher.start()
    try:
        batcher.emit(LOG_KIND, signal("for-b"))
        assert await batcher.flush(20)
        stats = batcher.stats()
    finally:
        await batcher.close()
        b_stored = (await sink_stats(sink_b.url))["stored"]
        await sink_b.stop()
    assert (stats["adopted"], stats["sent"], b_stored) == (0, 1, {"log": 1})
    err = capsys.readouterr().err
    assert f"7 signals in {spill} were written for {url_a}" in err and f"--send {url_a}" in err
    assert waiting_by_backend(spill) == {url_a: 7}
    sink_a = await sink_on(port_a, tmp_path / "a.db")
    try:
        status = await asyncio.get_running_loop().run_in_executor(None, send_backlog, str(spill), url_a)
        assert status == 0 and (await sink_stats(sink_a.url))["stored"] == {"log": 7}
    finally:
        await sink_a.stop()
    assert waiting_by_backend(spill) == {}


async def test_discard_drops_only_the_named_backends_rows(tmp_path: Path) -> None:
    await outbox_left(tmp_path, "http://127.0.0.1:9", [signal("a")] * 3)
    await outbox_left(tmp_path, "http://127.0.0.1:10", [signal("b")] * 2)
    assert discard(tmp_path, "http://127.0.0.1:9") == 3
    assert waiting_by_backend(tmp_path) == {"http://127.0.0.1:10": 2}


def _outbox_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "fakesvc.telemetry.outbox", *args], capture_output=True, text=True, timeout=60
    )


async def test_the_outbox_tool_reads_a_url_as_the_batcher_wrote_it(tmp_path: Path) -> None:
    await outbox_left(tmp_path, "http://127.0.0.1:9", [signal("a")] * 3)
    done = _outbox_cli(str(tmp_path), "--discard", " HTTP://127.0.0.1:9/ ")
    assert (done.returncode, done.stdout) == (0, "discarded 3 signals waiting for http://127.0.0.1:9\n")


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (["--send", "notaurl"], "--send: must be an http:// or https:// URL with a host"),
        (["--discard", ""], "--discard: must be an http:// or https:// URL with a host"),
        (["--discard", "http://\u202e127.0.0.1:9"], "--discard:"),
        (["--send", "http://[nan]:9"], "--send:"),
        (["--waiting", "--send", "http://127.0.0.1:9"], "not allowed with argument"),
        (["--disc", "http://127.0.0.1:9"], "unrecognized arguments: --disc"),
    ],
)
def test_the_outbox_tool_refuses_a_bad_url_or_flag_in_one_line_and_changes_nothing(
    tmp_path: Path, args: list[str], said: str
) -> None:
    (tmp_path / "outbox-1-kept.db").write_bytes(b"")  # untouched by a refused command
    done = _outbox_cli(str(tmp_path), *args)
    assert done.returncode == 2 and said in done.stderr and done.stdout == "", done.stderr
    assert [p.name for p in tmp_path.iterdir()] == ["outbox-1-kept.db"]


@pytest.mark.parametrize("action", [[], ["--waiting"], ["--send", "http://127.0.0.1:9"], ["--discard", "http://a:9"]])
def test_the_outbox_tool_on_a_directory_that_is_not_there_is_one_line(tmp_path: Path, action: list[str]) -> None:
    done = _outbox_cli(str(tmp_path / "nowhere"), *action)
    assert (done.returncode, done.stderr) == (
        2,
        f"fakesvc: {tmp_path / 'nowhere'}: no such directory (the FAKESVC_SPILL_DIR of a run)\n",
    )
    assert not (tmp_path / "nowhere").exists()


OLD_SCHEMA = """
CREATE TABLE signals (id INTEGER PRIMARY KEY, path TEXT NOT NULL, body BLOB NOT NULL, state INTEGER NOT NULL,
    first_at REAL NOT NULL, attempts INTEGER NOT NULL DEFAULT 0, maybe_seen INTEGER NOT NULL DEFAULT 0,
    first_500_at REAL, answer TEXT, reason TEXT, dead_at REAL);
"""


async def test_an_older_outbox_row_with_a_path_that_is_no_route_is_dead_never_sent(tmp_path: Path) -> None:
    """Rows of fakesvc before kinds: a known route is sent; ``@host:port/...`` is kept dead, never requested."""
    decoy_hits: list[str] = []

    async def decoy(request: web.Request) -> web.Response:
        decoy_hits.append(request.path)
        return web.json_response({}, status=202)

    decoy_app = web.Application()
    decoy_app.router.add_route("*", "/{tail:.*}", decoy)
    runner = web.AppRunner(decoy_app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    decoy_port = runner.addresses[0][1]
    spill = tmp_path / "spill"
    spill.mkdir()
    with closing(sqlite3.connect(spill / "outbox-1-old.db")) as db, db:
        db.executescript(OLD_SCHEMA)
        rows = [("/ingest/logs", signal("good")), (f"@127.0.0.1:{decoy_port}/ingest/logs", signal("evil"))]
        for i, (path, item) in enumerate(rows, 1):
            db.execute(
                "INSERT INTO signals(id, path, body, state, first_at) VALUES (?, ?, ?, 0, ?)",
                (i, path, json.dumps(item).encode(), time.time()),
            )
    sink = await sink_on(0, tmp_path / "s.db")
    batcher = Batcher(BatcherConfig(sink.url, str(spill), **QUICK))
    await batcher.start()
    try:
        assert await batcher.flush(20)
        stats = batcher.stats()
    finally:
        await batcher.close()
        stored = (await sink_stats(sink.url))["stored"]
        await sink.stop()
        await runner.cleanup()
    assert (stats["adopted"], stats["sent"], stored, decoy_hits) == (1, 1, {"log": 1}, [])
    [letter] = read_dead_letters(spill)
    assert (letter["reason"], letter["signal"]["trace_id"]) == ("unknown_route", "evil")


async def test_the_oldest_age_is_zero_once_the_backlog_is(tmp_path: Path) -> None:
    stats = await _an_outage_then_the_backend(tmp_path, _aged, "the outbox's oldest signal seen")
    assert stats["outbox"]["oldest_age_s"] == 0


async def _aged(batcher: Batcher) -> bool:
    age = batcher.stats()["outbox"]["oldest_age_s"]
    return age is not None and age > 0


async def test_the_report_carries_the_counts_after_the_shutdown_flush(tmp_path: Path) -> None:
    report = tmp_path / "report.json"
    supervisor = await start_supervisor(tmp_path, "--rate", "20", "--duration", "1", "--report", str(report))
    status, stderr = await supervisor.exited(90)
    assert status == 0, stderr
    telemetry = json.loads(report.read_text())["telemetry"]
    final = next(line for line in reversed(stderr.splitlines()) if line.startswith("telemetry to "))
    assert f"queued {telemetry['queued']}, sent {telemetry['sent']}," in final
    assert telemetry["backlog"] == 0 and telemetry["sent"] == telemetry["queued"]


async def test_a_dropped_signal_is_said_at_once_and_fails_the_run(tmp_path: Path) -> None:
    """The outbox full and memory at its bound while the backend is away: the drop is said, exit 1."""
    report = tmp_path / "report.json"
    supervisor = await start_supervisor(
        tmp_path,
        "--rate",
        "20",
        "--duration",
        "2",
        "--report",
        str(report),
        FAKESVC_SINK="off",
        FAKESVC_OUTBOX_MAX_MB="0.05",
        FAKESVC_QUEUE_MAX="10",
    )
    status, stderr = await supervisor.exited(90)
    assert status == 1, stderr
    assert "signals dropped (the outbox cannot be written" in stderr
    dropped = json.loads(report.read_text())["telemetry"]["dropped"]
    assert dropped > 0 and f"FAILED: {dropped} telemetry signals dropped; exit 1" in stderr


async def test_against_the_racing_sink_every_unpoisoned_trace_arrives_and_a_refused_signal_costs_3_attempts(
    tmp_path: Path, capsys: Any
) -> None:
    """The sink playing ProdSentinel: two first signals at once poison a trace (500 and a closed socket
    for the rest of it); the other traces arrive whole, nothing deliverable is dead, no outage is said."""
    sink = await start_sink(SinkConfig(port=0, db_path=str(tmp_path / "s.db"), trace_race=True, pace=200))
    batcher = Batcher(BatcherConfig(sink.url, str(tmp_path / "spill"), retry_500_s=0.5, **QUICK))
    await batcher.start()
    traces = [f"trace-{i}" for i in range(10)]
    try:
        for trace in traces:  # two first signals together: they overlap at the sink
            batcher.emit(LOG_KIND, signal(trace, 0))
            batcher.emit(LOG_KIND, signal(trace, 1))
        await eventually(lambda: _nothing_pending(batcher), what="the first signals written")
        for trace in traces:
            for i in range(2, 6):
                batcher.emit(LOG_KIND, signal(trace, i))
        assert await batcher.flush(30)
        stats = batcher.stats()
        poisoned = set((await _get(f"{sink.url}/sink/poisoned"))["trace_ids"])
        sink_counts = await sink_stats(sink.url)
        stored = Counter(item["trace_id"] for item in await stored_signals(sink.url))
    finally:
        await batcher.close()
        await sink.stop()
    assert poisoned, "two first signals sent together overlap at a paced sink"
    assert all(stored[trace] == 6 for trace in set(traces) - poisoned)
    refused = sum(6 - stored[trace] for trace in poisoned)
    assert (stats["dead_lettered"], stats["dead_by"], stats["uncertain"]) == (refused, {"http_500": refused}, 0)
    assert refused < sink_counts["refused_poisoned"] <= 3 * refused  # retried, at most 3 attempts each
    assert "unreachable" not in capsys.readouterr().err


async def _get(url: str) -> Any:
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        return await response.json()
