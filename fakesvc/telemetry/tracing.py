"""OpenTelemetry spans: one ``TracerProvider`` per service, exporters chosen by ``OTEL_TRACES_EXPORTER``.

Three services in one process share the global OpenTelemetry API, so each
service gets its own provider (with its own ``service.name`` resource) and
hands it to the aiohttp server and client instrumentations explicitly.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable
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
from fakesvc.settings import ConfigError


class TraceIdSpanProcessor(SpanProcessor):
    """Stamp every span with the checkout's trace id, so spans join logs and metrics."""

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        trace_id = current_trace_id.get()
        if trace_id is not None:
            span.set_attribute(TRACE_ID_ATTRIBUTE, trace_id)


def one_line(span: ReadableSpan) -> str:
    """A span as one short line: a curl must not bury the terminal."""
    context = span.get_span_context()
    if context is None:
        return f"span {span.name!r} (no context)\n"
    parent = format(span.parent.span_id, "016x") if span.parent else "-"
    duration_ms = ((span.end_time or 0) - (span.start_time or 0)) / 1e6
    service = span.resource.attributes.get("service.name", "?")
    return (
        f"span {service} {span.name!r} trace={format(context.trace_id, '032x')} "
        f"span={format(context.span_id, '016x')} parent={parent} "
        f"{duration_ms:.1f}ms {span.status.status_code.name}\n"
    )


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
            SimpleSpanProcessor(ConsoleSpanExporter(out=console or sys.stdout, formatter=one_line))
        )
    if "prodsentinel" in chosen:
        if prodsentinel is None:
            raise ConfigError("OTEL_TRACES_EXPORTER: 'prodsentinel' needs remote telemetry to be on")
        provider.add_span_processor(SimpleSpanProcessor(prodsentinel()))
    if "otlp" in chosen:
        provider.add_span_processor(BatchSpanProcessor(_otlp_exporter()))
    return provider
