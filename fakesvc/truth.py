"""Read a ground-truth file: the checkouts that went wrong, where, and why.

``python -m fakesvc.truth truth.jsonl`` lists every checkout with a root cause,
or whose failure no injected fault explains (``cause`` ``harness`` or
``incomplete``), one line each (trace id first, so it can be pasted into
``/query/traces/{trace_id}``); ``--json`` prints the truth lines themselves,
``--service`` keeps the checkouts one of whose root causes is that service,
``--cause`` those of one cause, ``--limit`` the first N. A checkout that got
only ``noise`` faults (harmless ERROR logs) did not go wrong.
"""

from __future__ import annotations

import argparse
import functools
import json
import sys
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from fakesvc.config import SERVICE_SETTINGS
from fakesvc.graph.load import BUILTIN_GRAPHS
from fakesvc.graph.model import Graph


def read_truth(path: Path) -> Iterator[dict[str, Any]]:
    """The truth lines of ``path`` (a line that is not a JSON object is skipped: a run cut mid-write)."""
    with path.open(encoding="utf-8") as file:
        for line in file:
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if isinstance(record, dict):
                yield record


def root_causes(record: dict[str, Any]) -> list[str]:
    """``root_cause_services``, or, in a truth file written before it existed, ``[root_cause_service]`` or ``[]``."""
    causes = record.get("root_cause_services")
    if isinstance(causes, list):
        return [str(cause) for cause in causes]
    cause = record.get("root_cause_service")
    return [] if cause is None else [str(cause)]


CAUSES = ("healthy", "fault", "harness", "incomplete")

DEFAULT_GRAPH = next(setting.default for setting in SERVICE_SETTINGS if setting.env == "FAKESVC_GRAPH")


@dataclass(frozen=True)
class MadeOn:
    """The graph a truth was made on: its name, and the file it was read from unless it is built in."""

    name: str
    file: str | None = None

    def __str__(self) -> str:
        return repr(self.name) + (f" ({self.file})" if self.file else "")


def graph_fields(graph: Graph | None) -> dict[str, str]:
    """What a truth line says of its run's graph: ``graph`` (its name) and ``graph_file`` (a file's absolute path).

    Every line names it, the checkout's too (``None`` here), so a truth read with another graph is caught;
    a line without ``graph`` is older than the field, and read as the checkout's.
    """
    return {"graph": DEFAULT_GRAPH} if graph is None else dict(_graph_fields(graph.name, graph.source))


@functools.lru_cache(maxsize=8)
def _graph_fields(name: str, source: str) -> tuple[tuple[str, str], ...]:
    # a built-in graph's source is "NAME.yaml"; a file is named as it was given (relative to this directory)
    if name in BUILTIN_GRAPHS and source == f"{name}.yaml" and not Path(source).is_file():
        return (("graph", name),)
    return (("graph", name), ("graph_file", str(Path(source).resolve())))


def made_on(records: Iterable[dict[str, Any]]) -> MadeOn | None:
    """The graph the truth lines name; None when none names one (a truth older than ``graph``, or hand-written).

    Lines of several graphs are a :class:`ValueError`: no one graph reads them all.
    """
    named: set[MadeOn] = set()
    unnamed = False
    for record in records:
        name, file = record.get("graph"), record.get("graph_file")
        if name is None:
            unnamed = True
        elif isinstance(name, str) and name and (file is None or isinstance(file, str)):
            named.add(MadeOn(name, file))
        else:
            raise ValueError(f"truth line of trace {record.get('trace_id')!r}: a bad graph {name!r} ({file!r})")
    if named and unnamed:
        named.add(MadeOn(DEFAULT_GRAPH))
    if len(named) > 1:
        raise ValueError(f"lines of several graphs: {', '.join(sorted(map(str, named)))}; one graph's truth at a time")
    return next(iter(named), None)


def went_wrong(record: dict[str, Any]) -> bool:
    """A root cause is named (a fault other than noise), or the failure is unexplained (harness, incomplete).

    A truth file older than ``cause``: or the observed status was not the replayed one.
    """
    if "cause" in record:
        return record["cause"] != "healthy"
    return bool(root_causes(record)) or record.get("status") != record.get("expected_status")


def _why(record: dict[str, Any]) -> str:
    """What a line without a root cause says instead: the harness's evidence, or the missing hops."""
    harness = record.get("harness")
    if record.get("cause") == "harness" and isinstance(harness, dict):
        figures = ", ".join(
            f"{name} {harness[key]:,.0f} ms"
            for name, key in (
                ("waited", "waited_ms"),
                ("loop lag", "loop_lag_ms"),
                ("injected", "injected_ms"),
                ("simulated", "simulated_ms"),
            )
            if isinstance(harness.get(key), (int, float))
        )
        return f"harness: {harness.get('what')}" + (f" ({figures})" if figures else "")
    if record.get("cause") == "incomplete":
        return f"incomplete: no record of hop {', '.join(map(str, record.get('missing_hops') or []))}"
    return "healthy"


def describe(record: dict[str, Any]) -> str:
    """One line: trace id, order id, root causes, statuses, the faults."""
    faults = "; ".join(f"{f.get('service')} {f.get('kind')}: {f.get('detail')}" for f in record.get("faults") or [])
    causes = " + ".join(root_causes(record)) or f"none ({_why(record)})"
    return (
        f"{record.get('trace_id')}  {record.get('order_id')}  root cause {causes}  "
        f"expected {record.get('expected_status')} got {record.get('status')}  {faults or 'no fault injected'}"
    )


def show(records: Iterable[dict[str, Any]], out: TextIO, *, as_json: bool, limit: int | None) -> int:
    """Write the records (at most ``limit``); return how many."""
    shown = 0
    for record in records:
        if limit is not None and shown >= limit:
            break
        out.write((json.dumps(record) if as_json else describe(record)) + "\n")
        shown += 1
    return shown


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m fakesvc.truth", description=__doc__.splitlines()[0], allow_abbrev=False
    )
    parser.add_argument("truth", type=Path, help="a truth file written by --truth")
    parser.add_argument("--service", help="only checkouts one of whose root causes is this service")
    parser.add_argument("--cause", choices=CAUSES, help="only checkouts of this observed cause")
    parser.add_argument("--limit", type=int, default=None, help="at most this many lines (default: all)")
    parser.add_argument("--all", action="store_true", help="every checkout, not only those that went wrong")
    parser.add_argument("--json", action="store_true", help="the truth lines themselves, as JSON lines")
    args = parser.parse_args(argv)
    if args.limit is not None and args.limit < 0:
        parser.exit(2, "fakesvc: --limit: must be a whole number >= 0\n")
    try:
        records = list(read_truth(args.truth))
    except OSError as exc:
        parser.exit(2, f"fakesvc: {args.truth}: {exc.strerror}\n")
    chosen = [
        record
        for record in records
        if (args.all or args.cause is not None or went_wrong(record))
        and (args.service is None or args.service in root_causes(record))
        and (args.cause is None or record.get("cause") == args.cause)
    ]
    shown = show(chosen, sys.stdout, as_json=args.json, limit=args.limit)
    print(f"{shown} of {len(chosen)} shown; {len(records)} checkouts in {args.truth}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
