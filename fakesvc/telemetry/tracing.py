"""OpenTelemetry spans: one ``TracerProvider`` per service, exporters chosen by ``OTEL_TRACES_EXPORTER``.

Three services in one process share the global OpenTelemetry API, so each
service gets its own provider (with its own ``service.name`` resource) and
hands it to the aiohttp server and client instrumentations explicitly.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import TextIO

from opentelemetry.context import Context
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    ConsoleSpanExporter,
    SimpleSpanProcessor,
    SpanExporter,
)
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, ParentBased

from fakesvc.correlation import TRACE_ID_ATTRIBUTE, current_trace_id
from fakesvc.jsonfast import dumps_str
from fakesvc.settings import ConfigError


class TraceIdSpanProcessor(SpanProcessor):
    """Stamp every span with the checkout's trace id, so spans join logs and metrics."""

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        trace_id = current_trace_id.get()
        if trace_id is not None:
            span.set_attribute(TRACE_ID_ATTRIBUTE, trace_id)


def json_line(span: ReadableSpan) -> str:
    """A span as one JSON object on a line, shaped like the log lines beside it on stdout.

    ``event`` is ``span``, ``request_id`` the checkout's trace id (as on its logs),
    then the W3C ids, the duration and the status: short enough that a curl does
    not bury the terminal, and stdout stays JSON lines whatever is exported.
    """
    context = span.get_span_context()
    started, ended = span.start_time or 0, span.end_time or span.start_time or 0
    line = {
        "timestamp": datetime.fromtimestamp(ended / 1e9, UTC).isoformat(),
        "level": "INFO",
        "event": "span",
        "service": span.resource.attributes.get("service.name"),
        "request_id": span.attributes.get(TRACE_ID_ATTRIBUTE) if span.attributes else None,
        "span.name": span.name,
        "trace_id": format(context.trace_id, "032x") if context else None,
        "span_id": format(context.span_id, "016x") if context else None,
        "parent_span_id": format(span.parent.span_id, "016x") if span.parent else None,
        "duration_ms": round((ended - started) / 1e6, 3),
        "status": span.status.status_code.name,
    }
    return dumps_str(line) + "\n"


def _otlp_exporter() -> SpanExporter:
    try:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    except ImportError:
        raise ConfigError(
            "OTEL_TRACES_EXPORTER: 'otlp' needs opentelemetry-exporter-otlp-proto-http installed"
        ) from None
    return OTLPSpanExporter()


def tracer_provider(
    service: str,
    exporters: Iterable[str],
    *,
    prodsentinel: Callable[[], SpanExporter] | None = None,
    console: TextIO | None = None,
) -> TracerProvider:
    """A provider for one service with the chosen exporters.

    With no exporter, spans are not recorded at all (the sampler is off), yet
    the W3C trace context still propagates, so correlation keeps working.
    """
    chosen = set(exporters) - {"none"}
    resource = Resource.create({"service.name": service})
    if not chosen:
        return TracerProvider(resource=resource, sampler=ParentBased(ALWAYS_OFF))
    provider = TracerProvider(resource=resource)
    provider.add_span_processor(TraceIdSpanProcessor())
    if "console" in chosen:
        provider.add_span_processor(
            SimpleSpanProcessor(ConsoleSpanExporter(out=console or sys.stdout, formatter=json_line))
        )
    if "prodsentinel" in chosen:
        if prodsentinel is None:
            raise ConfigError("OTEL_TRACES_EXPORTER: 'prodsentinel' needs remote telemetry to be on")
        provider.add_span_processor(SimpleSpanProcessor(prodsentinel()))
    if "otlp" in chosen:
        provider.add_span_processor(BatchSpanProcessor(_otlp_exporter()))
    return provider
