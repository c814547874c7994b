"""The files of a case as RCAEval reads them: their names, their columns in order, and how a cell is written.

One home for the layout (docs/cases.md describes each column):

- ``data.csv``: ``time`` (epoch seconds), then per service in graph order
  ``<svc>_cpu`` (cores), ``_mem`` (bytes), ``_latency-50``, ``_latency-90``
  (ms), ``_workload``, ``_error`` (a second). A value that does not exist is
  an empty cell: RCAEval's ``main.py`` forward-fills, then fills 0.
- ``logs.csv`` and ``traces.csv``: RCAEval RE2's columns, in its order
  (``logs.csv`` has fakesvc's ``trace_id`` after them).
- ``logts.csv``, ``tracets_err.csv``, ``tracets_lat.csv``: ``time`` (epoch
  seconds, one row per 15 s), then one column per series
  (:mod:`fakesvc.cases.multisource`).
"""

from __future__ import annotations

import csv
from collections.abc import Iterable, Sequence
from pathlib import Path

DATA_FILE, INJECT_FILE, LOGS_FILE, TRACES_FILE = "data.csv", "inject_time.txt", "logs.csv", "traces.csv"
TRUTH_FILE, REPORT_FILE, CASE_FILE = "truth.jsonl", "report.json", "case.json"
LOGTS_FILE, TRACETS_ERR_FILE, TRACETS_LAT_FILE = "logts.csv", "tracets_err.csv", "tracets_lat.csv"

# Per service, in this order; cpu and mem stay (empty) when the services send no such series.
SERIES_METRICS = ("cpu", "mem", "latency-50", "latency-90", "workload", "error")
LOG_COLUMNS = ("time", "timestamp", "container_name", "message", "level", "req_path", "error", "trace_id")
TRACE_COLUMNS = (
    "time",
    "traceID",
    "spanID",
    "serviceName",
    "methodName",
    "operationName",
    "startTimeMillis",
    "startTime",
    "duration",
    "statusCode",
    "parentSpanID",
)

Cell = str | int | float | None


def data_columns(services: Sequence[str]) -> list[str]:
    """``time``, then ``<service>_<metric>`` for every service and metric."""
    return ["time", *(f"{service}_{metric}" for service in services for metric in SERIES_METRICS)]


def cell(value: Cell) -> str:
    """An empty cell for a value that does not exist; a float rounded to a microunit; anything else as text."""
    if value is None:
        return ""
    if isinstance(value, float):
        return repr(round(value, 6))
    return str(value)


def write_csv(path: Path, header: Sequence[str], rows: Iterable[Sequence[Cell]]) -> int:
    """Write ``header`` then ``rows`` (each as long as the header); the number of rows written."""
    count = 0
    with path.open("w", encoding="utf-8", newline="") as file:
        writer = csv.writer(file, lineterminator="\n")
        writer.writerow(header)
        for row in rows:
            writer.writerow([cell(value) for value in row])
            count += 1
    return count
