"""The ProdSentinel wire format (SPEC section 6): one dict per signal, nothing beside the listed fields.

ProdSentinel rejects unknown top-level fields with 422, so the builders here
are the only place a signal's shape is decided; everything else a caller
wants to say goes into ``attributes``. Values JSON cannot hold are written as
their ``str()`` when the signal is encoded (``fakesvc.jsonfast``), not here:
building a signal is on the request path, encoding is not.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

# A signal's kind is its ``signal_type``; the route it is sent to is the sender's business (a stored
# signal carries its kind, never a URL part).
LOG_KIND, TRACE_KIND, METRIC_KIND = "log", "trace", "metric"
ROUTES = {LOG_KIND: "/ingest/logs", TRACE_KIND: "/ingest/traces", METRIC_KIND: "/ingest/metrics"}

LEVELS = ("INFO", "WARNING", "ERROR", "CRITICAL")


def _iso(timestamp: datetime | str | None) -> str:
    """ISO 8601 in UTC: a string as given (a log line's own timestamp), a datetime converted, else now."""
    if timestamp is None:
        return datetime.now(UTC).isoformat()
    if isinstance(timestamp, str):
        return timestamp
    return timestamp.astimezone(UTC).isoformat()


def _signal(
    signal_type: str,
    service: str,
    trace_id: str,
    timestamp: datetime | str | None,
    fields: dict[str, Any],
    attributes: dict[str, Any],
) -> dict[str, Any]:
    """The common fields, the endpoint's own fields, and the attributes, in the wire order."""
    return {
        "signal_id": str(uuid.uuid4()),
        "trace_id": trace_id,
        "service_name": service,
        "timestamp": _iso(timestamp),
        "signal_type": signal_type,
        **fields,
        "attributes": attributes,
    }


def log_signal(
    service: str,
    trace_id: str,
    level: str,
    message: str,
    attributes: dict[str, Any],
    timestamp: datetime | str | None = None,
) -> dict[str, Any]:
    """A log for ``POST /ingest/logs``."""
    return _signal("log", service, trace_id, timestamp, {"level": level, "message": message}, attributes)


def metric_signal(
    service: str,
    trace_id: str,
    name: str,
    value: float,
    unit: str,
    attributes: dict[str, Any],
    timestamp: datetime | None = None,
) -> dict[str, Any]:
    """A metric for ``POST /ingest/metrics``."""
    fields = {"metric_name": name, "value": value, "unit": unit}
    return _signal("metric", service, trace_id, timestamp, fields, attributes)


def span_signal(
    service: str,
    trace_id: str,
    span_id: str,
    parent_span_id: str | None,
    duration_ms: float,
    status: str,
    attributes: dict[str, Any],
    timestamp: datetime | None = None,
) -> dict[str, Any]:
    """A span for ``POST /ingest/traces`` (its name goes in ``attributes["span.name"]``)."""
    fields = {"span_id": span_id, "parent_span_id": parent_span_id, "duration_ms": duration_ms, "status": status}
    return _signal("trace", service, trace_id, timestamp, fields, attributes)
