"""``python -m fakesvc.sink``: run the embedded ProdSentinel-compatible sink alone."""

from __future__ import annotations

import argparse
import asyncio
import sys
from dataclasses import replace

from fakesvc import settings
from fakesvc.faults import ADMIN_TOKEN
from fakesvc.serving.loop_errors import install_resource_error_log
from fakesvc.serving.stop_signals import stop_on_signals
from fakesvc.settings import ConfigError, Setting
from fakesvc.sink.app import SinkConfig, start_sink
from fakesvc.sink.faults import SinkFaults, parse_outage
from fakesvc.sink.flaws import PACE, TRACE_RACE
from fakesvc.sink_address import STANDALONE_ADDRESS

SETTINGS: tuple[Setting, ...] = (
    *STANDALONE_ADDRESS,
    Setting(
        "FAKESVC_SINK_ERROR_RATE",
        "--error-rate",
        0.0,
        settings.non_negative_float,
        "share of ingests answered with an error",
    ),
    Setting("FAKESVC_SINK_ERROR_STATUS", "--error-status", 503, settings.port, "status of those errors"),
    Setting("FAKESVC_SINK_LATENCY_MS", "--latency-ms", 0.0, settings.non_negative_float, "added latency per ingest"),
    Setting(
        "FAKESVC_SINK_DUPLICATE_STATUS",
        "--duplicate-status",
        202,
        settings.port,
        "answer to a repeated signal_id (500 mimics ProdSentinel)",
    ),
    replace(TRACE_RACE, aliases=("--trace-race",)),
    replace(PACE, aliases=("--pace",)),
    Setting("FAKESVC_SEED", "--seed", None, settings.optional_int, "seed of the error rate"),
    ADMIN_TOKEN,
)


def main() -> None:
    parser = argparse.ArgumentParser(
        prog="python -m fakesvc.sink",
        description="The embedded ProdSentinel-compatible sink.",
        allow_abbrev=False,
    )
    settings.add_settings(parser, SETTINGS)
    parser.add_argument(
        "--outage",
        action="append",
        default=[],
        metavar="START:DURATION",
        help="drop connections for DURATION s, START s after start (repeatable)",
    )
    args = parser.parse_args()
    try:
        values = settings.resolve(SETTINGS, args)
        outages = tuple(parse_outage(raw) for raw in args.outage)
        if values["error_rate"] > 1:
            raise ConfigError("--error-rate: must be between 0 and 1")
    except (ConfigError, ValueError) as exc:
        parser.exit(2, f"fakesvc: {exc}\n")
    faults = SinkFaults(
        values["error_rate"], values["error_status"], values["latency_ms"], outages, None, values["seed"]
    )
    config = SinkConfig(
        values["sink_host"],
        values["sink_port"],
        values["sink_db"],
        faults,
        values["duplicate_status"],
        values["admin_token"] or None,
        values["sink_trace_race"],
        values["sink_pace"],
    )
    try:
        asyncio.run(serve(config))
    except KeyboardInterrupt:  # a Ctrl-C outside the handlers: asyncio.run has already unwound serve()
        print("fakesvc sink stopped by Ctrl-C", file=sys.stderr, flush=True)


async def serve(config: SinkConfig) -> None:
    install_resource_error_log(asyncio.get_running_loop())
    with stop_on_signals() as stop:
        server = await start_sink(config)
        print(f"fakesvc sink listening on {server.url} (SQLite {config.db_path})", file=sys.stderr, flush=True)
        await stop.wait()
        await server.stop()


if __name__ == "__main__":
    main()
