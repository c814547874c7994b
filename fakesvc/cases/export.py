"""A finished run (sink database, truth, report) turned into one case directory.

The fault is the run's: the report's ``fault_windows`` must hold exactly one
window that can be a root cause (noise is left aside), and its start is the
case's ``inject_time`` (the epoch second it fell in: row ``inject_time`` is
the first second with any of the fault in it). The rows are the seconds the
traffic covered whole; a run whose fault leaves no row before it or none from
it on makes no case RCAEval could cut in two, and is refused.
"""

from __future__ import annotations

import json
import math
import shutil
import sqlite3
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

from fakesvc import __version__
from fakesvc.cases import grid, layout, multisource, sink_rows, tables
from fakesvc.cases.kinds import rcaeval_name
from fakesvc.cases.plan import CasePlan
from fakesvc.cases.predict import PREDICTIONS_FILE, predict
from fakesvc.cases.tables import Cell
from fakesvc.faults.rules import HARMLESS_KINDS
from fakesvc.graph.export import as_dict
from fakesvc.graph.model import Graph
from fakesvc.settings import ConfigError
from fakesvc.truth import graph_fields, read_truth

CASE_FORMAT = 1
WINDOW_KEYS = ("service", "rule", "kind", "detail", "start", "end", "always_on", "replaced", "trace_id")
READ_MARGIN_S = 2.0  # signals a little outside the traffic's time (the last sample, a drained checkout's logs)
UNEXPLAINED_CAUSES = ("harness", "incomplete")


@dataclass(frozen=True)
class RunInputs:
    """A run's three files, and the supervisor's exit status when this process ran it."""

    sink_db: Path
    truth: Path
    report: Path
    status: int | None = None


def epoch(text: Any, where: str) -> float:
    """An ISO time of the report as epoch seconds; a :class:`ConfigError` naming ``where`` if it is none."""
    try:
        return datetime.fromisoformat(str(text)).timestamp()
    except ValueError:
        raise ConfigError(f"{where}: not an ISO time ({str(text)[:40]!r})") from None


def read_report(path: Path) -> dict[str, Any]:
    """The run's report: a JSON object with the traffic's start and end and its fault windows."""
    try:
        report = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"--report: {path}: cannot read ({exc.strerror or exc})") from None
    except ValueError:
        raise ConfigError(f"--report: {path}: not JSON") from None
    if not isinstance(report, dict) or not isinstance(report.get("fault_windows"), list):
        raise ConfigError(f"--report: {path}: not a fakesvc report (no fault_windows)")
    for key in ("started", "ended"):
        if not isinstance(report.get(key), str):
            raise ConfigError(f"--report: {path}: no {key!r} time (a run cut before its traffic started?)")
    return report


def the_fault(report: dict[str, Any], path: Path) -> dict[str, Any]:
    """The one window that can be the case's root cause; any other count is refused, naming them."""
    windows = [w for w in report["fault_windows"] if isinstance(w, dict) and w.get("kind") not in HARMLESS_KINDS]
    if len(windows) != 1:
        named = ", ".join(f"{w.get('kind')} on {w.get('service')}" for w in windows) or "none"
        raise ConfigError(
            f"--report: {path}: a case has one root cause, this run has {len(windows)} fault windows ({named})"
        )
    window = windows[0]
    if not isinstance(window.get("service"), str) or not isinstance(window.get("kind"), str):
        raise ConfigError(f"--report: {path}: its fault window names no service or kind")
    return window


def stalled_seconds(truth: list[dict[str, Any]]) -> list[int]:
    """The seconds in which a checkout the harness failed (or whose records never came) was in flight."""
    seconds: set[int] = set()
    for line in truth:
        if line.get("cause") in UNEXPLAINED_CAUSES and line.get("start") and line.get("end"):
            start, end = epoch(line["start"], "truth"), epoch(line["end"], "truth")
            seconds.update(range(math.floor(start), math.floor(end) + 1))
    return sorted(seconds)


def fill_case(partial: Path, run: RunInputs, graph: Graph, plan: CasePlan | None = None) -> dict[str, Any]:
    """Write every file of the case into ``partial``; its ``case.json`` is returned."""
    report = read_report(run.report)
    try:
        truth = list(read_truth(run.truth))
    except OSError as exc:
        raise ConfigError(f"--truth: {run.truth}: cannot read ({exc.strerror or exc})") from None
    window = the_fault(report, run.report)
    service, kind = window["service"], window["kind"]
    if service not in graph.names:
        raise ConfigError(f"--report: the fault is on {service!r}, which is no service of graph {graph.name}")
    started, ended = epoch(report["started"], "report started"), epoch(report["ended"], "report ended")
    fault_start = epoch(window["start"], "fault window start")
    fault_end = ended if window.get("end") is None else epoch(window["end"], "fault window end")
    inject_time = math.floor(fault_start)
    seconds = grid.whole_seconds(started, ended)
    if not seconds or inject_time <= seconds[0] or inject_time > seconds[-1]:
        raise ConfigError(
            "--report: the fault leaves no whole second of traffic before it or none from it on "
            f"(traffic {report['started']} to {report['ended']}, fault from {window['start']})"
        )
    low_us, high_us = round((started - READ_MARGIN_S) * 1e6), round((ended + READ_MARGIN_S) * 1e6)
    try:
        sink_rows.check(run.sink_db)
    except (OSError, sqlite3.Error) as exc:
        raise ConfigError(f"--sink-db: {run.sink_db}: cannot read ({exc})") from None
    with ThreadPoolExecutor(max_workers=1) as pool:  # the analyser reads the sink while the files are written
        predicting = pool.submit(predict, run.sink_db, run.truth, graph, partial / PREDICTIONS_FILE)
        samples = sink_rows.series_samples(run.sink_db, graph.names, low_us, high_us)
        rows = grid.resample(samples, graph.names, seconds)
        columns = tables.data_columns(graph.names)
        tables.write_csv(
            partial / tables.DATA_FILE,
            columns,
            ([second, *(values[c] for c in columns[1:])] for second, values in rows),
        )
        (partial / tables.INJECT_FILE).write_text(f"{inject_time}\n", encoding="utf-8")
        log_events: list[multisource.LogEvent] = []
        span_events: list[multisource.SpanEvent] = []
        logs = tables.write_csv(
            partial / tables.LOGS_FILE,
            tables.LOG_COLUMNS,
            _noting(sink_rows.logs(run.sink_db, graph.names, low_us, high_us), log_events),
        )
        spans = tables.write_csv(
            partial / tables.TRACES_FILE,
            tables.TRACE_COLUMNS,
            _noting(sink_rows.spans(run.sink_db, graph.names, low_us, high_us), span_events),
        )
        series_15s = write_multi_source(
            partial, graph, multisource.Grid.of(seconds, inject_time), log_events, span_events
        )
        shutil.copyfile(run.truth, partial / tables.TRUTH_FILE)
        shutil.copyfile(run.report, partial / tables.REPORT_FILE)
        predicted = predicting.result()
    case = {
        "format": CASE_FORMAT,
        "fakesvc_version": __version__,
        **graph_fields(graph),
        "root_cause_service": service,
        "fault": {
            "fakesvc": kind,
            "rcaeval": rcaeval_name(kind),
            "detail": window.get("detail"),
            "rule": {key: value for key, value in window.items() if key not in WINDOW_KEYS},
            "start": window["start"],
            "end": window.get("end"),
        },
        "inject_time": inject_time,
        "windows": {
            "nominal": plan.windows.as_dict() if plan is not None else None,
            "measured": {
                "warmup_s": round(fault_start - started, 3),
                "fault_s": round(fault_end - fault_start, 3),
                "recovery_s": round(ended - fault_end, 3),
            },
        },
        "seed": report.get("seed"),
        "run_id": report.get("run_id"),
        "traffic": {
            "rate": report.get("rate_target"),
            "mix": report.get("mix"),
            "started": report["started"],
            "ended": report["ended"],
            "sent": report.get("sent"),
            "completed": report.get("completed"),
        },
        "rows": len(rows),
        "first_time": seconds[0],
        "last_time": seconds[-1],
        "columns": columns,
        "logs": logs,
        "spans": spans,
        "multi_source": series_15s,
        "causes": report.get("causes"),
        "predictions": PREDICTIONS_FILE if predicted else None,
        "harness": {
            "supervisor_status": run.status,
            "stalled_seconds": stalled_seconds(truth),
            "series_gaps": grid.gaps(rows, graph.names),
            "loop_lag": report.get("loop_lag"),
            "examples": (report.get("harness_examples") or [])[:5],
        },
        "call_graph": as_dict(graph),
    }
    (partial / tables.CASE_FILE).write_text(json.dumps(case, indent=2) + "\n", encoding="utf-8")
    return case


Event = TypeVar("Event")


def _noting(pairs: Iterable[tuple[list[Cell], Event]], events: list[Event]) -> Iterator[list[Cell]]:
    """Each row for its file, its event kept for the 15 s series: the sink's signals are read once."""
    for row, event in pairs:
        events.append(event)
        yield row


def write_multi_source(
    partial: Path,
    graph: Graph,
    buckets: multisource.Grid,
    log_events: list[multisource.LogEvent],
    span_events: list[multisource.SpanEvent],
) -> dict[str, Any]:
    """``logts.csv``, ``tracets_err.csv`` and ``tracets_lat.csv``; what ``case.json`` says of them."""
    logts, templates = multisource.log_table(log_events, graph.names, buckets)
    err, lat = multisource.span_tables(span_events, graph.names, buckets)
    for name, table in ((tables.LOGTS_FILE, logts), (tables.TRACETS_ERR_FILE, err), (tables.TRACETS_LAT_FILE, lat)):
        tables.write_csv(partial / name, table.columns, table.rows)
    return {
        "bucket_s": multisource.BUCKET_S,
        "rows": len(buckets.buckets),
        "first_time": buckets.buckets[0].start if buckets.buckets else None,
        "covered_s": [bucket.covered for bucket in buckets.buckets],
        "log_templates": templates,
        "operations": err.columns[1:],
    }


def case_parent(out: Path, report: dict[str, Any], path: Path) -> Path:
    """``OUT/{service}_{fault}``: the directory of the run's fault, RCAEval's name for it."""
    window = the_fault(report, path)
    return out / f"{window['service']}_{rcaeval_name(window['kind'])}"


def export_run(run: RunInputs, out: Path, graph: Graph) -> tuple[Path, dict[str, Any]]:
    """Write the run as the next repetition of its case in ``out``: the directory and its ``case.json``."""
    parent = case_parent(out, read_report(run.report), run.report)
    partial = layout.new_partial(parent)
    try:
        case = fill_case(partial, run, graph)
        return layout.publish(partial), case
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
