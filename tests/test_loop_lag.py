"""The event-loop lag monitor sees a stall."""

from __future__ import annotations

import asyncio
import time

from fakesvc.telemetry.loop_lag import LoopLag


async def test_a_blocked_loop_shows_up_as_lag() -> None:
    monitor = LoopLag(interval_s=0.001)
    monitor.start()
    try:
        while monitor.stats()["samples"] < 3:  # bounded: a 1 ms timer fires within milliseconds
            await asyncio.sleep(0.001)
        time.sleep(0.05)  # the stall under test: block the loop on purpose
        deadline = asyncio.get_running_loop().time() + 5
        while monitor.stats()["max_ms"] < 40:
            assert asyncio.get_running_loop().time() < deadline, "the stall was not seen"
            await asyncio.sleep(0.001)
        stats = monitor.stats()
        assert stats["samples"] >= 4 and stats["p50_ms"] < stats["max_ms"]
    finally:
        await monitor.stop()
