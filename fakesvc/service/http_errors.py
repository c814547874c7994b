"""Every error answer is JSON ``{"detail": ..., "trace_id": ...}``: never HTML, never a traceback.

One exception the public API leaves us: a request aiohttp's HTTP parser rejects
(a header over 8,190 bytes, a bad method, a malformed request line) is answered
by ``RequestHandler.handle_error`` before any application code runs: a plain-text
400 quoting the offending bytes, which no middleware or signal can reshape
without aiohttp's private internals. What we can do is keep it out of the logs:
see :func:`quiet_parser_errors`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import structlog
from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.log import server_logger
from aiohttp.typedefs import Handler, Middleware

from fakesvc.jsonfast import dumps_str
from fakesvc.service.correlation import current_trace_id

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
        except ConnectionResetError:  # the client hung up mid-request: one INFO line, no traceback
            _log.info("Client disconnected before the answer", path=request.path)
            raise
        except Exception as exc:  # a bug in a handler: log its traceback, answer JSON
            _log.exception("Unhandled error", path=request.path, error_type=type(exc).__name__)
            return render(500, "Internal server error")

    return middleware


class ParserErrorFilter(logging.Filter):
    """Turn aiohttp's traceback for a request its parser rejected into one DEBUG line without a trace.

    The client got its 400; the traceback (on stderr, once per bad request) says
    nothing about the service and would drown what the services did.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        if isinstance(error, HttpProcessingError):
            remote = record.args[0] if isinstance(record.args, tuple) and record.args else "?"
            record.msg = "Rejected a malformed request from %s: %s"
            record.args = (remote, type(error).__name__)
            record.exc_info, record.exc_text = None, None
            record.levelno, record.levelname = logging.DEBUG, "DEBUG"
        return True


def quiet_parser_errors() -> None:
    """Install :class:`ParserErrorFilter` on aiohttp's public ``aiohttp.server`` logger (once per process)."""
    if not any(isinstance(existing, ParserErrorFilter) for existing in server_logger.filters):
        server_logger.addFilter(ParserErrorFilter())
