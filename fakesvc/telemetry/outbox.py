"""The durable outbox: one SQLite file per process, one row per signal until it is delivered.

Every call here blocks on disk; the batcher makes them from its one writer
thread, never from the event loop. The file is WAL with ``synchronous=NORMAL``:
a commit survives a killed process (the promise), not a power cut.

Each process owns its file through SQLite's own lock (``locking_mode=EXCLUSIVE``,
taken at open and held until close), which works the same on Windows and
POSIX and is released by the OS when the process dies. That lock is what says
who is alive: at start a process *adopts* every other outbox in the directory
whose lock it can take, moves the waiting rows into its own file and deletes the
old one. A file that does not read whole is salvaged row by row and set aside as
``quarantine-*.db``; a start never fails because of old data.

Rows: ``state`` 0 waits on disk, 1 is held in memory by the owner (being sent, or
waiting for a retry), 2 is dead (kept, with the answer and the reason). A
delivered row is deleted. A held row found in an adopted file was in flight when
its owner died: the backend may have stored it, so it is marked ``maybe_seen``.
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fakesvc.jsonfast import dumps_bytes

WAITING, HELD, DEAD = 0, 1, 2
OUTBOX_GLOB = "outbox-*.db"
LEGACY_SPILL_GLOB = "spill-*.jsonl"  # fakesvc before the outbox spilled here
LEGACY_CLAIMED_GLOB = "claimed-*.jsonl"  # and renamed a file it was replaying, stranding it on a crash
MAX_VARIABLES = 999  # SQLite's bound before 3.32; one statement per chunk, not one per row
SALVAGE_PAGE = 500
SALVAGE_MAX_FAILURES = 10_000
PAGE_SIZE = 4096

_SCHEMA = """
CREATE TABLE IF NOT EXISTS signals (
    id INTEGER PRIMARY KEY,
    path TEXT NOT NULL,
    body BLOB NOT NULL,
    state INTEGER NOT NULL,
    first_at REAL NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    maybe_seen INTEGER NOT NULL DEFAULT 0,
    first_500_at REAL,
    answer TEXT,
    reason TEXT,
    dead_at REAL
);
CREATE INDEX IF NOT EXISTS waiting ON signals(id) WHERE state = 0;
"""
_COLUMNS = "id, path, body, state, first_at, attempts, maybe_seen, first_500_at, answer, reason, dead_at"


class OutboxError(Exception):
    """The outbox cannot be opened at all (the directory is unusable)."""


class Held:
    """A signal in memory on its way: its row (None while the disk refuses it) and its history."""

    __slots__ = ("row", "path", "body", "first_at", "attempts", "maybe_seen", "first_500_at", "answer")

    def __init__(
        self,
        row: int | None,
        path: str,
        body: bytes,
        first_at: float,
        attempts: int = 0,
        maybe_seen: bool = False,
        first_500_at: float | None = None,
        answer: dict[str, Any] | None = None,
    ) -> None:
        self.row = row
        self.path = path
        self.body = body
        self.first_at = first_at
        self.attempts = attempts
        self.maybe_seen = maybe_seen
        self.first_500_at = first_500_at
        self.answer = answer

    def history(self) -> tuple[int, int, float | None, str | None]:
        return self.attempts, int(self.maybe_seen), self.first_500_at, _answer_text(self.answer)


def _answer_text(answer: dict[str, Any] | None) -> str | None:
    return None if answer is None else json.dumps(answer)


@dataclass
class Changes:
    """What the loop decided since the last commit, for rows that already exist."""

    delivered: list[int] = field(default_factory=list)
    retried: list[Held] = field(default_factory=list)
    dead: list[tuple[Held, str]] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.delivered or self.retried or self.dead)

    def merge(self, later: Changes) -> None:
        self.delivered += later.delivered
        self.retried += later.retried
        self.dead += later.dead


@dataclass
class Commit:
    """What one group commit did: rows to hold now, rows claimed from disk, or why it failed."""

    held: list[Held] = field(default_factory=list)
    stored: int = 0
    claimed: list[Held] = field(default_factory=list)
    unstored: list[Held] = field(default_factory=list)  # the insert failed: these are in memory only
    changes_failed: bool = False
    error: str | None = None


@dataclass
class Adoption:
    rows: int = 0
    files: int = 0
    quarantined: list[str] = field(default_factory=list)


class Outbox:
    """This process's outbox file. Not thread-safe: one thread makes every call."""

    def __init__(self, directory: Path, *, max_bytes: int | None = None) -> None:
        self.directory = directory
        try:
            directory.mkdir(parents=True, exist_ok=True)
            self.path = directory / f"outbox-{os.getpid()}-{uuid.uuid4().hex[:8]}.db"
            self._db = _open_owned(self.path)
            if max_bytes is not None:
                self._db.execute(f"PRAGMA max_page_count = {max(8, max_bytes // PAGE_SIZE)}")
        except (OSError, sqlite3.Error) as exc:
            raise OutboxError(f"cannot open an outbox in {directory}: {exc}") from None
        self._next_id = 1
        self._closed = False

    # -- start --------------------------------------------------------------------------

    def adopt_orphans(self) -> Adoption:
        """Take over the waiting rows of every outbox in the directory whose owner is gone."""
        result = Adoption()
        for path in sorted(self.directory.glob(OUTBOX_GLOB)):
            if path == self.path:
                continue
            try:
                rows = self._adopt(path)
            except _OwnerAlive:
                continue
            except sqlite3.DatabaseError as exc:
                rows = self._salvage(path)
                result.quarantined.append(f"{path.name} ({exc}; {rows} waiting rows saved)")
            else:
                _remove_database(path)
            result.rows += rows
            result.files += 1
        for path in sorted({*self.directory.glob(LEGACY_SPILL_GLOB), *self.directory.glob(LEGACY_CLAIMED_GLOB)}):
            rows, unreadable = self._adopt_legacy_spill(path)
            if unreadable:
                result.quarantined.append(f"{path.name} ({unreadable} unreadable lines skipped; {rows} saved)")
            result.rows += rows
            result.files += 1
        return result

    def _adopt_legacy_spill(self, path: Path) -> tuple[int, int]:
        """A spill file of fakesvc before the outbox (JSON lines): its records become waiting rows."""
        claimed = path.with_name(f"adopting-{os.getpid()}-{path.name}")
        try:
            path.rename(claimed)  # atomic: no other process adopts it too
            lines = claimed.read_bytes().splitlines()
            first_at = claimed.stat().st_mtime
        except OSError:
            return 0, 0
        rows, unreadable = [], 0
        for line in lines:
            try:
                record = json.loads(line)
                rows.append((record["path"], dumps_bytes(record["signal"]), int(record.get("attempts", 0))))
            except (ValueError, KeyError, TypeError):
                unreadable += 1  # a line cut by a crash or a full disk
        with self._db:
            _insert(
                self._db,
                "id, path, body, state, first_at, attempts",
                [
                    (self._next_id + i, route, body, WAITING, first_at, tries)
                    for i, (route, body, tries) in enumerate(rows)
                ],
            )
        self._next_id += len(rows)
        claimed.unlink()
        return len(rows), unreadable

    def _adopt(self, path: Path) -> int:
        try:
            self._db.execute("ATTACH DATABASE ? AS old", (str(path),))
        except sqlite3.OperationalError as exc:
            if "locked" in str(exc):
                raise _OwnerAlive from None
            raise
        try:
            try:
                self._db.execute("BEGIN IMMEDIATE")
            except sqlite3.OperationalError as exc:
                if "locked" in str(exc):
                    raise _OwnerAlive from None
                raise
            try:
                before = self._next_id
                columns = "path, body, state, first_at, attempts, maybe_seen, first_500_at, answer, reason, dead_at"
                self._db.execute(
                    f"INSERT INTO main.signals(id, {columns}) SELECT id + ?, path, body,"
                    f" CASE state WHEN {DEAD} THEN {DEAD} ELSE {WAITING} END, first_at, attempts,"
                    f" maybe_seen OR state = {HELD}, first_500_at, answer, reason, dead_at"
                    " FROM old.signals ORDER BY id",
                    (before,),
                )
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._next_id = self._max_id() + 1
            return self._count_waiting_since(before)
        finally:
            self._db.execute("DETACH DATABASE old")

    def _salvage(self, path: Path) -> int:
        """Copy the rows that still read into this outbox and set the file aside; return how many waited."""
        saved = 0
        try:
            source = sqlite3.connect(path, timeout=0, isolation_level=None)
        except sqlite3.Error:
            source = None
        if source is not None:
            try:
                for row in _rows_that_read(source):
                    self._insert_salvaged(row)
                    saved += row[3] != DEAD
            finally:
                source.close()
        target = path.with_name(f"quarantine-{time.strftime('%Y%m%dT%H%M%S')}-{path.name}")
        try:
            path.rename(target)
        except OSError:
            pass  # another process moved it first; what we saved is saved
        for suffix in ("-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)
        return saved

    def _insert_salvaged(self, row: tuple[Any, ...]) -> None:
        _, path, body, state, first_at, attempts, maybe_seen, first_500_at, answer, reason, dead_at = row
        state_now = DEAD if state == DEAD else WAITING
        seen = int(bool(maybe_seen) or state == HELD)
        self._db.execute(
            f"INSERT INTO signals({_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
            (self._next_id, path, body, state_now, first_at, attempts, seen, first_500_at, answer, reason, dead_at),
        )
        self._next_id += 1

    def _max_id(self) -> int:
        return int(self._db.execute("SELECT coalesce(max(id), 0) FROM signals").fetchone()[0])

    def _count_waiting_since(self, first_id: int) -> int:
        query = f"SELECT count(*) FROM signals WHERE id >= ? AND state = {WAITING}"
        return int(self._db.execute(query, (first_id,)).fetchone()[0])

    # -- the group commit ---------------------------------------------------------------

    def commit(self, new: list[tuple[str, dict[str, Any]]], hold: int, changes: Changes, claim: int) -> Commit:
        """Apply ``changes``; store ``new`` (the first ``hold`` of them held); claim ``claim`` waiting rows.

        Two transactions: the changes (deletes free space) and then the new rows,
        so a full disk still lets delivered rows go. Nothing here raises for a
        disk error: it is reported in the result and the caller keeps the data.
        """
        result = Commit()
        if changes:
            try:
                with self._db:
                    self._apply(changes)
            except sqlite3.Error as exc:
                result.changes_failed, result.error = True, _describe(exc)
        now = time.time()
        rows = [(path, dumps_bytes(signal), now) for path, signal in new]  # the bytes stored are the bytes sent
        if not rows and not claim:
            return result
        first_id = self._next_id
        try:
            with self._db:
                _insert(
                    self._db,
                    "id, path, body, state, first_at",
                    [
                        (first_id + i, path, body, HELD if i < hold else WAITING, first_at)
                        for i, (path, body, first_at) in enumerate(rows)
                    ],
                )
                claimed = self._claim(claim) if claim else []
        except sqlite3.Error as exc:
            result.error = _describe(exc)
            result.unstored = [Held(None, path, body, first_at) for path, body, first_at in rows]
            return result
        self._next_id = first_id + len(rows)
        result.held = [Held(first_id + i, *rows[i]) for i in range(min(hold, len(rows)))]
        result.stored = len(rows) - len(result.held)
        result.claimed = claimed
        return result

    def _apply(self, changes: Changes) -> None:
        _where_ids(self._db, "DELETE FROM signals", changes.delivered)
        self._db.executemany(
            "UPDATE signals SET attempts = ?, maybe_seen = ?, first_500_at = ?, answer = ? WHERE id = ?",
            [(*held.history(), held.row) for held in changes.retried if held.row is not None],
        )
        now = time.time()
        for held, reason in changes.dead:
            if held.row is None:
                self._db.execute(
                    "INSERT INTO signals(id, path, body, state, first_at) VALUES (?, ?, ?, ?, ?)",
                    (self._next_id, held.path, held.body, DEAD, held.first_at),
                )
                held.row, self._next_id = self._next_id, self._next_id + 1
            self._db.execute(
                "UPDATE signals SET state = ?, attempts = ?, maybe_seen = ?, first_500_at = ?, answer = ?,"
                " reason = ?, dead_at = ? WHERE id = ?",
                (DEAD, *held.history(), reason, now, held.row),
            )

    def _claim(self, limit: int) -> list[Held]:
        found = self._db.execute(
            "SELECT id, path, body, first_at, attempts, maybe_seen, first_500_at, answer FROM signals"
            f" WHERE state = {WAITING} ORDER BY id LIMIT ?",
            (limit,),
        ).fetchall()
        _where_ids(self._db, f"UPDATE signals SET state = {HELD}", [row[0] for row in found])
        return [
            Held(row, path, body, first_at, attempts, bool(seen), first_500_at, json.loads(answer) if answer else None)
            for row, path, body, first_at, attempts, seen, first_500_at, answer in found
        ]

    # -- stop ---------------------------------------------------------------------------

    def release(self, held: list[Held], changes: Changes) -> tuple[int, str | None]:
        """At close: apply the last changes and put every held signal back to wait on disk.

        Returns how many are stored now and the error if the disk refused them
        (then they are lost with the process, and the caller counts them dropped).
        """
        try:
            with self._db:
                self._apply(changes)
                stored = [h for h in held if h.row is not None]
                self._db.executemany(
                    f"UPDATE signals SET state = {WAITING}, attempts = ?, maybe_seen = ?, first_500_at = ?,"
                    " answer = ? WHERE id = ?",
                    [(*h.history(), h.row) for h in stored],
                )
                for h in held:
                    if h.row is None:
                        self._db.execute(
                            f"INSERT INTO signals({_COLUMNS}) VALUES (?, ?, ?, {WAITING}, ?, ?, ?, ?, ?, NULL, NULL)",
                            (self._next_id, h.path, h.body, h.first_at, *h.history()),
                        )
                        h.row, self._next_id = self._next_id, self._next_id + 1
        except sqlite3.Error as exc:
            return 0, _describe(exc)
        return len(held), None

    def close(self) -> None:
        """Close the file (idempotent); an empty outbox with no dead letters is removed."""
        if self._closed:
            return
        self._closed = True
        try:
            empty = self._db.execute("SELECT count(*) FROM signals").fetchone()[0] == 0
        except sqlite3.Error:
            empty = False
        self._db.close()
        if empty:
            _remove_database(self.path)

    # -- reading ------------------------------------------------------------------------

    def oldest_at(self) -> float | None:
        """When the oldest signal not yet delivered was emitted (None: there is none)."""
        row = self._db.execute(f"SELECT first_at FROM signals WHERE state < {DEAD} ORDER BY id LIMIT 1").fetchone()
        return None if row is None else float(row[0])

    def size_bytes(self) -> int:
        return sum(_file_size(Path(f"{self.path}{suffix}")) for suffix in ("", "-wal"))


class _OwnerAlive(Exception):
    """The outbox's lock is held: its process is running."""


def _open_owned(path: Path) -> sqlite3.Connection:
    db = sqlite3.connect(path, timeout=0, isolation_level=None, check_same_thread=False)
    db.execute("PRAGMA locking_mode = EXCLUSIVE")  # before WAL: the lock, and no -shm file
    db.execute("PRAGMA journal_mode = WAL")
    db.execute("PRAGMA synchronous = NORMAL")
    db.executescript(_SCHEMA)  # the first write takes the exclusive lock, held until close
    db.isolation_level = "DEFERRED"  # ``with db:`` now wraps each group in one transaction
    return db


def _rows_that_read(source: sqlite3.Connection) -> Iterator[tuple[Any, ...]]:
    """Every row that still reads: page by page by id, and one id at a time across a page that raises."""
    select = f"SELECT {_COLUMNS} FROM signals"
    last, failures = 0, 0
    while failures < SALVAGE_MAX_FAILURES:
        try:
            page = source.execute(f"{select} WHERE id > ? ORDER BY id LIMIT ?", (last, SALVAGE_PAGE)).fetchall()
        except sqlite3.DatabaseError:
            failures += 1
            for row_id in range(last + 1, last + 1 + SALVAGE_PAGE):
                try:
                    yield from source.execute(f"{select} WHERE id = ?", (row_id,)).fetchall()
                except sqlite3.DatabaseError:
                    failures += 1
            last += SALVAGE_PAGE
            continue
        if not page:
            return
        yield from page
        last = page[-1][0]


def read_dead_letters(directory: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Every dead letter in the outboxes of ``directory``; a live process's outbox is locked and skipped."""
    letters = []
    for path in sorted(Path(directory).glob(OUTBOX_GLOB)):
        try:
            db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=0)
        except sqlite3.Error:
            continue
        try:
            found = db.execute(
                "SELECT path, body, attempts, maybe_seen, answer, reason, dead_at FROM signals"
                f" WHERE state = {DEAD} ORDER BY id"
            ).fetchall()
        except sqlite3.Error:
            continue  # its owner is running (locked), or it is damaged: the next start salvages it
        finally:
            db.close()
        for route, body, attempts, seen, answer, reason, dead_at in found:
            letters.append(
                {
                    "path": route,
                    "signal": json.loads(body),
                    "attempts": attempts,
                    "resent_uncertain": bool(seen),
                    "answer": json.loads(answer) if answer else None,
                    "reason": reason,
                    "at": dead_at,
                }
            )
    return letters


def main(argv: list[str] | None = None) -> None:
    """``python -m fakesvc.telemetry.outbox [DIR]``: the dead letters, one JSON object per line."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m fakesvc.telemetry.outbox", description=main.__doc__)
    parser.add_argument(
        "directory", nargs="?", default=".fakesvc-spill", help="FAKESVC_SPILL_DIR (default %(default)s)"
    )
    args = parser.parse_args(argv)
    for letter in read_dead_letters(args.directory):
        print(json.dumps(letter))


def _insert(db: sqlite3.Connection, columns: str, rows: list[tuple[Any, ...]]) -> None:
    """Many rows per INSERT: the thread hands the GIL back once per statement, and a busy loop
    makes each hand-back cost up to the switch interval (5 ms), so one statement per row
    would stall the commit for seconds under load."""
    width = columns.count(",") + 1
    size = MAX_VARIABLES // width
    for start in range(0, len(rows), size):
        chunk = rows[start : start + size]
        marks = ",".join(["(" + ",".join("?" * width) + ")"] * len(chunk))
        db.execute(f"INSERT INTO signals({columns}) VALUES {marks}", [value for row in chunk for value in row])


def _where_ids(db: sqlite3.Connection, statement: str, ids: list[int]) -> None:
    """``statement WHERE id IN (...)``, a chunk of ids per statement (see ``_insert``)."""
    for start in range(0, len(ids), MAX_VARIABLES):
        chunk = ids[start : start + MAX_VARIABLES]
        db.execute(f"{statement} WHERE id IN ({','.join('?' * len(chunk))})", chunk)


def _describe(exc: sqlite3.Error) -> str:
    return f"{type(exc).__name__}: {exc}"


def _file_size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def _remove_database(path: Path) -> None:
    for suffix in ("", "-wal", "-shm"):
        try:
            Path(f"{path}{suffix}").unlink(missing_ok=True)
        except OSError:
            pass  # Windows: still open elsewhere; the next start adopts it (it is empty)


if __name__ == "__main__":
    main()
