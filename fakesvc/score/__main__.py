"""Score a root-cause analyser's answers against fakesvc's ground truth.

``python -m fakesvc.score --truth truth.jsonl --predictions preds.jsonl``
(``--predictions -`` reads stdin) or ``--prodsentinel URL`` (ProdSentinel's
incidents and analyses) prints AC@1, AC@3, Avg@3, detection precision and
recall, overall and per scenario, fault kind and root-cause service;
``--out`` writes the same as JSON. The rules: docs/scoring.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from yarl import URL

from fakesvc.analyse.graphs import add_graph_flag, graph_of_truth
from fakesvc.score import prodsentinel
from fakesvc.score.inputs import ScoreError, join, read_predictions, read_truth
from fakesvc.score.metrics import score
from fakesvc.score.table import render
from fakesvc.settings import ConfigError


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m fakesvc.score",
        allow_abbrev=False,
        description=__doc__.splitlines()[0],
        epilog="Exit 0 when scored; 2 on bad usage, bad input or a ProdSentinel error (one line on stderr). "
        "Definitions and rules: docs/scoring.md.",
    )
    parser.add_argument(
        "--truth",
        action="append",
        required=True,
        type=Path,
        metavar="FILE",
        help="a truth file written by --truth; repeat it for several runs or workers",
    )
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument(
        "--predictions",
        metavar="FILE",
        help='one JSON object per line: {"trace_id", "services": [ranked], "kind"?, "run_id"?}; - reads stdin',
    )
    source.add_argument("--prodsentinel", metavar="URL", help="read ProdSentinel's incidents and analyses at URL")
    parser.add_argument("--out", type=Path, metavar="FILE", help="also write the report as JSON to FILE")
    parser.add_argument(
        "--include-harness",
        action="store_true",
        help="score harness-caused checkouts (cause: harness) as healthy instead of leaving them out",
    )
    add_graph_flag(parser)  # the services ProdSentinel's free-text root causes are read for
    return parser


def _http_url(value: str) -> bool:
    try:
        url = URL(value)
    except ValueError:
        return False
    return url.scheme in ("http", "https") and bool(url.host)


def build_report(args: argparse.Namespace) -> dict[str, Any]:
    """Read the truth and the answers (a file, stdin or ProdSentinel), join them, score them."""
    truth = read_truth(args.truth, include_harness=args.include_harness)
    coverage = None
    if args.prodsentinel is not None:
        services = graph_of_truth(truth.made_on, args).names  # a bad graph is told before ProdSentinel is read
        trace_ids = (checkout.trace_id for checkout in truth.checkouts)
        answers = asyncio.run(prodsentinel.read_answers(args.prodsentinel, trace_ids))
        predictions = prodsentinel.predictions(answers, services)
        coverage = prodsentinel.coverage(truth.checkouts, answers)
    else:
        predictions = read_predictions(args.predictions)
    predictions = [prediction for prediction in predictions if prediction.trace_id not in truth.left_out_traces]
    report = {
        **score(join(truth.checkouts, predictions)),
        "interrupted_skipped": truth.interrupted,
        "harness_skipped": truth.left_out["harness"],
        "incomplete_skipped": truth.left_out["incomplete"],
    }
    if coverage is not None:
        report["prodsentinel"] = coverage
    return report


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.prodsentinel is not None and not _http_url(args.prodsentinel):
        parser.exit(2, f"fakesvc: --prodsentinel: not an http(s) URL: {args.prodsentinel!r}\n")
    try:
        report = build_report(args)
    except (ScoreError, ConfigError) as exc:
        parser.exit(2, f"fakesvc: {exc}\n")
    if args.out is not None:
        try:
            args.out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
        except OSError as exc:
            parser.exit(2, f"fakesvc: --out {args.out}: {exc.strerror or exc}\n")
    try:
        print(render(report), flush=True)
    except BrokenPipeError:  # `score | head`: the reader took what it wanted; say nothing more
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return 0


if __name__ == "__main__":
    sys.exit(main())
