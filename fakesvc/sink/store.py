"""SQLite storage of the sink: group commit on one writer thread, reads on another.

sqlite3 blocks, so it never runs on the event loop. Requests waiting to be
stored are gathered while the previous batch commits, and each batch is one
transaction: a 202 means the signal is on disk, and the sink still takes
thousands of signals a second.
"""

from __future__ import annotations

import asyncio
import sqlite3
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any

from fakesvc.jsonfast import loads
from fakesvc.sink.query import SignalQuery
from fakesvc.sink.validation import epoch_us, parse_timestamp

TABLE = """
CREATE TABLE IF NOT EXISTS raw_signals (
    id TEXT PRIMARY KEY,
    signal_type TEXT NOT NULL,
    trace_id TEXT NOT NULL,
    service_name TEXT NOT NULL,
    timestamp TEXT NOT NULL,
    payload TEXT NOT NULL,
    received_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    ts_us INTEGER
);
CREATE TABLE IF NOT EXISTS incidents (id INTEGER PRIMARY KEY, trace_id TEXT NOT NULL);
"""
# ``timestamp`` is kept as sent (Z, an offset or no zone); ``ts_us`` orders and filters them as one
# clock. Each index ends in the answer's order, so a page never sorts the table. signal_type alone
# (a third of the rows) walks the time index: its own index cost ~10 % of the write rate.
# ``incidents`` (written only with --trace-race, fakesvc.sink.flaws) is ProdSentinel's: its trace
# index is NOT unique, which is what lets two overlapping first signals both open one.
INDEXES = """
DROP INDEX IF EXISTS raw_signals_trace;
DROP INDEX IF EXISTS raw_signals_service;
CREATE INDEX IF NOT EXISTS raw_signals_time ON raw_signals (ts_us, id);
CREATE INDEX IF NOT EXISTS raw_signals_trace_time ON raw_signals (trace_id, ts_us, id);
CREATE INDEX IF NOT EXISTS raw_signals_service_time ON raw_signals (service_name, ts_us, id);
CREATE INDEX IF NOT EXISTS incidents_trace ON incidents (trace_id);
"""
COLUMNS = "id, signal_type, trace_id, service_name, timestamp, payload"
ITEM_COLUMNS = f"{COLUMNS}, ts_us"  # what an answer's item is made of
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

Row = tuple[str, str, str, str, str, str]  # id, signal_type, trace_id, service_name, timestamp, payload


def _stored_epoch_us(timestamp: str) -> int | None:
    moment = parse_timestamp(timestamp)
    return None if moment is None else epoch_us(moment)


def _add_time_column(connection: sqlite3.Connection) -> None:
    """A database written before ``ts_us`` existed gets it, filled from ``timestamp``, once."""
    if any(column[1] == "ts_us" for column in connection.execute("PRAGMA table_info(raw_signals)")):
        return
    connection.create_function("epoch_us", 1, _stored_epoch_us, deterministic=True)
    connection.execute("BEGIN")
    connection.execute("ALTER TABLE raw_signals ADD COLUMN ts_us INTEGER")
    connection.execute("UPDATE raw_signals SET ts_us = epoch_us(timestamp)")
    connection.execute("COMMIT")


def _connect(path: str) -> sqlite3.Connection:
    connection = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
    connection.execute("PRAGMA journal_mode=WAL")
    connection.execute("PRAGMA synchronous=NORMAL")
    connection.execute("PRAGMA busy_timeout=5000")
    return connection


def _utc_text(ts_us: int) -> str:
    """``2026-11-24T10:00:03.500000Z``: a stored time as pydantic writes a UTC datetime (no fraction at .0)."""
    moment = _EPOCH + timedelta(microseconds=ts_us)
    return moment.isoformat(timespec="microseconds" if moment.microsecond else "seconds").replace("+00:00", "Z")


def _canonical_id(signal_id: str) -> str:
    """A UUID in its canonical form (ProdSentinel's column is a UUID); a row written otherwise, as stored."""
    try:
        return str(uuid.UUID(signal_id))
    except ValueError:
        return signal_id


def _item(row: tuple[Any, ...]) -> dict[str, Any]:
    """A row as ProdSentinel's query API answers it (its ``SignalRead``): the id as a canonical UUID,
    the time in UTC as its database gives it back, whatever zone it was sent with, and the payload
    as sent."""
    signal_id, signal_type, trace_id, service_name, timestamp, payload, ts_us = row
    return {
        "id": _canonical_id(signal_id),
        "signal_type": signal_type,
        "trace_id": trace_id,
        "service_name": service_name,
        "timestamp": timestamp if ts_us is None else _utc_text(ts_us),
        "payload": loads(payload),
    }


def page_sql(query: SignalQuery) -> tuple[str, str, tuple[str | int, ...]]:
    """The SQL of one page (LIMIT and OFFSET last), of its total (the same WHERE), and their parameters."""
    clauses: list[str] = []
    params: list[str | int] = []
    for column, value in query.filters.items():
        clauses.append(f"{column} = ?")
        params.append(value)
    for clause, bound in (("ts_us >= ?", query.start_us), ("ts_us <= ?", query.end_us)):
        if bound is not None:
            clauses.append(clause)
            params.append(bound)
    where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
    page = f"SELECT {ITEM_COLUMNS} FROM raw_signals {where} ORDER BY ts_us DESC, id DESC LIMIT ? OFFSET ?"
    return page, f"SELECT COUNT(*) FROM raw_signals {where}", tuple(params)


class SignalStore:
    """The ``raw_signals`` table, written in batches, read without blocking the writer."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._writer = ThreadPoolExecutor(1, thread_name_prefix="sink-writer")
        self._reader = ThreadPoolExecutor(1, thread_name_prefix="sink-reader")
        self._write_connection: sqlite3.Connection | None = None
        self._read_connection: sqlite3.Connection | None = None
        self._pending: list[tuple[Row, asyncio.Future[bool]]] = []
        self._writing: asyncio.Task[None] | None = None

    async def open(self) -> None:
        loop = asyncio.get_running_loop()
        self._write_connection = await loop.run_in_executor(self._writer, self._open_writer)
        # ":memory:" is one database per connection: read through the writer's then.
        if self.path == ":memory:":
            self._read_connection = self._write_connection
            self._reader = self._writer
        else:
            self._read_connection = await loop.run_in_executor(self._reader, _connect, self.path)

    def _open_writer(self) -> sqlite3.Connection:
        connection = _connect(self.path)
        connection.executescript(TABLE)
        _add_time_column(connection)
        connection.executescript(INDEXES)
        return connection

    async def close(self) -> None:
        if self._writing is not None:
            await self._writing
        loop = asyncio.get_running_loop()
        for executor, connection in ((self._writer, self._write_connection), (self._reader, self._read_connection)):
            if connection is not None:
                await loop.run_in_executor(executor, connection.close)
        self._writer.shutdown()
        self._reader.shutdown()

    def insert(self, row: Row) -> asyncio.Future[bool]:
        """Store one signal; the future says True when stored, False when its id was already there."""
        future: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._pending.append((row, future))
        if self._writing is None:
            self._writing = asyncio.ensure_future(self._write_pending())
        return future

    async def _write_pending(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while self._pending:
                # One more turn of the loop first: requests already read but not yet parsed join
                # this batch (2.0 -> 2.4 rows a commit at 8 concurrent senders, ~6 % less CPU a signal).
                await asyncio.sleep(0)
                batch, self._pending = self._pending, []
                try:
                    stored = await loop.run_in_executor(self._writer, self._write_batch, [row for row, _ in batch])
                except sqlite3.Error as exc:
                    for _, future in batch:
                        if not future.done():
                            future.set_exception(exc)
                    continue
                for (_, future), was_new in zip(batch, stored):
                    if not future.done():
                        future.set_result(was_new)
        finally:
            self._writing = None

    def _write_batch(self, rows: list[Row]) -> list[bool]:
        connection = self._write_connection
        assert connection is not None
        results = []
        connection.execute("BEGIN")
        try:
            for row in rows:
                cursor = connection.execute(
                    f"INSERT OR IGNORE INTO raw_signals ({COLUMNS}, ts_us) VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (*row, _stored_epoch_us(row[4])),  # parsed here, on the writer thread, not on the loop
                )
                results.append(cursor.rowcount == 1)
            connection.execute("COMMIT")
        except BaseException:
            connection.execute("ROLLBACK")
            raise
        return results

    async def _write(self, sql: str, params: tuple[Any, ...]) -> None:
        """One statement in its own transaction, on the writer's thread, between two batches."""
        connection = self._write_connection
        assert connection is not None
        await asyncio.get_running_loop().run_in_executor(self._writer, connection.execute, sql, params)

    async def _read(self, sql: str, params: tuple[Any, ...]) -> list[tuple[Any, ...]]:
        connection = self._read_connection
        assert connection is not None
        return await asyncio.get_running_loop().run_in_executor(
            self._reader, lambda: connection.execute(sql, params).fetchall()
        )

    async def query(self, query: SignalQuery) -> tuple[list[dict[str, Any]], int]:
        """One page of the matching signals, newest first, and how many match in all."""
        page, count, params = page_sql(query)
        rows = await self._read(page, (*params, query.limit, query.offset))
        [(total,)] = await self._read(count, params)
        return [_item(row) for row in rows], total

    async def trace(self, trace_id: str) -> list[dict[str, Any]]:
        """Every signal of one trace, oldest first."""
        rows = await self._read(
            f"SELECT {ITEM_COLUMNS} FROM raw_signals WHERE trace_id = ? ORDER BY ts_us, id", (trace_id,)
        )
        return [_item(row) for row in rows]

    async def incidents(self, trace_id: str) -> int:
        """How many incidents ``trace_id`` has: one round trip."""
        [(found,)] = await self._read("SELECT COUNT(*) FROM incidents WHERE trace_id = ?", (trace_id,))
        return int(found)

    async def open_incident(self, trace_id: str) -> None:
        """Add an incident to ``trace_id``, whatever it has already: another round trip."""
        await self._write("INSERT INTO incidents (trace_id) VALUES (?)", (trace_id,))

    async def poisoned(self) -> list[str]:
        """The traces with more than one incident, in order."""
        rows = await self._read(
            "SELECT trace_id FROM incidents GROUP BY trace_id HAVING COUNT(*) > 1 ORDER BY trace_id", ()
        )
        return [trace_id for (trace_id,) in rows]

    async def counts(self) -> dict[str, int]:
        rows = await self._read("SELECT signal_type, COUNT(*) FROM raw_signals GROUP BY signal_type", ())
        return {kind: count for kind, count in rows}
