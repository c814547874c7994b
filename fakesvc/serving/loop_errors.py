"""The loop's exception handler: running out of descriptors is said once a second, not once per accept.

When ``accept()`` fails with EMFILE (or ENFILE, ENOBUFS, ENOMEM), asyncio
reports it through the loop's exception handler, with a traceback, and tries
again a second later, so the services recover by themselves as soon as
descriptors free up. But it reports every failed accept of its batch (up to
the listen backlog, 100) and schedules a retry for each: under a flood of
connections, hundreds of tracebacks a second (about 500 a second measured with
``ulimit -n 120``). This handler turns them into one line on stderr at most
once a second, with a count of what it held back. Every other report goes to
the handler that was there before.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable
from typing import Any

from fakesvc.console import say

# asyncio's wording (selector_events.BaseSelectorEventLoop._accept_connection)
OUT_OF_RESOURCES = "socket.accept() out of system resource"


class ResourceErrorLog:
    """A loop exception handler that rate-limits accept's out-of-resources reports to one line per ``interval_s``."""

    def __init__(
        self,
        previous: Callable[[asyncio.AbstractEventLoop, dict[str, Any]], object] | None = None,
        *,
        interval_s: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
        write: Callable[[str], None] = say,
    ) -> None:
        self._previous = previous
        self._interval_s = interval_s
        self._clock = clock
        self._write = write
        self._next_line_at = -math.inf
        self.held_back = 0

    def __call__(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        if context.get("message") != OUT_OF_RESOURCES:
            if self._previous is not None:
                self._previous(loop, context)
            else:
                loop.default_exception_handler(context)
            return
        now = self._clock()
        if now < self._next_line_at:
            self.held_back += 1
            return
        more = f" ({self.held_back} more since the last line)" if self.held_back else ""
        self._write(
            f"fakesvc: cannot accept connections: {context.get('exception')}{more}; "
            "accepting again as descriptors free up"
        )
        self.held_back = 0
        self._next_line_at = now + self._interval_s


def install_resource_error_log(loop: asyncio.AbstractEventLoop) -> ResourceErrorLog:
    """Put the rate-limited handler in front of the loop's current exception handler."""
    handler = ResourceErrorLog(loop.get_exception_handler())
    loop.set_exception_handler(handler)
    return handler
