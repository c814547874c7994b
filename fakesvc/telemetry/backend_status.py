"""What stderr says about the backend: each change of state once, at most one line per 10 s.

A backend that flaps (a connection refused, then a health check that answers,
again and again) must not bury the run's output in lines, and a backend that
refuses signals is not down. Two kinds of line:

- *state*: ``unreachable`` (connections refused, or a health check failed) and
  ``is back``. Said when it changes; a change within ``LINE_EVERY_S`` of the last
  line waits for the end of that interval, and then only the state at that
  moment is said, with what happened since the last line (outages, probes,
  connections reset and retried on a fresh one).
- *refusal*: the first answer of each status that refused a signal (500, 422,
  503, ...), with its body and what the batcher does about it. Once a process per
  status; the counts are in the summary.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

from fakesvc.console import say

LINE_EVERY_S = 10.0
REFUSAL_BODY_CHARS = 200


class BackendStatus:
    """The backend's reachability as stderr tells it, and the counts behind it."""

    def __init__(
        self,
        url: str,
        *,
        line_every_s: float = LINE_EVERY_S,
        write: Callable[[str], None] = say,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.url = url
        self.reachable = True
        self.refusals: Counter[int] = Counter()  # answers that refused a signal, by status
        self.outages = 0
        self.probes = 0
        self.resets = 0
        self._line_every_s = line_every_s
        self._write = write
        self._clock = clock
        self._said_reachable = True
        self._last_line_at: float | None = None
        self._since = Counter[str]()  # outages, probes, resets since the last state line
        self._why = ""
        self._deferred: asyncio.TimerHandle | None = None

    # -- what happened ------------------------------------------------------------------

    def unreachable(self, why: str) -> None:
        if self.reachable:
            self.reachable, self._why = False, why
            self.outages += 1
            self._since["outages"] += 1
            self._changed()

    def back(self) -> None:
        if not self.reachable:
            self.reachable = True
            self._changed()

    def probed(self) -> None:
        self.probes += 1
        self._since["probes"] += 1

    def reset(self) -> None:
        """A kept-alive connection was found closed; the signal went again on a fresh one."""
        self.resets += 1
        self._since["resets"] += 1

    def refused(self, status: int, answer: dict[str, Any] | None, what_next: Callable[[int], str]) -> None:
        """An answer that refused a signal: counted always, said (its body, ``what_next``) the first time for its status."""
        self.refusals[status] += 1
        if self.refusals[status] == 1:
            body = str((answer or {}).get("body", ""))[:REFUSAL_BODY_CHARS].strip()
            self._write(
                f"telemetry: backend {self.url} refused a signal with HTTP {status} ({body}); "
                f"{what_next(status)}; counts in the summary"
            )

    def close(self) -> None:
        """Say the state now if a line was waiting for its interval."""
        if self._deferred is not None:
            self._deferred.cancel()
            self._deferred = None
            self._say_state()

    def to_json(self) -> dict[str, object]:
        return {
            "reachable": self.reachable,
            "outages": self.outages,
            "probes": self.probes,
            "resets_retried": self.resets,
            "refusals": {str(status): count for status, count in sorted(self.refusals.items())},
        }

    # -- saying it ------------------------------------------------------------------------

    def _changed(self) -> None:
        if self._deferred is not None:
            return  # the line at the end of the interval says the state then
        now = self._clock()
        wait = 0.0 if self._last_line_at is None else self._last_line_at + self._line_every_s - now
        if wait <= 0:
            self._say_state()
            return
        self._deferred = asyncio.get_running_loop().call_later(wait, self._deferred_line)

    def _deferred_line(self) -> None:
        self._deferred = None
        self._say_state()

    def _say_state(self) -> None:
        if self.reachable == self._said_reachable and not self._since["outages"]:
            return
        since = ", ".join(f"{count} {name}" for name, count in sorted(self._since.items()) if count)
        flaps = f" (since the last line: {since})" if since and self._last_line_at is not None else ""
        if self.reachable:
            line = f"telemetry: backend {self.url} is back; sending the backlog{flaps}"
        else:
            line = f"telemetry: backend {self.url} unreachable ({self._why}); signals wait in the outbox{flaps}"
        self._write(line)
        self._said_reachable = self.reachable
        self._last_line_at = self._clock()
        self._since.clear()
