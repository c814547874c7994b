"""One trace id per checkout: validate the caller's ``x-request-id`` or make one, and bind it.

The id lives in a :class:`~contextvars.ContextVar` for the request's task, so logs,
spans and metrics pick it up without being handed it, and outgoing calls forward it.
"""

from __future__ import annotations

import re
import secrets
from contextvars import ContextVar

import structlog
from aiohttp import web
from aiohttp.typedefs import Handler, Middleware
from opentelemetry import trace

REQUEST_ID_HEADER = "x-request-id"
TRACE_ID_ATTRIBUTE = "fakesvc.trace_id"

_VALID_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")

current_trace_id: ContextVar[str | None] = ContextVar("fakesvc_trace_id", default=None)


def valid_request_id(value: str | None) -> str | None:
    """Return ``value`` if it is an acceptable trace id, else ``None`` (never echo bad input)."""
    if value is not None and _VALID_REQUEST_ID.fullmatch(value):
        return value
    return None


def trace_id_for(request: web.Request) -> str:
    """The caller's valid ``x-request-id``, else the W3C trace id of the current span, else a new one."""
    supplied = valid_request_id(request.headers.get(REQUEST_ID_HEADER))
    if supplied is not None:
        return supplied
    context = trace.get_current_span().get_span_context()
    if context.is_valid:
        return format(context.trace_id, "032x")
    return secrets.token_hex(16)


def correlation_middleware(service: str) -> Middleware:
    """Bind service and trace id to logs and the server span; echo the id on the response.

    Runs inside the OpenTelemetry server middleware, so a checkout without an
    ``x-request-id`` gets the W3C trace id of its own server span; and outside
    the JSON-error middleware, so error bodies can name the trace.
    """

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        trace_id = trace_id_for(request)
        token = current_trace_id.set(trace_id)
        trace.get_current_span().set_attribute(TRACE_ID_ATTRIBUTE, trace_id)
        with structlog.contextvars.bound_contextvars(service=service, request_id=trace_id):
            try:
                response = await handler(request)
            finally:
                current_trace_id.reset(token)
        response.headers[REQUEST_ID_HEADER] = trace_id
        return response

    return middleware
