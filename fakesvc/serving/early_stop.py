"""A stop signal that lands before the event loop's own handlers: kept, not fatal.

``supervisor.py`` installs :class:`EarlyStop` before its heavy imports. Until
:func:`fakesvc.serving.stop_signals.stop_on_signals` takes SIGINT and SIGTERM
over, a signal is only noted (the first one), so a run stopped while it starts
still writes its report and truth and exits 128 + the signal (130, 143),
instead of dying by SIGTERM's default action with nothing written.
"""

from __future__ import annotations

import signal
from types import FrameType

from fakesvc.serving.stop_signals import STOP_SIGNALS


class EarlyStop:
    """The first stop signal received while installed (None: none yet)."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self._previous: dict[int, signal._HANDLER] = {}

    def install(self) -> EarlyStop:
        for signum in STOP_SIGNALS:
            self._previous[signum] = signal.signal(signum, self._note)
        return self

    def release(self) -> None:
        """The handlers before :meth:`install` come back (a serving-only run has no report to write)."""
        for signum, previous in self._previous.items():
            signal.signal(signum, previous)
        self._previous.clear()

    def _note(self, signum: int, _frame: FrameType | None) -> None:
        if self.signum is None:
            self.signum = signum
