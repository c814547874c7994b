"""The reference analyser's scores on every chaos profile of each graph: the tables bench/README.md shows.

``python bench/scoreboard.py`` runs, for each graph (the checkout and the
shop, or the one ``--graph`` names) and each of its profiles (and a mix of its
scenarios), the embedded sink and ``supervisor.py --graph G`` in their own
processes, seeded traffic long enough to cover the profile's fault windows,
then ``python -m fakesvc.analyse --graph G`` at both evidence levels piped into
``python -m fakesvc.score``, exactly the loop the README shows. The baseline,
scored on the same signals: a naive analyser that blames the deepest service
that logged an ERROR, deepest meaning the longest call path from the edge in
the graph (the rule the harder profiles are built to fool). It prints one row
per run and analyser as it goes, then one table per graph, and writes
``bench/results/scoreboard.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from harness import ROOT, Server, graph_ports, start_graph, start_sink, start_traffic, wait_delivered

from fakesvc.analyse.__main__ import checkouts_of
from fakesvc.analyse.fetch import fetch_trace
from fakesvc.analyse.graphs import deepest_first
from fakesvc.faults.profiles import GRAPH_PROFILES
from fakesvc.graph.load import load_graph
from fakesvc.query_client import open_client

GRAPHS = tuple(GRAPH_PROFILES)  # the graphs with profiles of their own: checkout, shop
MIX_SUCCESS = 80  # the scenario mix: 80 % success, the rest split among the graph's scenarios
EVIDENCE = ("full", "summary")
KEYS = ("ac@1", "ac@3", "avg@3", "detection_precision", "detection_recall", "kind_accuracy")
TAIL_S = 10.0  # healthy traffic after the last fault window closes
SKIPPED_PROFILES = ("none", "classic")  # no incident to score, or the original random faults


def scenario_mix(graph: str) -> str:
    """``success=80`` and the graph's scenarios sharing the rest: ``success=80,fail-pay=10,timeout=10``."""
    scenarios = load_graph(graph).scenarios()
    share = (100 - MIX_SUCCESS) / len(scenarios)
    return ",".join([f"success={MIX_SUCCESS}", *(f"{name}={share:g}" for name in scenarios)])


def runs_of(graph: str) -> list[tuple[str, str, str | None]]:
    """``(run name, profile, mix)``: each profile of the graph, then its scenario mix without faults."""
    runs: list[tuple[str, str, str | None]] = [
        (name, name, None) for name in GRAPH_PROFILES[graph] if name not in SKIPPED_PROFILES
    ]
    return [*runs, ("scenario mix", "none", scenario_mix(graph))]


def duration_for(graph: str, profile: str, minimum_s: float) -> float:
    """Long enough for every fault window of ``profile`` to open and close, then ``TAIL_S`` more."""
    ends = [
        rule.get("start_s", 0) + rule.get("duration_s", 0)
        for rules in GRAPH_PROFILES[graph][profile].values()
        for rule in rules
        if "duration_s" in rule
    ]
    return max([minimum_s, *(end + TAIL_S for end in ends)])


async def naive_predictions(truth: Path, sink_url: str, deepest: list[str]) -> bytes:
    """The baseline: every service that logged an ERROR, deepest first; no ERROR, no incident."""
    lines = []
    async with open_client() as client:
        for record in checkouts_of(truth):
            signals = await fetch_trace(client, sink_url, record["trace_id"])
            failed = {
                signal["service_name"]
                for signal in signals
                if signal["signal_type"] == "log" and signal["payload"].get("level") == "ERROR"
            }
            if failed:
                ranked = [service for service in deepest if service in failed]
                lines.append(
                    json.dumps({"trace_id": record["trace_id"], "run_id": record["run_id"], "services": ranked})
                )
    return "".join(f"{line}\n" for line in lines).encode()


def analysed(truth: Path, sink_url: str, graph: str, evidence: str) -> bytes:
    """``python -m fakesvc.analyse --graph G --evidence E``, as a user types it: its predictions."""
    analyse = [sys.executable, "-m", "fakesvc.analyse", "--truth", str(truth), "--from", sink_url, "--graph", graph]
    return subprocess.run([*analyse, "--evidence", evidence], cwd=ROOT, capture_output=True, check=True).stdout


def score(truth: Path, predictions: bytes, label: str) -> dict[str, Any]:
    """``... | python -m fakesvc.score --predictions -``: the score's JSON."""
    out = truth.with_suffix(f".{label}.json")
    scorer = [sys.executable, "-m", "fakesvc.score", "--truth", str(truth), "--predictions", "-", "--out", str(out)]
    subprocess.run(scorer, cwd=ROOT, input=predictions, capture_output=True, check=True)
    return json.loads(out.read_text())


async def one_run(
    workdir: Path, graph: str, name: str, profile: str, mix: str | None, rate: float, minimum_s: float
) -> tuple[Path, Server, str]:
    """Sink, supervisor with ``profile``, traffic; the truth file, once every signal is stored, and the sink."""
    sink, sink_url = await start_sink(workdir)
    ports = graph_ports(graph)
    supervisor = await start_graph(
        workdir, sink_url, graph, ports, FAKESVC_CHAOS_PROFILE=profile, FAKESVC_LATENCY_SCALE="1"
    )
    edge = f"http://127.0.0.1:{ports[load_graph(graph).edge.name]}"
    truth = workdir / f"{graph}-{name}.truth.jsonl"
    options = ["--graph", graph, "--seed", "1", "--truth", str(truth), *(["--mix", mix] if mix else [])]
    try:
        traffic = await start_traffic(edge, rate, duration_for(graph, profile, minimum_s), *options)
        await traffic.wait()
        await wait_delivered(edge)
    finally:
        await supervisor.stop()
    return truth, sink, sink_url


async def score_run(graph: str, name: str, truth: Path, sink_url: str) -> list[dict[str, Any]]:
    """The naive baseline and the reference analyser at both evidence levels, scored on one run's signals."""
    answers = {"naive": await naive_predictions(truth, sink_url, deepest_first(load_graph(graph)))}
    for evidence in EVIDENCE:
        answers[evidence] = await asyncio.to_thread(analysed, truth, sink_url, graph, evidence)
    rows = []
    for analyser, predictions in answers.items():
        result = await asyncio.to_thread(score, truth, predictions, analyser)
        rows.append(
            {
                "graph": graph,
                "run": name,
                "analyser": analyser,
                **{key: result.get(key) for key in (*KEYS, "faulty", "healthy")},
            }
        )
        print_row(rows[-1])
    return rows


async def scoreboard(graphs: list[str], rate: float, minimum_s: float, only: list[str] | None) -> list[dict[str, Any]]:
    rows = []
    with tempfile.TemporaryDirectory(prefix="fakesvc-scoreboard-") as tmp:
        for graph in graphs:
            for name, profile, mix in runs_of(graph):
                if only and name not in only:
                    continue
                truth, sink, sink_url = await one_run(
                    Path(tmp), graph, name.replace(" ", "-"), profile, mix, rate, minimum_s
                )
                try:
                    rows += await score_run(graph, name, truth, sink_url)
                finally:
                    await sink.stop()
    return rows


def _figure(value: Any) -> str:
    return f"{value:.3f}" if isinstance(value, float) else "-"


def print_row(row: dict[str, Any]) -> None:
    figures = "  ".join(f"{key} {_figure(row[key])}" for key in KEYS)
    print(
        f"{row['graph']:<8} {row['run']:<16} {row['analyser']:<8} faulty {row['faulty']:>4} healthy {row['healthy']:>5}"
        f"  {figures}",
        flush=True,
    )


def table(rows: list[dict[str, Any]], graph: str) -> str:
    """One graph's runs as the Markdown table bench/README.md shows: naive, then the reference at both levels."""
    lines = [
        f"### {graph}",
        "",
        "| run | faulty / healthy | analyser | AC@1 | AC@3 | precision | recall | kind accuracy |",
        "|---|---|---|---|---|---|---|---|",
    ]
    runs: dict[str, dict[str, dict[str, Any]]] = {row["run"]: {} for row in rows if row["graph"] == graph}
    for row in rows:
        if row["graph"] == graph:
            runs[row["run"]][row["analyser"]] = row
    for run, by in runs.items():
        naive, full, summary = by["naive"], by["full"], by["summary"]
        label = f"`{run}`" if run != "scenario mix" else run
        lines.append(
            f"| {label} | {naive['faulty']} / {naive['healthy']} | naive | {_figure(naive['ac@1'])} | "
            f"{_figure(naive['ac@3'])} | {_figure(naive['detection_precision'])} | "
            f"{_figure(naive['detection_recall'])} | - |"
        )
        lines.append(
            f"| | | reference `full` / `summary` | {_figure(full['ac@1'])} / {_figure(summary['ac@1'])} | "
            f"{_figure(full['ac@3'])} / {_figure(summary['ac@3'])} | "
            f"{_figure(full['detection_precision'])} / {_figure(summary['detection_precision'])} | "
            f"{_figure(full['detection_recall'])} / {_figure(summary['detection_recall'])} | "
            f"{_figure(full['kind_accuracy'])} / {_figure(summary['kind_accuracy'])} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], allow_abbrev=False)
    parser.add_argument("--graph", choices=(*GRAPHS, "all"), default="all", help="the graph to run (default all)")
    parser.add_argument("--rate", type=float, default=10.0, help="checkouts per second (default 10)")
    parser.add_argument("--min-duration", type=float, default=60.0, help="seconds of traffic at least (default 60)")
    parser.add_argument("--only", action="append", help="one run by name (repeatable)")
    args = parser.parse_args()
    graphs = list(GRAPHS) if args.graph == "all" else [args.graph]
    started = time.monotonic()
    rows = asyncio.run(scoreboard(graphs, args.rate, args.min_duration, args.only))
    for graph in graphs:
        print(f"\n{table(rows, graph)}")
    print(f"\n{len(rows) // 3} runs in {time.monotonic() - started:.0f} s", flush=True)
    out = ROOT / "bench" / "results" / "scoreboard.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
