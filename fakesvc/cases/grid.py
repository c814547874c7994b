"""The services' samples on one grid of epoch seconds: ``data.csv``'s rows.

Each service samples in its own event loop, at its own phase: a sample covers
``(end - interval, end]``, not a calendar second. Row ``T`` is the second
``[T, T+1)``; its value of a series is the mean of the samples that overlap
it, each weighted by how much of the second it covers. For a rate (workload,
error, cpu) that is the rate over the second; a latency percentile is blended
from the (at most two) intervals the second straddles. A second no sample of
a series covers is an empty cell (latency when nothing was served; cpu and mem
when no service sends them), and a second with no sample of a service at all
is a gap of that service's sampler (its event loop stalled): the case says so.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Sequence

from fakesvc.cases.sink_rows import SeriesSample
from fakesvc.cases.tables import SERIES_METRICS

WHOLE_METRICS = ("mem",)  # bytes: a blend of two samples is rounded to a whole byte
Row = tuple[int, dict[str, float | None]]  # the second, and each column's value


def whole_seconds(start_s: float, end_s: float) -> range:
    """The seconds ``T`` with ``[T, T+1)`` inside ``[start_s, end_s]``: rows a run's traffic covers whole."""
    return range(math.ceil(start_s), math.floor(end_s))


def resample(samples: Iterable[SeriesSample], services: Sequence[str], seconds: range) -> list[Row]:
    """One row a second of ``seconds``: every column of every service, None where no sample covers it."""
    weighted: dict[tuple[str, int], list[float]] = defaultdict(lambda: [0.0, 0.0])
    for sample in samples:
        start = sample.end_s - sample.interval_s
        for second in range(math.floor(start), math.floor(sample.end_s) + 1):
            overlap = min(sample.end_s, second + 1) - max(start, second)
            if overlap > 0 and second in seconds:
                total = weighted[(f"{sample.service}_{sample.metric}", second)]
                total[0] += sample.value * overlap
                total[1] += overlap
    columns = [(f"{service}_{metric}", metric in WHOLE_METRICS) for service in services for metric in SERIES_METRICS]
    rows = []
    for second in seconds:
        values: dict[str, float | None] = {}
        for column, whole in columns:
            found = weighted.get((column, second))
            mean = found[0] / found[1] if found is not None and found[1] > 0 else None
            values[column] = float(round(mean)) if whole and mean is not None else mean
        rows.append((second, values))
    return rows


def gaps(rows: Sequence[Row], services: Sequence[str]) -> dict[str, list[int]]:
    """The seconds in which a service has no sample at all (every service samples its workload each interval)."""
    found = {}
    for service in services:
        missing = [second for second, values in rows if values[f"{service}_workload"] is None]
        if missing:
            found[service] = missing
    return found
