"""``GET /metrics``: a service's own requests and faults, and its process's telemetry, for Prometheus.

Built on ``prometheus-client`` (its registry, histogram and text format), one
registry per app, so under the supervisor each service's ``/metrics`` shows its
own requests. The request histogram is named after OpenTelemetry's HTTP server
semantic conventions (``http.server.request.duration`` in seconds, labels
``http.request.method``, ``http.route``, ``http.response.status_code``). What
other parts already count (faults injected, the batcher's ledger, the outbox,
the event-loop lag) is read at scrape time, not counted twice on the request path.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from fakesvc.faults import Chaos
from fakesvc.service.series import Sample, ServedSeries
from fakesvc.telemetry.pipeline import Telemetry

# OpenTelemetry's advised buckets for http.server.request.duration, in seconds
DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0)
LEDGER_COUNTERS = (
    "queued",
    "adopted",
    "sent",
    "dead_lettered",
    "uncertain",
    "dropped",
    "retried",
    "resent_uncertain",
    "write_errors",
)
LEDGER_GAUGES = ("backlog", "pending", "stored", "held")


class _ScrapeTimeCollector(Collector):
    """The faults a service injected and its process's telemetry, read when Prometheus scrapes."""

    def __init__(self, chaos: Chaos, telemetry: Telemetry, series: ServedSeries) -> None:
        self._chaos = chaos
        self._telemetry = telemetry
        self._series = series

    def collect(self) -> Iterator[Metric]:
        faults = CounterMetricFamily(
            "fakesvc_faults_injected", "Faults this service injected, by kind", labels=["kind"]
        )
        for kind, count in sorted(self._chaos.injected_by_kind.items()):
            faults.add_metric([kind], count)
        yield faults
        yield from _series_metrics(self._series.last)
        stats = self._telemetry.stats()
        yield from _telemetry_metrics(stats)
        lag = stats.get("loop_lag", {})
        for key in ("p50_ms", "p99_ms", "max_ms"):
            if key in lag:
                name = f"fakesvc_event_loop_lag_{key.removesuffix('_ms')}_seconds"
                yield GaugeMetricFamily(name, f"Event-loop lag, {key[:-3]} over the recent window", lag[key] / 1000)


def _series_metrics(sample: Sample | None) -> Iterator[Metric]:
    """The service's last sample of its series: the same figures its metric signals carry."""
    if sample is None:
        return
    yield GaugeMetricFamily(
        "fakesvc_series_workload_per_second", "Requests served a second, last interval", sample.workload
    )
    yield GaugeMetricFamily(
        "fakesvc_series_errors_per_second", "Requests failed a second, last interval", sample.errors
    )
    latency = GaugeMetricFamily(
        "fakesvc_series_latency_seconds", "Percentiles of the elapsed times served, last interval", labels=["quantile"]
    )
    for percent, ms in sample.latency_ms.items():
        if ms is not None:
            latency.add_metric([f"{percent / 100:g}"], ms / 1000)
    yield latency
    for name, value in sample.resources.items():  # cpu in cores, mem in bytes; process-* where it runs alone
        unit = "cores" if name.endswith("cpu") else "bytes"
        metric = f"fakesvc_series_{name.replace('-', '_')}_{unit}"
        yield GaugeMetricFamily(metric, f"{name} ({unit}) of the last interval: the resource model", value)


def _telemetry_metrics(stats: dict[str, Any]) -> Iterator[Metric]:
    if not stats.get("remote"):
        return
    for name in LEDGER_COUNTERS:
        yield CounterMetricFamily(
            f"fakesvc_telemetry_{name}", f"Signals {name.replace('_', ' ')} (the ledger)", stats[name]
        )
    for name in LEDGER_GAUGES:
        yield GaugeMetricFamily(f"fakesvc_telemetry_{name}", f"Signals {name} now (the ledger)", stats[name])
    yield GaugeMetricFamily("fakesvc_telemetry_backend_up", "1 while the backend answers", int(stats["backend_up"]))
    outbox = stats.get("outbox", {})
    if outbox.get("bytes") is not None:
        yield GaugeMetricFamily("fakesvc_outbox_bytes", "Size of this process's outbox file", outbox["bytes"])
    if outbox.get("oldest_age_s") is not None:
        yield GaugeMetricFamily(
            "fakesvc_outbox_oldest_age_seconds", "Age of the oldest undelivered signal", outbox["oldest_age_s"]
        )


class ServiceMetrics:
    """One service's registry: the request histogram, plus what is read at scrape time."""

    def __init__(self, chaos: Chaos, telemetry: Telemetry, series: ServedSeries) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self.duration = Histogram(
            "http_server_request_duration_seconds",
            "Duration of HTTP server requests (OpenTelemetry http.server.request.duration)",
            ["http_request_method", "http_route", "http_response_status_code"],
            buckets=DURATION_BUCKETS,
            registry=self.registry,
        )
        self.registry.register(_ScrapeTimeCollector(chaos, telemetry, series))

    @property
    def middleware(self) -> Middleware:
        """Observe every request's duration under its route pattern and final status."""

        @web.middleware
        async def measure(request: web.Request, handler: Handler) -> web.StreamResponse:
            started = time.perf_counter()
            status = 500
            try:
                response = await handler(request)
                status = response.status
                return response
            except web.HTTPException as exc:
                status = exc.status
                raise
            except asyncio.CancelledError:
                status = 499  # the caller gave up (nginx's code for it)
                raise
            finally:
                resource = request.match_info.route.resource
                route = resource.canonical if resource is not None else "unmatched"
                self.duration.labels(request.method, route, str(status)).observe(time.perf_counter() - started)

        return measure

    async def handle(self, _request: web.Request) -> web.Response:
        """``GET /metrics`` in the Prometheus text format."""
        response = web.Response(body=generate_latest(self.registry))
        response.content_type = CONTENT_TYPE_LATEST.split(";")[0]
        response.charset = "utf-8"
        return response
