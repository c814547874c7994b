"""Run the whole checkout in one event loop: sink (if needed), three services, optional traffic.

``python supervisor.py`` serves until Ctrl-C / SIGTERM; with ``--rate`` it also
drives traffic, prints the summary and exits.
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Sequence
from dataclasses import replace

from fakesvc import SERVICE_NAMES
from fakesvc.backend import SINK_SETTINGS, start_backend, with_backend
from fakesvc.config import ServiceConfig, service_config
from fakesvc.console import say
from fakesvc.faults import ChaosConfig, chaos_config
from fakesvc.gc_tuning import tune_gc
from fakesvc.runner import RunningServices, Work, serve, service_parser, until_stopped
from fakesvc.settings import ConfigError, add_settings, resolve
from fakesvc.telemetry.logs import configure_logging
from fakesvc.telemetry.pipeline import Telemetry, telemetry_config
from fakesvc.traffic import TrafficConfig, add_traffic_arguments, run_traffic, traffic_config_from_args
from fakesvc.traffic import format_summary as traffic_summary
from fakesvc.traffic.truth import Timeouts


def drive(traffic: TrafficConfig, drain_s: float) -> Work:
    """Work that sends the traffic to the gateway and prints its summary.

    A signal stops the schedule: the checkouts in flight get ``drain_s`` to
    finish before the services stop (from the gateway inward).
    """

    async def work(running: RunningServices, stop: asyncio.Event) -> None:
        target = running.urls["api-gateway"]
        report = await run_traffic(replace(traffic, target=target), stop=stop, drain_s=drain_s)
        if stop.is_set():
            say("traffic stopped by a signal: no checkout started after it")
        print(traffic_summary(report), file=sys.stderr, flush=True)

    return work


async def supervise(
    config: ServiceConfig,
    telemetry: Telemetry,
    chaos: ChaosConfig,
    sink: dict[str, str],
    url_configured: bool,
    work: Work,
) -> None:
    """Start the sink when the telemetry needs one, then serve; stop the sink last."""
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
        await serve(SERVICE_NAMES, config, telemetry, chaos, work)
    finally:
        if server is not None:
            await server.stop()


def main(argv: Sequence[str] | None = None) -> int:
    parser = service_parser(
        "supervisor.py", "Run api-gateway, payment-service and inventory-service in one event loop."
    )
    add_settings(parser, SINK_SETTINGS)
    add_traffic_arguments(parser, with_target=False)
    args = parser.parse_args(argv)
    url_configured = "PRODSENTINEL_URL" in os.environ or args.prodsentinel_url is not None
    try:
        config = service_config(args)
        sink = resolve(SINK_SETTINGS, args)
        telemetry = Telemetry(with_backend(telemetry_config(args), sink, url_configured=url_configured))
        chaos = chaos_config(args)
        timeouts = Timeouts(config.inventory_timeout_s, config.payment_timeout_s)
        # the gateway's URL is known once it is bound: drive() fills it in
        traffic = traffic_config_from_args(args, target="", seed=config.seed, timeouts=timeouts)
    except ConfigError as exc:
        parser.exit(2, f"fakesvc: {exc}\n")
    configure_logging(ship=telemetry.log_shipper)
    tune_gc()
    work = until_stopped if traffic is None else drive(traffic, config.shutdown_grace_s)
    try:
        asyncio.run(supervise(config, telemetry, chaos, sink, url_configured, work))
    except ConfigError as exc:
        parser.exit(2, f"fakesvc: {exc}\n")
    except KeyboardInterrupt:  # a Ctrl-C outside the handlers: asyncio.run has already unwound supervise()
        say("stopped by Ctrl-C")
    return 0


if __name__ == "__main__":
    sys.exit(main())
