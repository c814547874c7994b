"""Run a whole service graph in one event loop: sink (if needed), every service, optional traffic.

The graph is the checkout (api-gateway -> payment -> inventory) unless ``--graph``
names another (``shop``, or a YAML/JSON file).

``python supervisor.py`` serves until Ctrl-C / SIGTERM (exit 0); with ``--rate`` it
also drives traffic, prints the summary and exits with the run's status (0 all as
expected, 1 not, 130/143 cut by SIGINT/SIGTERM).
"""

from __future__ import annotations

from fakesvc.serving.early_stop import EarlyStop

# A SIGINT or SIGTERM while the rest is imported and the services start is noted, not fatal: the run's files are written.
EARLY_STOP = EarlyStop().install() if __name__ == "__main__" else EarlyStop()

import asyncio
import json
import os
import signal
import sys
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from fakesvc.backend import SINK_SETTINGS, start_backend, with_backend
from fakesvc.config import ServiceConfig, service_config
from fakesvc.console import say
from fakesvc.faults import ChaosConfig, chaos_config
from fakesvc.graph.feasibility import check_run
from fakesvc.graph.model import Graph
from fakesvc.graph.placement import graph_of
from fakesvc.serving.gc_tuning import tune_gc
from fakesvc.serving.runner import RunningServices, Work, serve, service_parser, until_stopped
from fakesvc.serving.stop_signals import StopEvent
from fakesvc.settings import ConfigError, add_settings, resolve
from fakesvc.telemetry.logs import configure_logging
from fakesvc.telemetry.pipeline import Telemetry, telemetry_config
from fakesvc.traffic import TrafficConfig, add_traffic_arguments, exit_status, run_traffic, traffic_config_from_args
from fakesvc.traffic import format_summary as traffic_summary
from fakesvc.traffic.feasibility import check_order_ids
from fakesvc.traffic.run import EXIT_STATUSES, harness_line, not_started
from fakesvc.traffic.truth import Timeouts


class Drive:
    """Work that sends the traffic to the graph's edge, prints its summary and keeps its exit status.

    A signal stops the schedule: the checkouts in flight get ``drain_s`` to
    finish before the services stop (from the gateway inward).
    """

    def __init__(self, traffic: TrafficConfig, drain_s: float, edge: str) -> None:
        self.traffic = traffic
        self.drain_s = drain_s
        self.edge = edge
        self.status = 128 + signal.SIGINT  # until the run ends: only a Ctrl-C can keep it from ending
        self.report: dict[str, Any] | None = None

    async def __call__(self, running: RunningServices, stop: StopEvent) -> None:
        if EARLY_STOP.signum is not None:  # it came before the loop's own handlers took over
            stop.set_by(EARLY_STOP.signum)
        target = running.urls[self.edge]
        self.report = await run_traffic(replace(self.traffic, target=target), stop=stop, drain_s=self.drain_s)
        if self.report["interrupted"]:
            say("traffic stopped by a signal: no checkout started after it")

    def finish(self, telemetry: dict[str, Any]) -> None:
        """After the shutdown flush: the report gets the final telemetry counts, then the summary is said.

        So ``report.json``, the summary and stderr's telemetry line agree, and a dropped signal fails the run.
        """
        if self.report is None:
            return
        self.report["telemetry"] = telemetry
        if self.traffic.report_path:
            Path(self.traffic.report_path).write_text(json.dumps(self.report, indent=2))
        print(traffic_summary(self.report), file=sys.stderr, flush=True)
        overloaded = harness_line(self.report)
        if overloaded is not None:
            say(overloaded)
        self.status = exit_status(self.report)


async def supervise(
    config: ServiceConfig,
    telemetry: Telemetry,
    chaos: ChaosConfig,
    sink: dict[str, str],
    url_configured: bool,
    work: Work,
    graph: Graph | None = None,
) -> None:
    """Start the sink when the telemetry needs one, then serve every service of the graph; stop the sink last."""
    graph = graph or graph_of(config)
    server = None
    if telemetry.config.remote and telemetry.config.batcher is not None:
        backend_url = telemetry.config.batcher.prodsentinel_url
        server = await start_backend(sink, backend_url, url_configured=url_configured, admin_token=chaos.admin_token)
        if server is not None:
            say(
                f"embedded sink listening on {server.url} (SQLite {sink['sink_db']}); "
                f"browse {server.url}/stats and {server.url}/query/signals?trace_id=..."
            )
        else:
            say(f"telemetry goes to {backend_url}")
    try:
        await serve(graph.names, config, telemetry, chaos, work)
    finally:
        if server is not None:
            await server.stop()


def main(argv: Sequence[str] | None = None) -> int:
    parser = service_parser(
        "supervisor.py",
        "Run every service of a graph in one event loop: by default the checkout "
        "(api-gateway, payment-service and inventory-service).",
    )
    add_settings(parser, SINK_SETTINGS)
    add_traffic_arguments(parser, with_target=False)
    parser.epilog = f"Serving (no --rate): exit 0 after SIGINT or SIGTERM. With --rate, the {EXIT_STATUSES}."
    args = parser.parse_args(argv)
    url_configured = "PRODSENTINEL_URL" in os.environ or args.prodsentinel_url is not None
    try:
        config = service_config(args)
        graph = graph_of(config)
        sink = resolve(SINK_SETTINGS, args)
        telemetry = Telemetry(with_backend(telemetry_config(args), sink, url_configured=url_configured))
        chaos = chaos_config(args, graph=graph)
        timeouts = Timeouts(config.inventory_timeout_s, config.payment_timeout_s)
        # the edge's URL is known once it is bound: drive() fills it in
        traffic = traffic_config_from_args(args, target="", seed=config.seed, timeouts=timeouts, graph=graph)
        if traffic is not None:
            check_order_ids(traffic)
        check_run(graph, config, chaos.rules, graph.names)
    except ConfigError as exc:
        parser.exit(2, f"fakesvc: {exc}\n")
    configure_logging(ship=telemetry.log_shipper)
    tune_gc()
    drive = None if traffic is None else Drive(traffic, config.shutdown_grace_s, graph.edge.name)
    if drive is None:
        EARLY_STOP.release()  # serving only: no file to write, a stop from here on ends it at once
    if EARLY_STOP.signum is not None:  # stopped while starting: nothing served, nothing sent
        if drive is not None:
            drive.report = not_started(drive.traffic, EARLY_STOP.signum)
            drive.finish({})
        return 0 if drive is None else drive.status
    try:
        asyncio.run(supervise(config, telemetry, chaos, sink, url_configured, drive or until_stopped, graph))
        if drive is not None:
            drive.finish(telemetry.summary)
    except ConfigError as exc:
        parser.exit(2, f"fakesvc: {exc}\n")
    except KeyboardInterrupt:  # a Ctrl-C outside the handlers: asyncio.run has already unwound supervise()
        say("stopped by Ctrl-C")
    return 0 if drive is None else drive.status


if __name__ == "__main__":
    sys.exit(main())
