"""What keeping a record of every hop costs a request (issue #21): the tree before it against this one.

Checkouts per CPU-second of ``supervisor.py`` at latency scale 0, the tree at
:data:`BEFORE_RECORDS` (git archive) and this one run back to back, in turn, so
the host's drift cancels: with telemetry off (where a record's cost is the
largest share) and with full telemetry (what a user runs). The load is plain
HTTP, so the records are kept and never fetched: the 15 minutes they stay are
part of the cost.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from graph_cost import pairs, summary
from harness import FULL_TELEMETRY, ROOT, checkout_cost, checkout_tree, start_sink

BEFORE_RECORDS = "a964584"  # the last commit whose hops kept no record
SETTINGS = {"off": {"FAKESVC_TELEMETRY": "", "OTEL_TRACES_EXPORTER": "none"}, "full": FULL_TELEMETRY}


async def records_cost(rounds: int, count: int, before: str = BEFORE_RECORDS) -> dict[str, Any]:
    """Per telemetry setting: checkouts per CPU-second before and after, and their ratio (after / before)."""
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        old = checkout_tree(before, workdir / "before")
        sink, sink_url = await start_sink(workdir)
        figures: dict[str, Any] = {"before": before}
        try:
            for name, env in SETTINGS.items():

                def side(root: Path, tag: str, env: dict[str, str] = env, name: str = name) -> Any:
                    return lambda i: checkout_cost(root, workdir / f"{tag}-{name}-{i}", sink_url, env, count)

                figures[name] = summary(await pairs(rounds, side(old, "before"), side(ROOT, "records")), "per_cpu_s")
        finally:
            await sink.stop()
    return figures


def print_records_cost(figures: dict[str, Any]) -> None:
    print(f"{'hop records (latency scale 0)':32} {'before':>10} {'records':>10} {'x before':>9} {'(range)':>13}")
    for name in SETTINGS:
        fig = figures[name]
        low, high = fig["range"]
        print(
            f"{'telemetry ' + name + ', checkouts/CPU-s':32} {fig['first']:>10.1f} {fig['second']:>10.1f} "
            f"{fig['ratio']:>9.3f} {f'({low:.3f}-{high:.3f})':>13}"
        )
    print(f"  baseline: {figures['before']} (git archive), each pair run back to back")
