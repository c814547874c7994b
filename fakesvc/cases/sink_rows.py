"""A run's signals read back from the embedded sink's SQLite file, as the rows of a case's files.

The sink keeps every signal as sent (``raw_signals``: its payload, and its
time as ``ts_us``, epoch microseconds). A case reads three kinds of them within
the run's time: the services' series samples (metrics with ``series: true``),
their logs and their spans, each for the graph's services only (a database
may hold other runs, told apart by time).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Collection, Iterator
from contextlib import closing
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from fakesvc.cases.multisource import LogEvent, SpanEvent
from fakesvc.cases.tables import SERIES_METRICS, Cell
from fakesvc.jsonfast import loads


@dataclass(frozen=True)
class SeriesSample:
    """One value of one service's series: it covers ``(end_s - interval_s, end_s]``."""

    service: str
    metric: str
    end_s: float
    interval_s: float
    value: float


def connect(path: Path) -> sqlite3.Connection:
    """The database read-only: a case never changes the run it reads."""
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    return sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)


def check(path: Path) -> None:
    """Fail now (:class:`sqlite3.Error`, :class:`FileNotFoundError`) if ``path`` is no sink database."""
    with closing(connect(path)) as db:
        db.execute("SELECT ts_us, trace_id, service_name, payload FROM raw_signals LIMIT 1").fetchall()


def _signals(
    path: Path, kind: str, services: Collection[str], start_us: int, end_us: int
) -> Iterator[tuple[int, str, dict[str, Any]]]:
    """``(ts_us, trace_id, payload)`` of each signal of ``kind`` from ``services`` in the time range, oldest first."""
    with closing(connect(path)) as db:
        rows = db.execute(
            "SELECT ts_us, trace_id, service_name, payload FROM raw_signals "
            "WHERE signal_type = ? AND ts_us >= ? AND ts_us <= ? ORDER BY ts_us, id",
            (kind, start_us, end_us),
        )
        for ts_us, trace_id, service, payload in rows:
            if service in services and ts_us is not None:
                yield int(ts_us), str(trace_id), loads(payload)  # orjson with the fast extra


def series_samples(path: Path, services: Collection[str], start_us: int, end_us: int) -> list[SeriesSample]:
    """Every series value of the services in the range, of the metrics a case has columns for."""
    found = []
    for ts_us, _, signal in _signals(path, "metric", services, start_us, end_us):
        attributes = signal.get("attributes") or {}
        name, value = signal.get("metric_name"), signal.get("value")
        if attributes.get("series") is not True or name not in SERIES_METRICS or not isinstance(value, int | float):
            continue
        interval = attributes.get("interval_s")
        interval_s = float(interval) if isinstance(interval, int | float) and interval > 0 else 1.0
        found.append(SeriesSample(str(signal["service_name"]), str(name), ts_us / 1e6, interval_s, float(value)))
    return found


def clock(ts_us: int) -> str:
    """RE2's ``time`` column of logs and traces: the UTC hour and minute (``17:47``)."""
    return datetime.fromtimestamp(ts_us / 1e6, UTC).strftime("%H:%M")


def logs(path: Path, services: Collection[str], start_us: int, end_us: int) -> Iterator[tuple[list[Cell], LogEvent]]:
    """Each log as its ``logs.csv`` row (time, timestamp in epoch ns, container_name, message, level,
    req_path, error, trace_id) and as what ``logts.csv`` counts (its time, service and message)."""
    for ts_us, trace_id, signal in _signals(path, "log", services, start_us, end_us):
        attributes = signal.get("attributes") or {}
        route = attributes.get("route") or attributes.get("http.route") or ""
        error = attributes.get("exception.message") or attributes.get("error_code") or ""
        message = signal.get("message", "")
        row: list[Cell] = [
            clock(ts_us),
            ts_us * 1000,
            signal["service_name"],
            message,
            str(signal.get("level", "")).lower(),
            route,
            error,
            trace_id,
        ]
        yield row, LogEvent(ts_us / 1e6, str(signal["service_name"]), str(message))


def spans(path: Path, services: Collection[str], start_us: int, end_us: int) -> Iterator[tuple[list[Cell], SpanEvent]]:
    """Each span as its ``traces.csv`` row (Jaeger's, as RE2 has them: start in epoch ms and µs, duration
    in µs) and as what ``tracets_*.csv`` aggregate: its start, service, name, duration and whether it failed.

    A span failed when its OTel status is ``ERROR`` (a hop that answered an
    error, dropped the connection, or whose caller gave up) or its HTTP status is 500 or more.
    """
    for ts_us, trace_id, signal in _signals(path, "trace", services, start_us, end_us):
        attributes = signal.get("attributes") or {}
        name = str(attributes.get("span.name") or "")
        status = attributes.get("http.status_code", attributes.get("http.response.status_code"))
        duration_ms = signal.get("duration_ms")
        known_ms = float(duration_ms) if isinstance(duration_ms, int | float) else None
        row: list[Cell] = [
            clock(ts_us),
            trace_id,
            signal.get("span_id", ""),
            signal["service_name"],
            name,
            name,
            ts_us // 1000,
            ts_us,
            round(known_ms * 1000) if known_ms is not None else None,
            status if isinstance(status, int) else None,
            signal.get("parent_span_id") or None,
        ]
        failed = signal.get("status") == "ERROR" or (isinstance(status, int) and status >= 500)
        yield row, SpanEvent(ts_us / 1e6, str(signal["service_name"]), name, known_ms, failed)
