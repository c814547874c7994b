"""Traffic settings: the same flags on ``python -m fakesvc.traffic`` and on ``supervisor.py``."""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field

from fakesvc.graph.model import Graph
from fakesvc.settings import ConfigError
from fakesvc.traffic.plan import DEFAULT_MIX, SCENARIOS, default_mix, mix_text, parse_mix, scenarios_of
from fakesvc.traffic.truth import DEFAULT_TIMEOUTS, Timeouts


@dataclass(frozen=True)
class TrafficConfig:
    target: str
    rate: float
    duration_s: float | None = None
    count: int | None = None
    mix: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_MIX))
    seed: int | None = None
    truth_path: str | None = None
    report_path: str | None = None
    max_in_flight: int = 1000
    progress: bool = True
    timeouts: Timeouts = field(default_factory=Timeouts)  # the services' and the generator's (checkout_s)
    graph: Graph | None = None  # the topology sent to and judged on; None: the checkout, with ``timeouts``

    @property
    def total(self) -> int:
        """How many checkouts the run schedules."""
        if self.count is not None:
            return self.count
        return max(1, round(self.rate * (self.duration_s or 0)))


def add_traffic_arguments(parser: argparse.ArgumentParser, *, with_target: bool) -> None:
    group = parser.add_argument_group("traffic (with --rate, send checkouts, print a summary and exit)")
    if with_target:
        group.add_argument(
            "--target",
            default="http://127.0.0.1:8003",
            help="the base URL of the graph's edge service, the api-gateway's for the checkout "
            "(default http://127.0.0.1:8003)",
        )
        group.add_argument(
            "--seed",
            default=None,
            help="seed of the order ids, scenarios and trace ids (env FAKESVC_SEED; default unset)",
        )
    group.add_argument("--rate", default=None, help="checkouts per second (open loop)")
    group.add_argument("--duration", default=None, help="seconds of traffic (default 10)")
    group.add_argument("--count", default=None, help="number of checkouts, instead of --duration")
    group.add_argument(
        "--mix",
        default=None,
        help=f"scenario weights, SCENARIO=WEIGHT,... with scenarios {', '.join(SCENARIOS)}"
        f" (default {mix_text(DEFAULT_MIX)}); another graph: success and its own fail_if/hang_if names,"
        " 90 %% success by default",
    )
    group.add_argument("--truth", default=None, help="write the ground truth here (JSON lines)")
    group.add_argument("--report", default=None, help="write the JSON report here")
    group.add_argument(
        "--max-in-flight",
        default="1000",
        help="cap on checkouts in flight, a whole number > 0; excess arrivals are skipped (default 1000)",
    )
    group.add_argument("--quiet", action="store_true", help="no live progress on stderr")


def _number(flag: str, raw: str, kind: type, low: float) -> float:
    try:
        value = kind(raw)
    except ValueError:
        raise ConfigError(f"{flag}: must be a {'whole ' if kind is int else ''}number (got {raw!r})") from None
    if value <= low:
        raise ConfigError(f"{flag}: must be > {low:g} (got {raw!r})")
    return value


def traffic_config_from_args(
    args: argparse.Namespace,
    *,
    target: str | None = None,
    seed: int | None = None,
    timeouts: Timeouts = DEFAULT_TIMEOUTS,
    graph: Graph | None = None,
) -> TrafficConfig | None:
    """The traffic to send to ``graph`` (None: the checkout), or None when ``--rate`` was not given (serve until stopped)."""
    if args.rate is None:
        for flag in ("duration", "count", "truth", "report"):
            if getattr(args, flag) is not None:
                raise ConfigError(f"--{flag}: needs --rate")
        return None
    rate = _number("--rate", args.rate, float, 0)
    if args.duration is not None and args.count is not None:
        raise ConfigError("--count: give --count or --duration, not both")
    count = int(_number("--count", args.count, int, 0)) if args.count is not None else None
    duration = _number("--duration", args.duration, float, 0) if args.duration is not None else None
    if count is None and duration is None:
        duration = 10.0
    scenarios = scenarios_of(graph.scenarios()) if graph is not None else SCENARIOS
    try:
        mix = default_mix(scenarios) if args.mix is None else parse_mix(args.mix, scenarios)
    except ValueError as exc:
        raise ConfigError(f"--mix: {exc} (got {args.mix!r})") from None
    return TrafficConfig(
        target=(args.target if target is None else target).rstrip("/"),
        rate=rate,
        duration_s=duration,
        count=count,
        mix=mix,
        seed=seed,
        truth_path=args.truth,
        report_path=args.report,
        max_in_flight=int(_number("--max-in-flight", args.max_in_flight, int, 0)),
        progress=not args.quiet,
        timeouts=timeouts,
        graph=graph,
    )
