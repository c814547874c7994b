"""``python -m fakesvc.cases run|suite|export``: RCAEval-shaped cases from fakesvc (docs/cases.md).

Exit statuses: 0 every case written and explained; 1 a case failed, or was
written but some of its checkouts failed with no injected cause (the
harness's: its ``case.json`` says which seconds); 2 a bad setting or input
(one line on stderr); 130 / 143 cut short by SIGINT / SIGTERM (no partial
case is left looking whole).
"""

from __future__ import annotations

import argparse
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from types import FrameType
from typing import NoReturn

from fakesvc.analyse.graphs import GRAPH_SETTING, graph_of_truth
from fakesvc.cases import plan as plans
from fakesvc.cases.case import play_case
from fakesvc.cases.export import RunInputs, export_run
from fakesvc.cases.index import write_index
from fakesvc.cases.play import UNEXPLAINED, Interrupted, PlayError
from fakesvc.cases.suite import run_suite
from fakesvc.console import say
from fakesvc.settings import ConfigError
from fakesvc.truth import made_on, read_truth

DEFAULT_FAULTS = "cpu,memory,loss,latency,error"
MAX_REPEAT = 1000


class OneLineParser(argparse.ArgumentParser):
    """argparse, its mistakes said in one line (``prog: error: ...``), exit 2, like the rest of fakesvc."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message}\n")


def _play_flags(parser: argparse.ArgumentParser) -> None:
    """The flags a played case takes, as text: each is checked whole (plan.py) before anything starts."""
    parser.add_argument("--graph", default="checkout", help="a built-in graph (checkout, shop) or a graph file")
    parser.add_argument("--out", required=True, help="the directory of cases ({service}_{fault}/{n}/)")
    parser.add_argument("--warmup", default="120", help="seconds of normal traffic before the fault (default 120)")
    parser.add_argument("--fault-s", default="60", help="seconds the fault lasts (default 60)")
    parser.add_argument("--recovery", default="30", help="seconds of traffic after the fault (default 30)")
    parser.add_argument(
        "--time-scale",
        default="1",
        help="multiplies the three windows when played (0.25: a 210 s case in 52.5 s); rows stay 1 s apart",
    )
    parser.add_argument("--rate", default="10", help="checkouts a second, open loop (default 10)")
    parser.add_argument(
        "--latency-scale", default="1", help="multiplies the graph's simulated latencies (default 1; 0 = none)"
    )
    parser.add_argument("--seed", default="7", help="seed of the faults and the traffic (default 7)")


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog="python -m fakesvc.cases",
        description="Play faults on a fakesvc graph and write RCAEval RE2-shaped cases (docs/cases.md).",
        epilog=__doc__.split("\n\n", 1)[1] if __doc__ else None,
        allow_abbrev=False,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", required=True, parser_class=OneLineParser)
    run = commands.add_parser("run", help="play one case", allow_abbrev=False)
    run.add_argument("--fault", required=True, help="the fault kind (cpu, memory, latency, loss, error, hang, drop)")
    run.add_argument("--service", required=True, help="the service it is injected into")
    _play_flags(run)
    suite = commands.add_parser("suite", help="play every service x fault, resumably", allow_abbrev=False)
    suite.add_argument("--faults", default=DEFAULT_FAULTS, help=f"comma list of fault kinds (default {DEFAULT_FAULTS})")
    suite.add_argument("--services", default="all", help="comma list of services, or all (default all)")
    suite.add_argument("--repeat", default="3", help="cases per combination (default 3)")
    _play_flags(suite)
    export = commands.add_parser("export", help="turn a finished run into a case", allow_abbrev=False)
    export.add_argument("--sink-db", required=True, help="the run's sink database (SQLite)")
    export.add_argument("--truth", required=True, help="the run's truth (JSON lines)")
    export.add_argument("--report", required=True, help="the run's report (JSON)")
    export.add_argument("--out", required=True, help="the directory of cases")
    export.add_argument(
        "--graph", default=None, help="the graph, for a truth that names none (default: the one the truth names)"
    )
    return parser


def plan_of(args: argparse.Namespace, service: str, fault: str) -> plans.CasePlan:
    graph = plans.graph_named(args.graph)
    return plans.CasePlan(
        graph=graph,
        service=plans.service_of(graph, service),
        kind=plans.kind_of(fault),
        windows=plans.windows_of(args.warmup, args.fault_s, args.recovery, args.time_scale),
        rate=plans.number("--rate", args.rate, high=plans.MAX_RATE, above_low=True),
        seed=plans.whole_number("--seed", args.seed, high=plans.MAX_SEED),
        latency_scale=plans.number("--latency-scale", args.latency_scale, high=plans.MAX_TIME_SCALE),
    )


def command_run(args: argparse.Namespace) -> int:
    plan = plan_of(args, args.service, args.fault)
    plans.check_rule(plan)
    say(f"case {plan.directory}: playing {plan.windows.played_s:g} s on graph {plan.graph.name} (seed {plan.seed})")
    path, case = play_case(plan, Path(args.out))
    write_index(Path(args.out))
    print(path, flush=True)
    if case["harness"]["supervisor_status"] == UNEXPLAINED:
        say(f"{path}: some checkouts failed with no injected cause (the harness's): see case.json harness")
        return 1
    return 0


def listed(flag: str, raw: str) -> list[str]:
    items = [item.strip() for item in raw.split(",") if item.strip()]
    if not items:
        raise ConfigError(f"{flag}: must name at least one")
    if len(set(items)) != len(items):
        raise ConfigError(f"{flag}: {raw[:80]!r} names one twice")
    return items


def command_suite(args: argparse.Namespace) -> int:
    graph = plans.graph_named(args.graph)
    services = list(graph.names) if args.services.strip() == "all" else listed("--services", args.services)
    kinds = [plans.kind_of(name, "--faults") for name in listed("--faults", args.faults)]
    repeat = plans.whole_number("--repeat", args.repeat, high=MAX_REPEAT)
    if repeat == 0:
        raise ConfigError("--repeat: must be a whole number from 1 to 1000 (got '0')")
    first = plan_of(args, plans.service_of(graph, services[0]), kinds[0].kind)
    suite_plans = []
    for service in services:
        for kind in kinds:
            suite_plans.append(
                plans.CasePlan(
                    graph,
                    plans.service_of(graph, service),
                    kind,
                    first.windows,
                    first.rate,
                    first.seed,
                    first.latency_scale,
                )
            )
    for each in suite_plans:
        plans.check_rule(each)
    return run_suite(suite_plans, repeat, Path(args.out))


def command_export(args: argparse.Namespace) -> int:
    truth = Path(args.truth)
    try:
        made = made_on(read_truth(truth))
    except OSError as exc:
        raise ConfigError(f"--truth: {truth}: cannot read ({exc.strerror or exc})") from None
    except ValueError as exc:
        raise ConfigError(f"--truth: {truth}: {exc}") from None
    graph = graph_of_truth(made, argparse.Namespace(**{GRAPH_SETTING.dest: args.graph}))
    path, _ = export_run(RunInputs(Path(args.sink_db), truth, Path(args.report)), Path(args.out), graph)
    write_index(Path(args.out))
    print(path, flush=True)
    return 0


COMMANDS = {"run": command_run, "suite": command_suite, "export": command_export}


def _terminated(signum: int, frame: FrameType | None) -> None:
    raise Interrupted(128 + signum)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    previous = signal.signal(signal.SIGTERM, _terminated)
    try:
        return COMMANDS[args.command](args)
    except ConfigError as exc:
        say(f"fakesvc: {exc}")
        return 2
    except PlayError as exc:
        say(f"fakesvc: {exc}")
        return 1
    except Interrupted as exc:
        say(f"fakesvc: cases: {exc}; no partial case left")
        return exc.status
    except KeyboardInterrupt:
        say("fakesvc: cases: interrupted by Ctrl-C; no partial case left")
        return 128 + signal.SIGINT
    finally:
        signal.signal(signal.SIGTERM, previous)


if __name__ == "__main__":
    sys.exit(main())
