"""How a process learns it must stop: SIGINT or SIGTERM, on POSIX and on Windows alike.

POSIX event loops take signal handlers (``loop.add_signal_handler``); Windows'
loops raise ``NotImplementedError`` there, so the fallback is ``signal.signal``
with a handler that sets the event through ``loop.call_soon_threadsafe`` (it
runs between bytecodes, outside the loop). A Ctrl-C that lands before the
handlers are installed or after they are removed still raises
``KeyboardInterrupt`` out of ``asyncio.run``: the entry points catch it.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Callable, Iterator
from functools import partial
from types import FrameType

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class StopEvent(asyncio.Event):
    """Set by a stop signal, remembering the first one: a run it cut exits 128 + its number (130, 143)."""

    signum: int | None = None

    def set_by(self, signum: int) -> None:
        if self.signum is None:
            self.signum = signum
        self.set()


@contextlib.contextmanager
def stop_on_signals() -> Iterator[StopEvent]:
    """An event set by the first SIGINT or SIGTERM while the block runs; the previous handlers come back after."""
    stop = StopEvent()
    loop = asyncio.get_running_loop()
    restore: list[Callable[[], object]] = []
    try:
        for signum in STOP_SIGNALS:
            try:
                loop.add_signal_handler(signum, stop.set_by, signum)
                restore.append(partial(loop.remove_signal_handler, signum))
            except NotImplementedError:  # Windows: the Proactor (and selector) loops have no signal handlers
                previous = signal.signal(signum, _setter(loop, stop)) or signal.SIG_DFL
                restore.append(partial(signal.signal, signum, previous))
        yield stop
    finally:
        for undo in reversed(restore):
            undo()


def _setter(loop: asyncio.AbstractEventLoop, stop: StopEvent) -> Callable[[int, FrameType | None], None]:
    def handler(signum: int, _frame: FrameType | None) -> None:
        loop.call_soon_threadsafe(stop.set_by, signum)

    return handler
