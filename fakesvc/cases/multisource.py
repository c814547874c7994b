"""RE2's multi-source series: ``logts.csv``, ``tracets_err.csv``, ``tracets_lat.csv``, one row per 15 s.

RCAEval's multi-source methods (``mmbaro``, ``mmnsigma``, ``mmcirca``) read
them beside the metrics: ``main.py`` cuts each at ``inject_time`` on its
``time`` column (epoch seconds) and keeps ``length * 4 // 2`` rows a side (four
rows a minute), and the methods take one metric row in 15 to match. Every
other column is one series, named ``<service>_<what>``: RCAEval scores a ranked
column by the part before the first ``_``.

- ``logts.csv``: ``<service>_<template id>``, how many of the service's logs had
  that template (:mod:`fakesvc.cases.templates`) in the bucket. 0 when none: the
  methods do not fill this file's gaps.
- ``tracets_err.csv``: ``<service>_<operation>`` (the span's name, as
  ``traces.csv`` ``methodName``), how many of its spans that started in the
  bucket failed (OTel status ``ERROR``, or an HTTP status of 500 or more). 0
  when none.
- ``tracets_lat.csv``: the same columns, the mean duration (ms) of the spans
  that started in the bucket; empty when none did (RCAEval forward-fills this
  file, then fills 0).

The buckets are ``[inject_time + 15k, inject_time + 15(k+1))``: the fault starts
a bucket, so none mixes seconds before it with seconds after it. A bucket's
``time`` is its first second. The buckets cover the case's rows (the seconds
the traffic covered whole, ``data.csv``'s), so the first and the last may cover
fewer than 15 of them; their counts are scaled to 15 s (``count * 15 /
covered``) so that an edge bucket does not look like a drop in traffic.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from fakesvc.cases.templates import template, template_id

BUCKET_S = 15  # RE2's: main.py keeps length * 4 // 2 rows a side, the methods one metric row in 15

Value = int | float | None


@dataclass(frozen=True)
class Bucket:
    """``[start, start + BUCKET_S)``, of which ``covered`` seconds are rows of the case."""

    start: int
    covered: int


@dataclass(frozen=True)
class LogEvent:
    ts_s: float
    service: str
    message: str


@dataclass(frozen=True)
class SpanEvent:
    ts_s: float
    service: str
    operation: str
    duration_ms: float | None
    failed: bool


@dataclass(frozen=True)
class Table:
    """A file's header (``time`` first) and its rows, one per bucket."""

    columns: list[str]
    rows: list[list[Value]]


def buckets(seconds: range, inject_time: int) -> list[Bucket]:
    """The 15 s buckets, one starting at ``inject_time``, that hold any of ``seconds``."""
    if not seconds:
        return []
    first = inject_time + BUCKET_S * math.floor((seconds[0] - inject_time) / BUCKET_S)
    found = []
    for start in range(first, seconds[-1] + 1, BUCKET_S):
        covered = min(start + BUCKET_S, seconds.stop) - max(start, seconds.start)
        found.append(Bucket(start, covered))
    return found


@dataclass(frozen=True)
class Grid:
    """The case's rows (``data.csv``'s seconds) and the buckets that hold them."""

    seconds: range
    buckets: list[Bucket]

    @classmethod
    def of(cls, seconds: range, inject_time: int) -> Grid:
        return cls(seconds, buckets(seconds, inject_time))

    def index(self, ts_s: float) -> int | None:
        """The bucket holding ``ts_s``, if its second is one of the case's rows."""
        second = math.floor(ts_s)
        if second not in self.seconds:
            return None
        return (second - self.buckets[0].start) // BUCKET_S


def _ordered(keys: Iterable[tuple[str, str]], services: Sequence[str]) -> list[tuple[str, str]]:
    """Services in graph order, then the service's series by name."""
    rank = {service: i for i, service in enumerate(services)}
    return sorted(set(keys), key=lambda key: (rank.get(key[0], len(rank)), key[1]))


def _per_15s(count: int, bucket: Bucket) -> Value:
    """A count over the bucket's covered seconds, as a count over 15 s (a whole bucket's is exact)."""
    if bucket.covered == BUCKET_S or count == 0:
        return count
    scaled = round(count * BUCKET_S / bucket.covered, 3)
    return int(scaled) if scaled.is_integer() else scaled


def log_table(events: Iterable[LogEvent], services: Sequence[str], grid: Grid) -> tuple[Table, dict[str, str]]:
    """``logts.csv``, and each of its columns' template."""
    counts: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0] * len(grid.buckets))
    texts: dict[str, str] = {}
    for event in events:
        index = grid.index(event.ts_s)
        if index is None:
            continue
        text = template(event.message)
        key = (event.service, template_id(text))
        texts[f"{key[0]}_{key[1]}"] = text
        counts[key][index] += 1
    keys = _ordered(counts, services)
    rows = [
        [bucket.start, *(_per_15s(counts[key][i], bucket) for key in keys)] for i, bucket in enumerate(grid.buckets)
    ]
    columns = [f"{service}_{tid}" for service, tid in keys]
    return Table(["time", *columns], rows), {column: texts[column] for column in columns}


def span_tables(events: Iterable[SpanEvent], services: Sequence[str], grid: Grid) -> tuple[Table, Table]:
    """``tracets_err.csv`` and ``tracets_lat.csv``: the same columns, every operation a span of the case had."""
    failed: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0] * len(grid.buckets))
    durations: dict[tuple[str, str], list[list[float]]] = defaultdict(lambda: [[] for _ in grid.buckets])
    for event in events:
        index = grid.index(event.ts_s)
        if index is None:
            continue
        key = (event.service, event.operation)
        failed[key][index] += int(event.failed)
        if event.duration_ms is not None:
            durations[key][index].append(event.duration_ms)
    keys = _ordered(failed, services)
    columns = ["time", *(f"{service}_{operation}" for service, operation in keys)]
    err = [[bucket.start, *(_per_15s(failed[key][i], bucket) for key in keys)] for i, bucket in enumerate(grid.buckets)]
    lat: list[list[Value]] = []
    for i, bucket in enumerate(grid.buckets):
        row: list[Value] = [bucket.start]
        for key in keys:
            found = durations[key][i]
            row.append(round(sum(found) / len(found), 3) if found else None)
        lat.append(row)
    return Table(columns, err), Table(list(columns), lat)
