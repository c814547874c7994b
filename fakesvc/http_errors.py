"""Every error answer is JSON ``{"detail": ..., "trace_id": ...}``: never HTML, never a traceback."""

from __future__ import annotations

from collections.abc import Callable

import structlog
from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

from fakesvc.correlation import current_trace_id
from fakesvc.jsonfast import dumps_str

_log = structlog.get_logger("fakesvc.http")


def error_response(status: int, detail: object, **extra: object) -> web.Response:
    """A JSON error answer naming the current trace."""
    body = {"detail": detail, "trace_id": current_trace_id.get(), **extra}
    return web.json_response(body, status=status, dumps=dumps_str)


def json_errors(render: Callable[[int, object], web.Response] = error_response) -> Middleware:
    """A middleware turning aiohttp's HTTP exceptions (404, 405, 413, ...) and crashes into JSON.

    ``render`` shapes the body: the services name the trace; the sink answers
    like ProdSentinel, with ``detail`` alone.
    """

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            return await handler(request)
        except web.HTTPException as exc:
            if exc.status < 400:
                raise
            detail = exc.reason if exc.text is None or exc.text.startswith(f"{exc.status}:") else exc.text
            response = render(exc.status, detail)
            for name in ("Allow", "Retry-After"):
                if name in exc.headers:
                    response.headers[name] = exc.headers[name]
            return response
        except Exception as exc:  # a bug in a handler: log its traceback, answer JSON
            _log.exception("Unhandled error", path=request.path, error_type=type(exc).__name__)
            return render(500, "Internal server error")

    return middleware
