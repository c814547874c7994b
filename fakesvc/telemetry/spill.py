"""Signals on disk: the spill (waiting to be replayed) and the dead letters (never to be retried).

Every call here does blocking file I/O; the batcher runs them in a worker
thread. Several processes may share one directory: each writes its own files
(named by pid), and a process takes spilled files for replay by renaming them,
which is atomic, so no spilled signal is replayed twice.
"""

from __future__ import annotations

import itertools
import json
import os
import time
from pathlib import Path
from typing import Any

from fakesvc.jsonfast import dumps_str

Record = dict[str, Any]  # {"path": "/ingest/logs", "signal": {...}, "attempts": 2}

SPILL_GLOB = "spill-*.jsonl"


class SpillStore:
    """Append-only JSON-lines files under one directory."""

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.directory = Path(directory)
        self._pid = os.getpid()
        self._sequence = itertools.count()
        self._current: Path | None = None

    def _ensure_dir(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)

    def spill(self, records: list[Record]) -> None:
        """Append records to this process's current spill file."""
        if not records:
            return
        self._ensure_dir()
        if self._current is None:
            stamp = time.strftime("%Y%m%dT%H%M%S")
            self._current = self.directory / f"spill-{stamp}-{self._pid}-{next(self._sequence)}.jsonl"
        with self._current.open("a", encoding="utf-8") as file:
            file.writelines(dumps_str(record) + "\n" for record in records)

    def dead_letter(self, records: list[Record]) -> None:
        """Append permanent failures, with the backend's answer, to this process's dead-letter file."""
        if not records:
            return
        self._ensure_dir()
        with (self.directory / f"dead-letter-{self._pid}.jsonl").open("a", encoding="utf-8") as file:
            file.writelines(dumps_str(record) + "\n" for record in records)

    def take(self, limit: int) -> tuple[list[Record], int]:
        """Claim spilled files (any process's) until ``limit`` records; return them and what is left.

        A file is claimed by renaming it; records beyond ``limit`` are written
        back to a fresh spill file of this process, so nothing is lost.
        """
        self._current = None  # start a new file for later spills; the old one may be taken now
        if not self.directory.is_dir():
            return [], 0
        taken: list[Record] = []
        for path in sorted(self.directory.glob(SPILL_GLOB)):
            if len(taken) >= limit:
                break
            claimed = path.with_name(f"claimed-{self._pid}-{path.name}")
            try:
                path.rename(claimed)
            except FileNotFoundError:
                continue  # another process took it first
            with claimed.open(encoding="utf-8") as file:
                records = [json.loads(line) for line in file if line.strip()]
            claimed.unlink()
            taken.extend(records)
        overflow = taken[limit:]
        if overflow:
            self.spill(overflow)
            self._current = None
        return taken[:limit], self.pending()

    def pending(self) -> int:
        """How many records wait on disk (in every spill file of the directory)."""
        if not self.directory.is_dir():
            return 0
        total = 0
        for path in self.directory.glob(SPILL_GLOB):
            try:
                with path.open("rb") as file:
                    total += sum(1 for _ in file)
            except FileNotFoundError:
                continue
        return total
