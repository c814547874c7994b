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

A row carries its signal's *kind* (``log``, ``trace``, ``metric``), never a URL
part: the route is the sender's to decide. It also names the *backend* it was
written for: a process claims only rows of its own backend, and keeps the others
(adopted, still waiting) until a run against theirs sends them, or they are
discarded (``python -m fakesvc.telemetry.outbox --send/--discard``). Rows of
fakesvc before this had a path and no backend: a known route becomes its kind
and the adopter's backend; any other path is dead-lettered as ``unknown_route``.
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
from fakesvc.settings import http_url
from fakesvc.telemetry.signals import ROUTES

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
    kind TEXT NOT NULL,
    backend TEXT NOT NULL,
    body BLOB NOT NULL,
    state INTEGER NOT NULL,
    first_at REAL NOT NULL,
    first_try_at REAL,
    attempts INTEGER NOT NULL DEFAULT 0,
    maybe_seen INTEGER NOT NULL DEFAULT 0,
    first_500_at REAL,
    answers_500 INTEGER NOT NULL DEFAULT 0,
    answer TEXT,
    reason TEXT,
    dead_at REAL
);
CREATE INDEX IF NOT EXISTS waiting ON signals(backend, id) WHERE state = 0;
"""
_COLUMNS = (
    "id, kind, backend, body, state, first_at, first_try_at, attempts, maybe_seen, first_500_at, answers_500,"
    " answer, reason, dead_at"
)
_COLUMN_NAMES = tuple(name.strip() for name in _COLUMNS.split(","))
_HISTORY = "first_try_at = ?, attempts = ?, maybe_seen = ?, first_500_at = ?, answers_500 = ?, answer = ?"
# Each column of a row as an older outbox holds it (``?`` is the adopting process's backend).
_OLDER_COLUMNS = {
    "kind": "CASE path " + " ".join(f"WHEN '{route}' THEN '{kind}'" for kind, route in ROUTES.items()) + " END",
    "backend": "?",
    "first_try_at": "NULL",
    "answers_500": "0",
}


class OutboxError(Exception):
    """The outbox cannot be opened at all (the directory is unusable)."""


class Held:
    """A signal in memory on its way: its row (None while the disk refuses it) and its history."""

    __slots__ = (
        "row",
        "kind",
        "body",
        "first_at",
        "first_try_at",
        "attempts",
        "maybe_seen",
        "first_500_at",
        "answers_500",
        "answer",
    )

    def __init__(
        self,
        row: int | None,
        kind: str,
        body: bytes,
        first_at: float,
        first_try_at: float | None = None,
        attempts: int = 0,
        maybe_seen: bool = False,
        first_500_at: float | None = None,
        answers_500: int = 0,
        answer: dict[str, Any] | None = None,
    ) -> None:
        self.row = row
        self.kind = kind
        self.body = body
        self.first_at = first_at
        self.first_try_at = first_try_at
        self.attempts = attempts
        self.maybe_seen = maybe_seen
        self.first_500_at = first_500_at
        self.answers_500 = answers_500
        self.answer = answer

    def history(self) -> tuple[float | None, int, int, float | None, int, str | None]:
        """The values of ``_HISTORY``, in its order."""
        return (
            self.first_try_at,
            self.attempts,
            int(self.maybe_seen),
            self.first_500_at,
            self.answers_500,
            _answer_text(self.answer),
        )


def _answer_text(answer: dict[str, Any] | None) -> str | None:
    return None if answer is None else json.dumps(answer)


def _answer(text: str | None) -> dict[str, Any] | None:
    return json.loads(text) if text else None


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
    foreign: dict[str, int] = field(default_factory=dict)  # rows waiting for other backends, by backend


class Outbox:
    """This process's outbox file, for one backend. Not thread-safe: one thread makes every call."""

    def __init__(self, directory: Path, backend: str, *, max_bytes: int | None = None) -> None:
        self.directory = directory
        self.backend = backend
        self.path = directory / f"outbox-{os.getpid()}-{uuid.uuid4().hex[:8]}.db"
        try:
            directory.mkdir(parents=True, exist_ok=True)
            self._db = _open_owned(self.path)
            if max_bytes is not None:
                self._db.execute(f"PRAGMA max_page_count = {max(8, max_bytes // PAGE_SIZE)}")
        except (OSError, sqlite3.Error) as exc:
            _remove_database(self.path)  # a full disk leaves a 0-byte file the next start would set aside
            raise OutboxError(f"cannot open an outbox in {directory}: {exc}") from None
        self._next_id = 1
        self._closed = False

    # -- start --------------------------------------------------------------------------

    def adopt_orphans(self) -> Adoption:
        """Take over the waiting rows of every outbox in the directory whose owner is gone."""
        result = Adoption()
        for index, path in enumerate(sorted(self.directory.glob(OUTBOX_GLOB))):
            if path == self.path:
                continue
            try:
                rows = self._adopt(path, f"old{index}")
            except _OwnerAlive:
                continue
            except (sqlite3.Error, OSError) as exc:  # this file alone: the others are judged on their own
                rows = self._salvage(path)
                result.quarantined.append(f"{path.name} ({exc}; {rows} waiting rows saved)")
            else:
                _remove_database(path)
            result.rows += rows
            result.files += 1
        result.foreign = self.foreign()
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
        kinds = {route: kind for kind, route in ROUTES.items()}
        for line in lines:
            try:
                record = json.loads(line)
                rows.append((kinds[record["path"]], dumps_bytes(record["signal"]), int(record.get("attempts", 0))))
            except (ValueError, KeyError, TypeError):
                unreadable += 1  # a line cut by a crash or a full disk, or a route that is not ProdSentinel's
        with self._db:
            _insert(
                self._db,
                "id, kind, backend, body, state, first_at, attempts",
                [
                    (self._next_id + i, kind, self.backend, body, WAITING, first_at, tries)
                    for i, (kind, body, tries) in enumerate(rows)
                ],
            )
        self._next_id += len(rows)
        claimed.unlink()
        return len(rows), unreadable

    def _adopt(self, path: Path, alias: str) -> int:
        """Move ``path``'s rows into this outbox in one transaction; raises if the file does not read whole.

        Attached under an alias of its own, and always detached: a file that fails leaves the
        connection as it was, so the next file is judged on its own.
        """
        try:
            self._db.execute(f"ATTACH DATABASE ? AS {alias}", (str(path),))
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
                select, parameters = _select_as_now(self._db, alias, self.backend)
                self._db.execute(
                    f"INSERT INTO main.signals({_COLUMNS}) SELECT id + ?, kind, backend, body,"
                    f" CASE WHEN state = {DEAD} OR kind IS NULL THEN {DEAD} ELSE {WAITING} END, first_at,"
                    f" first_try_at, attempts, maybe_seen OR state = {HELD}, first_500_at, answers_500, answer,"
                    f" CASE WHEN state != {DEAD} AND kind IS NULL THEN 'unknown_route' ELSE reason END,"
                    f" CASE WHEN state != {DEAD} AND kind IS NULL THEN ? ELSE dead_at END"
                    f" FROM ({select}) ORDER BY id",
                    (before, time.time(), *parameters),
                )
                self._db.execute("COMMIT")
            except BaseException:
                _quietly(self._db, "ROLLBACK")  # SQLite may have rolled back already
                raise
            self._next_id = self._max_id() + 1
            return self._count_waiting_since(before)
        finally:
            _quietly(self._db, f"DETACH DATABASE {alias}")

    def _salvage(self, path: Path) -> int:
        """Copy the rows that still read into this outbox and set the file aside; return how many waited."""
        saved = 0
        try:
            source = sqlite3.connect(path, timeout=0, isolation_level=None)
        except sqlite3.Error:
            source = None
        if source is not None:
            try:
                with self._db:  # committed before the file is set aside: a crash after keeps both
                    for row in _rows_that_read(source, self.backend):
                        self._insert_salvaged(row)
                        saved += row[4] != DEAD and row[1] is not None and row[2] == self.backend
            except sqlite3.Error:
                return 0  # this outbox would not take them (a full disk): the file stays for the next start
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
        _, kind, backend, body, state, first_at, *history, reason, dead_at = row
        first_try_at, attempts, maybe_seen, first_500_at, answers_500, answer = history
        if kind is None and state != DEAD:
            state, reason, dead_at = DEAD, "unknown_route", time.time()
        state_now = DEAD if state == DEAD else WAITING
        seen = int(bool(maybe_seen) or state == HELD)
        self._db.execute(
            f"INSERT INTO signals({_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
            (
                self._next_id,
                kind or "",
                backend,
                body,
                state_now,
                first_at,
                first_try_at,
                attempts,
                seen,
                first_500_at,
                answers_500,
                answer,
                reason,
                dead_at,
            ),
        )
        self._next_id += 1

    def _max_id(self) -> int:
        return int(self._db.execute("SELECT coalesce(max(id), 0) FROM signals").fetchone()[0])

    def _count_waiting_since(self, first_id: int) -> int:
        query = f"SELECT count(*) FROM signals WHERE id >= ? AND state = {WAITING} AND backend = ?"
        return int(self._db.execute(query, (first_id, self.backend)).fetchone()[0])

    def foreign(self) -> dict[str, int]:
        """Rows waiting here for other backends than this process's, by backend."""
        query = f"SELECT backend, count(*) FROM signals WHERE state = {WAITING} AND backend != ? GROUP BY backend"
        return dict(self._db.execute(query, (self.backend,)).fetchall())

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
        rows = [(kind, dumps_bytes(signal), now) for kind, signal in new]  # the bytes stored are the bytes sent
        if not rows and not claim:
            return result
        first_id = self._next_id
        try:
            with self._db:
                _insert(
                    self._db,
                    "id, kind, backend, body, state, first_at",
                    [
                        (first_id + i, kind, self.backend, body, HELD if i < hold else WAITING, first_at)
                        for i, (kind, body, first_at) in enumerate(rows)
                    ],
                )
                claimed = self._claim(claim) if claim else []
        except sqlite3.Error as exc:
            result.error = _describe(exc)
            result.unstored = [Held(None, kind, body, first_at) for kind, body, first_at in rows]
            return result
        self._next_id = first_id + len(rows)
        result.held = [Held(first_id + i, *rows[i]) for i in range(min(hold, len(rows)))]
        result.stored = len(rows) - len(result.held)
        result.claimed = claimed
        return result

    def _apply(self, changes: Changes) -> None:
        _where_ids(self._db, "DELETE FROM signals", changes.delivered)
        self._db.executemany(
            f"UPDATE signals SET {_HISTORY} WHERE id = ?",
            [(*held.history(), held.row) for held in changes.retried if held.row is not None],
        )
        now = time.time()
        for held, reason in changes.dead:
            self._insert_unstored(held, DEAD)
            self._db.execute(
                f"UPDATE signals SET state = {DEAD}, {_HISTORY}, reason = ?, dead_at = ? WHERE id = ?",
                (*held.history(), reason, now, held.row),
            )

    def _insert_unstored(self, held: Held, state: int) -> None:
        """Give a signal held in memory only (the disk refused it earlier) its row now."""
        if held.row is None:
            self._db.execute(
                "INSERT INTO signals(id, kind, backend, body, state, first_at) VALUES (?, ?, ?, ?, ?, ?)",
                (self._next_id, held.kind, self.backend, held.body, state, held.first_at),
            )
            held.row, self._next_id = self._next_id, self._next_id + 1

    def _claim(self, limit: int) -> list[Held]:
        found = self._db.execute(
            "SELECT id, kind, body, first_at, first_try_at, attempts, maybe_seen, first_500_at, answers_500, answer"
            f" FROM signals WHERE state = {WAITING} AND backend = ? ORDER BY id LIMIT ?",
            (self.backend, limit),
        ).fetchall()
        _where_ids(self._db, f"UPDATE signals SET state = {HELD}", [row[0] for row in found])
        return [
            Held(row, kind, body, first_at, tried_at, attempts, bool(seen), first_500_at, n500, _answer(answer))
            for row, kind, body, first_at, tried_at, attempts, seen, first_500_at, n500, answer in found
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
                for h in held:
                    self._insert_unstored(h, WAITING)
                self._db.executemany(
                    f"UPDATE signals SET state = {WAITING}, {_HISTORY} WHERE id = ?",
                    [(*h.history(), h.row) for h in held],
                )
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
        query = f"SELECT first_at FROM signals WHERE state < {DEAD} AND backend = ? ORDER BY id LIMIT 1"
        row = self._db.execute(query, (self.backend,)).fetchone()
        return None if row is None else float(row[0])

    def size_bytes(self) -> int:
        return sum(_file_size(Path(f"{self.path}{suffix}")) for suffix in ("", "-wal"))


class _OwnerAlive(Exception):
    """The outbox's lock is held: its process is running."""


def _quietly(db: sqlite3.Connection, statement: str) -> None:
    """A clean-up statement whose failure must not hide the error being raised."""
    try:
        db.execute(statement)
    except sqlite3.Error:
        pass


def _open_owned(path: Path) -> sqlite3.Connection:
    db = sqlite3.connect(path, timeout=0, isolation_level=None, check_same_thread=False)
    try:
        db.execute("PRAGMA locking_mode = EXCLUSIVE")  # before WAL: the lock, and no -shm file
        db.execute("PRAGMA journal_mode = WAL")
        db.execute("PRAGMA synchronous = NORMAL")
        db.executescript(_SCHEMA)  # the first write takes the exclusive lock, held until close
    except sqlite3.Error:
        db.close()
        raise
    db.isolation_level = "DEFERRED"  # ``with db:`` now wraps each group in one transaction
    return db


def _select_as_now(db: sqlite3.Connection, schema: str, backend: str) -> tuple[str, tuple[str, ...]]:
    """A SELECT of ``schema.signals`` giving today's columns whatever version wrote the file, and its parameters."""
    try:
        present = {row[1] for row in db.execute(f"PRAGMA {schema}.table_info(signals)")}
    except sqlite3.DatabaseError:
        present = set()
    present = present or set(_COLUMN_NAMES)  # unreadable: assume today's, row by row
    parts, parameters = [], []
    for column in _COLUMN_NAMES:
        if column in present:
            parts.append(column)
        else:
            parts.append(f"{_OLDER_COLUMNS[column]} AS {column}")
            parameters += [backend] * _OLDER_COLUMNS[column].count("?")
    return f"SELECT {', '.join(parts)} FROM {schema}.signals", tuple(parameters)


def _rows_that_read(source: sqlite3.Connection, backend: str) -> Iterator[tuple[Any, ...]]:
    """Every row that still reads: page by page by id, and one id at a time across a page that raises."""
    select, parameters = _select_as_now(source, "main", backend)
    last, failures = 0, 0
    while failures < SALVAGE_MAX_FAILURES:
        try:
            page = source.execute(
                f"{select} WHERE id > ? ORDER BY id LIMIT ?", (*parameters, last, SALVAGE_PAGE)
            ).fetchall()
        except sqlite3.DatabaseError:
            failures += 1
            for row_id in range(last + 1, last + 1 + SALVAGE_PAGE):
                try:
                    yield from source.execute(f"{select} WHERE id = ?", (*parameters, row_id)).fetchall()
                except sqlite3.DatabaseError:
                    failures += 1
            last += SALVAGE_PAGE
            continue
        if not page:
            return
        yield from page
        last = page[-1][0]


def _unlocked_outboxes(directory: str | os.PathLike[str], *, write: bool) -> Iterator[sqlite3.Connection]:
    """Each outbox of ``directory`` no running process holds (a live one is locked and skipped)."""
    mode = "rw" if write else "ro"
    for path in sorted(Path(directory).glob(OUTBOX_GLOB)):
        try:
            db = sqlite3.connect(f"file:{path}?mode={mode}", uri=True, timeout=0, isolation_level=None)
        except sqlite3.Error:
            continue
        try:
            yield db
        finally:
            db.close()


def read_dead_letters(directory: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Every dead letter (and ``uncertain`` signal) in the outboxes of ``directory`` no process holds."""
    letters = []
    for db in _unlocked_outboxes(directory, write=False):
        try:
            select, parameters = _select_as_now(db, "main", "")
            found = db.execute(
                f"SELECT kind, backend, body, attempts, maybe_seen, answer, reason, dead_at FROM ({select})"
                f" WHERE state = {DEAD} ORDER BY id",
                parameters,
            ).fetchall()
        except sqlite3.Error:
            continue  # its owner is running (locked), or it is damaged: the next start salvages it
        for kind, backend, body, attempts, seen, answer, reason, dead_at in found:
            letters.append(
                {
                    "kind": kind,
                    "backend": backend or None,
                    "signal": json.loads(body),
                    "attempts": attempts,
                    "resent_uncertain": bool(seen),
                    "answer": _answer(answer),
                    "reason": reason,
                    "at": dead_at,
                }
            )
    return letters


def waiting_by_backend(directory: str | os.PathLike[str]) -> dict[str, int]:
    """How many signals wait in the outboxes of ``directory`` no process holds, by the backend they are for."""
    waiting: dict[str, int] = {}
    for db in _unlocked_outboxes(directory, write=False):
        try:
            select, parameters = _select_as_now(db, "main", "(unknown: written before outboxes named it)")
            query = f"SELECT backend, count(*) FROM ({select}) WHERE state != {DEAD} GROUP BY backend"
            for backend, count in db.execute(query, parameters):
                waiting[backend] = waiting.get(backend, 0) + count
        except sqlite3.Error:
            continue
    return waiting


def discard(directory: str | os.PathLike[str], backend: str) -> int:
    """Delete the signals waiting for ``backend`` in the outboxes no process holds; return how many."""
    removed = 0
    for db in _unlocked_outboxes(directory, write=True):
        try:
            removed += db.execute(f"DELETE FROM signals WHERE state != {DEAD} AND backend = ?", (backend,)).rowcount
        except sqlite3.Error:
            continue
    return removed


def main(argv: list[str] | None = None) -> None:
    """``python -m fakesvc.telemetry.outbox [DIR]``: the dead letters, one JSON object per line;
    ``--waiting`` what waits, by backend; ``--send URL`` delivers what waits for URL; ``--discard URL`` drops it."""
    import argparse

    parser = argparse.ArgumentParser(
        prog="python -m fakesvc.telemetry.outbox", description=main.__doc__, allow_abbrev=False
    )
    parser.add_argument(
        "directory", nargs="?", default=".fakesvc-spill", help="FAKESVC_SPILL_DIR (default %(default)s)"
    )
    action = parser.add_mutually_exclusive_group()
    action.add_argument("--waiting", action="store_true", help="count the waiting signals by backend")
    action.add_argument("--send", metavar="URL", help="deliver the signals waiting for URL to it, then exit")
    action.add_argument("--discard", metavar="URL", help="delete the signals waiting for URL")
    args = parser.parse_args(argv)
    if not Path(args.directory).is_dir():
        parser.exit(2, f"fakesvc: {args.directory}: no such directory (the FAKESVC_SPILL_DIR of a run)\n")
    url = args.send or args.discard
    if url is not None:
        try:
            url = http_url(url)  # as the batcher wrote it: rows are matched by that text
        except ValueError as exc:
            parser.exit(2, f"fakesvc: {'--send' if args.send else '--discard'}: {exc}\n")
    if args.waiting:
        print(json.dumps(waiting_by_backend(args.directory)))
    elif args.discard:
        print(f"discarded {discard(args.directory, url)} signals waiting for {url}")
    elif args.send:
        from fakesvc.telemetry.send_backlog import send_backlog  # the batcher imports this module

        parser.exit(send_backlog(args.directory, url))
    else:
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
