"""``python -m fakesvc.traffic --target URL --rate R --duration S ...``: drive a running gateway."""

from __future__ import annotations

from fakesvc.serving.early_stop import EarlyStop

# A SIGINT or SIGTERM while the rest is imported is noted, not fatal: the run's files are written.
EARLY_STOP = EarlyStop().install() if __name__ == "__main__" else EarlyStop()

import argparse
import asyncio
import signal
import sys
from typing import Any

import aiohttp

from fakesvc import settings
from fakesvc.config import SERVICE_SETTINGS, service_config
from fakesvc.console import say
from fakesvc.graph.placement import graph_of
from fakesvc.serving.stop_signals import stop_on_signals
from fakesvc.settings import ConfigError
from fakesvc.traffic.config import TrafficConfig, add_traffic_arguments, traffic_config_from_args
from fakesvc.traffic.feasibility import check_order_ids
from fakesvc.traffic.run import EXIT_STATUSES, exit_status, format_summary, harness_line, not_started, run_traffic
from fakesvc.traffic.truth import Timeouts


async def _reachable(target: str) -> bool:
    try:
        async with aiohttp.ClientSession() as session:
            async with session.get(f"{target}/healthz", timeout=aiohttp.ClientTimeout(total=3)):
                return True
    except (TimeoutError, aiohttp.ClientError):
        return False


async def _run_until_stopped(config: TrafficConfig, drain_s: float) -> dict[str, Any] | None:
    """The run, stopped early (checkouts in flight drained) by SIGINT or SIGTERM; None when no gateway answers."""
    with stop_on_signals() as stop:
        if EARLY_STOP.signum is not None:  # it came before the loop's own handlers took over
            return not_started(config, EARLY_STOP.signum)
        if not await _reachable(config.target):
            return None
        return await run_traffic(config, stop=stop, drain_s=drain_s)


def main() -> None:
    parser = argparse.ArgumentParser(
        prog="python -m fakesvc.traffic",
        allow_abbrev=False,
        description="Send open-loop checkout traffic and write the ground truth.",
        epilog=f"{EXIT_STATUSES}; 1 also when nothing answers at --target.",
    )
    add_traffic_arguments(parser, with_target=True)
    settings.add_settings(parser, [setting for setting in SERVICE_SETTINGS if setting.env == "FAKESVC_GRAPH"])
    args = parser.parse_args()
    try:
        seed = settings.resolve((settings.Setting("FAKESVC_SEED", "--seed", None, settings.optional_int, ""),), args)[
            "seed"
        ]
        if args.rate is None:
            raise ConfigError("--rate: required")
        services = service_config(args)  # the graph and timeouts the services run with (same environment)
        timeouts = Timeouts(services.inventory_timeout_s, services.payment_timeout_s)
        config = traffic_config_from_args(args, seed=seed, timeouts=timeouts, graph=graph_of(services))
        assert config is not None, "--rate was given"
        check_order_ids(config)
    except ConfigError as exc:
        parser.exit(2, f"fakesvc: {exc}\n")
    try:
        report = asyncio.run(_run_until_stopped(config, services.shutdown_grace_s))
    except KeyboardInterrupt:  # a Ctrl-C before the handlers are installed or after they are removed
        say("fakesvc: traffic stopped by Ctrl-C")
        sys.exit(128 + signal.SIGINT)
    if report is None:
        parser.exit(1, f"fakesvc: nothing answers at {config.target}/healthz\n")
    print(format_summary(report), flush=True)
    overloaded = harness_line(report)
    if overloaded is not None:
        say(overloaded)
    sys.exit(exit_status(report))


if __name__ == "__main__":
    main()
