"""``python -m fakesvc.truth``: the faulty checkouts of a truth file, readable and filterable."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fakesvc.truth import main

HEALTHY = {
    "trace_id": "t1",
    "order_id": "o1",
    "faults": [],
    "root_cause_service": None,
    "expected_status": 200,
    "status": 200,
}
DECLINED = {
    "trace_id": "t2",
    "order_id": "o2-fail-pay",
    "faults": [{"service": "payment-service", "kind": "error", "detail": "Payment declined by issuer"}],
    "root_cause_service": "payment-service",
    "expected_status": 500,
    "status": 500,
}
HUNG = {
    **DECLINED,
    "trace_id": "t3",
    "root_cause_service": "inventory-service",
    "faults": [{"service": "inventory-service", "kind": "hang", "detail": "hang 5000 ms"}],
}
SURPRISE = {**HEALTHY, "trace_id": "t4", "status": 500}  # nothing injected, yet it failed: shown too


@pytest.fixture
def truth(tmp_path: Path) -> Path:
    path = tmp_path / "truth.jsonl"
    lines = [json.dumps(line) for line in (HEALTHY, DECLINED, HUNG, SURPRISE)]
    path.write_text("\n".join(lines) + '\n{"trace_id": "cut sh')  # a run cut mid-line
    return path


def test_it_lists_what_went_wrong_one_line_each_trace_id_first(truth: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main([str(truth)]) == 0
    out, err = capsys.readouterr()
    assert [line.split()[0] for line in out.splitlines()] == ["t2", "t3", "t4"]
    assert "root cause inventory-service" in out.splitlines()[1] and "hang 5000 ms" in out.splitlines()[1]
    assert "3 of 3 shown; 4 checkouts" in err


def test_filters_and_json(truth: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main([str(truth), "--service", "inventory-service", "--json"]) == 0
    assert [json.loads(line) for line in capsys.readouterr().out.splitlines()] == [HUNG]
    assert main([str(truth), "--all", "--limit", "1"]) == 0
    assert capsys.readouterr().out.split()[0] == "t1"


@pytest.mark.parametrize("argv", [["missing.jsonl"], ["{truth}", "--limit", "-1"], ["{truth}", "--limit", "x"]])
def test_bad_arguments_are_one_line_and_exit_2(
    truth: Path, argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as stopped:
        main([arg.format(truth=truth) for arg in argv])
    assert stopped.value.code == 2 and "Traceback" not in capsys.readouterr().err


def test_noise_alone_did_not_go_wrong_and_every_root_cause_is_listed_and_filtered(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    noise = {"service": "inventory-service", "kind": "noise", "detail": "noise TimeoutError: Cache miss (rule 0)"}
    only_noise = {**HEALTHY, "trace_id": "n1", "faults": [noise], "root_cause_services": []}
    both = {
        **DECLINED,
        "trace_id": "b1",
        "root_cause_service": "inventory-service",
        "root_cause_services": ["inventory-service", "payment-service"],
    }
    path = tmp_path / "truth.jsonl"
    path.write_text("\n".join(json.dumps(line) for line in (only_noise, both, HUNG)) + "\n")
    assert main([str(path)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in out] == ["b1", "t3"]  # HUNG predates root_cause_services: still read
    assert "root cause inventory-service + payment-service" in out[0]
    assert main([str(path), "--service", "payment-service"]) == 0
    assert [line.split()[0] for line in capsys.readouterr().out.splitlines()] == ["b1"]
