"""``python -m fakesvc.analyse``: predictions for every checkout of a truth file, from its stored signals.

One JSON line per checkout judged an incident, ``{"trace_id", "run_id",
"services": [ranked], "kind"}``; no line for a checkout judged healthy. The
format ``python -m fakesvc.score --predictions`` reads.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from yarl import URL

from fakesvc.analyse.evidence import full_view, summarise
from fakesvc.analyse.fetch import BackendError, backend_name, fetch_trace
from fakesvc.analyse.graphs import CallGraph, add_graph_flag, graph_of_truth
from fakesvc.analyse.rule import DEFAULT_SLOW_MS, judge
from fakesvc.console import say
from fakesvc.query_client import open_client
from fakesvc.settings import ConfigError
from fakesvc.truth import made_on, read_truth

VIEWS = {"full": full_view, "summary": summarise}
DEFAULT_CONCURRENCY = 8
MAX_CONCURRENCY = 256
MAX_TRACE_ID_CHARS = 1024


class UsageError(Exception):
    """A bad flag or a bad truth file: one line, exit 2."""


def checkouts_of(path: Path) -> list[dict[str, Any]]:
    """The truth's checkouts to judge: every line but those a stop interrupted (judged by no one)."""
    try:
        records = list(read_truth(path))
    except OSError as exc:
        raise UsageError(f"{path}: {exc.strerror or exc}") from None
    except (ValueError, RecursionError):  # not UTF-8, or JSON nested past the parser's depth
        raise UsageError(f"{path}: not a truth file (JSON lines written by --truth)") from None
    for number, record in enumerate(records, 1):
        trace_id = record.get("trace_id")
        if not isinstance(trace_id, str) or not 0 < len(trace_id) <= MAX_TRACE_ID_CHARS:
            raise UsageError(f"{path}: checkout {number} has no trace_id (a string of 1-{MAX_TRACE_ID_CHARS} chars)")
    return [record for record in records if not record.get("interrupted")]


@dataclass(frozen=True)
class Reading:
    """How every trace of a run is read: the evidence level, the slow threshold, the graph's calls."""

    evidence: str
    slow_ms: float
    calls: CallGraph


def prediction(record: dict[str, Any], signals: list[dict[str, Any]], reading: Reading) -> str | None:
    """The prediction line for one checkout, or None when its signals look healthy."""
    judgement = judge(VIEWS[reading.evidence](signals), reading.slow_ms, reading.calls)
    if judgement is None:
        return None
    line = {"trace_id": record["trace_id"], "run_id": record.get("run_id"), "services": judgement.services}
    return json.dumps({**line, "kind": judgement.kind})


async def analyse(records: list[dict[str, Any]], base_url: str, reading: Reading, *, concurrency: int) -> list[str]:
    """The prediction lines, in the truth's order; at most ``concurrency`` requests in flight.

    A backend that holds no signal of any of the checkouts is a :class:`UsageError`
    (the wrong ``--from``, or a run whose telemetry went elsewhere), not a run of healthy ones.
    """
    lines: list[str | None] = [None] * len(records)
    pending = iter(enumerate(records))
    found = 0

    async def worker() -> None:
        nonlocal found
        for index, record in pending:  # one shared iterator: each checkout is taken once
            signals = await fetch_trace(client, base_url, record["trace_id"])
            found += bool(signals)
            lines[index] = prediction(record, signals, reading)

    async with open_client() as client:
        try:
            async with asyncio.TaskGroup() as group:
                for _ in range(min(concurrency, len(records))):
                    group.create_task(worker())
        except ExceptionGroup as group:  # the first backend failure says it all; others are the same
            failed = group.subgroup(BackendError)
            if failed is None:
                raise
            raise failed.exceptions[0] from None
        if records and not found:
            where = await backend_name(client, base_url)
            raise UsageError(
                f"{where} holds no signal of any of the truth's {len(records)} traces: is it the backend the run sent to?"
            )
    return [line for line in lines if line is not None]


def _base_url(value: str) -> str:
    url = URL(value)
    if url.scheme not in ("http", "https") or not url.host:
        raise UsageError(f"--from: {value!r} is not an http(s) URL such as http://localhost:8000")
    return str(url).rstrip("/")


def _number(flag: str, value: str, low: float, high: float) -> float:
    try:
        number = float(value)
    except ValueError:
        number = math.nan
    if not value.isascii() or not low <= number <= high:  # NaN fails both comparisons
        raise UsageError(f"{flag}: {value!r} is not a number from {low:g} to {high:g}")
    return number


def _write(lines: list[str], out: Path | None, stdout: TextIO) -> None:
    text = "".join(f"{line}\n" for line in lines)
    if out is None:
        stdout.write(text)
        return
    try:
        out.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"--out {out}: {exc.strerror or exc}") from None


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m fakesvc.analyse",
        allow_abbrev=False,
        description="Rank the likely root-cause services of every checkout in a truth file, from its stored "
        "signals (GET URL/query/traces/{trace_id}); one JSON line per checkout judged an incident.",
    )
    p.add_argument("--truth", type=Path, required=True, help="a truth file written by --truth")
    p.add_argument("--from", dest="url", required=True, help="the query API: the embedded sink or ProdSentinel")
    p.add_argument(
        "--evidence",
        choices=tuple(VIEWS),
        default="full",
        help="full: every field of every signal; summary: only what ProdSentinel's summariser keeps (default full)",
    )
    p.add_argument("--out", type=Path, help="write the predictions here (default stdout)")
    add_graph_flag(p)
    p.add_argument("--concurrency", default=str(DEFAULT_CONCURRENCY), help="requests in flight (default 8)")
    p.add_argument(
        "--slow-ms",
        default=f"{DEFAULT_SLOW_MS:g}",
        help="a service spending this long of its own is slow (default 1000, the services' slow WARNING)",
    )
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        base_url = _base_url(args.url)
        concurrency = int(_number("--concurrency", args.concurrency, 1, MAX_CONCURRENCY))
        slow_ms = _number("--slow-ms", args.slow_ms, 1, 1e9)
        records = checkouts_of(args.truth)
        if not records:  # a run stopped before its first checkout writes an empty truth
            raise UsageError(f"{args.truth}: no checkout in this truth file, so nothing to analyse")
        try:
            truth_graph = made_on(records)
        except ValueError as exc:
            raise UsageError(f"{args.truth}: {exc}") from None
        reading = Reading(args.evidence, slow_ms, CallGraph.of(graph_of_truth(truth_graph, args)))
        try:
            lines = asyncio.run(analyse(records, base_url, reading, concurrency=concurrency))
        except BackendError as exc:
            raise UsageError(str(exc)) from None
        _write(lines, args.out, sys.stdout)
    except (UsageError, ConfigError) as exc:
        say(f"fakesvc: {exc}")
        return 2
    say(f"{len(records)} checkouts analysed ({args.evidence} evidence), {len(lines)} judged incidents")
    return 0


if __name__ == "__main__":
    sys.exit(main())
