"""Event-loop lag: how late the loop wakes a short timer. Stalls (blocking calls, a starved machine) show up here.

Two views: the last minute of samples (what ``/metrics`` and ``/telemetry``
show now), and a histogram over the process's whole life, so a traffic run can
report the lag p50/p99/max of every process over the run, and a hop can say
how late its loop was while it waited for a callee (the truth's evidence that
the harness, not a fault, broke a checkout).
"""

from __future__ import annotations

import asyncio
import bisect
import math
from collections import deque
from collections.abc import Mapping
from typing import Any

INTERVAL_S = 0.01
# Histogram bucket upper bounds in ms: 0.1 ms to ~100 s, 5 % apart (a quantile read off it is within 5 %).
_BOUNDS_MS = tuple(0.1 * 1.05**i for i in range(int(math.log(1e6) / math.log(1.05)) + 2))


class LoopLag:
    """Samples the lag of a 10 ms timer: the last minute of samples, and a histogram of all of them."""

    def __init__(self, interval_s: float = INTERVAL_S, keep: int = 6000) -> None:
        self.interval_s = interval_s
        self._lags: deque[tuple[float, float]] = deque(maxlen=keep)  # (loop time at wake-up, lag s)
        self._counts = [0] * (len(_BOUNDS_MS) + 1)
        self._total = 0
        self._max_s = 0.0
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.ensure_future(self._sample())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def _sample(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            started = loop.time()
            await asyncio.sleep(self.interval_s)
            now = loop.time()
            self.add(now, max(0.0, now - started - self.interval_s))

    def add(self, at: float, lag_s: float) -> None:
        """One sample: the timer due at ``at - lag_s`` woke at ``at`` (loop time)."""
        self._lags.append((at, lag_s))
        self._counts[bisect.bisect_left(_BOUNDS_MS, lag_s * 1000)] += 1
        self._total += 1
        self._max_s = max(self._max_s, lag_s)

    def max_since(self, since: float) -> float:
        """The largest lag in ms of a timer that was due after ``since`` (loop time), 0 when none was sampled.

        A stall that began before ``since`` counts too: its timer wakes late, after ``since``.
        """
        worst = self._overdue()
        for at, lag_s in reversed(self._lags):
            if at < since:
                break
            worst = max(worst, lag_s)
        return round(worst * 1000, 3)

    def _overdue(self) -> float:
        """How late the sampler's pending timer already is: a stall that just ended, before its sample is taken."""
        if not self._lags or self._task is None:
            return 0.0
        return max(0.0, asyncio.get_running_loop().time() - self._lags[-1][0] - self.interval_s)

    def stats(self) -> dict[str, Any]:
        """p50, p99 and max lag in milliseconds over the last minute, and over the process's life (``life``)."""
        lags = sorted(lag for _, lag in self._lags)
        if not lags:
            return {"samples": 0, "life": self.life()}
        pick = lambda q: round(lags[min(len(lags) - 1, int(q * len(lags)))] * 1000, 3)  # noqa: E731
        return {
            "samples": len(lags),
            "p50_ms": pick(0.5),
            "p99_ms": pick(0.99),
            "max_ms": round(lags[-1] * 1000, 3),
            "life": self.life(),
        }

    def life(self) -> dict[str, Any]:
        """Lag quantiles over every sample since the start (read off the histogram: within 5 %), with its counts.

        Two of these taken at different times give the lag between them (:func:`window`).
        """
        counts = {index: count for index, count in enumerate(self._counts) if count}
        return {**_summary(counts, self._max_s * 1000), "counts": {str(index): n for index, n in counts.items()}}


def window(first: Mapping[str, Any] | None, last: Mapping[str, Any]) -> dict[str, Any]:
    """Lag quantiles over the samples one process took between two :meth:`LoopLag.life` snapshots.

    Without ``first`` (the process was not reached at the start), over its whole life. The max is
    the highest bucket reached in between (within 5 %), never above the life's max.
    """
    counts = _counts(last)
    for index, count in _counts(first).items():
        counts[index] = counts.get(index, 0) - count
    counts = {index: count for index, count in counts.items() if count > 0}
    highest = max(counts, default=None)
    max_ms = float(last.get("max_ms") or 0.0)
    if highest is not None and highest < len(_BOUNDS_MS):
        max_ms = min(max_ms, _BOUNDS_MS[highest])
    return _summary(counts, max_ms)


def _counts(snapshot: Mapping[str, Any] | None) -> dict[int, int]:
    """A snapshot's histogram counts; anything but whole bucket numbers and counts reads as none."""
    raw = (snapshot or {}).get("counts")
    if not isinstance(raw, Mapping):
        return {}
    found = {}
    for key, count in raw.items():
        if isinstance(key, str) and key.isdigit() and isinstance(count, int) and not isinstance(count, bool):
            found[int(key)] = count
    return found


def _summary(counts: Mapping[int, int], max_ms: float) -> dict[str, Any]:
    total = sum(counts.values())
    if not total:
        return {"samples": 0}
    return {
        "samples": total,
        "p50_ms": _quantile(counts, total, 0.5, max_ms),
        "p99_ms": _quantile(counts, total, 0.99, max_ms),
        "max_ms": round(max_ms, 3),
    }


def _quantile(counts: Mapping[int, int], total: int, q: float, max_ms: float) -> float:
    rank = max(1, math.ceil(q * total))
    seen = 0
    for index in sorted(counts):
        seen += counts[index]
        if seen >= rank:
            bound = _BOUNDS_MS[index] if index < len(_BOUNDS_MS) else math.inf
            return round(min(bound, max_ms), 3)
    return round(max_ms, 3)
