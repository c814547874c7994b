"""A request body must arrive within the idle timeout: a client that stops mid-body cannot hold a handler.

aiohttp's ``keepalive_timeout`` closes a connection that has not sent a whole
request head, but once the head is in, nothing bounds the wait for the body.
This middleware reads the body first (it is small: the apps cap it with
``client_max_size``), within the deadline, and answers 408 otherwise; the
handler then reads it from memory.
"""

from __future__ import annotations

import asyncio

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

from fakesvc.service.http_errors import error_response


def body_deadline(timeout_s: float) -> Middleware:
    """The middleware that gives each request body ``timeout_s`` to arrive whole."""

    @web.middleware
    async def read_body_in_time(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.body_exists:
            try:
                async with asyncio.timeout(timeout_s):
                    await request.read()
            except TimeoutError:
                return error_response(408, f"request body not received within {timeout_s:g} s")
        return await handler(request)

    return read_body_in_time
