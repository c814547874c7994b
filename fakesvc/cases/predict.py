"""fakesvc's reference analyser on a case: ``predictions.jsonl``, so a scoreboard can count its vote.

A case keeps no sink database (it is most of a run's bytes), so the analyser
reads the run's signals before the case is published: the embedded sink serves
the run's database on a free loopback port, and ``python -m fakesvc.analyse``
judges every checkout of the truth against it, as it would against a live run.
"""

from __future__ import annotations

import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from fakesvc.cases.play import free_port
from fakesvc.console import say
from fakesvc.graph.model import Graph
from fakesvc.truth import graph_fields

PREDICTIONS_FILE = "predictions.jsonl"
READY_TIMEOUT_S = 30.0


def predict(sink_db: Path, truth: Path, graph: Graph, out: Path) -> bool:
    """Write the analyser's answers for ``truth`` to ``out``; False (and a line on stderr) when it could not."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    sink = subprocess.Popen(
        [sys.executable, "-m", "fakesvc.sink", "--db", str(sink_db), "--host", "127.0.0.1", "--port", str(port)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        if not _ready(url, sink):
            say(f"{out.parent.name}: no predictions: the sink did not start on the run's database")
            return False
        fields = graph_fields(graph)
        done = subprocess.run(
            [
                *(sys.executable, "-m", "fakesvc.analyse", "--truth", str(truth), "--from", url),
                *("--graph", fields.get("graph_file", fields["graph"]), "--out", str(out)),
            ],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode != 0:
            last = [line for line in done.stderr.splitlines() if line.strip()][-1:] or [f"exit {done.returncode}"]
            say(f"{out.parent.name}: no predictions: the analyser said {last[0]}")
            out.unlink(missing_ok=True)
            return False
        return True
    finally:
        sink.terminate()
        try:
            sink.wait(timeout=10)
        except subprocess.TimeoutExpired:
            sink.kill()
            sink.wait()


def _ready(url: str, sink: subprocess.Popen[bytes]) -> bool:
    """Poll the sink's health route until it answers (False if it exits or never answers)."""
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline and sink.poll() is None:
        try:
            with urllib.request.urlopen(f"{url}/ingest/health", timeout=1) as response:
                if response.status == 200:
                    return True
        except (urllib.error.URLError, OSError):
            time.sleep(0.05)
    return False
