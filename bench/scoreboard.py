"""The reference analyser's scores on every chaos profile: the table the README shows.

``python bench/scoreboard.py`` runs, for each profile (and a mix of the two
scenarios), the embedded sink and ``supervisor.py`` in their own processes,
seeded traffic long enough to cover the profile's fault windows, then
``python -m fakesvc.analyse`` at both evidence levels piped into
``python -m fakesvc.score``, exactly the loop the README shows. The baseline,
scored on the same signals: a naive analyser that blames the deepest service
that logged an ERROR (the rule the harder profiles are built to fool). It
prints one row per profile and analyser and writes ``bench/results/scoreboard.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from harness import ROOT, Server, start_sink, start_supervisor, start_traffic, wait_delivered

from fakesvc.analyse.__main__ import checkouts_of
from fakesvc.analyse.fetch import fetch_trace
from fakesvc.faults.profiles import PROFILES
from fakesvc.query_client import open_client
from fakesvc.traffic.truth import CHAIN

MIX = "success=80,fail-pay=10,timeout=10"
EVIDENCE = ("full", "summary")
KEYS = ("ac@1", "ac@3", "avg@3", "detection_precision", "detection_recall", "kind_accuracy")
TAIL_S = 10.0  # healthy traffic after the last fault window closes


def duration_for(profile: str, minimum_s: float) -> float:
    """Long enough for every fault window of ``profile`` to open and close, then ``TAIL_S`` more."""
    ends = [
        rule.get("start_s", 0) + rule.get("duration_s", 0)
        for rules in PROFILES[profile].values()
        for rule in rules
        if "duration_s" in rule
    ]
    return max([minimum_s, *(end + TAIL_S for end in ends)])


async def naive_predictions(truth: Path, sink_url: str) -> bytes:
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
                ranked = [service for service in reversed(CHAIN) if service in failed]
                lines.append(
                    json.dumps({"trace_id": record["trace_id"], "run_id": record["run_id"], "services": ranked})
                )
    return "".join(f"{line}\n" for line in lines).encode()


def analysed(truth: Path, sink_url: str, evidence: str) -> bytes:
    """``python -m fakesvc.analyse --evidence E``, as a user types it: its predictions."""
    analyse = [sys.executable, "-m", "fakesvc.analyse", "--truth", str(truth), "--from", sink_url]
    return subprocess.run([*analyse, "--evidence", evidence], cwd=ROOT, capture_output=True, check=True).stdout


def score(truth: Path, predictions: bytes, label: str) -> dict[str, Any]:
    """``... | python -m fakesvc.score --predictions -``: the score's JSON."""
    out = truth.with_suffix(f".{label}.json")
    scorer = [sys.executable, "-m", "fakesvc.score", "--truth", str(truth), "--predictions", "-", "--out", str(out)]
    subprocess.run(scorer, cwd=ROOT, input=predictions, capture_output=True, check=True)
    return json.loads(out.read_text())


async def one_run(
    workdir: Path, name: str, profile: str, mix: str | None, rate: float, minimum_s: float
) -> tuple[Path, Server, str]:
    """Sink, supervisor with ``profile``, traffic; the truth file, once every signal is stored, and the sink."""
    sink, sink_url = await start_sink(workdir)
    supervisor, gateway = await start_supervisor(
        workdir, sink_url, FAKESVC_CHAOS_PROFILE=profile, FAKESVC_LATENCY_SCALE="1"
    )
    truth = workdir / f"{name}.truth.jsonl"
    options = ["--seed", "1", "--truth", str(truth), *(["--mix", mix] if mix else [])]
    try:
        traffic = await start_traffic(gateway, rate, duration_for(profile, minimum_s), *options)
        await traffic.wait()
        await wait_delivered(gateway)
    finally:
        await supervisor.stop()
    return truth, sink, sink_url


async def scoreboard(rate: float, minimum_s: float, only: list[str] | None) -> list[dict[str, Any]]:
    runs = [(name, name, None) for name in PROFILES if name not in ("none", "classic")]
    runs.append(("scenario mix", "none", MIX))
    rows = []
    with tempfile.TemporaryDirectory(prefix="fakesvc-scoreboard-") as tmp:
        for name, profile, mix in runs:
            if only and name not in only:
                continue
            truth, sink, sink_url = await one_run(Path(tmp), name.replace(" ", "-"), profile, mix, rate, minimum_s)
            try:
                answers = {"naive": await naive_predictions(truth, sink_url)}
                for evidence in EVIDENCE:
                    answers[evidence] = await asyncio.to_thread(analysed, truth, sink_url, evidence)
                for analyser, predictions in answers.items():
                    result = await asyncio.to_thread(score, truth, predictions, analyser)
                    rows.append(
                        {
                            "run": name,
                            "analyser": analyser,
                            **{key: result.get(key) for key in (*KEYS, "faulty", "healthy")},
                        }
                    )
                    print_row(rows[-1])
            finally:
                await sink.stop()
    return rows


def print_row(row: dict[str, Any]) -> None:
    figures = "  ".join(f"{key} {row[key]:.3f}" if isinstance(row[key], float) else f"{key} -" for key in KEYS)
    print(
        f"{row['run']:<16} {row['analyser']:<8} faulty {row['faulty']:>4} healthy {row['healthy']:>5}  {figures}",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=10.0, help="checkouts per second (default 10)")
    parser.add_argument("--min-duration", type=float, default=60.0, help="seconds of traffic at least (default 60)")
    parser.add_argument("--only", action="append", help="one run by name (repeatable)")
    args = parser.parse_args()
    rows = asyncio.run(scoreboard(args.rate, args.min_duration, args.only))
    out = ROOT / "bench" / "results" / "scoreboard.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
