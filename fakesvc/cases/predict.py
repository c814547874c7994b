"""fakesvc's reference analyser on a case: ``predictions.jsonl``, so a scoreboard can count its vote.

A case keeps no sink database (it is most of a run's bytes), so the analyser
reads the run's signals before the case is published: the embedded sink serves
the run's database on a free loopback port, and ``python -m fakesvc.analyse``
judges every checkout of the truth against it, as it would against a live run.
"""

from __future__ import annotations

import os
import re
import selectors
import subprocess
import sys
import threading
import time
from pathlib import Path

from fakesvc.console import say
from fakesvc.graph.model import Graph
from fakesvc.truth import graph_fields

PREDICTIONS_FILE = "predictions.jsonl"
READY_TIMEOUT_S = 30.0
LISTENING = re.compile(rb"listening on (http://\S+)")


def predict(sink_db: Path, truth: Path, graph: Graph, out: Path) -> bool:
    """Write the analyser's answers for ``truth`` to ``out``; False (and a line on stderr) when it could not."""
    sink = subprocess.Popen(
        [sys.executable, "-m", "fakesvc.sink", "--db", str(sink_db), "--host", "127.0.0.1", "--port", "0"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        url = _announced(sink)
        if url is None:
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


def _announced(sink: subprocess.Popen[bytes]) -> str | None:
    """The URL the sink says it listens on (it picks a free port itself): waited for on its stderr, no polling.

    None when it exits or says nothing in time. What it says afterwards is drained, so it never blocks on a full pipe.
    """
    assert sink.stderr is not None
    said = b""
    deadline = time.monotonic() + READY_TIMEOUT_S
    with selectors.DefaultSelector() as selector:
        selector.register(sink.stderr, selectors.EVENT_READ)
        while (left := deadline - time.monotonic()) > 0 and selector.select(left):
            chunk = os.read(sink.stderr.fileno(), 4096)
            if not chunk:
                return None  # it exited
            said += chunk
            if (found := LISTENING.search(said)) is not None:
                threading.Thread(target=sink.stderr.read, daemon=True).start()
                return found[1].decode()
    return None
