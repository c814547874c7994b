"""The Locust file's settings, checked once, and how each Locust process derives its own share of the plan.

Kept apart from the Locust file so it imports no Locust (whose import
monkey-patches the process with gevent).
"""

from __future__ import annotations

import argparse
import hashlib
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from fakesvc import settings
from fakesvc.config import service_config
from fakesvc.graph.model import Graph
from fakesvc.graph.placement import graph_of
from fakesvc.settings import ConfigError
from fakesvc.traffic.plan import DEFAULT_MIX, SCENARIOS, default_mix, mix_text, parse_mix, scenarios_of
from fakesvc.traffic.truth import Timeouts

T = TypeVar("T")
DEFAULT_MIX_TEXT = mix_text(DEFAULT_MIX)


@dataclass(frozen=True)
class LoadOptions:
    """What every Locust process that runs users needs to know (the master forwards it to the workers)."""

    mix: dict[str, float]
    seed: int | None
    truth_prefix: str | None
    pace_s: float
    timeouts: Timeouts
    graph: Graph  # FAKESVC_GRAPH, as the services read it


def add_load_arguments(parser: argparse.ArgumentParser) -> None:
    """The Locust file's own flags, beside Locust's (same names as ``python -m fakesvc.traffic``'s).

    Plain argparse, so ``python -m fakesvc.traffic.locust --help`` can show them
    too (Locust prints its help before it loads a Locust file).
    """
    parser.add_argument(
        "--mix",
        default=None,
        metavar="MIX",
        help=f"scenario weights, SCENARIO=WEIGHT,... with scenarios {', '.join(SCENARIOS)} (default {DEFAULT_MIX_TEXT});"
        " another graph (FAKESVC_GRAPH): success and its own scenarios, 90 %% success by default",
    )
    parser.add_argument(
        "--seed",
        default=os.environ.get("FAKESVC_SEED"),
        metavar="N",
        help="seed of the order ids, scenarios and trace ids; each worker derives its own"
        " (env FAKESVC_SEED; default unset: random)",
    )
    parser.add_argument(
        "--truth",
        default=None,
        metavar="PREFIX",
        help="write the ground truth to PREFIX-wN.jsonl, one file per worker N (default: none written)",
    )
    parser.add_argument(
        "--pace",
        default="0",
        metavar="SECONDS",
        help="each user starts a checkout at most every this many seconds (default 0: as soon as the last ended)",
    )
    parser.add_argument(
        "--run-id",
        default=None,
        metavar="ID",
        help="the truth's run_id (default: a new one, shared by the master's workers)",
    )


def _checked(flag: str, raw: str, parse: Callable[[str], T]) -> T:
    try:
        return parse(raw)
    except ValueError as exc:
        raise ConfigError(f"{flag}: {exc} (got {raw!r})") from None


def load_options(options: argparse.Namespace) -> LoadOptions:
    """The flags above as values, or a :class:`ConfigError` naming the bad one; timeouts from the services' env.

    Run where the flags are given (the master, a headless run) and again where
    they arrive (each worker), so the truth's directory is checked where it is written.
    """
    services = service_config()  # the graph and timeouts the services run with (same environment)
    graph = graph_of(services)
    scenarios = scenarios_of(graph.scenarios())
    try:
        mix = default_mix(scenarios) if options.mix is None else parse_mix(options.mix, scenarios)
    except ValueError as exc:
        raise ConfigError(f"--mix: {exc} (got {options.mix!r})") from None
    seed = _checked("--seed", options.seed, settings.optional_int) if options.seed is not None else None
    pace_s = _checked("--pace", options.pace, settings.non_negative_float)
    prefix = options.truth
    if prefix is not None:
        if prefix.endswith(("/", os.sep)) or not Path(prefix).name or Path(prefix).is_dir():
            raise ConfigError(f"--truth: must end in a file name prefix, not a directory (got {prefix!r})")
        if not Path(prefix).parent.is_dir():
            raise ConfigError(f"--truth: no directory {str(Path(prefix).parent)!r} to write in (got {prefix!r})")
    timeouts = Timeouts(services.inventory_timeout_s, services.payment_timeout_s)
    return LoadOptions(mix, seed, prefix, pace_s, timeouts, graph)


def worker_seed(seed: int | None, worker_index: int) -> int | None:
    """Worker N's own seed, derived from the run's: reproducible, and a different plan for each worker."""
    if seed is None:
        return None
    return int.from_bytes(hashlib.sha256(f"{seed}/{worker_index}".encode()).digest()[:8], "big")


def order_prefix(worker_index: int) -> str:
    """Worker N's order ids start ``ord-wN``: no two workers ever send the same order id."""
    return f"ord-w{worker_index}"


def truth_path(prefix: str, worker_index: int) -> Path:
    """``truth`` or ``truth.jsonl`` -> ``truth-wN.jsonl``: one file per worker, merged with ``cat``."""
    path = Path(prefix)
    return path.with_name(f"{path.stem}-w{worker_index}{path.suffix or '.jsonl'}")
