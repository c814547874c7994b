"""Run services in one event loop: bind sites, say where they listen, stop gracefully on a signal.

Used by ``supervisor.py`` (all three services, one batcher) and by
``python -m fakesvc.<service>`` (one service, its own batcher).
"""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field, replace

from aiohttp import web

from fakesvc import gateway, inventory, payment
from fakesvc.config import SERVICE_SETTINGS, ServiceConfig, service_config
from fakesvc.console import say
from fakesvc.faults import CHAOS_SETTINGS, Chaos, ChaosConfig, chaos_config, services_routes
from fakesvc.gc_tuning import tune_gc
from fakesvc.loop_errors import install_resource_error_log
from fakesvc.service import AppFactory
from fakesvc.settings import ConfigError, add_settings
from fakesvc.stop_signals import StopEvent, stop_on_signals
from fakesvc.telemetry.batcher import format_summary
from fakesvc.telemetry.logs import configure_logging
from fakesvc.telemetry.pipeline import Telemetry, telemetry_config, telemetry_settings

FACTORIES: dict[str, AppFactory] = {
    gateway.SERVICE: gateway.create_app,
    payment.SERVICE: payment.create_app,
    inventory.SERVICE: inventory.create_app,
}


def port_of(config: ServiceConfig, service: str) -> int:
    return {
        gateway.SERVICE: config.gateway_port,
        payment.SERVICE: config.payment_port,
        inventory.SERVICE: config.inventory_port,
    }[service]


@dataclass
class RunningServices:
    """Services started in this loop, by name, with the URL each listens on."""

    runners: dict[str, web.AppRunner] = field(default_factory=dict)
    urls: dict[str, str] = field(default_factory=dict)

    def app(self, service: str) -> web.Application:
        return self.runners[service].app

    async def stop(self) -> None:
        """Stop from the edge inward: gateway, then payment, then inventory, each after the one before is done.

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
) -> RunningServices:
    """Build and bind each service (downstream first, so the chain is ready front to back).

    A port of 0 binds any free port, and the caller of that service is pointed
    at the port actually bound (tests and benchmarks use this). The gateway
    also serves ``/chaos/services``, reaching the services run elsewhere over HTTP.
    """
    running = RunningServices()
    order = [name for name in (inventory.SERVICE, payment.SERVICE, gateway.SERVICE) if name in services]
    chaos_by_service = {
        name: Chaos(name, chaos.rules.get(name, ()), seed=config.seed, hang_s=config.hang_s) for name in order
    }
    try:
        for name in order:
            app = FACTORIES[name](config, telemetry, chaos=chaos_by_service[name], admin_token=chaos.admin_token)
            if name == gateway.SERVICE:
                app.router.add_routes(
                    services_routes(chaos_by_service, admin_token=chaos.admin_token, remote=_elsewhere(config, order))
                )
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
            site = web.TCPSite(runner, config.host, port_of(config, name))  # SO_REUSEADDR on POSIX only
            try:
                await site.start()
            except OSError as exc:
                raise ConfigError(
                    f"{name}: cannot listen on {config.host}:{port_of(config, name)} ({exc.strerror})"
                ) from None
            host, port = runner.addresses[0][:2]
            running.urls[name] = f"http://{_url_host(host)}:{port}"
            if port_of(config, name) == 0:
                config = _point_callers_at(config, name, f"http://127.0.0.1:{port}")
    except BaseException:
        await running.stop()
        raise
    return running


def _elsewhere(config: ServiceConfig, here: Sequence[str]) -> dict[str, str]:
    """The gateway's downstream services that run in other processes, by base URL (for ``/chaos/services``)."""
    urls = {payment.SERVICE: config.payment_url, inventory.SERVICE: config.inventory_url}
    return {name: url for name, url in urls.items() if name not in here}


def _point_callers_at(config: ServiceConfig, service: str, url: str) -> ServiceConfig:
    if service == inventory.SERVICE:
        return replace(config, inventory_url=url)
    if service == payment.SERVICE:
        return replace(config, payment_url=url)
    return config


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def service_parser(prog: str, description: str) -> argparse.ArgumentParser:
    """The flags every entry point shares: services, telemetry and chaos settings."""
    parser = argparse.ArgumentParser(prog=prog, description=description)
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


def main(module: str, services: Sequence[str], argv: Sequence[str] | None = None) -> None:
    """``python -m fakesvc.<service>``: run one service alone with its own batcher."""
    parser = service_parser(f"python -m fakesvc.{module}", f"Run {', '.join(services)} alone.")
    args = parser.parse_args(argv)
    try:
        config = service_config(args)
        telemetry = Telemetry(telemetry_config(args))
        chaos = chaos_config(args)
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
