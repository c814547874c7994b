"""Run the whole checkout in one event loop: sink (if needed), three services, optional traffic.

``python supervisor.py`` serves until Ctrl-C / SIGTERM; with ``--rate`` it also
drives traffic, prints the summary and exits.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Sequence

from fakesvc import SERVICE_NAMES
from fakesvc.backend import SINK_SETTINGS, start_backend
from fakesvc.config import ServiceConfig, service_config
from fakesvc.faults import ChaosConfig, chaos_config
from fakesvc.runner import say, service_parser, start_services, wait_for_stop_signal
from fakesvc.settings import ConfigError, add_settings, resolve
from fakesvc.telemetry.batcher import format_summary
from fakesvc.telemetry.logs import configure_logging
from fakesvc.telemetry.pipeline import Telemetry, telemetry_config
from fakesvc.traffic import TrafficConfig, add_traffic_arguments, format_summary as traffic_summary
from fakesvc.traffic import run_traffic, traffic_config_from_args
from fakesvc.traffic.truth import Timeouts


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = service_parser("Run api-gateway, payment-service and inventory-service in one event loop.")
    add_settings(parser, SINK_SETTINGS)
    add_traffic_arguments(parser, with_target=False)
    return parser, parser.parse_args(argv)


async def supervise(
    config: ServiceConfig,
    telemetry: Telemetry,
    chaos: ChaosConfig,
    sink_mode: str,
    sink_db: str,
    traffic: TrafficConfig | None,
    url_configured: bool,
) -> int:
    """Start everything, serve (or drive traffic), stop in reverse order; return the exit code."""
    stop = wait_for_stop_signal()
    backend_url = telemetry.config.batcher.prodsentinel_url if telemetry.config.batcher else ""
    sink = await start_backend(sink_mode, backend_url, sink_db, url_configured=url_configured) if telemetry.config.remote else None
    if sink is not None:
        say(f"embedded sink listening on {sink.url} (SQLite {sink_db}); "
            f"browse {sink.url}/stats and {sink.url}/query/signals?trace_id=...")
    elif telemetry.config.remote:
        say(f"telemetry goes to {backend_url}")
    await telemetry.start()
    exit_code = 0
    try:
        running = await start_services(SERVICE_NAMES, config, telemetry, chaos)
        for name, url in running.urls.items():
            say(f"{name} listening on {url}")
        try:
            if traffic is None:
                await stop.wait()
            else:
                report = await _drive(traffic, running.urls["api-gateway"], stop)
                print(traffic_summary(report), file=sys.stderr, flush=True)
        finally:
            say("stopping: finishing in-flight requests")
            await running.stop()
    finally:
        summary = await telemetry.close()
        if telemetry.config.remote:
            say(format_summary(summary))
        if sink is not None:
            await sink.stop()
    return exit_code


async def _drive(traffic: TrafficConfig, target: str, stop: asyncio.Event) -> dict:
    """Run the traffic against the gateway; a signal cuts it short."""
    from dataclasses import replace

    run = asyncio.ensure_future(run_traffic(replace(traffic, target=target)))
    stopper = asyncio.ensure_future(stop.wait())
    await asyncio.wait({run, stopper}, return_when=asyncio.FIRST_COMPLETED)
    stopper.cancel()
    if not run.done():
        run.cancel()
    return await run


def main(argv: Sequence[str] | None = None) -> int:
    parser, args = parse_args(argv)
    try:
        config = service_config(args)
        telemetry = Telemetry(telemetry_config(args))
        chaos = chaos_config(args)
        sink = resolve(SINK_SETTINGS, args)
        timeouts = Timeouts(config.inventory_timeout_s, config.payment_timeout_s)
        traffic = traffic_config_from_args(args, target="http://placeholder", seed=config.seed, timeouts=timeouts)
    except ConfigError as exc:
        parser.exit(2, f"fakesvc: {exc}\n")
    configure_logging(ship=telemetry.log_shipper)
    url_configured = "PRODSENTINEL_URL" in os.environ or getattr(args, "prodsentinel_url", None) is not None
    try:
        return asyncio.run(
            supervise(config, telemetry, chaos, sink["sink"], sink["sink_db"], traffic, url_configured)
        )
    except ConfigError as exc:
        parser.exit(2, f"fakesvc: {exc}\n")


if __name__ == "__main__":
    sys.exit(main())
