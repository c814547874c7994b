"""``python -m fakesvc.telemetry.outbox DIR --send URL``: deliver what waits for URL, and nothing else.

Signals left by a run against one backend stay in the outbox when a later run
uses another; this sends them to the backend they were written for, with the
batcher's own guarantees (adoption, retries, dead letters), then stops.
"""

from __future__ import annotations

import asyncio

from fakesvc.console import say
from fakesvc.telemetry.batcher import Batcher, BatcherConfig, format_summary

IDLE_GIVE_UP_S = 30.0  # no signal left the backlog for this long: stop, what is left stays


async def _send(directory: str, url: str) -> int:
    batcher = Batcher(BatcherConfig(prodsentinel_url=url, spill_dir=directory))
    await batcher.start()
    try:
        last = -1
        while batcher.ledger.backlog and batcher.ledger.backlog != last:
            last = batcher.ledger.backlog
            await batcher.flush(IDLE_GIVE_UP_S)
    finally:
        summary = await batcher.close(deadline=0)
    say(format_summary(summary))
    return 0 if not summary["backlog"] else 1


def send_backlog(directory: str, url: str) -> int:
    """Deliver the signals of ``directory`` written for ``url`` (checked by the caller); exit 0 when none is left."""
    return asyncio.run(_send(directory, url))
