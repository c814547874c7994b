"""Delivery against a backend that refuses: the sink playing ProdSentinel's incident race, at its pace.

``python bench/refusing.py`` sends the shop's telemetry (4 checkouts/s for 40 s) to
``python -m fakesvc.sink --trace-race --pace 340``, which poisons every trace whose first
signals overlap and answers 500 to the rest of it, at ~340 signals/s like the real one.

Figures (targets of issue 22 beside them):

- of the *deliverable* signals (those of traces the sink did not poison, counted after a full
  drain as sink rows plus outbox rows), the share stored by the end of the run + 10 s (>= 95 %);
- deliverable signals dead-lettered (0);
- attempts per refused signal: the sink's 500 answers to poisoned traces over the signals of
  those traces it never stored (<= 3);
- the drain time after the run, and stderr's lines about the backend (<= 5);
- the share of shop traces the sink poisoned.

The baseline, measured the same way in the same run: the supervisor of ``--baseline REV``
(default ``f32dfaf``, the commit before retries got their own lane), checked out in a temporary
git worktree, against the same sink and traffic (its drain takes minutes: ``--baseline none``
skips it).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections import Counter
from contextlib import closing
from pathlib import Path
from typing import Any

import aiohttp
from harness import ROOT, free_port, graph_env, graph_ports

GRAPH, RATE, DURATION_S, SEED = "shop", 4.0, 40.0, 7
PACE = 340
AFTER_RUN_S = 10.0
DRAIN_CAP_S = 900.0


class Logged:
    """A process whose stderr lines are kept, each with the time it was read."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process
        self.lines: list[tuple[float, str]] = []
        self._reader = asyncio.ensure_future(self._read())

    async def _read(self) -> None:
        assert self.process.stderr is not None
        while line := await self.process.stderr.readline():
            self.lines.append((time.monotonic(), line.decode(errors="replace").rstrip()))

    async def until(self, needle: str, count: int = 1, timeout_s: float = 60) -> None:
        deadline = time.monotonic() + timeout_s
        while sum(needle in line for _, line in self.lines) < count:
            if self.process.returncode is not None or time.monotonic() > deadline:
                raise RuntimeError("not ready:\n" + "\n".join(line for _, line in self.lines[-20:]))
            await asyncio.sleep(0.05)

    async def stop(self) -> int:
        if self.process.returncode is None:
            self.process.send_signal(signal.SIGTERM)
        status = await asyncio.wait_for(self.process.wait(), 120)
        await self._reader
        return status


async def spawn(argv: list[str], env: dict[str, str], cwd: Path) -> Logged:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        *argv,
        cwd=cwd,
        env={**os.environ, **env},
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    return Logged(process)


async def get_json(url: str) -> Any:
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        return await response.json()


def rows_by_trace(db: Path) -> Counter[str]:
    with closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as conn:
        return Counter(dict(conn.execute("SELECT trace_id, count(*) FROM raw_signals GROUP BY trace_id")))


async def rows_after(db: Path, delay_s: float) -> Counter[str]:
    await asyncio.sleep(delay_s)
    return rows_by_trace(db)


def outbox_rows(spill: Path) -> list[tuple[str, int]]:
    """(trace id, state) of every row left in the outboxes: waiting 0/1, dead 2 (any version's schema)."""
    rows = []
    for path in spill.glob("outbox-*.db"):
        with closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as conn:
            rows += [
                (json.loads(body)["trace_id"], state) for body, state in conn.execute("SELECT body, state FROM signals")
            ]
    return rows


async def measure(root: Path, workdir: Path) -> dict[str, Any]:
    sink_port, db, spill = free_port(), workdir / "sink.db", workdir / "spill"
    sink_argv = ["-m", "fakesvc.sink", "--port", str(sink_port), "--db", str(db), "--trace-race", "--pace", str(PACE)]
    sink = await spawn(sink_argv, {}, ROOT)
    await sink.until("listening")
    sink_url = f"http://127.0.0.1:{sink_port}"
    from fakesvc.graph.load import load_graph

    graph = load_graph(GRAPH)
    ports = graph_ports(GRAPH)
    env = graph_env(workdir, sink_url, GRAPH, ports, root)
    supervisor = await spawn([str(root / "supervisor.py")], env, root)
    await supervisor.until("listening on", count=len(ports))
    edge = f"http://127.0.0.1:{ports[graph.edge.name]}"
    started = time.monotonic()
    traffic = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "fakesvc.traffic", "--target", edge, "--graph", GRAPH, "--rate", str(RATE),
        "--duration", str(DURATION_S), "--seed", str(SEED), "--quiet", "--report", str(workdir / "report.json"), "--truth", str(workdir / "truth.jsonl"),
        cwd=ROOT, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    await traffic.wait()
    run_end = time.monotonic()
    snapshot = asyncio.ensure_future(rows_after(db, AFTER_RUN_S))
    while (await get_json(f"{edge}/telemetry"))["backlog"] and time.monotonic() - run_end < DRAIN_CAP_S:
        await asyncio.sleep(0.25)
    drained_s = time.monotonic() - run_end
    by_deadline = await snapshot
    telemetry = await get_json(f"{edge}/telemetry")
    poisoned = set((await get_json(f"{sink_url}/sink/poisoned"))["trace_ids"])
    stats = await get_json(f"{sink_url}/stats")
    await supervisor.stop()
    await sink.stop()
    stored, left = rows_by_trace(db), outbox_rows(spill)
    in_outbox = Counter(trace for trace, _ in left)
    truth = (workdir / "truth.jsonl").read_text().splitlines()
    traces = {json.loads(line)["trace_id"] for line in truth}  # the checkouts'; the rest are services' series
    series = (set(stored) | set(in_outbox)) - traces
    deliverable = sum(stored[t] + in_outbox[t] for t in traces - poisoned)
    delivered_in_time = sum(by_deadline[t] for t in traces - poisoned)
    refused_signals = sum(in_outbox[t] for t in poisoned)
    return {
        "root": str(root),
        "checkouts": json.loads((workdir / "report.json").read_text())["sent"],
        "run_s": round(run_end - started, 1),
        "traces": len(traces),
        "poisoned_traces": len(poisoned & traces),
        "poisoned_share": round(len(poisoned & traces) / len(traces), 3) if traces else None,
        "deliverable": deliverable,
        "delivered_by_run_end_plus_10s": delivered_in_time,
        "delivered_share": round(delivered_in_time / deliverable, 4) if deliverable else None,
        "deliverable_dead_lettered": sum(1 for t, state in left if state == 2 and t not in poisoned),
        "deliverable_left_waiting": sum(1 for t, state in left if state != 2 and t not in poisoned),
        "series_signals": sum(stored[t] + in_outbox[t] for t in series),
        "series_signals_stored_by_run_end_plus_10s": sum(by_deadline[t] for t in series),
        "refused_signals": refused_signals,
        "answers_500_to_poisoned": stats.get("refused_poisoned"),
        "attempts_per_refused_signal": round(stats["refused_poisoned"] / refused_signals, 2)
        if refused_signals
        else None,
        "drain_s_after_run": round(drained_s, 1),
        "drained": not telemetry["backlog"],
        "backend_lines": [line for _, line in supervisor.lines if "telemetry: backend" in line],
        "telemetry": {key: telemetry.get(key) for key in ("queued", "sent", "dead_lettered", "uncertain", "dead_by")},
    }


def print_figures(label: str, result: dict[str, Any]) -> None:
    print(f"\n{label}: {result['root']}")
    print(f"  checkouts {result['checkouts']} in {result['run_s']} s; traces {result['traces']}, "
          f"poisoned {result['poisoned_traces']} ({result['poisoned_share']:.1%})")  # fmt: skip
    print(f"  deliverable signals {result['deliverable']}, stored by the run's end + 10 s "
          f"{result['delivered_by_run_end_plus_10s']} ({result['delivered_share']:.1%})   target >= 95 %")  # fmt: skip
    print(f"  deliverable dead-lettered {result['deliverable_dead_lettered']}   target 0")
    print(f"  services' series signals {result['series_signals']}, stored by the run's end + 10 s "
          f"{result['series_signals_stored_by_run_end_plus_10s']}")  # fmt: skip
    print(f"  attempts per refused signal {result['attempts_per_refused_signal']} "
          f"({result['answers_500_to_poisoned']} answers of 500, {result['refused_signals']} signals)   target <= 3")  # fmt: skip
    print(f"  drain after the run {result['drain_s_after_run']} s (drained: {result['drained']})")
    print(f"  stderr lines about the backend {len(result['backend_lines'])}   target <= 5")


BASELINE = "f32dfaf"
RATIOS = ("delivered_share", "attempts_per_refused_signal", "drain_s_after_run")


async def measure_tree(root: Path) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="fakesvc-refusing-") as workdir:
        return await measure(root, Path(workdir))


async def measure_revision(revision: str) -> dict[str, Any]:
    """The same figures for ``revision``'s supervisor, checked out in a temporary worktree."""
    with tempfile.TemporaryDirectory(prefix="fakesvc-baseline-") as parent:
        tree = Path(parent) / "tree"
        subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(tree), revision], check=True)
        try:
            return {**await measure_tree(tree), "revision": revision}
        finally:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(tree)], check=True)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], allow_abbrev=False)
    parser.add_argument("--baseline", default=BASELINE, help="a git revision, or none (default %(default)s)")
    parser.add_argument("--json", type=Path, help="write the figures here")
    args = parser.parse_args()
    results = {"this tree": await measure_tree(ROOT)}
    print_figures("this tree", results["this tree"])
    if args.baseline != "none":
        results[f"baseline {args.baseline}"] = await measure_revision(args.baseline)
        print_figures(f"baseline {args.baseline}", results[f"baseline {args.baseline}"])
        now, then = results["this tree"], results[f"baseline {args.baseline}"]
        print("\nthis tree / baseline: " + ", ".join(f"{key} {_ratio(now[key], then[key])}" for key in RATIOS))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


def _ratio(now: float | None, then: float | None) -> str:
    return "n/a" if not now or not then else f"{now / then:.2f}"


if __name__ == "__main__":
    asyncio.run(main())
