"""``python -m fakesvc.cases``: a real case written in RCAEval RE2's layout, read back as RCAEval's ``main.py`` reads one.

The reference is ``tests/fixtures/rcaeval_re2``: a hand-made RE2 case with the
documented files and columns. One short real case (checkout graph, latency on
inventory-service, windows shrunk by ``--time-scale``) is played once for the
module; an export is tested on a sink database written here; every bad input
is refused with exit 2 and one line, before anything is written.
"""

from __future__ import annotations

import csv
import json
import os
import sqlite3
import statistics
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest

from fakesvc.cases import layout
from fakesvc.cases import plan as plans
from fakesvc.cases.__main__ import main
from fakesvc.cases.tables import SERIES_METRICS
from fakesvc.cases.templates import template, template_id
from fakesvc.graph.load import load_graph
from fakesvc.sink.store import INDEXES, TABLE

FIXTURE = Path(__file__).parent / "fixtures" / "rcaeval_re2" / "checkoutservice_cpu" / "1"
RCAEVAL_FAULTS = {"cpu", "mem", "disk", "socket", "delay", "loss"}
CHECKOUT = load_graph("checkout").names


def header(path: Path) -> list[str]:
    with path.open(newline="", encoding="utf-8") as file:
        return next(csv.reader(file))


def read_like_rcaeval(case: Path, length_min: int = 20) -> dict[str, Any]:
    """A case as RCAEval's ``main.py`` reads it, with the standard library.

    ``data.csv`` (else ``simple_metrics.csv``); the service and fault from the parent's name split at ``_``;
    ``_latency-50`` dropped; missing cells forward-filled, then 0; cut at ``inject_time``
    (``time < inject_time`` is normal) to ``length_min * 60 // 2`` rows each side; ``_latency-90`` renamed.
    """
    path = case / "data.csv" if (case / "data.csv").is_file() else case / "simple_metrics.csv"
    service, fault = case.parent.name.split("_")  # main.py unpacks exactly two
    with path.open(newline="", encoding="utf-8") as file:
        rows = list(csv.DictReader(file))
    columns = [column for column in rows[0] if not column.endswith("_latency-50")]
    renamed = {column: column.replace("_latency-90", "_latency") for column in columns}
    last: dict[str, float] = {}
    table = []
    for row in rows:
        values = {}
        for column in columns:
            raw = row[column]
            if raw not in ("", "inf", "-inf"):
                last[column] = float(raw)
            values[renamed[column]] = last.get(column, 0.0)
        table.append(values)
    inject_time = int((case / "inject_time.txt").read_text().splitlines()[0].strip())
    half = length_min * 60 // 2
    normal = [row for row in table if row["time"] < inject_time][-half:]
    anomalous = [row for row in table if row["time"] >= inject_time][:half]
    return {
        "service": service,
        "fault": fault,
        "columns": list(renamed.values()),
        "normal": normal,
        "anomalous": anomalous,
        "times": [row["time"] for row in table],
    }


MULTI_SOURCE = ("logts.csv", "tracets_err.csv", "tracets_lat.csv")


def read_multi_source_like_rcaeval(case: Path, length_min: int = 20) -> dict[str, list[dict[str, float]]]:
    """The three 15 s files as ``main.py`` cuts them and ``mmnsigma`` fills them, with the standard library.

    ``main.py``: ``time < inject_time`` is normal, ``length_min * 4 // 2`` rows a side. ``mmnsigma``:
    ``logts.csv`` used as is (an empty cell would reach the scaler: refused here), the ``tracets_*``
    files forward-filled, then filled with 0.
    """
    inject_time = int((case / "inject_time.txt").read_text().splitlines()[0].strip())
    half = length_min * 4 // 2
    found = {}
    for name in MULTI_SOURCE:
        with (case / name).open(newline="", encoding="utf-8") as file:
            rows = list(csv.DictReader(file))
        last: dict[str, float] = {}
        table = []
        for row in rows:
            values = {}
            for column, raw in row.items():
                if raw == "":
                    assert name != "logts.csv", f"{name}: an empty cell in {column}"
                else:
                    last[column] = float(raw)
                values[column] = last.get(column, 0.0)
            table.append(values)
        normal = [row for row in table if row["time"] < inject_time][-half:]
        anomalous = [row for row in table if row["time"] >= inject_time][:half]
        found[name] = normal + anomalous
    return found


def one_line(capsys: pytest.CaptureFixture[str]) -> str:
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1, lines
    return lines[0]


@pytest.fixture(scope="module")
def played(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One real case: 7 s of traffic (6 + 4 + 4 nominal seconds at 0.5), latency 300 ms on inventory."""
    out = tmp_path_factory.mktemp("cases")
    status = main(
        [
            "run",
            "--graph",
            "checkout",
            "--fault",
            "latency",
            "--service",
            "inventory-service",
            "--seed",
            "7",
            "--out",
            str(out),
            "--warmup",
            "6",
            "--fault-s",
            "4",
            "--recovery",
            "4",
            "--time-scale",
            "0.5",
            "--latency-scale",
            "0.1",
        ]
    )
    assert status == 0
    return out


def test_the_fixture_is_what_rcaevals_main_reads() -> None:
    read = read_like_rcaeval(FIXTURE)
    assert (read["service"], read["fault"]) == ("checkoutservice", "cpu")
    assert read["normal"] and read["anomalous"]
    assert all(len(column.split("_")) == 2 for column in read["columns"] if column != "time")


def test_a_case_has_rcaevals_layout_and_reads_as_rcaeval_reads_it(played: Path) -> None:
    case = played / "inventory-service_delay" / "1"
    assert sorted(path.name for path in case.iterdir()) == [
        "case.json",
        "data.csv",
        "inject_time.txt",
        "logs.csv",
        "logts.csv",
        "predictions.jsonl",
        "report.json",
        "traces.csv",
        "tracets_err.csv",
        "tracets_lat.csv",
        "truth.jsonl",
    ]
    assert not [path for path in case.parent.iterdir() if path.name.startswith(".")]  # no partial left
    columns = header(case / "data.csv")
    assert columns == ["time", *(f"{s}_{m}" for s in CHECKOUT for m in SERIES_METRICS)]
    fixture_metrics = {column.split("_")[1] for column in header(FIXTURE / "simple_metrics.csv")[1:]}
    assert set(SERIES_METRICS) <= fixture_metrics  # RE2's names; it has diskio and socket besides
    read = read_like_rcaeval(case)
    assert (read["service"], read["fault"]) == ("inventory-service", "delay")
    assert read["fault"] in RCAEVAL_FAULTS
    assert all(len(column.split("_")) == 2 for column in read["columns"] if column != "time")
    times = read["times"]
    assert times == list(range(int(times[0]), int(times[0]) + len(times)))  # one row a second, none missing
    assert read["normal"] and read["anomalous"]
    before = [row["inventory-service_latency"] for row in read["normal"]]
    during = [row["inventory-service_latency"] for row in read["anomalous"]]
    # 300 ms injected against single-digit ms (the typical second: one a busy host stalled is no baseline)
    assert max(during) > 10 * statistics.median(before)
    assert header(case / "logs.csv")[:7] == header(FIXTURE / "logs.csv")
    assert header(case / "traces.csv") == header(FIXTURE / "traces.csv")


def test_the_multi_source_files_have_re2s_shape_and_show_the_fault(played: Path) -> None:
    case = played / "inventory-service_delay" / "1"
    inject_time = int((case / "inject_time.txt").read_text())
    fixture_inject = int((FIXTURE / "inject_time.txt").read_text())
    for name, where, services in (
        (FIXTURE, fixture_inject, {"checkoutservice", "frontend"}),
        (case, inject_time, set(CHECKOUT)),
    ):
        read = read_multi_source_like_rcaeval(name)
        for file, rows in read.items():
            columns = header(name / file)
            assert columns[0] == "time" and len(columns) > 1, file
            assert {column.split("_")[0] for column in columns[1:]} <= services, file  # scored by service
            times = [int(row["time"]) for row in rows]
            assert all(later - earlier == 15 for earlier, later in zip(times, times[1:])), file  # 15 s buckets
            assert (where - times[0]) % 15 == 0 and times[0] < where <= times[-1], file  # the fault starts a bucket
        assert header(name / "tracets_err.csv") == header(name / "tracets_lat.csv")
    described = json.loads((case / "case.json").read_text())["multi_source"]
    assert described["bucket_s"] == 15 and sorted(described["log_templates"]) == sorted(header(case / "logts.csv")[1:])
    read = read_multi_source_like_rcaeval(case)
    column = "inventory-service_GET /inventory/{item_id}"  # the route the 300 ms is injected on
    before = [row[column] for row in read["tracets_lat.csv"] if row["time"] < inject_time]
    during = [row[column] for row in read["tracets_lat.csv"] if row["time"] >= inject_time]
    assert min(during) > 5 * max(before) > 0
    logs = [c for c in header(case / "logts.csv")[1:] if c.startswith("inventory-service_")]
    assert logs and all(row[c] > 0 for row in read["logts.csv"] for c in logs)  # counted per 15 s on both sides


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        ("Payment authorized", "Payment authorized"),
        ("Inventory check completed: slow query, took 312 ms", "Inventory check completed: slow query, took <*> ms"),
        (
            "Payment failed: inventory-service answered 503 (connect to 127.0.0.1:45123 for 'ab12')",
            "Payment failed: inventory-service answered <*> (connect to <*> for <*>)",
        ),
        ("trace 4bf92f3577b34da6a3ce929d0e0e4736 took 1.5e3ms", "trace <*> took <*>"),
    ],
)
def test_log_templates_mask_the_variable_parts(message: str, expected: str) -> None:
    assert template(message) == expected
    assert template_id(expected) == template_id(template(message)) and template_id(expected).isdigit()


def test_logs_and_traces_carry_re2s_units(played: Path) -> None:
    case = played / "inventory-service_delay" / "1"
    with (case / "traces.csv").open(newline="") as file:
        spans = list(csv.DictReader(file))
    with (case / "logs.csv").open(newline="") as file:
        logs = list(csv.DictReader(file))
    inject_time = int((case / "inject_time.txt").read_text())
    assert spans and logs
    assert {span["serviceName"] for span in spans} == set(CHECKOUT)
    for span in spans:
        assert int(span["startTime"]) // 1000 == int(span["startTimeMillis"])  # µs and ms since the epoch
        assert abs(int(span["startTime"]) / 1e6 - inject_time) < 60
    slow = [int(s["duration"]) for s in spans if s["operationName"] == "GET /inventory/{item_id}"]
    assert max(slow) >= 300_000  # µs: the 300 ms injected
    assert all(abs(int(log["timestamp"]) / 1e9 - inject_time) < 60 for log in logs)  # ns since the epoch


def test_case_json_says_what_was_played_and_the_truth_is_kept(played: Path) -> None:
    case = played / "inventory-service_delay" / "1"
    described = json.loads((case / "case.json").read_text())
    assert described["root_cause_service"] == "inventory-service"
    assert (described["fault"]["fakesvc"], described["fault"]["rcaeval"]) == ("latency", "delay")
    assert described["inject_time"] == int((case / "inject_time.txt").read_text())
    assert described["seed"] == 7 and described["graph"] == "checkout"
    assert {(e["caller"], e["callee"]) for e in described["call_graph"]["edges"]} == {
        ("api-gateway", "payment-service"),
        ("payment-service", "inventory-service"),
    }
    assert described["windows"]["nominal"]["played_fault_s"] == 2.0
    assert described["harness"]["supervisor_status"] == 0
    truth = [json.loads(line) for line in (case / "truth.jsonl").read_text().splitlines()]
    assert truth and {line["scenario"] for line in truth} == {"success"}  # the rule is the only root cause
    assert {line["root_cause_service"] for line in truth if line["cause"] == "fault"} == {"inventory-service"}
    index = list(csv.DictReader((played / "index.csv").open()))
    assert [row["case"] for row in index] == ["inventory-service_delay/1"]
    # the reference analyser judged the run before its sink was dropped: its vote names the root cause
    assert described["predictions"] == "predictions.jsonl"
    answers = [json.loads(line) for line in (case / "predictions.jsonl").read_text().splitlines()]
    # its slow threshold is 1 s: 300 ms of latency behind 200s is no incident to it (a miss on the scoreboard)
    assert all(set(answer["services"]) <= set(CHECKOUT) for answer in answers)


def write_run(tmp_path: Path, windows: list[dict[str, Any]]) -> tuple[Path, Path, Path]:
    """A finished run's three files, by hand: 10 s of series for the checkout, one log and one span."""
    db, truth, report = tmp_path / "signals.db", tmp_path / "truth.jsonl", tmp_path / "report.json"
    base = 1_800_000_000
    with closing(sqlite3.connect(db)) as connection:
        connection.executescript(TABLE)
        connection.executescript(INDEXES)
        rows = []
        for second in range(10):
            for service in CHECKOUT:
                for metric, value in (("workload", 5.0), ("error", 0.0), ("latency-90", 40.0 if second >= 4 else 4.0)):
                    payload = {
                        "service_name": service,
                        "metric_name": metric,
                        "value": value,
                        "attributes": {"series": True, "interval_s": 1.0},
                    }
                    ts_us = (base + second + 1) * 1_000_000 + 500_000
                    rows.append(
                        (f"{service}-{metric}-{second}", "metric", "t", service, "x", json.dumps(payload), ts_us)
                    )
        log = {"service_name": "inventory-service", "level": "ERROR", "message": "slow", "attributes": {}}
        rows.append(("log", "log", "t1", "inventory-service", "x", json.dumps(log), (base + 5) * 1_000_000))
        span = {
            "service_name": "inventory-service",
            "span_id": "s1",
            "parent_span_id": None,
            "duration_ms": 40.5,
            "attributes": {"span.name": "GET /inventory/{item_id}", "http.status_code": 200},
        }
        rows.append(("span", "trace", "t1", "inventory-service", "x", json.dumps(span), (base + 5) * 1_000_000))
        connection.executemany("INSERT INTO raw_signals VALUES (?, ?, ?, ?, ?, ?, datetime('now'), ?)", rows)
        connection.commit()
    truth.write_text(json.dumps({"trace_id": "t1", "graph": "checkout", "cause": "fault"}) + "\n")
    iso = "2027-01-15T08:{:02d}:{:02d}.500000+00:00"
    started = iso.format(0, 0)  # base is 2027-01-15T08:00:00Z
    report.write_text(json.dumps({"started": started, "ended": iso.format(0, 10), "seed": 3, "fault_windows": windows}))
    return db, truth, report


LATENCY_WINDOW = {
    "service": "inventory-service",
    "rule": 0,
    "kind": "latency",
    "latency_ms": 300.0,
    "start": "2027-01-15T08:00:04.200000+00:00",
    "end": "2027-01-15T08:00:07.200000+00:00",
}


def test_export_turns_a_finished_run_into_the_same_layout(tmp_path: Path) -> None:
    db, truth, report = write_run(tmp_path, [LATENCY_WINDOW, {"service": "payment-service", "kind": "noise"}])
    out = tmp_path / "out"
    args = ["export", "--sink-db", str(db), "--truth", str(truth), "--report", str(report), "--out", str(out)]
    assert main(args) == 0
    assert main(args) == 0  # the same run again: the next repetition
    assert layout.repetitions(out / "inventory-service_delay") == [1, 2]
    case = out / "inventory-service_delay" / "1"
    assert (case / "inject_time.txt").read_text() == "1800000004\n"
    read = read_like_rcaeval(case)
    assert read["times"] == list(range(1_800_000_001, 1_800_000_010))  # the seconds the traffic covered whole
    assert [row["api-gateway_latency"] for row in read["anomalous"]][1:] == [40.0] * 5
    with (case / "data.csv").open(newline="") as file:
        first = next(csv.DictReader(file))
    assert first["api-gateway_cpu"] == "" and first["api-gateway_mem"] == ""  # no such series: empty, not 0
    assert first["api-gateway_latency-90"] == "4.0"  # samples at .5: each second is half of two equal ones
    spans = list(csv.DictReader((case / "traces.csv").open()))
    assert (spans[0]["duration"], spans[0]["statusCode"], spans[0]["parentSpanID"]) == ("40500", "200", "")
    # 15 s buckets from inject_time: 3 of the rows before it, 6 from it on; the one log and span in the second
    logts = list(csv.reader((case / "logts.csv").open()))
    assert logts == [["time", f"inventory-service_{template_id('slow')}"], ["1799999989", "0"], ["1800000004", "2.5"]]
    lat = list(csv.reader((case / "tracets_lat.csv").open()))
    assert lat == [["time", "inventory-service_GET /inventory/{item_id}"], ["1799999989", ""], ["1800000004", "40.5"]]
    assert list(csv.reader((case / "tracets_err.csv").open()))[1:] == [["1799999989", "0"], ["1800000004", "0"]]


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--warmup", "nan"], "--warmup: must be a finite number >= 0"),
        (["--fault-s", "-1"], "--fault-s: must be a finite number >= 0"),
        (["--fault-s", "0"], "--fault-s: must be a number > 0"),
        (["--time-scale", "1e9"], "--time-scale: must be a number > 0 and <= 100"),
        (["--time-scale", "0.001"], "less than 2 s"),
        (["--rate", "0"], "--rate: must be a number > 0"),
        (["--rate", "inf"], "--rate: must be a finite number"),
        (["--seed", "-3"], "--seed: must be a whole number"),
        (["--service", "inventory-servce"], "did you mean 'inventory-service'?"),
        (["--fault", "laterncy"], "did you mean 'latency'?"),
        (["--fault", "noise"], "noise is harmless"),
        (["--graph", "shopp"], "did you mean 'shop'?"),
        (["--rat", "5"], "unrecognized arguments: --rat"),
    ],
)
def test_a_bad_run_is_refused_in_one_line_before_anything_is_written(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], says: str
) -> None:
    base = {"--fault": "latency", "--service": "inventory-service", "--out": str(tmp_path / "out")}
    for flag, value in zip(args[::2], args[1::2]):
        base[flag] = value
    argv = ["run", *(item for pair in base.items() for item in pair)]
    try:
        status = main(argv)
    except SystemExit as exc:  # argparse's own refusals
        status = int(exc.code or 0)
    assert status == 2
    assert says in one_line(capsys)
    assert not (tmp_path / "out").exists()


def test_a_bad_suite_or_export_is_refused_in_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = str(tmp_path / "out")
    assert main(["suite", "--repeat", "0", "--out", out]) == 2
    assert "--repeat" in one_line(capsys)
    assert main(["suite", "--faults", "cpu,cpu", "--out", out]) == 2
    assert "names one twice" in one_line(capsys)
    assert main(["suite", "--graph", "shop", "--services", "cartservice,nope", "--out", out]) == 2
    assert "no service 'nope' in graph shop" in one_line(capsys)
    db, truth, report = write_run(tmp_path, [LATENCY_WINDOW, {**LATENCY_WINDOW, "service": "payment-service"}])
    args = ["export", "--sink-db", str(db), "--truth", str(truth), "--report", str(report), "--out", out]
    assert main(args) == 2
    assert "a case has one root cause, this run has 2 fault windows" in one_line(capsys)
    args[args.index("--report") + 1] = str(tmp_path / "missing.json")
    assert main(args) == 2
    assert "cannot read" in one_line(capsys)
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").glob("*/[0-9]*"))


def test_a_partial_case_of_a_dead_process_is_removed_and_repetitions_are_the_next_free(tmp_path: Path) -> None:
    parent = tmp_path / "cartservice_cpu"
    stale = parent / ".partial-999999999-abcd"  # no such process
    stale.mkdir(parents=True)
    (parent / "1").mkdir()
    (parent / "1" / "case.json").write_text("{}")
    partial = layout.new_partial(parent)
    assert not stale.exists() and partial.name.startswith(f".partial-{os.getpid()}-")
    (partial / "case.json").write_text("{}")
    assert layout.publish(partial) == parent / "2"
    assert layout.repetitions(parent) == [1, 2]


def test_a_time_scaled_memory_case_leaks_as_fast_as_its_window_shrinks() -> None:
    """Played at 0.25, the window is a quarter as long, and the leak four times as fast: it climbs as high."""
    graph = plans.graph_named("shop")
    windows = plans.windows_of("120", "60", "30", "0.25")
    case = plans.CasePlan(graph, "cartservice", plans.kind_of("memory"), windows, rate=10, seed=7, latency_scale=1)
    (rule,) = case.chaos()["cartservice"]
    assert (rule["start_s"], rule["duration_s"], rule["restart_s"]) == (30.0, 15.0, 1.25)
    assert rule["leak_mb_per_s"] * rule["duration_s"] == 5.0 * 60  # the nominal climb
