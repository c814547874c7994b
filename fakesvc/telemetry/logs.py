"""Structured logs: one JSON object per line locally, and the same event shipped to ProdSentinel.

One ``log.info("Payment authorized", latency_ms=...)`` in a handler becomes both
a local line with the keys of SPEC section 5 and, when log shipping is on, a
ProdSentinel log signal carrying the event's attributes. Configured once, by
the entry points, through :func:`configure_logging`.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any, TextIO

import structlog
from structlog.typing import EventDict, Processor, WrappedLogger

from fakesvc.jsonfast import dumps_str
from fakesvc.telemetry.signals import LOG_KIND, log_signal

Emit = Callable[[str, dict[str, Any]], None]

_ENVELOPE = ("timestamp", "level", "event", "service", "request_id")
_REMOTE_LEVELS = {"info": "INFO", "warning": "WARNING", "error": "ERROR", "critical": "CRITICAL"}


def _upper_level(_logger: WrappedLogger, method_name: str, event_dict: EventDict) -> EventDict:
    event_dict["level"] = method_name.upper() if method_name != "exception" else "ERROR"
    return event_dict


def _envelope_first(_logger: WrappedLogger, _name: str, event_dict: EventDict) -> EventDict:
    """Put the SPEC section 5 keys first, so a line reads the same in every service."""
    ordered = {key: event_dict.pop(key) for key in _ENVELOPE if key in event_dict}
    ordered.update(event_dict)
    return ordered


HARNESS = "harness"  # key marking fakesvc's own bookkeeping: kept local, never shipped


class ShipToProdSentinel:
    """Processor: turn each log event of a checkout into a ProdSentinel log signal.

    Events without a trace id (startup, shutdown) stay local: ProdSentinel
    requires a non-empty ``trace_id``. So do events marked ``harness=True``
    (the harness's own bookkeeping, such as a failed fault lookup): an
    analyser must find the fault from the symptoms, not from the harness.
    """

    def __init__(self, emit: Emit) -> None:
        self._emit = emit

    def __call__(self, _logger: WrappedLogger, method_name: str, event_dict: EventDict) -> EventDict:
        level = _REMOTE_LEVELS.get(method_name)
        trace_id = event_dict.get("request_id")
        if level is None or not trace_id or event_dict.get(HARNESS):
            return event_dict
        attributes = {key: value for key, value in event_dict.items() if key not in _ENVELOPE}
        self._emit(
            LOG_KIND,
            log_signal(
                event_dict.get("service", "fakesvc"),
                trace_id,
                level,
                str(event_dict.get("event", "")),
                attributes,
                event_dict.get("timestamp"),  # the local line's own: the two join exactly
            ),
        )
        return event_dict


def configure_logging(stream: TextIO | None = None, *, ship: Emit | None = None) -> None:
    """Configure structlog for the whole process: JSON lines to ``stream``, optional shipping."""
    processors: list[Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.TimeStamper(fmt="iso", utc=True, key="timestamp"),
        _upper_level,
        structlog.processors.format_exc_info,
    ]
    if ship is not None:
        processors.append(ShipToProdSentinel(ship))
    processors += [_envelope_first, structlog.processors.JSONRenderer(serializer=dumps_str)]
    structlog.configure(
        processors=processors,
        logger_factory=structlog.PrintLoggerFactory(file=stream or sys.stdout),
        wrapper_class=structlog.make_filtering_bound_logger(20),
        cache_logger_on_first_use=False,
    )
