"""Requests still being handled, so that shutdown can cut them and wait for their spans.

aiohttp's shutdown waits its grace period for running handlers, then gives up
on them without cancelling them: they run on until the event loop closes, and
a span they end after the tracer providers have shut down is dropped with only
an OpenTelemetry warning. Each app tracks its requests with
:attr:`InFlight.middleware` (outermost, so a request counts until its server
span has ended) and, in its cleanup, cuts those that outlived the grace and
waits for them to unwind. ``len()`` counts the handlers alive (tests use it:
a hung handler whose caller hung up must not stay alive).
"""

from __future__ import annotations

import asyncio

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware


class InFlight:
    """The tasks of the requests an app is handling."""

    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[object]] = set()
        self._idle = asyncio.Event()
        self._idle.set()

    def __len__(self) -> int:
        return len(self._tasks)

    @property
    def middleware(self) -> Middleware:
        @web.middleware
        async def track_in_flight(request: web.Request, handler: Handler) -> web.StreamResponse:
            task = asyncio.current_task()
            assert task is not None, "aiohttp runs each request in its own task"
            self._tasks.add(task)
            self._idle.clear()
            try:
                return await handler(request)
            finally:
                self._tasks.discard(task)
                if not self._tasks:
                    self._idle.set()

        return track_in_flight

    async def cut(self, timeout_s: float) -> int:
        """Cancel the requests still running and wait (at most ``timeout_s``) for them to unwind.

        Returns how many were cut; their spans and logs have ended when it returns,
        unless one of them ignored the cancellation for longer than ``timeout_s``.
        """
        cut = list(self._tasks)
        for task in cut:
            task.cancel()
        if cut:
            try:
                await asyncio.wait_for(self._idle.wait(), timeout_s)
            except TimeoutError:
                pass
        return len(cut)


IN_FLIGHT = web.AppKey("in_flight", InFlight)
