"""Play one case: the real ``supervisor.py`` in a subprocess, its sink on a private SQLite file, all on loopback.

A subprocess, not the supervisor's ``main()`` in this process: a run installs
signal handlers, configures logging and owns its event loop, and a suite plays
many. The services bind port 0 (any free port); the sink needs its port
before it starts (the batcher is told its URL first), so a free one is picked
and, if another process takes it in between, picked again.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from fakesvc.cases.plan import CasePlan
from fakesvc.truth import graph_fields

SUPERVISOR = Path(__file__).resolve().parent.parent.parent / "supervisor.py"
SINK_PORT_TRIES = 3
# A run's status as supervisor.py gives it (docs/running.md): 0 explained, 1 some checkout the harness's.
EXPLAINED, UNEXPLAINED, BAD_SETTING = 0, 1, 2
INTERRUPTED = {128 + signal.SIGINT, 128 + signal.SIGTERM}


class PlayError(RuntimeError):
    """The supervisor could not play the case; the message is its last words."""


class Interrupted(Exception):
    """The case was cut short by a signal; ``status`` is the exit status to end with (130/143)."""

    def __init__(self, status: int) -> None:
        super().__init__(f"interrupted (exit {status})")
        self.status = status


@dataclass(frozen=True)
class RunFiles:
    """What a played run leaves: the sink's database, the truth, the report, and the supervisor's status."""

    sink_db: Path
    truth: Path
    report: Path
    status: int


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def supervisor_env(plan: CasePlan, work: Path, sink_port: int) -> dict[str, str]:
    """The supervisor's settings for a case, every one given: nothing of the caller's FAKESVC_* leaks in."""
    environ = {key: value for key, value in os.environ.items() if not key.startswith(("FAKESVC_", "OTEL_"))}
    environ.pop("PRODSENTINEL_URL", None)
    for key in ("GATEWAY_PORT", "PAYMENT_PORT", "INVENTORY_PORT", "PAYMENT_URL", "INVENTORY_URL"):
        environ.pop(key, None)
    return {
        **environ,
        "PYTHONUNBUFFERED": "1",
        "FAKESVC_HOST": "127.0.0.1",
        "FAKESVC_BASE_PORT": "0",
        "GATEWAY_PORT": "0",
        "PAYMENT_PORT": "0",
        "INVENTORY_PORT": "0",
        "PRODSENTINEL_URL": f"http://127.0.0.1:{sink_port}",
        "FAKESVC_SINK": "on",
        "FAKESVC_SINK_DB": str(work / "signals.db"),
        "FAKESVC_SPILL_DIR": str(work / "spill"),
        "FAKESVC_TELEMETRY": "logs,metrics",
        "OTEL_TRACES_EXPORTER": "prodsentinel",
        "FAKESVC_SERIES_INTERVAL_S": "1",
    }


def supervisor_args(plan: CasePlan, work: Path) -> list[str]:
    """``supervisor.py`` flags: the graph, the one rule, open-loop success traffic for the whole case."""
    chaos = work / "chaos.json"
    chaos.write_text(json.dumps(plan.chaos(), indent=2) + "\n", encoding="utf-8")
    return [
        "--graph",
        graph_argument(plan),
        "--chaos",
        str(chaos),
        "--seed",
        str(plan.seed),
        "--latency-scale",
        repr(plan.latency_scale),
        "--rate",
        repr(plan.rate),
        "--duration",
        repr(plan.windows.played_s),
        "--mix",
        "success=1",  # no scenario faults: the case's rule is its only root cause
        "--truth",
        str(work / "truth.jsonl"),
        "--report",
        str(work / "report.json"),
        "--quiet",
    ]


def graph_argument(plan: CasePlan) -> str:
    """A built-in graph by name, a graph file by its absolute path (the supervisor runs in another directory)."""
    fields = graph_fields(plan.graph)
    return fields.get("graph_file", fields["graph"])


def play(plan: CasePlan, work: Path) -> RunFiles:
    """Run the case to its end in ``work``; :class:`Interrupted` if a signal cut it, :class:`PlayError` if it failed."""
    if not SUPERVISOR.is_file():
        raise PlayError(f"supervisor.py not found at {SUPERVISOR}: run fakesvc.cases from a fakesvc checkout")
    work = work.resolve()  # the supervisor runs in it: every path it is given must not depend on our directory
    for _ in range(SINK_PORT_TRIES):
        status, stderr = _run_once(plan, work, free_port())
        if status == BAD_SETTING and "cannot start the embedded sink" in stderr:
            continue  # the free port was taken in between: another one
        break
    if status in INTERRUPTED:
        raise Interrupted(status)
    if status not in (EXPLAINED, UNEXPLAINED) or not (work / "report.json").is_file():
        last = [line for line in stderr.splitlines() if line.strip()][-1:] or ["no output"]
        raise PlayError(f"supervisor.py exited {status}: {last[0]}")
    return RunFiles(work / "signals.db", work / "truth.jsonl", work / "report.json", status)


def _run_once(plan: CasePlan, work: Path, sink_port: int) -> tuple[int, str]:
    """One attempt; its stderr is kept in ``work/supervisor.log``. A signal to us reaches it too (same group)."""
    for leftover in ("signals.db", "signals.db-wal", "signals.db-shm", "report.json", "truth.jsonl"):
        (work / leftover).unlink(missing_ok=True)
    log = work / "supervisor.log"
    command = [sys.executable, str(SUPERVISOR), *supervisor_args(plan, work)]
    with log.open("w", encoding="utf-8") as stderr:
        process = subprocess.Popen(
            command,
            cwd=work,
            env=supervisor_env(plan, work, sink_port),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,  # the JSON log lines: every one is in the sink as well
            stderr=stderr,
        )
        try:
            status = process.wait()
        except BaseException:  # Ctrl-C (it got the SIGINT too) or SIGTERM to us: let it write and stop
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
            raise
    return status, log.read_text(encoding="utf-8", errors="replace")
