"""Fetch the hops' records of ended checkouts in batches, and hand each checkout its records when they are whole.

The generator never asks inside a checkout: an ended checkout waits here, and
every :data:`INTERVAL_S` one request to the edge (``POST /chaos/records``,
which asks the services behind it in turn) reads the records of every waiting
checkout and releases those already assembled. A checkout whose records are
whole is assembled at once; one still missing some is asked for again until
:data:`WAIT_S` after its end, then assembled with what came (``incomplete``,
naming the missing hops). A service that is busy only makes the answer later.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from fakesvc.service.records import MAX_TRACES_PER_REQUEST, Gathered, fetch_records

INTERVAL_S = 0.25
WAIT_S = 15.0  # after a checkout's end, how long its missing records are waited for
FETCH_TIMEOUT_S = 30.0  # one batch: the edge asks every service behind it (each within 10 s)


# Takes a checkout's records so far and whether this is its last chance; True when it took them
# (they were whole, or it was the last chance), False to have them fetched again.
Deliver = Callable[[list[dict[str, Any]], bool], bool]


@dataclass
class Waiting:
    """An ended checkout whose records are being fetched."""

    trace_id: str
    run: str  # the checkout's run token: records of an earlier run of the same trace id are not its own
    deadline: float  # loop time after which it is assembled with what came
    deliver: Deliver
    records: list[dict[str, Any]] = field(default_factory=list)


class Collector:
    """The checkouts waiting for their records, and the loop that fetches them."""

    def __init__(self, session: aiohttp.ClientSession, target: str, *, wait_s: float = WAIT_S) -> None:
        self._session = session
        self._target = target
        self.wait_s = wait_s
        self._waiting: dict[str, list[Waiting]] = {}
        self._release: list[str] = []
        self.processes: dict[str, Any] = {}  # process -> its services and loop lag, as last read
        self.at_start: dict[str, Any] = {}  # the same, read before the first checkout (see :meth:`start`)

    def add(self, trace_id: str, run: str, deliver: Deliver) -> None:
        deadline = asyncio.get_running_loop().time() + self.wait_s
        self._waiting.setdefault(trace_id, []).append(Waiting(trace_id, run, deadline, deliver))

    async def start(self) -> None:
        """Read every process's loop lag before the first checkout, so the run's own lag can be told apart."""
        await self.fetch(always=True)
        self.at_start = dict(self.processes)

    async def run(self) -> None:
        """Fetch every :data:`INTERVAL_S` until cancelled."""
        while True:
            await asyncio.sleep(INTERVAL_S)
            await self.fetch()

    async def fetch(self, *, always: bool = False) -> None:
        """One round: read the records of the waiting checkouts (in batches), deliver those that are whole or late.

        Nothing to read or release: no request, unless ``always`` (to read every process's loop lag).
        """
        trace_ids = list(self._waiting)
        if not trace_ids and not self._release and not always:
            return
        release, self._release = self._release, []
        for start in range(0, max(len(trace_ids), len(release), 1), MAX_TRACES_PER_REQUEST):
            batch = trace_ids[start : start + MAX_TRACES_PER_REQUEST]
            freed = release[start : start + MAX_TRACES_PER_REQUEST]
            gathered = await fetch_records(
                self._session, self._target, batch, freed, name="the edge", timeout_s=FETCH_TIMEOUT_S
            )
            if gathered.get("unreachable"):
                self._release.extend(freed)  # said again next round: the service that missed it still keeps them
            self._take(batch, gathered)
        now = asyncio.get_running_loop().time()
        for trace_id in trace_ids:
            for waiting in list(self._waiting.get(trace_id, ())):
                if waiting.deliver(waiting.records, now >= waiting.deadline):
                    self._done(waiting)

    def _take(self, batch: list[str], gathered: Gathered) -> None:
        for process, found in gathered.get("processes", {}).items():
            self.processes[process] = found
        found_records = gathered.get("records", {})
        for trace_id in batch:
            records = found_records.get(trace_id, [])
            for waiting in self._waiting.get(trace_id, ()):
                mine = [record for record in records if record.get("run") == waiting.run]
                known = {(r.get("service"), r.get("hop")) for r in waiting.records}
                waiting.records += [r for r in mine if (r.get("service"), r.get("hop")) not in known]

    def _done(self, waiting: Waiting) -> None:
        others = self._waiting[waiting.trace_id]
        others.remove(waiting)
        if not others:
            del self._waiting[waiting.trace_id]
            self._release.append(waiting.trace_id)

    async def drain(self, give_up_s: float | None = None) -> None:
        """Fetch until no checkout waits (each waits until its deadline at most; ``give_up_s`` shortens that)."""
        loop = asyncio.get_running_loop()
        if give_up_s is not None:
            cutoff = loop.time() + give_up_s
            for queue in self._waiting.values():
                for waiting in queue:
                    waiting.deadline = min(waiting.deadline, cutoff)
        while self._waiting:
            await self.fetch()
            if self._waiting:
                await asyncio.sleep(INTERVAL_S)
        await self.fetch(always=True)  # releases the last ones, and reads every process's loop lag at the end
