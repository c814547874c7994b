"""Each service's own time series, sampled at the source: workload, errors, latency and resources, once an interval.

Root-cause methods that read metrics (BARO, N-Sigma, CIRCA, ...) take a case as
per-service series one row a second: ``<service>_workload``, ``_error``,
``_latency-50``, ``_latency-90``. A service here counts what its hops served
(:func:`ServedSeries.served`, called as each hop ends) and a sampler in its own
event loop turns the interval into one :class:`Sample`: requests a second,
failures a second (5xx, and connections dropped without an answer), and the
50th, 90th and 99th percentiles of the elapsed times it served. Rates are
counted over the nominal interval, so the samples of a run add up to exactly
what was served; the last, partial interval is sampled at shutdown. Each sample
also carries the service's resource readings (``cpu``, ``mem``: :mod:`.resources`).
"""

from __future__ import annotations

import asyncio
import hashlib
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

PERCENTILES = (50, 90, 99)


@dataclass(frozen=True)
class Sample:
    """One interval of one service: ``at`` is the epoch second its interval ended."""

    at: float
    interval_s: float
    workload: float  # requests served a second
    errors: float  # of them, failed a second (5xx, or dropped)
    latency_ms: dict[int, float | None]  # percentile -> elapsed ms (None: nothing served)
    background: int = 0  # of the requests served, the service's own probes and scrapes
    resources: dict[str, float] = field(default_factory=dict)  # cpu (cores), mem (bytes), ... (resources.py)


class ServedSeries:
    """What one service served since the last sample; cheap on the request path (two appends)."""

    __slots__ = ("_background", "_elapsed_ms", "_errors", "last")

    def __init__(self) -> None:
        self._elapsed_ms: list[float] = []
        self._errors = 0
        self._background = 0
        self.last: Sample | None = None

    def served(self, status: int | None, elapsed_ms: float, *, background: bool = False) -> None:
        """A request ended: ``status`` None means its connection was dropped without an answer.

        ``background``: a probe or a scrape (:mod:`.resources`), counted like any request and told apart.
        """
        self._elapsed_ms.append(elapsed_ms)
        if status is None or status >= 500:
            self._errors += 1
        if background:
            self._background += 1

    def sample(self, interval_s: float, at: float) -> Sample:
        """The interval that ends now, as rates over ``interval_s``; the counts start again."""
        elapsed, self._elapsed_ms = sorted(self._elapsed_ms), []
        errors, self._errors = self._errors, 0
        background, self._background = self._background, 0
        self.last = Sample(
            at=at,
            interval_s=interval_s,
            workload=len(elapsed) / interval_s,
            errors=errors / interval_s,
            latency_ms={p: _percentile(elapsed, p) for p in PERCENTILES},
            background=background,
        )
        return self.last


def _percentile(ordered: list[float], percent: int) -> float | None:
    """Nearest-rank percentile of an ordered list (None when empty): a value that was observed."""
    if not ordered:
        return None
    return round(ordered[max(0, math.ceil(percent / 100 * len(ordered)) - 1)], 3)


def series_trace_id(service: str, at: float, metric: str) -> str:
    """ProdSentinel files every signal under a trace and opens an incident for a trace it has not seen,
    racing when a trace's first signals arrive together (it then refuses the rest of that trace): each
    signal of a sample gets a trace of its own (its service, its exact time and its metric, 32 hex digits),
    so none ever joins a trace the backend already filed or is racing to open."""
    return hashlib.blake2b(f"{service}|{at!r}|{metric}|series".encode(), digest_size=16).hexdigest()


Measure = Callable[[float, int], dict[str, float]]  # (interval_s, requests served) -> resource readings


async def sample_every(
    series: ServedSeries,
    interval_s: float,
    emit: Callable[[Sample], None],
    measure: Measure | None = None,
    clock: Callable[[], float] = time.time,
) -> None:
    """Sample ``series`` (and ``measure`` the resources) every ``interval_s`` until cancelled; each sample goes to ``emit``.

    Ticks are kept on a fixed schedule (a late tick does not shift the next), and
    cancelling samples the partial interval once more, so nothing served is left out.
    """

    def tick() -> None:
        sample = series.sample(interval_s, clock())
        if measure is not None:
            sample.resources.update(measure(interval_s, round(sample.workload * interval_s)))
        emit(sample)

    loop = asyncio.get_running_loop()
    next_tick = loop.time() + interval_s
    try:
        while True:
            await asyncio.sleep(max(0.0, next_tick - loop.time()))
            next_tick += interval_s
            tick()
    finally:
        tick()
