"""The process's telemetry pipeline: which signals go out, one batcher, one provider per service.

The entry points build one :class:`Telemetry` per process and hand it to every
service's ``create_app``; everything a handler emits goes through it.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TextIO

from opentelemetry.sdk.trace import TracerProvider

from fakesvc import settings
from fakesvc.config import REMOTE_SIGNALS, TRACE_EXPORTERS
from fakesvc.service.correlation import current_trace_id
from fakesvc.service.series import Sample, series_trace_id

# The units of a sample's resource readings (fakesvc/service/resources.py): cores and bytes, as cAdvisor's.
RESOURCE_UNITS = {"cpu": "cores", "mem": "By", "process-cpu": "cores", "process-mem": "By"}
from fakesvc.settings import Setting
from fakesvc.telemetry.batcher import BATCHER_SETTINGS, Batcher, BatcherConfig
from fakesvc.telemetry.logs import Emit
from fakesvc.telemetry.loop_lag import LoopLag
from fakesvc.telemetry.signals import METRIC_KIND, metric_signal
from fakesvc.telemetry.span_export import ProdSentinelSpanExporter
from fakesvc.telemetry.tracing import check_otlp, shutdown_providers, tracer_provider

DEFAULT_TRACE_EXPORTERS = frozenset({"prodsentinel"})

TELEMETRY_SETTINGS: tuple[Setting, ...] = (
    Setting(
        "FAKESVC_TELEMETRY",
        "--telemetry",
        frozenset(REMOTE_SIGNALS),
        settings.comma_set(*REMOTE_SIGNALS),
        "remote signals besides spans; empty = none",
    ),
    Setting(
        "OTEL_TRACES_EXPORTER",
        "--traces-exporter",
        DEFAULT_TRACE_EXPORTERS,
        settings.comma_set(*TRACE_EXPORTERS),
        "span exporters",
    ),
    Setting(
        "FAKESVC_SERIES_INTERVAL_S",
        "--series-interval-s",
        1.0,
        settings.positive_float,
        "each service samples its workload, errors, latency, cpu and mem this often (metrics: workload, error, latency-50, cpu...)",
    ),
)


@dataclass(frozen=True)
class TelemetryConfig:
    """Which signals leave the process, and the batcher that carries them."""

    signals: frozenset[str] = frozenset(REMOTE_SIGNALS)
    trace_exporters: frozenset[str] = DEFAULT_TRACE_EXPORTERS
    batcher: BatcherConfig | None = None
    series_interval_s: float = 1.0

    @property
    def remote(self) -> bool:
        """True when anything at all goes to the backend."""
        return bool(self.signals) or "prodsentinel" in self.trace_exporters


def telemetry_config(
    args: argparse.Namespace | None = None, environ: Mapping[str, str] | None = None
) -> TelemetryConfig:
    """Build the telemetry config (flag > env > default)."""
    values = settings.resolve(TELEMETRY_SETTINGS, args, environ)
    batcher = BatcherConfig(**settings.resolve(BATCHER_SETTINGS, args, environ))
    if "otlp" in values["traces_exporter"]:
        check_otlp(environ)
    return TelemetryConfig(values["telemetry"], values["traces_exporter"], batcher, values["series_interval_s"])


def telemetry_settings() -> tuple[Setting, ...]:
    """Every setting :func:`telemetry_config` reads, for the entry points' parsers."""
    return TELEMETRY_SETTINGS + tuple(BATCHER_SETTINGS)


class Telemetry:
    """What the services emit through: the shared batcher and per-service tracer providers."""

    def __init__(self, config: TelemetryConfig, *, console: TextIO | None = None) -> None:
        self.config = config
        self.batcher: Batcher | None = None
        if config.remote and config.batcher is not None:
            self.batcher = Batcher(config.batcher)
        self._console = console
        self._providers: dict[str, TracerProvider] = {}
        self._emit_metric = self.batcher.emit if self.batcher is not None and "metrics" in config.signals else None
        self.loop_lag = LoopLag()
        self.summary: dict[str, Any] = {"remote": self.batcher is not None}  # the final counts, once closed

    @property
    def tracing(self) -> bool:
        """Whether any span is exported (else the services skip span instrumentation)."""
        return bool(self.config.trace_exporters - {"none"})

    @property
    def log_shipper(self) -> Emit | None:
        """The emit function logs are shipped through, or None when logs stay local."""
        if self.batcher is not None and "logs" in self.config.signals:
            return self.batcher.emit
        return None

    def tracer_provider(self, service: str) -> TracerProvider:
        """The one provider of ``service`` in this process."""
        provider = self._providers.get(service)
        if provider is None:
            batcher = self.batcher
            provider = tracer_provider(
                service,
                self.config.trace_exporters,
                prodsentinel=(lambda: ProdSentinelSpanExporter(batcher)) if batcher else None,
                console=self._console,
            )
            self._providers[service] = provider
        return provider

    def metric(self, service: str, name: str, value: float, unit: str, attributes: dict[str, Any]) -> None:
        """Emit a metric of the current checkout (no-op when metrics are off)."""
        trace_id = current_trace_id.get()
        if self._emit_metric is not None and trace_id:
            self._emit_metric(METRIC_KIND, metric_signal(service, trace_id, name, value, unit, attributes))

    def series(self, service: str, sample: Sample) -> None:
        """Emit one sample of a service's series as metric signals named as RCAEval's columns (no-op when off)."""
        if self._emit_metric is None:
            return
        timestamp = datetime.fromtimestamp(sample.at, UTC)
        attributes = {"series": True, "interval_s": sample.interval_s}
        values: list[tuple[str, float, str]] = [("workload", sample.workload, "1/s"), ("error", sample.errors, "1/s")]
        values += [(f"latency-{p}", ms, "ms") for p, ms in sample.latency_ms.items() if ms is not None]
        values += [(name, value, RESOURCE_UNITS.get(name, "1")) for name, value in sample.resources.items()]
        for name, value, unit in values:
            told = {**attributes, "background": sample.background} if name == "workload" else attributes
            trace_id = series_trace_id(service, sample.at, name)
            self._emit_metric(METRIC_KIND, metric_signal(service, trace_id, name, value, unit, told, timestamp))

    def stats(self) -> dict[str, Any]:
        """The batcher's counters (or a note that nothing is sent), and the event loop's lag."""
        sending = {"remote": True, **self.batcher.stats()} if self.batcher is not None else {"remote": False}
        return {**sending, "loop_lag": self.loop_lag.stats()}

    @property
    def degraded(self) -> str | None:
        """Why signals are not durable right now (the outbox cannot be written), or None."""
        return self.batcher.degraded if self.batcher is not None else None

    async def start(self) -> None:
        self.loop_lag.start()
        if self.batcher is not None:
            await self.batcher.start()

    async def close(self, deadline_s: float | None = None) -> dict[str, Any]:
        """Flush and close: spans first (they feed the batcher), then the batcher."""
        await self.loop_lag.stop()
        await shutdown_providers(self._providers.values())
        started = time.monotonic()
        if self.batcher is None:
            return {"remote": False}
        summary = await self.batcher.close(deadline_s)
        summary.setdefault("close_s", round(time.monotonic() - started, 3))
        self.summary = {"remote": True, **summary}
        return summary
