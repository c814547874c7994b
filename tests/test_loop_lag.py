"""The event-loop lag monitor sees a stall."""

from __future__ import annotations

import asyncio
import time

from fakesvc.telemetry.loop_lag import LoopLag, window


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


def test_a_window_between_two_snapshots_leaves_out_what_came_before() -> None:
    monitor = LoopLag()
    for at in range(100):
        monitor.add(float(at), 2.0)  # a stall long before the run
    before = monitor.life()
    for at in range(100, 300):
        monitor.add(float(at), 0.001 if at % 40 else 0.2)  # the run: 1 ms, 200 ms one time in 40
    during = window(before, monitor.life())
    assert during["samples"] == 200 and during["max_ms"] < 2000 and 190 <= during["max_ms"] <= 210
    assert 0.95 <= during["p50_ms"] <= 1.05 and during["p99_ms"] >= 190, during
    whole = window(None, monitor.life())  # not reached at the start: the whole life
    assert whole["samples"] == 300 and whole["max_ms"] == 2000.0
    assert window(monitor.life(), monitor.life()) == {"samples": 0}
    assert window({"counts": {"x": 1, "3": "many"}}, {"counts": {"3": True}, "max_ms": 1.0}) == {"samples": 0}
