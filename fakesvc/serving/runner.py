"""Run services of a graph in one event loop: bind sites, say where they listen, stop gracefully on a signal.

Used by ``supervisor.py`` (every service of the graph, one batcher), by
``python -m fakesvc.service NAME`` and ``python -m fakesvc.<service>`` (one
service, its own batcher).
"""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field, replace

from aiohttp import web

from fakesvc.config import SERVICE_SETTINGS, ServiceConfig, service_config
from fakesvc.console import say
from fakesvc.faults import CHAOS_SETTINGS, Chaos, ChaosConfig, chaos_config, services_routes
from fakesvc.graph.feasibility import check_run
from fakesvc.graph.model import Graph
from fakesvc.graph.placement import graph_of, port_of, url_of
from fakesvc.service.app import build_app
from fakesvc.serving.gc_tuning import tune_gc
from fakesvc.serving.loop_errors import install_resource_error_log
from fakesvc.serving.stop_signals import StopEvent, stop_on_signals
from fakesvc.settings import ConfigError, add_settings
from fakesvc.telemetry.batcher import format_summary
from fakesvc.telemetry.logs import configure_logging
from fakesvc.telemetry.pipeline import Telemetry, telemetry_config, telemetry_settings


def start_order(graph: Graph, services: Sequence[str]) -> list[str]:
    """``services`` with every callee before its callers (the edge last), so the graph is ready front to back."""
    order: list[str] = []

    def visit(name: str) -> None:
        if name in order:
            return
        for callee in graph.callees(name):
            visit(callee)
        order.append(name)

    for name in graph.names:
        visit(name)
    return [name for name in order if name in services]


@dataclass
class RunningServices:
    """Services started in this loop, by name, with the URL each listens on."""

    runners: dict[str, web.AppRunner] = field(default_factory=dict)
    urls: dict[str, str] = field(default_factory=dict)

    def app(self, service: str) -> web.Application:
        return self.runners[service].app

    async def stop(self) -> None:
        """Stop from the edge inward (gateway, then payment, then inventory), each after the one before is done.

        Each runner stops accepting, lets its in-flight requests finish within
        its grace, then closes; a service stops only once nothing in flight
        can still call it.
        """
        for runner in reversed(self.runners.values()):  # started downstream first
            await runner.cleanup()


async def start_services(
    services: Sequence[str],
    config: ServiceConfig,
    telemetry: Telemetry,
    chaos: ChaosConfig,
    graph: Graph | None = None,
) -> RunningServices:
    """Build and bind each service of the graph (``config``'s by default), callees first.

    A port of 0 binds any free port, and the callers of that service are
    pointed at the port actually bound (tests and benchmarks use this). The
    edge also serves ``/chaos/services``, reaching the services run elsewhere
    over HTTP.
    """
    graph = graph or graph_of(config)
    running = RunningServices()
    order = start_order(graph, services)
    urls = {name: url_of(graph, name, config) for name in graph.names if name not in order}
    elsewhere = dict(urls)
    chaos_by_service = {
        name: Chaos(name, chaos.rules.get(name, ()), seed=config.seed, hang_s=config.hang_s) for name in order
    }
    try:
        for name in order:
            callees = {callee: urls[callee] for callee in graph.callees(name)}
            app = build_app(
                graph,
                name,
                config,
                telemetry,
                urls=callees,
                chaos=chaos_by_service[name],
                admin_token=chaos.admin_token,
            )
            if name == graph.edge.name:
                app.router.add_routes(
                    services_routes(chaos_by_service, admin_token=chaos.admin_token, remote=elsewhere, graph=graph)
                )
            port = port_of(graph, name, config)
            runner = web.AppRunner(
                app,
                shutdown_timeout=config.shutdown_grace_s,
                access_log=None,
                # idle keep-alive and partial requests alike: the timer runs until a whole request arrives
                keepalive_timeout=config.idle_timeout_s,
                lingering_time=config.idle_timeout_s,  # the unread rest of a body after the answer
                handler_cancellation=config.handler_cancellation,
            )
            await runner.setup()
            running.runners[name] = runner
            site = web.TCPSite(runner, config.host, port)  # SO_REUSEADDR on POSIX only
            try:
                await site.start()
            except OSError as exc:
                raise ConfigError(f"{name}: cannot listen on {config.host}:{port} ({exc.strerror})") from None
            host, bound = runner.addresses[0][:2]
            running.urls[name] = f"http://{_url_host(host)}:{bound}"
            urls[name] = f"http://127.0.0.1:{bound}"
    except BaseException:
        await running.stop()
        raise
    return running


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def service_parser(prog: str, description: str) -> argparse.ArgumentParser:
    """The flags every entry point shares: services, telemetry and chaos settings."""
    parser = argparse.ArgumentParser(prog=prog, description=description, allow_abbrev=False)
    add_settings(parser, SERVICE_SETTINGS)
    add_settings(parser, telemetry_settings())
    add_settings(parser, CHAOS_SETTINGS)
    return parser


Work = Callable[[RunningServices, StopEvent], Awaitable[None]]


async def until_stopped(_running: RunningServices, stop: StopEvent) -> None:
    """The default work: serve until SIGINT or SIGTERM."""
    await stop.wait()


async def serve(
    services: Sequence[str],
    config: ServiceConfig,
    telemetry: Telemetry,
    chaos: ChaosConfig,
    work: Work = until_stopped,
) -> None:
    """Start ``services``, do ``work`` (by default: wait for a signal), stop them, flush the telemetry."""
    install_resource_error_log(asyncio.get_running_loop())
    with stop_on_signals() as stop:
        await telemetry.start()
        try:
            running = await start_services(services, config, telemetry, chaos)
            for name, url in running.urls.items():
                say(f"{name} listening on {url}")
            try:
                await work(running, stop)
            finally:
                say("stopping: finishing in-flight requests")
                await running.stop()
        finally:
            summary = await telemetry.close()
            if telemetry.config.remote:
                say(format_summary(summary))


def main(module: str, services: Sequence[str] | None = None, argv: Sequence[str] | None = None) -> None:
    """Run services alone with their own batcher: ``python -m fakesvc.payment``, or ``python -m fakesvc.service NAME``."""
    what = ", ".join(services) if services else "one service of the graph"
    parser = service_parser(f"python -m fakesvc.{module}", f"Run {what} alone.")
    if services is None:
        parser.add_argument(
            "service", nargs="?", help="the name of a service of the graph (--graph); default: the graph's first"
        )
    args = parser.parse_args(argv)
    try:
        config = service_config(args)
        graph = graph_of(config)
        services = services or [args.service or graph.names[0]]
        config = replace(config, own_process=len(services) == 1)
        for name in services:
            if name not in graph.names:
                raise ConfigError(f"graph {graph.name} has no service {name!r} (use {', '.join(graph.names)})")
        telemetry = Telemetry(telemetry_config(args))
        chaos = chaos_config(args, graph=graph)
        check_run(graph, config, chaos.rules, services)
    except ConfigError as exc:
        parser.exit(2, f"fakesvc: {exc}\n")
    configure_logging(ship=telemetry.log_shipper)
    tune_gc()
    try:
        asyncio.run(serve(services, config, telemetry, chaos))
    except ConfigError as exc:
        parser.exit(2, f"fakesvc: {exc}\n")
    except KeyboardInterrupt:  # a Ctrl-C outside the handlers: asyncio.run has already unwound serve()
        say("stopped by Ctrl-C")
