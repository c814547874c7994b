"""``python -m fakesvc.graph export``: a graph's call graph as JSON, DOT and CSV for root-cause methods."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from fakesvc.graph import load_graph
from fakesvc.graph.__main__ import main
from fakesvc.graph.export import as_dict
from tests.graph_fixtures import MINI_YAML
from tests.processes import ROOT


def exported(capsys: pytest.CaptureFixture[str], *args: str) -> str:
    assert main(["export", *args]) == 0
    out, err = capsys.readouterr()
    assert err == ""
    return out


def pairs(document: dict[str, Any]) -> list[tuple[str, str]]:
    return [(edge["caller"], edge["callee"]) for edge in document["edges"]]


def test_the_checkout_is_one_chain_from_the_gateway(capsys: pytest.CaptureFixture[str]) -> None:
    gateway, payment, inventory = load_graph("checkout").names
    document = json.loads(exported(capsys, "checkout"))  # json is the default
    assert document["graph"] == "checkout"
    assert (
        document["services"] == [gateway, payment, inventory] == ["api-gateway", "payment-service", "inventory-service"]
    )
    assert pairs(document) == [(gateway, payment), (payment, inventory)]
    assert document["adjacency"] == {gateway: [payment], payment: [inventory], inventory: []}
    assert document["matrix"] == {"index": [gateway, payment, inventory], "rows": [[0, 1, 0], [0, 0, 1], [0, 0, 0]]}
    causes = {"index": [gateway, payment, inventory], "rows": [[0, 0, 0], [1, 0, 0], [0, 1, 0]]}
    assert document["causal_matrix"] == causes  # inventory causes payment's symptoms, payment the gateway's
    assert document["edge_service"] == gateway
    assert document["root_cause_candidates"] == [gateway, payment, inventory]
    assert document["edges"][0] == {
        "caller": gateway,
        "callee": payment,
        "routes": ["POST /pay/{order_id}"],
        "parallel": False,
        "fallback": False,
    }


def test_the_shops_edges_are_the_graphs_own() -> None:
    graph = load_graph("shop")
    document = as_dict(graph)
    wanted = {(caller, callee) for caller, callee, _ in graph.edges()}
    assert set(pairs(document)) == wanted
    assert len(pairs(document)) == len(wanted)  # one edge per caller -> callee
    assert document["services"] == list(graph.names)
    assert document["edge_service"] == graph.edge.name == "frontend"
    # several calls on one edge: every route the caller reaches, sorted
    by_pair = {(edge["caller"], edge["callee"]): edge for edge in document["edges"]}
    assert by_pair["checkoutservice", "cartservice"]["routes"] == ["DELETE /cart/{order_id}", "GET /cart/{order_id}"]


@pytest.mark.parametrize("name", ["checkout", "shop"])
def test_the_matrix_and_the_adjacency_say_what_the_edges_say(name: str) -> None:
    document = as_dict(load_graph(name))
    index = document["matrix"]["index"]
    assert index == document["services"] and sorted(document["adjacency"]) == sorted(index)
    ones = {
        (index[row], index[column])
        for row, values in enumerate(document["matrix"]["rows"])
        for column, value in enumerate(values)
        if value == 1
    }
    assert all(len(values) == len(index) and set(values) <= {0, 1} for values in document["matrix"]["rows"])
    assert ones == set(pairs(document))
    assert {(caller, callee) for caller, callees in document["adjacency"].items() for callee in callees} == ones


def test_a_file_exports_its_fallbacks_and_parallel_calls(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "mini.yaml"
    path.write_text(MINI_YAML)
    document = json.loads(exported(capsys, str(path)))
    flags = {edge["callee"]: (edge["parallel"], edge["fallback"]) for edge in document["edges"]}
    assert flags == {"pricing": (False, False), "stock": (True, False), "ads": (True, True)}
    assert document["graph"] == "mini" and document["root_cause_candidates"] == ["edge", "pricing", "stock", "ads"]


def test_the_export_is_stable(capsys: pytest.CaptureFixture[str]) -> None:
    assert exported(capsys, "shop") == exported(capsys, "shop", "--format", "json")


def test_dot_is_a_digraph_with_one_labelled_edge_per_caller_and_callee(capsys: pytest.CaptureFixture[str]) -> None:
    text = exported(capsys, "shop", "--format", "dot")
    graph = load_graph("shop")
    lines = text.splitlines()
    assert lines[0] == 'digraph "shop" {' and lines[-1] == "}"
    arrows = [line for line in lines if " -> " in line]
    assert len(arrows) == len({(caller, callee) for caller, callee, _ in graph.edges()})
    assert '  "frontend" [peripheries=2];' in lines
    assert '  "checkoutservice" -> "emailservice" [label="POST /confirm/{order_id}", style="dashed"];' in lines
    assert '  "cartservice" -> "redis-cart" [label="GET /get/{order_id}\\nPOST /del/{order_id}"];' in lines
    assert all(f'  "{name}"' in text for name in graph.names)


def test_csv_is_the_edge_list_with_a_header(capsys: pytest.CaptureFixture[str]) -> None:
    rows = list(csv.reader(io.StringIO(exported(capsys, "checkout", "--format", "csv"))))
    assert rows == [["caller", "callee"], ["api-gateway", "payment-service"], ["payment-service", "inventory-service"]]


def test_out_writes_the_file_and_says_where(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "shop.csv"
    out.write_text("old\n")  # replaced
    assert main(["export", "shop", "--format", "csv", "--out", str(out)]) == 0
    stdout, stderr = capsys.readouterr()
    assert stdout == "" and stderr == f"wrote {out}\n"
    assert out.read_text() == exported(capsys, "shop", "--format", "csv")


def test_an_unwritable_out_is_one_line_and_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["export", "shop", "--out", str(tmp_path / "missing" / "shop.json")]) == 2
    stdout, stderr = capsys.readouterr()
    assert stdout == "" and len(stderr.splitlines()) == 1 and "cannot write" in stderr, stderr


def run(*args: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "fakesvc.graph", "export", *args]
    return subprocess.run(command, capture_output=True, text=True, cwd=ROOT, timeout=60)


def test_the_command_prints_json_from_a_shell() -> None:
    done = run("shop", "--format", "json")
    assert done.returncode == 0 and done.stderr == "", done.stderr
    assert json.loads(done.stdout)["graph"] == "shop"


def test_an_unknown_graph_is_one_line_and_exit_2() -> None:
    done = run("no-such-graph")
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.splitlines() == ["no-such-graph: no such file, nor a built-in graph (built-in: checkout, shop)"]


def test_a_bad_file_gives_the_loaders_lines(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(MINI_YAML.replace("service: stock", "service: stok"))
    assert main(["export", str(path)]) == 2
    stdout, stderr = capsys.readouterr()
    assert stdout == "" and "no service named 'stok' (did you mean 'stock'?)" in stderr, stderr


def test_an_unknown_format_is_refused_by_the_parser(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as stopped:
        main(["export", "shop", "--format", "xml"])
    assert stopped.value.code == 2
    assert "invalid choice: 'xml'" in capsys.readouterr().err
