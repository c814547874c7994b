"""The application every service of a graph is: its business routes around hops, plus health, telemetry and chaos.

``build_app`` makes any service of any graph; a service's ``create_app``
(``fakesvc.payment.create_app``) is :func:`app_factory` of its graph and name.
"""

from __future__ import annotations

import asyncio
import functools
import random
import warnings
from collections.abc import AsyncIterator, Collection, Iterable, Mapping
from dataclasses import replace
from typing import Any, Protocol

import aiohttp
import structlog
from aiohttp import web
from aiohttp.typedefs import Handler, Middleware
from opentelemetry.instrumentation.aiohttp_client import create_trace_config
from opentelemetry.instrumentation.aiohttp_server import AioHttpServerInstrumentor, create_aiohttp_middleware
from opentelemetry.instrumentation.utils import suppress_http_instrumentation

from fakesvc.config import ServiceConfig
from fakesvc.faults import Chaos, chaos_routes
from fakesvc.faults.report import fetch_injected
from fakesvc.faults.rules import service_routes
from fakesvc.graph.model import Graph
from fakesvc.graph.placement import graph_of, url_of
from fakesvc.jsonfast import dumps_str
from fakesvc.service.correlation import correlation_middleware
from fakesvc.service.hop import HopState, hop_handler
from fakesvc.service.http_errors import error_response, json_errors, quiet_parser_errors
from fakesvc.service.prometheus import ServiceMetrics
from fakesvc.service.records import HopRecords, downstream_records, records_route
from fakesvc.service.resources import Footprint, ProcessUse, Resources, background, watch_resources
from fakesvc.service.script import run_route
from fakesvc.service.series import ServedSeries, sample_every
from fakesvc.serving.body_deadline import body_deadline
from fakesvc.serving.in_flight import IN_FLIGHT, InFlight
from fakesvc.telemetry.pipeline import Telemetry

HOP_STATE = web.AppKey("hop_state", HopState)
_log = structlog.get_logger("fakesvc.service")


@functools.cache
def _server_instrumentation_ready() -> None:
    """Initialise the aiohttp server instrumentation's module state, without patching aiohttp.

    Its per-provider ``create_aiohttp_middleware`` reads globals (excluded URLs,
    meters) that only ``instrument()`` sets, and ``instrument()`` also swaps
    ``web.Application`` for a class that adds a middleware bound to the global
    provider. Instrumenting and uninstrumenting once sets the globals and puts
    ``web.Application`` back, so each service can use its own provider.
    """
    instrumentor = AioHttpServerInstrumentor()
    with warnings.catch_warnings():  # the swapped-in subclass of web.Application warns; it is undone below
        warnings.simplefilter("ignore", DeprecationWarning)
        instrumentor.instrument()
    instrumentor.uninstrument()


# Business routes read no body; control routes read small JSON documents.
MAX_BODY_BYTES = 64 * 1024
# How long shutdown waits for the requests it cut to unwind (they need a loop turn or two).
UNWIND_TIMEOUT_S = 1.0


def _traced_business_routes(tracing: Middleware, business_routes: Collection[str]) -> Middleware:
    """Trace only the business routes: health checks and control calls would be noise in a trace."""

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        resource = request.match_info.route.resource
        if resource is not None and resource.canonical in business_routes:
            return await tracing(request, handler)
        return await handler(request)

    return middleware


async def healthz(_request: web.Request) -> web.Response:
    return web.json_response({"status": "alive"})


async def readyz(request: web.Request) -> web.Response:
    state = request.app[HOP_STATE]
    if not state.ready:
        return error_response(503, "not ready")
    degraded = state.telemetry.degraded
    if degraded is not None:  # still serving: only the telemetry's durability is at risk
        return web.json_response({"status": "degraded", "service": state.service.name, "reason": degraded})
    return web.json_response({"status": "ready", "service": state.service.name})


async def telemetry_stats(request: web.Request) -> web.Response:
    return web.json_response(request.app[HOP_STATE].telemetry.stats(), dumps=dumps_str)


class AppFactory(Protocol):
    """``create_app(config, telemetry)``: what each service module exports."""

    def __call__(
        self,
        config: ServiceConfig,
        telemetry: Telemetry,
        *,
        chaos: Chaos | None = None,
        admin_token: str | None = None,
    ) -> web.Application: ...


def app_factory(graph_name: str, service: str) -> AppFactory:
    """``create_app`` of one service of a graph: the services it calls are found by the settings (:mod:`.placement`)."""

    def create_app(
        config: ServiceConfig,
        telemetry: Telemetry,
        *,
        chaos: Chaos | None = None,
        admin_token: str | None = None,
    ) -> web.Application:
        graph = graph_of(replace(config, graph=graph_name))
        urls = {callee: url_of(graph, callee, config) for callee in graph.callees(service)}
        return build_app(graph, service, config, telemetry, urls=urls, chaos=chaos, admin_token=admin_token)

    return create_app


def build_app(
    graph: Graph,
    service_name: str,
    config: ServiceConfig,
    telemetry: Telemetry,
    *,
    urls: Mapping[str, str],
    chaos: Chaos | None = None,
    admin_token: str | None = None,
) -> web.Application:
    """Assemble one service: middlewares (trace, correlate, JSON errors), routes and lifecycle.

    ``urls`` says where each service it calls listens. With no span exporter
    the OpenTelemetry instrumentations are left out altogether: they cost
    ~100 us a request even when nothing is recorded, and the checkout's trace
    id still travels in ``x-request-id``.
    """
    service = graph.service(service_name)
    quiet_parser_errors()
    in_flight = InFlight()
    middlewares = [correlation_middleware(service.name), json_errors(), body_deadline(config.idle_timeout_s)]
    trace_configs = []
    tracer = None
    if telemetry.tracing:
        provider = telemetry.tracer_provider(service.name)
        _server_instrumentation_ready()
        tracing = create_aiohttp_middleware(tracer_provider=provider)
        middlewares.insert(0, _traced_business_routes(tracing, {route.path for route in service.routes}))
        trace_configs.append(create_trace_config(tracer_provider=provider))
        tracer = provider.get_tracer("fakesvc")
    chaos = chaos or Chaos(service.name, seed=config.seed, hang_s=config.hang_s)
    series = ServedSeries()
    metrics = ServiceMetrics(chaos, telemetry, series)
    middlewares.insert(0, metrics.middleware)  # sees the final status, JSON errors included
    middlewares.insert(0, in_flight.middleware)  # outermost: a request counts until its span has ended
    app = web.Application(middlewares=middlewares, client_max_size=MAX_BODY_BYTES)
    state = HopState(
        service=service,
        config=config,
        telemetry=telemetry,
        chaos=chaos,
        tracer=tracer,
        rng=service_rng(config.seed, service.name),
        urls=dict(urls),
        records=HopRecords(),
        series=series,
        resources=Resources(
            chaos,
            service.capacity,
            Footprint.drawn(config.seed, service.name),
            service_rng(config.seed, service.name, "use"),
        ),
    )
    app[HOP_STATE] = state
    app[IN_FLIGHT] = in_flight
    for route in service.routes:
        app.router.add_route(route.method, route.path, hop_handler(state, route, run_route))
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/telemetry", telemetry_stats)
    app.router.add_get("/metrics", metrics.handle)
    app.router.add_routes(
        [
            records_route(
                service.name,
                state.records,
                telemetry.loop_lag.life,
                downstream_records(lambda: state.session, dict(state.urls)) if state.urls else None,
            )
        ]
    )
    app.router.add_routes(
        chaos_routes(
            state.chaos,
            routes=service_routes(graph, service.name),
            admin_token=admin_token,
            downstream_windows=(lambda: downstream_windows(state)) if state.urls else None,
            downstream_injected=(lambda trace_id: downstream_injected(state, trace_id)) if state.urls else None,
        )
    )

    async def lifecycle(app: web.Application) -> AsyncIterator[None]:
        if state.urls:
            state.session = aiohttp.ClientSession(
                trace_configs=trace_configs,
                connector=aiohttp.TCPConnector(limit=0, ttl_dns_cache=300),
            )
        interval_s = telemetry.config.series_interval_s
        resources = state.resources
        process = ProcessUse() if config.own_process else None

        def measure(interval_s: float, served: int) -> dict[str, float]:
            readings = resources.reading(interval_s, served)
            return readings if process is None else {**readings, **process.reading()}

        sampler = asyncio.ensure_future(
            sample_every(state.series, interval_s, lambda sample: telemetry.series(service.name, sample), measure)
        )
        footprint = resources.footprint
        chores = [
            asyncio.ensure_future(watch_resources(resources)),
            *(
                asyncio.ensure_future(
                    background(resources, state.series, period_s, service_rng(config.seed, service.name, kind))
                )
                for kind, period_s in (("probe", footprint.probe_every_s), ("scrape", footprint.scrape_every_s))
            ),
        ]
        state.ready = True
        yield
        state.ready = False
        for chore in chores:
            chore.cancel()
        # requests that outlived the server's grace: cut them, and let them end their spans and logs
        cut = await in_flight.cut(UNWIND_TIMEOUT_S)
        if cut:
            _log.warning("Requests cut at shutdown", service=service.name, count=cut, harness=True)
        sampler.cancel()  # its last sample holds the partial interval, cut requests included
        await asyncio.gather(sampler, *chores, return_exceptions=True)
        if state.session is not None:
            await state.session.close()

    app.cleanup_ctx.append(lifecycle)
    app.on_shutdown.append(_not_ready)
    return app


def service_rng(seed: int | None, service: str, use: str = "") -> random.Random:
    """The service's own draws (of simulated work, or of another ``use``): seeded by the run's seed and its
    name, so a run repeats while two services never draw the same sequence (their series would move in lockstep)."""
    return random.Random(None if seed is None else f"{seed}|{service}{f'|{use}' if use else ''}")


async def _windows_of(state: HopState, service: str, base_url: str) -> list[dict[str, Any]]:
    assert state.session is not None
    try:
        with suppress_http_instrumentation():
            async with state.session.get(
                f"{base_url}/chaos/windows", timeout=aiohttp.ClientTimeout(total=2)
            ) as response:
                windows = await response.json() if response.status == 200 else []
    except (TimeoutError, aiohttp.ClientError, ValueError) as exc:
        _log.warning("Fault windows unavailable", upstream_service=service, error=str(exc), harness=True)
        return []
    return windows if isinstance(windows, list) else []


async def downstream_windows(state: HopState) -> list[dict[str, Any]]:
    """The scheduled fault windows of the services behind this one, each once (empty for those that do not answer)."""
    found = await asyncio.gather(*(_windows_of(state, name, url) for name, url in state.urls.items()))
    return _unique(window for windows in found for window in windows)


async def downstream_injected(state: HopState, trace_id: str) -> list[dict[str, Any]]:
    """What the services behind this one injected into a trace, each record once (empty if they do not answer)."""
    assert state.session is not None
    session = state.session
    found = await asyncio.gather(*(fetch_injected(session, url, trace_id) for url in state.urls.values()))
    return _unique(record for records in found for record in records or [])


def _unique(items: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each item once, in order: a service behind two callers is reported by both."""
    out: list[dict[str, Any]] = []
    for item in items:
        if item not in out:
            out.append(item)
    return out


async def _not_ready(app: web.Application) -> None:
    """Stop advertising readiness as soon as shutdown begins, before in-flight requests end."""
    app[HOP_STATE].ready = False
