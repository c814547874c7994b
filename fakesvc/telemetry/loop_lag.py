"""Event-loop lag: how late the loop wakes a short timer. Stalls (blocking calls) show up here."""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Any

INTERVAL_S = 0.01


class LoopLag:
    """Samples the lag of a 10 ms timer, keeping the last minute of samples."""

    def __init__(self, interval_s: float = INTERVAL_S, keep: int = 6000) -> None:
        self.interval_s = interval_s
        self._lags: deque[float] = deque(maxlen=keep)
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.ensure_future(self._sample())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def _sample(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            started = loop.time()
            await asyncio.sleep(self.interval_s)
            self._lags.append(max(0.0, loop.time() - started - self.interval_s))

    def stats(self) -> dict[str, Any]:
        """p50, p99 and max lag in milliseconds over the kept window."""
        lags = sorted(self._lags)
        if not lags:
            return {"samples": 0}
        pick = lambda q: round(lags[min(len(lags) - 1, int(q * len(lags)))] * 1000, 3)  # noqa: E731
        return {"samples": len(lags), "p50_ms": pick(0.5), "p99_ms": pick(0.99), "max_ms": round(lags[-1] * 1000, 3)}
