"""The telemetry batcher: one per process, one ClientSession, every signal written ahead and accounted for.

Shaped like OpenTelemetry's BatchSpanProcessor (workers that wake when there
is work, ``flush``/``close`` with deadlines, counters), but it loses nothing
silently. A signal's life (``fakesvc.telemetry.ledger`` names its states):

- ``emit()`` appends it to a list: the only work on the request path.
- The writer (one thread, ``fakesvc.telemetry.outbox``) commits the list every
  ``commit_interval_s`` as outbox rows: durable within ~50 ms. While memory
  allows and the backend answers, the new rows are held and handed straight
  to the senders; the rest wait on disk and are claimed in batches as memory
  frees up (O(batch), never O(backlog)).
- Senders POST one signal each (ProdSentinel takes one per POST), bounded in
  number, over keep-alive connections. A delivered row is deleted, a dead one
  kept with the answer (``fakesvc.telemetry.retry`` decides which), a transient
  failure waits for its backoff without holding a sender.
- Two lanes: first attempts, and retries. Retries take at most half of the
  senders, and a signal waiting for its retry does not take the room of a new
  one in memory, so a backend that refuses some signals never starves the
  others (the OpenTelemetry Collector's sending queue keeps retries apart the
  same way).
- A request on a kept-alive connection that the backend had closed after its
  previous answer (reset, or disconnected before any answer) was never read: it
  goes again at once on a fresh connection, and is not an outage.
- When the backend is unreachable (a connection refused, or no answer or a
  502/503/504 and then a failed health check) the senders pause and one prober
  asks ``GET /ingest/health`` with backoff; when it answers, the backlog drains
  without waiting for new traffic. stderr says it through
  ``fakesvc.telemetry.backend_status``: each change once, a line per 10 s at most.
- ``close()`` flushes within its deadline, puts what is left back on disk for
  the next start (or any later process: outboxes of dead processes are adopted),
  and returns only after the last transaction is committed.

Timeouts: one watchdog task cuts POSTs that outlived ``request_timeout_s``
(at most a quarter of it late), instead of a timer per POST: aiohttp's
per-request timeout costs about 8 of the ~110 microseconds of CPU a POST
costs here. A new connection gets half that time: a signal whose connection
was never made was never seen; one cut after it was sent may have been stored,
so it is marked ``maybe_seen`` and a later delivery counts ``resent_uncertain``.
"""

from __future__ import annotations

import asyncio
import errno
import random
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import aiohttp
from yarl import URL

from fakesvc import __version__, settings
from fakesvc.console import say
from fakesvc.settings import ConfigError, Setting
from fakesvc.telemetry.backend_status import BackendStatus
from fakesvc.telemetry.ledger import Ledger
from fakesvc.telemetry.outbox import Changes, Held, Outbox, OutboxError
from fakesvc.telemetry.retry import (
    ATTEMPTS_ON_500,
    UNAVAILABLE,
    RetryPolicy,
    is_permanent,
    is_server_error,
    retry_after_s,
)
from fakesvc.telemetry.signals import ROUTES

# Every POST carries the same headers, so the session sets them once; the answers are tiny
# JSON, so no Accept / Accept-Encoding negotiation and no cookies: less work per signal.
SESSION_HEADERS = {"Content-Type": "application/json", "User-Agent": f"fakesvc/{__version__}"}
SKIPPED_AUTO_HEADERS = ("Accept", "Accept-Encoding")
HEALTH_PATH = "/ingest/health"
WATCHDOG_TICKS_PER_TIMEOUT = 4
CONNECT_SHARE_OF_TIMEOUT = 0.5  # below 1: a connect that hangs fails before the watchdog cuts it
OUTBOX_VIEW_EVERY_S = 1.0
# Delivery is bound by round trips, not CPU: 8 in flight carried ~2,500 signals/s to the embedded
# sink, short of the 2,800/s of 200 checkouts/s; 16 keep up at no more CPU per signal. Still a
# bound: the real ProdSentinel serves ~340/s whatever the concurrency (SPEC section 6).
BATCH_CONCURRENCY = 16
# Signals held in memory per sender (sending, ready, or waiting for a retry); the rest wait on disk.
# Small on purpose: a row held when the process dies is resent as maybe seen (resent_uncertain),
# and 16 per sender still refill the senders faster than any backend here takes them.
HELD_PER_SENDER = 16
NEVER_SEEN = (aiohttp.ClientConnectorError, aiohttp.ConnectionTimeoutError)
STALE_ERRNOS = frozenset({errno.ECONNRESET, errno.EPIPE})
HEALTH_CHECK_EVERY_S = 1.0  # a backend that refuses with 503 while healthy is asked at most this often
DROP_LINE_EVERY_S = 10.0


class _StaleConnection(Exception):
    """The kept-alive connection was closed by the backend before this request was read."""


def _stale(exc: aiohttp.ClientError) -> bool:
    """A reset or a disconnect before any answer: the backend closed the connection after its last answer."""
    if isinstance(exc, aiohttp.ClientConnectorError):
        return False  # no connection was made: refused
    if isinstance(exc, aiohttp.ServerDisconnectedError | aiohttp.ClientConnectionResetError):
        return True
    if not isinstance(exc, aiohttp.ClientOSError):
        return False
    # "Can not write request body": the write met the closed connection (the cause says how)
    return exc.errno in STALE_ERRNOS or isinstance(exc.__cause__, ConnectionResetError | BrokenPipeError)


@dataclass(frozen=True)
class BatcherConfig:
    """Where signals go, how hard the batcher tries, and how much it keeps in memory."""

    prodsentinel_url: str = "http://localhost:8000"
    spill_dir: str = ".fakesvc-spill"
    batch_concurrency: int = BATCH_CONCURRENCY
    queue_max: int = 20_000
    max_age_s: float = 600.0
    retry_500_s: float = 5.0
    outbox_max_mb: float | None = None
    request_timeout_s: float = 5.0
    flush_deadline_s: float = 5.0
    backoff_base_s: float = 0.05
    backoff_max_s: float = 30.0
    commit_interval_s: float = 0.02


BATCHER_SETTINGS: tuple[Setting, ...] = (
    Setting(
        "PRODSENTINEL_URL",
        "--prodsentinel-url",
        "http://localhost:8000",
        settings.http_url,
        "ingestion backend base URL (a path prefix is kept)",
    ),
    Setting(
        "FAKESVC_SPILL_DIR", "--spill-dir", ".fakesvc-spill", settings.text, "the durable outbox and its dead letters"
    ),
    Setting(
        "FAKESVC_BATCH_CONCURRENCY",
        "--batch-concurrency",
        BATCH_CONCURRENCY,
        settings.positive_int,
        "POSTs in flight to the backend",
    ),
    Setting(
        "FAKESVC_QUEUE_MAX",
        "--queue-max",
        20_000,
        settings.positive_int,
        "signals held in memory while the outbox cannot be written, or waiting for a retry",
    ),
    Setting(
        "FAKESVC_MAX_AGE_S",
        "--max-age-s",
        600.0,
        settings.positive_float,
        "how long a transiently failing signal is retried, from its first attempt",
    ),
    Setting(
        "FAKESVC_RETRY_500_S",
        "--retry-500-s",
        5.0,
        settings.non_negative_float,
        f"the window of a signal answered 500: {ATTEMPTS_ON_500} attempts within it, then dead-lettered",
    ),
    Setting(
        "FAKESVC_OUTBOX_MAX_MB",
        "--outbox-max-mb",
        None,
        settings.optional_positive_float,
        "cap on the outbox file's size",
    ),
)


class Batcher:
    """Write signals ahead without blocking; deliver them with bounded concurrency; account for all."""

    def __init__(self, config: BatcherConfig) -> None:
        self.config = config
        self.ledger = Ledger()
        self._policy = RetryPolicy(config.max_age_s, config.retry_500_s, config.backoff_base_s, config.backoff_max_s)
        self._pending: list[tuple[str, dict[str, Any]]] = []
        self._changes = Changes()
        self._held: set[Held] = set()  # every signal in memory: ready, in flight or waiting for a retry
        self._hold_max = min(config.queue_max, config.batch_concurrency * HELD_PER_SENDER)
        self._ready: asyncio.Queue[Held] = asyncio.Queue()  # a put wakes one sender, not all of them
        self._retry_timers: dict[Held, asyncio.TimerHandle] = {}
        self._retries_due: deque[Held] = deque()  # backoff over, waiting for a retry lane
        self._retries_admitted: set[Held] = set()  # retries ready or in flight: at most ``_retry_lanes``
        self._retry_lanes = max(1, config.batch_concurrency // 2)
        self._wake = asyncio.Event()  # the writer has work
        self._up = asyncio.Event()  # the backend answers: senders may send
        self._up.set()
        self._outbox: Outbox | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._session: aiohttp.ClientSession | None = None
        self._fresh_session: aiohttp.ClientSession | None = None  # a new connection per request
        self._base_url = config.prodsentinel_url.rstrip("/")
        self.status = BackendStatus(config.prodsentinel_url)
        self._urls = {kind: URL(self._base_url + route) for kind, route in ROUTES.items()}  # keeps a path prefix
        self._health_checked_at = float("-inf")
        self._drop_line_at: float | None = None
        self._dropped_said = 0
        self._deadlines: dict[asyncio.Task[Any], float] = {}  # sender -> when its POST times out
        self._expired: set[asyncio.Task[Any]] = set()  # senders the watchdog cancelled
        self._tasks: list[asyncio.Task[None]] = []
        self._writer: asyncio.Task[None] | None = None
        self._prober: asyncio.Task[None] | None = None
        self._health_check: asyncio.Task[None] | None = None
        self._closed = False
        self._stopping = False
        self._summary: dict[str, Any] | None = None
        self._disk_error: str | None = None
        self._outbox_view: dict[str, Any] = {}
        self._outbox_view_at = 0.0

    # -- the hot path -----------------------------------------------------------------

    def emit(self, kind: str, signal: dict[str, Any]) -> None:
        """Queue one signal of ``kind`` (``log``, ``trace``, ``metric``); never blocks, raises or awaits.

        Nothing is refused while the process runs: the writer moves the list to disk every
        ``commit_interval_s``, however long it grew. Only a signal emitted after close is dropped.
        """
        if self._closed:
            self.ledger.refused()
            self._dropped("emitted after the telemetry closed")
            return
        self._pending.append((kind, signal))
        self.ledger.emitted()
        if not self._wake.is_set():
            self._wake.set()

    def _dropped(self, why: str) -> None:
        """A lost signal is lost evidence: said at once, then at most once per ``DROP_LINE_EVERY_S``."""
        now = time.monotonic()
        if self._drop_line_at is not None and now - self._drop_line_at < DROP_LINE_EVERY_S:
            return
        self._drop_line_at = now
        dropped = self.ledger.dropped
        say(f"telemetry: {dropped - self._dropped_said} signals dropped ({why}); {dropped} in all, the run fails")
        self._dropped_said = dropped

    # -- lifecycle ----------------------------------------------------------------------

    async def start(self) -> None:
        """Open this process's outbox, adopt those of dead processes, open the session, start the workers."""
        loop = asyncio.get_running_loop()
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="fakesvc-outbox")
        max_bytes = None if self.config.outbox_max_mb is None else int(self.config.outbox_max_mb * 1024 * 1024)
        try:
            self._outbox = await loop.run_in_executor(
                self._executor, partial(Outbox, Path(self.config.spill_dir), self._base_url, max_bytes=max_bytes)
            )
        except OutboxError as exc:
            self._executor.shutdown(wait=False)
            raise ConfigError(f"FAKESVC_SPILL_DIR: {exc}") from None
        adoption = await loop.run_in_executor(self._executor, self._outbox.adopt_orphans)
        self.ledger.adopted_rows(adoption.rows)
        self.ledger.quarantined += len(adoption.quarantined)
        for note in adoption.quarantined:
            say(f"telemetry: outbox {note} did not read whole; set aside as quarantine-*")
        if adoption.rows:
            say(f"telemetry: adopted {adoption.rows} undelivered signals from {adoption.files} earlier outboxes")
        for backend, count in adoption.foreign.items():
            say(
                f"telemetry: {count} signals in {self.config.spill_dir} were written for {backend}, not "
                f"{self._base_url}; they stay there. Send them: python -m fakesvc.telemetry.outbox "
                f"{self.config.spill_dir} --send {backend}; or drop them: --discard {backend}"
            )
        self._session = self._new_session(
            aiohttp.TCPConnector(limit=self.config.batch_concurrency, keepalive_timeout=30)
        )
        self._fresh_session = self._new_session(aiohttp.TCPConnector(force_close=True))
        self._tasks = [asyncio.ensure_future(self._send_loop()) for _ in range(self.config.batch_concurrency)]
        self._tasks.append(asyncio.ensure_future(self._watchdog_loop()))
        self._writer = asyncio.ensure_future(self._write_loop())
        if self.ledger.stored:
            self._wake.set()

    def _new_session(self, connector: aiohttp.TCPConnector) -> aiohttp.ClientSession:
        return aiohttp.ClientSession(
            connector=connector,
            # no timer per POST (the watchdog keeps the deadline); one per new connection
            timeout=aiohttp.ClientTimeout(sock_connect=self.config.request_timeout_s * CONNECT_SHARE_OF_TIMEOUT),
            headers=SESSION_HEADERS,
            skip_auto_headers=SKIPPED_AUTO_HEADERS,
            cookie_jar=aiohttp.DummyCookieJar(),
            auto_decompress=False,
        )

    async def flush(self, timeout: float) -> bool:
        """Wait until every signal was delivered or dead-lettered; False if ``timeout`` ran out.

        Gives up at once while the backend is unreachable: nothing more can leave then.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while self.ledger.backlog:
            if loop.time() >= deadline or not self._up.is_set():
                return False
            await asyncio.sleep(0.01)
        return True

    async def close(self, deadline: float | None = None) -> dict[str, Any]:
        """Flush within ``deadline`` seconds, put the rest back on disk, close; return the summary.

        Idempotent, and the outbox's last transaction is committed before it returns,
        even when a step before it fails.
        """
        if self._summary is not None:
            return self._summary
        flushed = False
        try:
            if self._outbox is not None:
                flushed = await self.flush(self.config.flush_deadline_s if deadline is None else deadline)
        finally:
            self._closed = True
            self._stopping = True
            try:
                await self._stop_workers()
                await self._release()
            finally:
                for session in (self._session, self._fresh_session):
                    if session is not None:
                        await session.close()
                self.status.close()
        self._summary = {**self.stats(), "flushed": flushed}
        return self._summary

    async def _stop_workers(self) -> None:
        tasks = [*self._tasks, *(task for task in (self._prober, self._health_check) if task is not None)]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for timer in self._retry_timers.values():
            timer.cancel()
        self._retry_timers.clear()
        self._retries_due.clear()
        self._retries_admitted.clear()
        if self._writer is not None:
            self._wake.set()
            await asyncio.gather(self._writer, return_exceptions=True)  # ends after its current commit

    async def _release(self) -> None:
        """Commit what is pending, put every held signal back to wait on disk, close the file."""
        if self._outbox is None or self._executor is None:
            return
        loop = asyncio.get_running_loop()
        outbox = self._outbox
        await self._commit(room=0)
        held = list(self._held)
        stored, error = await loop.run_in_executor(self._executor, outbox.release, held, self._take_changes())
        self.ledger.released(stored, len(held) - stored)
        self._held.clear()
        if error is not None:
            self._disk_failed(error)
        await loop.run_in_executor(self._executor, outbox.close)
        self._executor.shutdown(wait=True)

    def stats(self) -> dict[str, Any]:
        """The ledger, where the undelivered signals are, the backend as seen from here, and the outbox.

        Current at each read: the oldest signal's age is counted now (0 with nothing waiting).
        """
        ledger = self.ledger
        view = dict(self._outbox_view)
        oldest_at = view.pop("oldest_at", None)
        if not ledger.backlog:
            age: float | None = 0.0
        else:
            age = None if oldest_at is None else round(max(0.0, time.time() - oldest_at), 3)
        return {
            **ledger.snapshot(),
            "in_memory": ledger.pending + ledger.held,
            "on_disk": ledger.stored,
            "waiting_retry": self._waiting_retries,
            "backend": self.config.prodsentinel_url,
            "backend_up": self._up.is_set(),
            "backend_status": self.status.to_json(),
            "outbox": {**view, "oldest_age_s": age, "write_error": self._disk_error},
        }

    @property
    def degraded(self) -> str | None:
        """Why signals are not durable right now (the outbox cannot be written), or None."""
        return self._disk_error

    # -- the writer ---------------------------------------------------------------------

    async def _write_loop(self) -> None:
        """Group commit: wake on work, let the group gather for one interval, commit it off the loop."""
        failures = 0
        while not self._stopping:
            try:
                await asyncio.wait_for(self._wake.wait(), OUTBOX_VIEW_EVERY_S)
            except TimeoutError:  # idle: keep /telemetry's view of the outbox within a second of the disk
                await self._refresh_outbox_view()
                continue
            await asyncio.sleep(self.config.commit_interval_s * (2 ** min(failures, 8)))
            if self._stopping:
                return
            self._wake.clear()
            ok = await self._commit(room=self._hold_max - self.ledger.held + self._waiting_retries)
            failures = 0 if ok else failures + 1
            if not ok or self.ledger.pending or self._changes:
                self._wake.set()  # retry the disk (with backoff) or take what came meanwhile

    async def _commit(self, room: int) -> bool:
        """One group commit; moves the signals and their counts; False when the disk refused it.

        ``room``: how many more signals may be held to send. Oldest first: while rows wait
        on disk, new ones join them there and the oldest are claimed.
        """
        assert self._outbox is not None and self._executor is not None, "start() opens the outbox"
        loop = asyncio.get_running_loop()
        new, self._pending = self._pending, []
        changes = self._take_changes()
        room = max(0, min(room, self.config.queue_max - self.ledger.held))
        room = room if self._up.is_set() and not self._stopping else 0
        hold, claim = (0, room) if self.ledger.stored else (room, 0)
        try:
            result = await loop.run_in_executor(self._executor, self._outbox.commit, new, hold, changes, claim)
        except Exception as exc:  # not the disk (that is in the result): a signal that will not encode
            self.ledger.kept_in_memory(0, len(new))
            changes.merge(self._changes)
            self._changes = changes
            self._disk_failed(f"{type(exc).__name__}: {exc}")
            self._dropped(f"a group of signals would not encode: {type(exc).__name__}: {exc}")
            return False
        if result.changes_failed:
            changes.merge(self._changes)
            self._changes = changes  # tried again with the next commit
        if result.unstored:
            room = max(0, self.config.queue_max - self.ledger.held)
            kept = result.unstored[:room]
            self.ledger.kept_in_memory(len(kept), len(result.unstored) - len(kept))
            self._hold(kept)
            if len(kept) < len(result.unstored):
                self._dropped(f"the outbox cannot be written and {self.config.queue_max} are held in memory")
        else:
            self.ledger.committed(len(result.held), result.stored)
            self._hold(result.held)
            self.ledger.claimed(len(result.claimed))
            self._hold(result.claimed)
        if result.error is not None:
            self._disk_failed(result.error)
            return False
        if new:
            self._disk_error = None  # new rows were written: durable again (a commit of changes alone says less)
        await self._refresh_outbox_view()
        return True

    def _hold(self, signals: list[Held]) -> None:
        for held in signals:
            self._held.add(held)
            if not self._stopping:
                self._ready.put_nowait(held)

    def _take_changes(self) -> Changes:
        changes, self._changes = self._changes, Changes()
        return changes

    def _disk_failed(self, error: str) -> None:
        """Counted every time, said once a process: a filling disk flaps between full and not."""
        self.ledger.write_errors += 1
        if self.ledger.write_errors == 1:
            say(f"telemetry: cannot write the outbox in {self.config.spill_dir} ({error}); holding signals in memory")
        self._disk_error = error

    async def _refresh_outbox_view(self) -> None:
        """The outbox's size and its oldest waiting record, for ``/telemetry`` (at most once a second)."""
        loop = asyncio.get_running_loop()
        if loop.time() - self._outbox_view_at < OUTBOX_VIEW_EVERY_S or self._outbox is None:
            return
        self._outbox_view_at = loop.time()
        outbox = self._outbox

        def look() -> dict[str, Any]:
            return {"path": str(outbox.path), "bytes": outbox.size_bytes(), "oldest_at": outbox.oldest_at()}

        self._outbox_view = await loop.run_in_executor(self._executor, look)

    # -- delivery -----------------------------------------------------------------------

    @property
    def _waiting_retries(self) -> int:
        """Signals in memory waiting for their backoff or a retry lane: they do not take a new one's room."""
        return len(self._retry_timers) + len(self._retries_due)

    async def _send_loop(self) -> None:
        while True:
            held = await self._ready.get()
            if not self._up.is_set():
                await self._up.wait()
            status, retry_after = await self._post(held)
            self._retries_admitted.discard(held)
            self._settle(held, status, retry_after)
            self._admit_retries()

    def _settle(self, held: Held, status: int | None, retry_after: float | None) -> None:
        """Move a signal after an attempt: delivered, dead, or back to wait for its retry."""
        if status is not None and 200 <= status < 300:
            self._held.discard(held)
            self.ledger.delivered(held.maybe_seen)
            if held.row is not None:
                self._changes.delivered.append(held.row)
            self._wake_writer()
            return
        now = time.time()
        held.attempts += 1
        if is_server_error(status):
            held.answers_500 += 1
            if held.first_500_at is None:
                held.first_500_at = now
        assert held.first_try_at is not None, "_post stamps the first attempt"
        reason = self._policy.dead_reason(
            status,
            first_try_at=held.first_try_at,
            attempts=held.attempts,
            first_500_at=held.first_500_at,
            answers_500=held.answers_500,
            maybe_seen=held.maybe_seen,
            now=now,
        )
        if status is not None:
            self.status.refused(status, held.answer, self._what_next)
        if reason is not None:
            self._held.discard(held)
            self.ledger.dead(reason)
            self._changes.dead.append((held, reason))
            self._wake_writer()
            return
        if status is None or status in UNAVAILABLE:
            self._check_health(held.answer)
        self.ledger.retried += 1
        if held.row is not None:
            self._changes.retried.append(held)
        delay = self._policy.delay_s(held.attempts, status, retry_after)
        self._retry_timers[held] = asyncio.get_running_loop().call_later(delay, self._retry, held)

    def _what_next(self, status: int) -> str:
        """What happens to a signal refused with ``status``: said with the first such refusal."""
        if is_permanent(status):
            return "such signals are dead-lettered at once"
        if is_server_error(status):
            return (
                f"such signals get {ATTEMPTS_ON_500} attempts within {self.config.retry_500_s:g} s, "
                "then are dead-lettered (uncertain if an earlier attempt may have been stored)"
            )
        return f"such signals are retried with backoff for {self.config.max_age_s:g} s"

    def _retry(self, held: Held) -> None:
        del self._retry_timers[held]
        self._retries_due.append(held)
        self._admit_retries()

    def _admit_retries(self) -> None:
        """Hand due retries to the senders while fewer than ``_retry_lanes`` are ready or in flight."""
        while self._retries_due and len(self._retries_admitted) < self._retry_lanes and not self._stopping:
            held = self._retries_due.popleft()
            self._retries_admitted.add(held)
            self._ready.put_nowait(held)

    def _wake_writer(self) -> None:
        if not self._wake.is_set():
            self._wake.set()

    async def _post(self, held: Held) -> tuple[int | None, float | None]:
        """One attempt; the status (None if there was no answer) and any ``Retry-After``.

        A request the backend never read (its kept-alive connection was closed after the
        previous answer) goes again at once on a fresh connection, within the same deadline.
        """
        assert self._session is not None and self._fresh_session is not None, "start() opens the sessions"
        sender = asyncio.current_task()
        assert sender is not None, "senders are tasks"
        self._deadlines[sender] = asyncio.get_running_loop().time() + self.config.request_timeout_s
        if held.first_try_at is None:
            held.first_try_at = time.time()
        try:
            try:
                return await self._send(self._session, held)
            except _StaleConnection:
                self.status.reset()
            try:
                status, retry_after = await self._send(self._fresh_session, held)
            except _StaleConnection as exc:
                held.answer = {"status": None, "error": str(exc)}
                status, retry_after = None, None
            if status is None:
                held.maybe_seen = True  # not even a fresh connection got an answer: the first may have been read
            return status, retry_after
        except asyncio.CancelledError:
            held.maybe_seen = True  # cut by close or the watchdog: it may have been stored
            if not self._cut_by_watchdog(sender):
                raise
            held.answer = {"status": None, "error": f"timeout after {self.config.request_timeout_s:g} s"}
            return None, None
        finally:
            del self._deadlines[sender]

    async def _send(self, session: aiohttp.ClientSession, held: Held) -> tuple[int | None, float | None]:
        try:
            async with session.post(self._urls[held.kind], data=held.body) as response:
                body = await response.read()
                status = response.status
                retry_after = retry_after_s(response.headers.get("Retry-After")) if status >= 300 else None
        except aiohttp.ClientError as exc:
            if _stale(exc):
                raise _StaleConnection(f"{type(exc).__name__}: {exc}") from None
            held.maybe_seen = held.maybe_seen or not isinstance(exc, NEVER_SEEN)
            held.answer = {"status": None, "error": f"{type(exc).__name__}: {exc}"}
            if isinstance(exc, NEVER_SEEN):
                self._backend_down(held.answer)  # refused: nobody is there
            return None, None
        if status >= 300:
            held.answer = {"status": status, "body": body.decode("utf-8", "replace")[:2000]}
        return status, retry_after

    async def _watchdog_loop(self) -> None:
        """Cancel each sender whose POST is past its deadline; ``_post`` turns that into a timeout."""
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(self.config.request_timeout_s / WATCHDOG_TICKS_PER_TIMEOUT)
            now = loop.time()
            for sender, deadline in self._deadlines.items():
                if deadline <= now and sender not in self._expired:
                    self._expired.add(sender)
                    sender.cancel()

    def _cut_by_watchdog(self, sender: asyncio.Task[Any]) -> bool:
        """Whether the watchdog alone cancelled ``sender`` (a close cancelling too still wins)."""
        if sender not in self._expired:
            return False
        self._expired.discard(sender)
        return sender.uncancel() == 0

    # -- the backend's health -----------------------------------------------------------

    def _backend_down(self, answer: dict[str, Any] | None) -> None:
        """Pause the senders and probe until the backend answers; said through ``status``."""
        if not self._up.is_set() or self._stopping:
            return
        self._up.clear()
        self.status.unreachable((answer or {}).get("error") or f"HTTP {(answer or {}).get('status')}")
        self._prober = asyncio.ensure_future(self._probe_until_up())

    def _check_health(self, answer: dict[str, Any] | None) -> None:
        """No answer, or 502-504: down only if the health route fails too; a healthy backend is refusing."""
        loop = asyncio.get_running_loop()
        busy = self._health_check is not None and not self._health_check.done()
        if busy or not self._up.is_set() or self._stopping:
            return
        if loop.time() - self._health_checked_at < HEALTH_CHECK_EVERY_S:
            return
        self._health_checked_at = loop.time()

        async def check() -> None:
            if not await self._healthy():
                self._backend_down(answer)

        self._health_check = asyncio.ensure_future(check())

    async def _healthy(self) -> bool:
        """One ``GET /ingest/health`` on a fresh connection; any answer but 5xx/429 counts (404: no such route)."""
        assert self._fresh_session is not None, "start() opens the sessions"
        self.status.probed()
        try:
            async with self._fresh_session.get(
                URL(self._base_url + HEALTH_PATH), timeout=aiohttp.ClientTimeout(total=self.config.request_timeout_s)
            ) as r:
                await r.read()
                return r.status < 500 and r.status != 429
        except (aiohttp.ClientError, TimeoutError):
            return False

    async def _probe_until_up(self) -> None:
        delay = self.config.backoff_base_s
        while True:
            await asyncio.sleep(delay * random.uniform(0.5, 1.0))
            delay = min(delay * 2, self.config.backoff_max_s)
            if await self._healthy():
                break
        self.status.back()
        self._up.set()
        self._wake_writer()  # claim what waits on disk


def dead_letters_text(stats: dict[str, Any]) -> str:
    """``1996 (http_500 1990, rejected_422 6)``: the dead letters and their reasons."""
    by = stats.get("dead_by") or {}
    reasons = ", ".join(f"{reason} {count}" for reason, count in by.items())
    return f"{stats.get('dead_lettered', 0)}" + (f" ({reasons})" if reasons else "")


def format_summary(stats: dict[str, Any]) -> str:
    """The shutdown summary: where every signal of this run ended, and what the backend answered."""
    if not stats.get("remote", True):
        return "telemetry: nothing was sent remotely"
    adopted = " (+{adopted} adopted)".format(**stats) if stats.get("adopted") else ""
    refusals = (stats.get("backend_status") or {}).get("refusals") or {}
    refused = "; backend refusals " + ", ".join(f"HTTP {s} {n}" for s, n in refusals.items()) if refusals else ""
    return (
        "telemetry to {backend}: queued {queued}{adopted_note}, sent {sent}, dead-lettered {dead}, "
        "uncertain {uncertain}, dropped {dropped}, left in the outbox {backlog}; retried {retried}, "
        "resent_uncertain {resent_uncertain}{refused}".format(
            adopted_note=adopted, dead=dead_letters_text(stats), refused=refused, **stats
        )
    )
