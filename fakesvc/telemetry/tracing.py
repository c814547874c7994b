"""OpenTelemetry spans: one ``TracerProvider`` per service, exporters chosen by ``OTEL_TRACES_EXPORTER``.

Three services in one process share the global OpenTelemetry API, so each
service gets its own provider (with its own ``service.name`` resource) and
hands it to the aiohttp server and client instrumentations explicitly.

The OTLP exporter (``fakesvc[otlp]``, docs/otlp.md) reads OpenTelemetry's
standard ``OTEL_EXPORTER_OTLP_*`` and ``OTEL_BSP_*`` variables itself, and
quietly falls back to a default (or fails at every export) on a bad value:
:func:`check_otlp` checks them at start instead.
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from typing import TextIO, cast

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

from fakesvc import settings
from fakesvc.jsonfast import dumps_str
from fakesvc.service.correlation import TRACE_ID_ATTRIBUTE, current_trace_id
from fakesvc.settings import ConfigError

OTLP_PROTOCOL = "http/protobuf"
# The batch span processor's sizes when their variables are unset (the SDK's defaults)
BSP_DEFAULT_SIZES = {"OTEL_BSP_MAX_EXPORT_BATCH_SIZE": 512, "OTEL_BSP_MAX_QUEUE_SIZE": 2048}


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


def _otlp_protocol(raw: str) -> str:
    if raw.strip().lower() != OTLP_PROTOCOL:
        raise ValueError(f"only {OTLP_PROTOCOL} is supported (the OTLP/HTTP exporter, port 4318)")
    return OTLP_PROTOCOL


def _otlp_headers(raw: str) -> str:
    for item in raw.split(","):
        name, sep, _ = item.partition("=")
        if item.strip() and (not sep or not name.strip()):
            raise ValueError("must be a comma list of name=value")
    return raw


def _existing_file(raw: str) -> str:
    if not os.path.isfile(raw):
        raise ValueError("no such file")
    return raw


def _otlp_variables() -> dict[str, Callable[[str], object]]:
    """Each variable the exporter reads (general and traces-only), with its parser."""
    parsers: dict[str, Callable[[str], object]] = {
        "PROTOCOL": _otlp_protocol,
        "ENDPOINT": settings.http_url,
        "TIMEOUT": settings.positive_float,  # seconds, as this exporter reads it
        "COMPRESSION": settings.Choice(("gzip", "deflate", "none")),
        "HEADERS": _otlp_headers,
        "CERTIFICATE": _existing_file,
        "CLIENT_KEY": _existing_file,
        "CLIENT_CERTIFICATE": _existing_file,
    }
    variables = {
        f"OTEL_EXPORTER_OTLP_{scope}{suffix}": parse for suffix, parse in parsers.items() for scope in ("", "TRACES_")
    }
    for suffix in ("SCHEDULE_DELAY", "MAX_QUEUE_SIZE", "MAX_EXPORT_BATCH_SIZE", "EXPORT_TIMEOUT"):
        variables[f"OTEL_BSP_{suffix}"] = settings.positive_int
    return variables


OTLP_VARIABLES = _otlp_variables()


def _otlp_exporter_class() -> type[SpanExporter]:
    try:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    except ImportError:
        raise ConfigError("OTEL_TRACES_EXPORTER: 'otlp' needs the OTLP exporter: pip install 'fakesvc[otlp]'") from None
    return OTLPSpanExporter


def check_otlp(environ: Mapping[str, str] | None = None) -> None:
    """Stop at start with one line if the exporter is missing or a variable it reads is bad.

    As in OpenTelemetry, an empty variable counts as unset.
    """
    environ = os.environ if environ is None else environ
    _otlp_exporter_class()
    values: dict[str, object] = {}
    for name, parse in OTLP_VARIABLES.items():
        raw = environ.get(name, "")
        if raw.strip():
            try:
                values[name] = parse(raw)
            except ValueError as exc:
                raise ConfigError(f"{name}: {exc} (got {raw!r})") from None
    batch, queue = (cast(int, values.get(name, default)) for name, default in BSP_DEFAULT_SIZES.items())
    if batch > queue:
        raise ConfigError(f"OTEL_BSP_MAX_EXPORT_BATCH_SIZE: must be <= OTEL_BSP_MAX_QUEUE_SIZE ({queue})")


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
        provider.add_span_processor(BatchSpanProcessor(_otlp_exporter_class()()))
    return provider


async def shutdown_providers(providers: Iterable[TracerProvider]) -> None:
    """Shut the providers down together, off the event loop: each exports the spans it still holds.

    A batch processor's shutdown sends its queue and waits for it (up to 30 s
    when the collector does not answer), so it runs in threads, side by side.
    """
    await asyncio.gather(*(asyncio.to_thread(provider.shutdown) for provider in providers))
