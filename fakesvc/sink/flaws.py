"""The real ProdSentinel's flaws, played on demand: its incident race and its throughput ceiling.

A sender tested only against a well-behaved sink learns nothing about the
backend it will meet. These are opt-in (``--trace-race``, ``--pace``), and
``supervisor.py`` reads the same settings for the sink it embeds.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable
from dataclasses import dataclass

from fakesvc import settings
from fakesvc.settings import Setting
from fakesvc.sink.store import SignalStore

TRACE_RACE = Setting(
    "FAKESVC_SINK_TRACE_RACE",
    "--sink-trace-race",
    False,
    settings.switch,
    "play ProdSentinel's incident race: a trace whose first signals overlap gets 500s from then on",
)
PACE = Setting(
    "FAKESVC_SINK_PACE",
    "--sink-pace",
    None,
    settings.optional_positive_float,
    "at most this many ingests a second, the rest wait their turn (ProdSentinel: ~340)",
    shown="unlimited",
)


@dataclass(frozen=True)
class IncidentLookup:
    """ProdSentinel's incident of one signal's trace, looked up at the start of the signal's transaction.

    The insert comes at its end, a round trip later, with nothing (no lock, no
    unique index) to stop another first signal of the trace from looking up in
    between and opening one too: then every later lookup finds two (the real
    one's ``MultipleResultsFound``), for good. The longer the transaction (a
    paced sink's queue), the wider that window, as on the real one under load.
    """

    store: SignalStore
    trace_id: str
    found: int

    @classmethod
    async def start(cls, store: SignalStore, trace_id: str) -> IncidentLookup:
        return cls(store, trace_id, await store.incidents(trace_id))

    async def poisoned(self) -> bool:
        """Open the trace's incident if none was found; whether the trace already had more than one."""
        if self.found == 0:
            await self.store.open_incident(self.trace_id)
        return self.found > 1


@dataclass
class Pace:
    """At most ``per_s`` ingests a second; those beyond wait their turn, never refused.

    The real backend commits one transaction per signal and tops out near 340 a
    second whatever the concurrency. It is played as one worker taking
    ``1 / per_s`` s a signal: an ingest's slot is a period after the previous
    slot, or after now when the worker is idle.
    """

    per_s: float
    clock: Callable[[], float] = time.monotonic
    last_slot: float = -math.inf

    def next_slot(self) -> float:
        self.last_slot = max(self.clock(), self.last_slot) + 1 / self.per_s
        return self.last_slot

    async def wait_turn(self) -> None:
        await asyncio.sleep(self.next_slot() - self.clock())
