"""An OpenTelemetry span exporter that turns finished spans into ProdSentinel span signals.

It runs under a ``SimpleSpanProcessor`` on the event loop's thread and only
hands each span to the batcher: no I/O, no waiting.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from fakesvc.service.correlation import TRACE_ID_ATTRIBUTE
from fakesvc.telemetry.batcher import Batcher
from fakesvc.telemetry.signals import TRACE_KIND, span_signal


def span_attributes(span: ReadableSpan) -> dict[str, Any]:
    """The span's attributes plus what ProdSentinel has no field for: name, kind, ids, exceptions."""
    attributes: dict[str, Any] = dict(span.attributes or {})
    attributes.pop(TRACE_ID_ATTRIBUTE, None)
    attributes["span.name"] = span.name
    attributes["span.kind"] = span.kind.name
    attributes["otel.trace_id"] = format(span.context.trace_id, "032x")
    if span.status.description:
        attributes["status.description"] = span.status.description
    for event in span.events:
        if event.name == "exception":
            for key, value in (event.attributes or {}).items():
                attributes[key] = value
    return attributes


class ProdSentinelSpanExporter(SpanExporter):
    """Emit each finished span to ``/ingest/traces`` through the process's batcher."""

    def __init__(self, batcher: Batcher) -> None:
        self._batcher = batcher

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        for span in spans:
            start, end = span.start_time or 0, span.end_time or 0
            trace_id = (span.attributes or {}).get(TRACE_ID_ATTRIBUTE) or format(span.context.trace_id, "032x")
            self._batcher.emit(
                TRACE_KIND,
                span_signal(
                    str(span.resource.attributes.get("service.name", "unknown")),
                    str(trace_id),
                    format(span.context.span_id, "016x"),
                    format(span.parent.span_id, "016x") if span.parent else None,
                    round((end - start) / 1e6, 3),
                    span.status.status_code.name,
                    span_attributes(span),
                    datetime.fromtimestamp(start / 1e9, tz=UTC),
                ),
            )
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        """The batcher outlives the exporter: the pipeline closes it after the spans."""
