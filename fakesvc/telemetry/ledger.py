"""The life of a signal, counted: its states, the moves between them, and the identity they keep.

::

    emit() ──> pending (memory, not yet durable) ──group commit──> stored (outbox row, waiting)
                                                  └─────────────> held (outbox row, in memory to send)
    stored ──claim──> held ──2xx──> sent (row deleted)
    held ──transient failure──> held (retried later, attempts + 1)
    held ──permanent failure, 500 past its budget, too old──> dead_lettered (row kept with the answer)
    held ──500 past its budget after an attempt that may have been stored──> uncertain (row kept)
    held ──close──> stored (the next start, or any later process, sends it)
    pending or held ──disk unwritable and memory bound reached, or emitted after close──> dropped

An outbox left by a process that died is *adopted*: its waiting rows join this
process's ``stored``. So at every moment::

    queued + adopted == sent + dead_lettered + uncertain + dropped + backlog,
    backlog = pending + stored + held

``uncertain`` signals are neither sent nor dead: the backend answered 500 to a
signal an earlier attempt may already have stored, and on ProdSentinel that 500
is its answer to a stored ``signal_id`` as much as a refusal.

Each method below is one move; the batcher calls it in the same place it moves
the signal, on the event loop, so the identity never depends on timing.
A row can be *held* while the outbox is unwritable: then it lives in memory only
(``held_unstored``) until a write succeeds or the process ends.
"""

from __future__ import annotations

from collections import Counter
from typing import Any


class Ledger:
    """Counts per state and per outcome; every move keeps the identity above."""

    __slots__ = (
        "queued",
        "adopted",
        "sent",
        "dead_lettered",
        "uncertain",
        "dropped",
        "pending",
        "stored",
        "held",
        "retried",
        "resent_uncertain",
        "quarantined",
        "write_errors",
        "dead_by",
    )

    def __init__(self) -> None:
        self.queued = 0  # emitted by this process
        self.adopted = 0  # taken over from outboxes of processes that are gone
        self.sent = 0  # acknowledged 2xx by the backend
        self.dead_lettered = 0  # refused for good, or past their retry budget
        self.uncertain = 0  # answered 500 after an attempt the backend may have stored
        self.dropped = 0  # lost on purpose, counted: memory full and disk unwritable, or emitted after close
        self.pending = 0  # in memory, waiting for the next group commit
        self.stored = 0  # outbox rows waiting on disk
        self.held = 0  # in memory, being sent or waiting for a retry (their rows say so)
        self.retried = 0  # attempts that failed transiently and were tried again
        self.resent_uncertain = 0  # delivered after an attempt the backend may already have stored
        self.quarantined = 0  # outbox files that could not be read whole, set aside
        self.write_errors = 0  # group commits that failed (disk full, unwritable)
        self.dead_by: Counter[str] = Counter()  # dead letters by reason and status

    # -- the moves ----------------------------------------------------------------------

    def emitted(self) -> None:
        self.queued += 1
        self.pending += 1

    def refused(self) -> None:
        """Emitted after close, or with the pending list at its bound (the writer is stuck)."""
        self.queued += 1
        self.dropped += 1

    def committed(self, to_memory: int, to_disk: int) -> None:
        """A group of pending signals became rows; some held to send now, the rest stored."""
        self.pending -= to_memory + to_disk
        self.held += to_memory
        self.stored += to_disk

    def kept_in_memory(self, held: int, dropped: int) -> None:
        """The outbox could not take a group: held unstored while memory allows, the rest dropped."""
        self.pending -= held + dropped
        self.held += held
        self.dropped += dropped

    def adopted_rows(self, count: int) -> None:
        self.adopted += count
        self.stored += count

    def claimed(self, count: int) -> None:
        self.stored -= count
        self.held += count

    def delivered(self, uncertain: bool) -> None:
        self.held -= 1
        self.sent += 1
        if uncertain:
            self.resent_uncertain += 1

    def dead(self, reason: str) -> None:
        """Dead-lettered (``http_500``, ``rejected_422``, ``expired``) or ``uncertain``."""
        self.held -= 1
        if reason == "uncertain":
            self.uncertain += 1
        else:
            self.dead_lettered += 1
            self.dead_by[reason] += 1

    def released(self, stored: int, dropped: int) -> None:
        """At close: what was held goes back to disk, or is dropped if the disk would not take it."""
        self.held -= stored + dropped
        self.stored += stored
        self.dropped += dropped

    # -- reading ------------------------------------------------------------------------

    @property
    def backlog(self) -> int:
        return self.pending + self.stored + self.held

    def balanced(self) -> bool:
        """The identity; tests check it while load runs."""
        ended = self.sent + self.dead_lettered + self.uncertain + self.dropped
        return self.queued + self.adopted == ended + self.backlog

    def snapshot(self) -> dict[str, Any]:
        counts = {name: getattr(self, name) for name in self.__slots__ if name != "dead_by"}
        return counts | {"backlog": self.backlog, "dead_by": dict(sorted(self.dead_by.items()))}
