"""``python -m fakesvc.score``: AC@k, Avg@k and detection against hand-computed values; every bad input."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from fakesvc.score.__main__ import main
from fakesvc.score.mentions import ranked_services
from tests.processes import ROOT

PAY, INV, GW = "payment-service", "inventory-service", "api-gateway"


def fault(service: str, kind: str) -> dict[str, Any]:
    return {"service": service, "kind": kind, "detail": f"{kind} in {service}", "status": None, "delay_ms": None}


def line(trace_id: str, scenario: str, causes: list[str], *faults: dict[str, Any], **extra: Any) -> dict[str, Any]:
    """A truth line as the traffic generator writes it (root_cause_services included)."""
    return {
        "run_id": "r1",
        "trace_id": trace_id,
        "order_id": f"o-{trace_id}",
        "scenario": scenario,
        "faults": list(faults),
        "root_cause_service": causes[0] if causes else None,
        "root_cause_services": causes,
        "expected_status": 500 if causes else 200,
        "status": 500 if causes else 200,
        "latency_ms": 1.0,
        "start": "2026-11-26T10:00:00+00:00",
        "end": "2026-11-26T10:00:01+00:00",
        **extra,
    }


# Six faulty checkouts (t1-t6), three healthy (t7-t9); the expected values are computed by hand below.
TRUTH = [
    line("t1", "fail-pay", [PAY], {**fault(PAY, "error"), "detail": "declined\u2028by issuer\u0085"}),  # raw
    line("t2", "timeout", [INV], fault(INV, "hang")),
    line("t3", "slow", [INV], fault(INV, "latency"), status=200, expected_status=200),  # latency only: still faulty
    line("t4", "two", [PAY, INV], fault(PAY, "noise"), fault(INV, "latency"), fault(PAY, "error")),  # kind: error
    line("t5", "fail-pay", [PAY], fault(PAY, "error")),
    line("t6", "db", [INV], fault(INV, "error")),
    line("t7", "success", []),
    line("t8", "success", [], fault(GW, "noise")),  # noise only: healthy
    line("t9", "success", []),
    line("t10", "success", [], interrupted=True),  # cut short: not scored
]
PREDICTIONS = [
    {"trace_id": "t1", "services": [PAY], "kind": "Error"},  # right at 1, kind right
    {"trace_id": "t2", "services": [PAY, INV], "kind": "error"},  # right at 2, kind wrong (hang)
    {"trace_id": "t3", "services": [GW, PAY, INV]},  # right at 3
    {"trace_id": "t4", "services": [INV]},  # either cause counts: right at 1
    # t5: no line, no incident
    {"trace_id": "t6", "services": []},  # an incident naming nothing: detected, wrong at every k
    {"trace_id": "t8", "services": [GW], "extra": "ignored"},  # a false alarm
    {"trace_id": "nobody", "services": [PAY]},  # not in the truth: counted, not scored
]
# right at k=1: t1 t4; k=2: + t2; k=3: + t3. Detections: t1-t4, t6 (true), t8 (false).
EXPECTED = {
    "checkouts": 9,
    "faulty": 6,
    "healthy": 3,
    "detected": 6,
    "ac@1": round(2 / 6, 4),
    "ac@3": round(4 / 6, 4),
    "avg@3": round((2 / 6 + 3 / 6 + 4 / 6) / 3, 4),
    "detection_precision": round(5 / 6, 4),
    "detection_recall": round(5 / 6, 4),
    "kind_accuracy": 0.5,
    "unmatched_predictions": 1,
    "interrupted_skipped": 1,
}


def jsonl(path: Path, records: list[Any]) -> Path:
    path.write_text("".join(json.dumps(record, ensure_ascii=False) + "\n" for record in records), encoding="utf-8")
    return path


@pytest.fixture
def truth(tmp_path: Path) -> Path:
    return jsonl(tmp_path / "truth.jsonl", TRUTH)


@pytest.fixture
def predictions(tmp_path: Path) -> Path:
    return jsonl(tmp_path / "preds.jsonl", PREDICTIONS)


def scored(tmp_path: Path, *argv: str) -> dict[str, Any]:
    out = tmp_path / "score.json"
    assert main([*argv, "--out", str(out)]) == 0
    return json.loads(out.read_text())


def test_the_metrics_match_the_hand_computed_values(tmp_path: Path, truth: Path, predictions: Path) -> None:
    report = scored(tmp_path, "--truth", str(truth), "--predictions", str(predictions))
    assert {key: report[key] for key in EXPECTED} == EXPECTED


def test_breakdowns_by_service_kind_and_scenario(tmp_path: Path, truth: Path, predictions: Path) -> None:
    report = scored(tmp_path, "--truth", str(truth), "--predictions", str(predictions))
    # payment: t1 (1st), t4 (INV 1st: right), t5 (missed); inventory: t2 (2nd), t3 (3rd), t4 (1st), t6 (missed)
    pay, inv, healthy = (report["by_service"][name] for name in (PAY, INV, "none"))
    assert (pay["faulty"], pay["ac@1"], pay["ac@3"], pay["avg@3"]) == (3, 0.6667, 0.6667, 0.6667)
    assert (inv["faulty"], inv["ac@1"], inv["ac@3"], inv["avg@3"]) == (4, 0.25, 0.75, 0.5)
    assert (healthy["healthy"], healthy["detected"], healthy["detection_precision"]) == (3, 1, 0.0)
    assert healthy["ac@1"] is None
    assert set(report["by_kind"]) == {"error", "hang", "latency", "none"}
    assert (report["by_kind"]["error"]["faulty"], report["by_kind"]["error"]["ac@1"]) == (4, 0.5)  # t1 t4 t5 t6
    assert (report["by_kind"]["hang"]["ac@1"], report["by_kind"]["hang"]["ac@3"]) == (0.0, 1.0)
    fail_pay = report["by_scenario"]["fail-pay"]
    assert (fail_pay["faulty"], fail_pay["detection_recall"], fail_pay["ac@1"]) == (2, 0.5, 0.5)
    assert set(fail_pay) == set(EXPECTED) - {"unmatched_predictions", "interrupted_skipped"}


def test_the_table_shows_every_group_and_the_notes(
    truth: Path, predictions: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["--truth", str(truth), "--predictions", str(predictions)]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[1].split() == "all 9 6 3 6 0.333 0.667 0.500 0.833 0.833 0.500".split()
    assert "service inventory-service" in out and "kind latency" in out and "scenario two" in out
    assert "1 interrupted, 0 harness-caused and 0 incomplete checkouts not scored; 1 predictions" in out


def test_without_root_cause_services_the_single_root_cause_is_read(tmp_path: Path) -> None:
    old = [{k: v for k, v in record.items() if k != "root_cause_services"} for record in TRUTH[:3]]
    report = scored(tmp_path, "--truth", str(jsonl(tmp_path / "t.jsonl", old)), "--predictions", "/dev/null")
    assert (report["faulty"], report["ac@1"], report["detection_recall"], report["detection_precision"]) == (
        3,
        0.0,
        0.0,
        None,
    )


def test_stdin_and_a_subprocess_pipe(truth: Path, predictions: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(predictions.read_bytes())))
    assert main(["--truth", str(truth), "--predictions", "-"]) == 0
    done = subprocess.run(
        [sys.executable, "-m", "fakesvc.score", "--truth", str(truth), "--predictions", "-"],
        input=predictions.read_text(),
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert done.returncode == 0 and done.stderr == "", done.stderr
    assert done.stdout.splitlines()[1].split()[:6] == ["all", "9", "6", "3", "6", "0.333"]


def test_a_reader_that_stops_early_gets_no_traceback(truth: Path, predictions: Path) -> None:
    read_end, write_end = os.pipe()
    os.close(read_end)  # `score | head` once head has exited: every write fails with EPIPE
    with os.fdopen(write_end, "wb") as stdout:
        args = [sys.executable, "-m", "fakesvc.score", "--truth", str(truth), "--predictions", str(predictions)]
        done = subprocess.run(args, stdout=stdout, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    assert (done.returncode, done.stderr) == (0, "")


def run_line(run_id: str, trace_id: str, causes: list[str]) -> dict[str, Any]:
    return {**line(trace_id, "s", causes, *(fault(c, "error") for c in causes)), "run_id": run_id}


def test_several_runs_join_on_run_id(tmp_path: Path) -> None:
    first = jsonl(tmp_path / "a.jsonl", [run_line("r1", "x", [PAY]), run_line("r1", "y", [])])
    second = jsonl(tmp_path / "b.jsonl", [run_line("r2", "x", [INV])])
    preds = jsonl(
        tmp_path / "p.jsonl",
        [
            {"trace_id": "x", "services": [PAY], "run_id": "r1"},  # right
            {"trace_id": "x", "services": [PAY], "run_id": "r2"},  # wrong: r2's x is inventory
            {"trace_id": "y", "services": []},  # one run only: no run_id needed
            {"trace_id": "x", "services": [], "run_id": "r3"},  # no such run
        ],
    )
    report = scored(tmp_path, "--truth", str(first), "--truth", str(second), "--predictions", str(preds))
    assert (report["faulty"], report["ac@1"], report["detection_precision"], report["unmatched_predictions"]) == (
        2,
        0.5,
        round(2 / 3, 4),
        1,
    )


def test_a_truth_without_run_id_matches_on_trace_id_alone(tmp_path: Path) -> None:
    old = {k: v for k, v in run_line("r1", "x", [PAY]).items() if k != "run_id"}
    preds = jsonl(tmp_path / "p.jsonl", [{"trace_id": "x", "services": [PAY], "run_id": "r9"}])
    report = scored(tmp_path, "--truth", str(jsonl(tmp_path / "t.jsonl", [old])), "--predictions", str(preds))
    assert report["ac@1"] == 1.0


BAD_PREDICTIONS = {
    "not JSON": ('{"trace_id": "t1", "services": [', "p.jsonl:2: not JSON"),
    "a list": ('["t1"]', "p.jsonl:2: a line must be a JSON object, not list"),
    "NaN": ("NaN", "p.jsonl:2: not JSON (NaN is not JSON)"),
    "a number": ("12", "p.jsonl:2: a line must be a JSON object, not int"),
    "services missing": ('{"trace_id": "t1"}', "p.jsonl:2: 'services' must be a list of strings"),
    "services a string": ('{"trace_id": "t1", "services": "payment-service"}', "'services' must be a list of strings"),
    "services nested": ('{"trace_id": "t1", "services": [["payment-service"]]}', "'services' must be a list"),
    "services with a number": ('{"trace_id": "t1", "services": [1e999]}', "'services' must be a list of strings"),
    "trace id missing": ('{"services": []}', "p.jsonl:2: 'trace_id' must be a non-empty string"),
    "trace id empty": ('{"trace_id": "", "services": []}', "'trace_id' must be a non-empty string"),
    "kind a number": ('{"trace_id": "t1", "services": [], "kind": 3}', "'kind' must be a non-empty string"),
    "run id a list": ('{"trace_id": "t1", "services": [], "run_id": []}', "'run_id' must be a non-empty string"),
    "a duplicate": ('{"trace_id": "t2", "services": []}', "p.jsonl:2: a second prediction for trace id 't2'"),
}


@pytest.mark.parametrize("bad", list(BAD_PREDICTIONS))
def test_bad_predictions_are_one_line_naming_file_and_line(
    tmp_path: Path, truth: Path, bad: str, capsys: pytest.CaptureFixture[str]
) -> None:
    text, expected = BAD_PREDICTIONS[bad]
    preds = tmp_path / "p.jsonl"
    preds.write_text('{"trace_id": "t2", "services": ["\u00e9t\u00e9"]}\n' + text + "\n", encoding="utf-8")
    assert_exit_2(["--truth", str(truth), "--predictions", str(preds)], expected, capsys)


BAD_TRUTH = {
    "not JSON": ("{", "t.jsonl:1: not JSON"),
    "not an object": ('"t1"', "t.jsonl:1: a line must be a JSON object"),
    "trace id missing": ('{"scenario": "s"}', "t.jsonl:1: 'trace_id' must be a non-empty string"),
    "scenario missing": ('{"trace_id": "t"}', "'scenario' must be a non-empty string"),
    "causes not a list": ('{"trace_id": "t", "scenario": "s", "root_cause_services": "x"}', "must be a list"),
    "cause a number": ('{"trace_id": "t", "scenario": "s", "root_cause_service": 1}', "'root_cause_service' must"),
    "faults not objects": ('{"trace_id": "t", "scenario": "s", "faults": [1]}', "'faults' must be a list of objects"),
    "bad start": ('{"trace_id": "t", "scenario": "s", "start": "soon"}', "'start' is not an ISO 8601 time"),
    "empty": ("", "t.jsonl: no checkout to score (0 interrupted)"),
    "only interrupted": ('{"trace_id": "t", "interrupted": true}', "no checkout to score (1 interrupted)"),
    "not UTF-8": ("\udcff", "t.jsonl: not UTF-8 text"),
}


@pytest.mark.parametrize("bad", list(BAD_TRUTH))
def test_bad_truth_is_one_line(tmp_path: Path, bad: str, capsys: pytest.CaptureFixture[str]) -> None:
    text, expected = BAD_TRUTH[bad]
    path = tmp_path / "t.jsonl"
    path.write_bytes(text.encode("utf-8", "surrogateescape"))
    assert_exit_2(["--truth", str(path), "--predictions", "/dev/null"], expected, capsys)


def test_the_same_trace_in_two_runs_needs_a_run_id(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    first = jsonl(tmp_path / "a.jsonl", [run_line("r1", "x", [PAY])])
    second = jsonl(tmp_path / "b.jsonl", [run_line("r2", "x", [INV])])
    preds = jsonl(tmp_path / "p.jsonl", [{"trace_id": "x", "services": [PAY]}])
    argv = ["--truth", str(first), "--truth", str(second), "--predictions", str(preds)]
    expected = "p.jsonl:1: trace id 'x' is in 2 truth runs (r1, r2) and the prediction names no run_id"
    assert_exit_2(argv, expected, capsys)


def test_the_same_truth_twice_is_an_error(truth: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["--truth", str(truth), "--truth", str(truth), "--predictions", "/dev/null"]
    assert_exit_2(argv, "truth.jsonl:1: trace id 't1' of run r1 is already at", capsys)


@pytest.mark.parametrize(
    "argv, expected",
    [
        (["--truth", "{missing}", "--predictions", "{preds}"], "No such file or directory"),
        (["--truth", "{truth}", "--predictions", "{missing}"], "No such file or directory"),
        (["--truth", "{truth}", "--predictions", "{preds}", "--out", "{missing}/x.json"], "--out"),
        (["--truth", "{truth}"], "one of the arguments --predictions --prodsentinel is required"),
        (["--truth", "{truth}", "--predictions", "{preds}", "--prodsentinel", "http://x"], "not allowed with"),
        (["--predictions", "{preds}"], "the following arguments are required: --truth"),
        (["--truth", "{truth}", "--prodsentinel", "localhost:8000"], "--prodsentinel: not an http(s) URL"),
        (["--truth", "{truth}", "--prodsentinel", "http://"], "--prodsentinel: not an http(s) URL"),
    ],
)
def test_bad_usage_is_one_line_and_exit_2(
    tmp_path: Path, truth: Path, predictions: Path, argv: list[str], expected: str, capsys: pytest.CaptureFixture[str]
) -> None:
    paths = {"truth": truth, "preds": predictions, "missing": tmp_path / "missing"}
    assert_exit_2([arg.format(**paths) for arg in argv], expected, capsys)


def assert_exit_2(argv: list[str], expected: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as stopped:
        main(argv)
    out, err = capsys.readouterr()
    assert stopped.value.code == 2, err
    assert expected in err, err
    assert "Traceback" not in err and out == ""
    if "usage:" not in err:
        assert len(err.strip().splitlines()) == 1, err


@pytest.mark.parametrize(
    "text, ranked",
    [
        ("The Inventory Service DB pool; payment-service timed out; API gateway 500", [INV, PAY, GW]),
        ("the GATEWAY saw payment_service fail, then inventory, then payment and the gateway again", [GW, PAY, INV]),
        ("payments and gateways: no whole word; api alone is not a name", []),
        ("Payment timeout: inventory-service did not answer within 2 s", [PAY, INV]),
        ("", []),
    ],
)
def test_the_services_a_root_cause_names_in_first_mention_order(text: str, ranked: list[str]) -> None:
    assert ranked_services(text) == ranked
