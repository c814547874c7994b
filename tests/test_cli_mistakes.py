"""A new user's mistakes on the command line, each answered with one line and its exit status, or taken care of.

An abbreviated flag is refused; a scenario misspelt in ``--mix`` gets the one
meant; the analyser and the scorer read the graph the truth was made on, and say
when the backend holds none of its traces; a stop before traffic starts still
writes the report and truth asked for; what the documented commands write is
ignored by git. Run as a user runs them: real subprocesses, real signals.
"""

from __future__ import annotations

import ast
import json
import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from fakesvc.analyse.graphs import graph_of_truth
from fakesvc.graph.load import load_graph
from fakesvc.sink_address import SINK_DB
from fakesvc.telemetry.batcher import BATCHER_SETTINGS
from fakesvc.truth import MadeOn, graph_fields, made_on
from tests.processes import ROOT, Process, spawn, start_supervisor
from tests.telemetry_fixtures import free_port, sink_on

SUPERVISOR = str(ROOT / "supervisor.py")
SPILL_DIR = next(setting.default for setting in BATCHER_SETTINGS if setting.env == "FAKESVC_SPILL_DIR")


def run(*args: str, env: dict[str, str] | None = None, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    """``python ARGS`` to its end: exit status, stdout, stderr."""
    environ = {**os.environ, **(env or {})}
    return subprocess.run([sys.executable, *args], cwd=cwd, env=environ, capture_output=True, text=True, timeout=120)


def one_line(stderr: str) -> str:
    lines = stderr.splitlines()
    assert len(lines) == 1, stderr
    return lines[0]


# 1. Abbreviations: each flag is refused as a user would abbreviate it. Before, argparse took a unique
# prefix for the flag: each command here then went on to fail otherwise (a bad value, a missing file).
ABBREVIATED = [
    ([SUPERVISOR, "--rat", "5", "--count", "0"], "--rat"),
    (["-m", "fakesvc.traffic", "--rat", "5", "--count", "0"], "--rat"),
    (["-m", "fakesvc.analyse", "--truth", "none.jsonl", "--from", "http://127.0.0.1:1", "--evid", "summary"], "--evid"),
    (["-m", "fakesvc.score", "--truth", "none.jsonl", "--predictions", "-", "--include"], "--include"),
    (["-m", "fakesvc.sink", "--outag", "1:1", "--error-rate", "2"], "--outag"),
    (["-m", "fakesvc.truth", "none.jsonl", "--lim", "1"], "--lim"),
    (["-m", "fakesvc.payment", "--latency-sc", "0", "--graph", "none.yaml"], "--latency-sc"),
    (["-m", "fakesvc.healthcheck", "--he"], "--he"),
]


@pytest.mark.parametrize(
    ("args", "flag"),
    ABBREVIATED,
    ids=[f"{Path(args[0]).name if args[0] != '-m' else args[1]} {flag}" for args, flag in ABBREVIATED],
)
def test_an_abbreviated_flag_is_refused(args: list[str], flag: str) -> None:
    done = run(*args)
    assert done.returncode == 2, done.stderr
    assert re.search(rf"^\S.*: error: unrecognized arguments: {flag}\b", done.stderr, re.M), done.stderr


def parser_constructions(path: Path) -> list[int]:
    """The lines of ``path`` that build an argparse parser (``ArgumentParser(...)``, ``add_parser(...)``)
    without ``allow_abbrev=False``."""
    bad = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if not isinstance(node, ast.Call):
            continue
        name = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
        if name not in ("ArgumentParser", "add_parser"):
            continue
        refused = any(
            keyword.arg == "allow_abbrev" and isinstance(keyword.value, ast.Constant) and keyword.value.value is False
            for keyword in node.keywords
        )
        if not refused:
            bad.append(node.lineno)
    return bad


PARSER_FILES = sorted(
    str(path.relative_to(ROOT))
    for path in [ROOT / "supervisor.py", *(ROOT / "fakesvc").rglob("*.py"), *(ROOT / "bench").rglob("*.py")]
    if not any(part.startswith(".") for part in path.relative_to(ROOT).parts)  # a venv made there is not ours
    and re.search(r"ArgumentParser\(|add_parser\(", path.read_text())
)


@pytest.mark.parametrize("path", PARSER_FILES)
def test_every_parser_of_the_project_refuses_abbreviations(path: str) -> None:
    assert parser_constructions(ROOT / path) == [], f"{path}: a parser without allow_abbrev=False"


# 2. A misspelt scenario in --mix


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (
            [SUPERVISOR, "--rate", "5", "--mix", "timout=5,success=95"],
            "no scenario 'timout': did you mean timeout? (scenarios success, fail-pay, timeout)",
        ),
        (
            [SUPERVISOR, "--graph", "shop", "--rate", "5", "--mix", "success=90,card-decline=10"],
            "no scenario 'card-decline': did you mean card-declined?",
        ),
        (
            ["-m", "fakesvc.traffic", "--rate", "5", "--mix", "Success=1"],
            "no scenario 'Success': did you mean success?",
        ),
    ],
)
def test_a_misspelt_scenario_names_the_one_meant(args: list[str], said: str) -> None:
    done = run(*args)
    assert done.returncode == 2
    line = one_line(done.stderr)
    assert line.startswith(f"fakesvc: --mix: {said}"), line


# 3. The graph a truth was made on


USER_GRAPH = """
name: toll
services:
  - name: tollbooth
    routes:
      - path: /pass/{order_id}
        method: POST
        entry: true
        script:
          - call: {service: zebra-store, path: "/z/{order_id}", timeout_s: 3}
  - name: zebra-store
    routes:
      - path: /z/{order_id}
        method: GET
        script: [{sleep: {ms: 5}}]
"""


@pytest.fixture
def toll_truth(tmp_path: Path) -> Path:
    """Two truth lines of a run on a graph file of the user's (``toll``), as the generator writes them."""
    path = tmp_path / "toll.yaml"
    path.write_text(USER_GRAPH)
    fields = graph_fields(load_graph(path))
    truth = tmp_path / "truth.jsonl"
    lines = [{"run_id": "r", "trace_id": trace_id, "scenario": "success", **fields} for trace_id in ("a", "b")]
    truth.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return truth


def test_a_truth_line_names_its_graph_unless_it_is_the_checkout(tmp_path: Path) -> None:
    path = tmp_path / "toll.yaml"
    path.write_text(USER_GRAPH)
    assert graph_fields(load_graph(path)) == {"graph": "toll", "graph_file": str(path.resolve())}
    assert graph_fields(load_graph("shop")) == {"graph": "shop"}
    assert graph_fields(load_graph("checkout")) == graph_fields(None) == {"graph": "checkout"}  # every line names it
    # read back: the file's graph, with no flag and no environment to say it
    assert graph_of_truth(MadeOn("toll", str(path.resolve()))).names == ("tollbooth", "zebra-store")
    path.unlink()
    with pytest.raises(ValueError, match=r"graph 'toll' \(.*toll.yaml\), which cannot be read .*see --graph"):
        graph_of_truth(MadeOn("toll", str(tmp_path / "toll.yaml")))


@pytest.mark.parametrize(
    ("module", "source", "env", "named_by"),
    [
        ("fakesvc.analyse", ["--from", "http://127.0.0.1:1", "--graph", "shop"], {}, "--graph shop"),
        ("fakesvc.analyse", ["--from", "http://127.0.0.1:1"], {"FAKESVC_GRAPH": "shop"}, "FAKESVC_GRAPH shop"),
        ("fakesvc.score", ["--prodsentinel", "http://127.0.0.1:1", "--graph", "shop"], {}, "--graph shop"),
    ],
)
def test_a_graph_given_that_is_not_the_truths_is_an_error_naming_both(
    toll_truth: Path, module: str, source: list[str], env: dict[str, str], named_by: str
) -> None:
    done = run("-m", module, "--truth", str(toll_truth), *source, env=env)
    assert done.returncode == 2
    line = one_line(done.stderr)
    assert line.startswith(f"fakesvc: {named_by} is graph 'shop', but the truth was made on graph 'toll' ("), line
    assert str(toll_truth.parent / "toll.yaml") in line


def test_truth_lines_of_two_graphs_are_refused(tmp_path: Path, toll_truth: Path) -> None:
    mixed = tmp_path / "mixed.jsonl"
    mixed.write_text(toll_truth.read_text() + json.dumps({"run_id": "s", "trace_id": "c", "graph": "shop"}) + "\n")
    done = run("-m", "fakesvc.analyse", "--truth", str(mixed), "--from", "http://127.0.0.1:1")
    assert done.returncode == 2
    assert "lines of several graphs: 'shop', 'toll' (" in one_line(done.stderr)


async def finished(process: Process, timeout: float = 120) -> tuple[int, str]:
    status, rest = await process.exited(timeout)
    return status, "".join(process.stderr_lines) + rest


async def test_a_shop_run_is_analysed_on_the_shop_without_being_told(tmp_path: Path) -> None:
    """The shop's catalogue outage, read with only what ProdSentinel keeps: on the checkout's graph it is lost."""
    truth = tmp_path / "truth.jsonl"
    ports = {f"{service.code_prefix}_PORT": "0" for service in load_graph("shop").services}
    args = ("--graph", "shop", "--chaos-profile", "catalog-outage", "--chaos-time-scale", "0.05", "--quiet")
    supervisor = await start_supervisor(
        tmp_path, *args, "--rate", "40", "--count", "160", "--seed", "1", "--truth", str(truth), **ports
    )
    status, stderr = await finished(supervisor)
    assert status == 0, stderr
    lines = [json.loads(line) for line in truth.read_text().splitlines()]
    assert {line["graph"] for line in lines} == {"shop"} and "graph_file" not in lines[0]
    sink = await sink_on(0, supervisor.db)
    try:
        analyser = await spawn(
            ["-m", "fakesvc.analyse", "--truth", str(truth), "--from", sink.url, "--evidence", "summary"], {}
        )
        status, stderr = await finished(analyser)
    finally:
        await sink.stop()
    assert status == 0, stderr
    predictions = {json.loads(line)["trace_id"]: json.loads(line)["services"] for line in analyser.stdout_lines}
    catalogue = [line["trace_id"] for line in lines if line["root_cause_services"] == ["productcatalogservice"]]
    assert len(catalogue) >= 10  # the outage hit enough checkouts to judge
    right = sum(predictions.get(trace_id, [""])[0] == "productcatalogservice" for trace_id in catalogue)
    assert right >= 0.9 * len(catalogue), (right, len(catalogue))


async def test_a_backend_holding_none_of_the_truths_traces_says_so(tmp_path: Path) -> None:
    truth = tmp_path / "truth.jsonl"
    truth.write_text("".join(json.dumps({"run_id": "r", "trace_id": f"{n:032x}"}) + "\n" for n in range(3)))
    db = tmp_path / "other.db"  # a sink of another run, say
    sink = await sink_on(0, db)
    try:
        analyser = await spawn(["-m", "fakesvc.analyse", "--truth", str(truth), "--from", sink.url], {})
        status, stderr = await finished(analyser)
    finally:
        await sink.stop()
    assert status == 2 and analyser.stdout_lines == []
    assert one_line(stderr) == (
        f"fakesvc: {sink.url} (SQLite {db}) holds no signal of any of the truth's 3 traces: "
        "is it the backend the run sent to?"
    )


# 4. A stop before the traffic starts

STOPS = [pytest.param(signal.SIGTERM, id="SIGTERM"), pytest.param(signal.SIGINT, id="SIGINT")]
# With -X importtime each module says when it is imported: fakesvc.backend is imported after the
# supervisor's first lines, and long before anything listens.
WHILE_IMPORTING = ("-X", "importtime")


def traffic_files(tmp_path: Path) -> tuple[Path, Path, tuple[str, ...]]:
    truth, report = tmp_path / "t.jsonl", tmp_path / "r.json"
    return truth, report, ("--rate", "5", "--duration", "10", "--truth", str(truth), "--report", str(report))


@pytest.mark.parametrize("signum", STOPS)
async def test_a_stop_while_the_supervisor_imports_still_writes_report_and_truth(
    tmp_path: Path, signum: signal.Signals
) -> None:
    truth, report, args = traffic_files(tmp_path)
    supervisor = await start_supervisor(tmp_path, *args, python_args=WHILE_IMPORTING)
    await supervisor.read_until("fakesvc.backend")
    status, stderr = await supervisor.stop(signum)
    assert status == 128 + signum, stderr[-3000:]
    assert truth.read_text() == ""
    written = json.loads(report.read_text())
    assert written["interrupted"] is True and written["signal"] == signum.name
    assert (written["scheduled"], written["sent"], written["completed"], written["scheduled_total"]) == (0, 0, 0, 50)
    assert f"interrupted by {signum.name}: 0 checkouts cut short, 50 not started; exit {128 + signum}" in stderr


@pytest.mark.parametrize("signum", STOPS)
async def test_a_stop_while_the_traffic_tool_imports_still_writes_report_and_truth(
    tmp_path: Path, signum: signal.Signals
) -> None:
    """``python -m fakesvc.traffic`` notes the signal before its heavy imports: exit 128 + it, both files written."""
    truth, report, args = traffic_files(tmp_path)
    target = f"http://127.0.0.1:{free_port()}"
    tool = await spawn([*WHILE_IMPORTING, "-m", "fakesvc.traffic", "--target", target, "--quiet", *args], {})
    await tool.read_until("fakesvc.traffic.run")
    status, stderr = await tool.stop(signum)
    assert status == 128 + signum, stderr[-3000:]
    assert truth.read_text() == ""
    written = json.loads(report.read_text())
    assert written["interrupted"] is True and written["signal"] == signum.name and written["sent"] == 0


async def test_a_stop_as_the_sink_starts_still_writes_report_and_truth(tmp_path: Path) -> None:
    truth, report, args = traffic_files(tmp_path)
    supervisor = await start_supervisor(tmp_path, *args)
    await supervisor.read_until("embedded sink listening on")  # before the loop's own handlers, or just after
    status, stderr = await supervisor.stop(signal.SIGTERM)
    assert status == 143, stderr[-3000:]
    written = json.loads(report.read_text())
    assert written["interrupted"] is True and written["signal"] == "SIGTERM"
    assert len(truth.read_text().splitlines()) == written["sent"]


async def test_serving_stopped_while_it_imports_exits_0(tmp_path: Path) -> None:
    supervisor = await start_supervisor(tmp_path, python_args=WHILE_IMPORTING)
    await supervisor.read_until("fakesvc.backend")
    status, stderr = await supervisor.stop(signal.SIGTERM)
    assert status == 0, stderr[-3000:]
    assert "listening on" not in stderr  # it stopped before serving


# 5. What the documented commands write is ignored by git

SH_BLOCK = re.compile(r"```sh\n(.*?)```", re.S)
WRITES = re.compile(r"(?:--truth|--report|--out|--db|(?<![-=])>)[ =]([^\s|;&'\"]+)")


def documented_outputs() -> set[str]:
    """The files the ``sh`` blocks of the README and docs/ write in the directory they run in."""
    names = set()
    for doc in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        for block in SH_BLOCK.findall(doc.read_text()):
            names |= {name for name in WRITES.findall(block.replace("\\\n", " ")) if not name.startswith("/")}
    return names


def ignored(paths: list[str]) -> set[str]:
    """Which of ``paths`` (relative to the repository) git ignores, tracked or not."""
    done = subprocess.run(
        ["git", "check-ignore", "--no-index", "--stdin"],
        cwd=ROOT,
        input="\n".join(paths),
        capture_output=True,
        text=True,
    )
    assert done.returncode in (0, 1), done.stderr
    return set(done.stdout.splitlines())


needs_git = pytest.mark.skipif(shutil.which("git") is None or not (ROOT / ".git").exists(), reason="not a git checkout")


@needs_git
def test_every_file_the_documented_commands_write_is_ignored() -> None:
    names = documented_outputs()
    assert {"logs.jsonl", "truth.jsonl", "report.json", "score.json", "shop-truth.jsonl", "incident.db"} <= names
    db = SINK_DB.default  # the embedded sink's, and the outbox's files: the commands' defaults
    defaults = [db, f"{db}-wal", f"{db}-shm", f"{SPILL_DIR}/", f"{SPILL_DIR}/outbox-1-ab.db", "incident.db-wal"]
    outputs = sorted(names) + defaults
    assert set(outputs) - ignored(outputs) == set()


@needs_git
def test_every_file_a_run_writes_in_a_fresh_directory_is_ignored(tmp_path: Path) -> None:
    env = {key: value for key, value in os.environ.items() if not key.startswith(("FAKESVC_", "PRODSENTINEL_"))}
    env.update(GATEWAY_PORT="0", PAYMENT_PORT="0", INVENTORY_PORT="0", FAKESVC_SINK_PORT=str(free_port()))
    env["FAKESVC_LATENCY_SCALE"] = "0"
    args = ["--rate", "20", "--count", "10", "--quiet", "--truth", "truth.jsonl", "--report", "report.json"]
    with (tmp_path / "logs.jsonl").open("w") as logs:
        done = subprocess.run(
            [sys.executable, SUPERVISOR, *args], cwd=tmp_path, env=env, stdout=logs, stderr=subprocess.PIPE, text=True
        )
    assert done.returncode == 0, done.stderr[-3000:]
    written = [str(path.relative_to(tmp_path)) + ("/" if path.is_dir() else "") for path in tmp_path.rglob("*")]
    assert {"logs.jsonl", "truth.jsonl", "report.json", "fakesvc-signals.db"} <= set(written)
    assert set(written) - ignored(written) == set()


def test_a_checkout_truth_read_as_another_graph_is_refused(tmp_path: Path) -> None:
    """The checkout's lines name their graph too, so ``--graph shop`` on them is caught, not scored as the shop."""
    truth = tmp_path / "truth.jsonl"
    line = {"trace_id": "t1", "graph": "checkout", "cause": "healthy"}
    truth.write_text(json.dumps(line) + "\n")
    assert made_on([line]) == MadeOn("checkout")
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "fakesvc.analyse",
            "--truth",
            str(truth),
            "--from",
            "http://127.0.0.1:9",
            "--graph",
            "shop",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2 and "the truth was made on graph 'checkout'" in done.stderr, done.stderr


def test_an_empty_truth_is_one_line_and_exit_2(tmp_path: Path) -> None:
    truth = tmp_path / "t.jsonl"
    truth.write_text("")
    done = subprocess.run(
        [sys.executable, "-m", "fakesvc.analyse", "--truth", str(truth), "--from", "http://127.0.0.1:9"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert (done.returncode, done.stderr) == (
        2,
        f"fakesvc: {truth}: no checkout in this truth file, so nothing to analyse\n",
    )
