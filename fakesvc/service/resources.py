"""Each service's resources, simulated: capacity, CPU and memory, what resource faults do to them.

Root-cause methods read ``<service>_cpu`` and ``<service>_mem`` beside latency,
and RCAEval's datasets are built on faults that move them. fakesvc burns no real
CPU or memory for them: each service keeps a model (docs/faults.md, "Resources"),
the same whether the services share one process or not.

- **Capacity**: the graph's ``capacity``, requests worked on at once. Simulated
  work holds a slot; a request waiting for its calls does not (an async service).
  Beyond it, work queues, first come first served. Unset: unlimited.
- **CPU** (cores, as ``rate(container_cpu_usage_seconds_total)``): the service's
  idle use, each request's overhead and its simulated work, per second. A ``cpu``
  fault is a stressor beside it: work costs ``factor`` times more, requests keep
  ``capacity_share`` of the capacity (a service with none counts as
  :data:`UNLIMITED_CORES`), and the stressor's use fills the rest.
- **Memory** (bytes, as ``container_memory_working_set_bytes``): a base, a share
  per request in flight, a slow drift. A ``memory`` fault leaks from its window's
  start; at ``limit_mb`` the service is killed: its requests in flight fail, it
  refuses new ones for ``restart_s`` (cpu and mem read 0: nothing runs), then
  starts again from its base, leaking again while the window lasts. The window's
  end frees the leak (the fix rolled out).
- **Background requests**: a health probe and a metrics scrape, each on the
  service's own seeded period, served like any request (under a cpu fault they queue too).

Every figure is the model's state as it is: variation comes from each service's
own seeded draws (idle use, drift, footprint), never from noise added after measuring.
"""

from __future__ import annotations

import asyncio
import math
import os
import random
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from fakesvc.faults import Chaos
from fakesvc.faults.chaos import Fault
from fakesvc.faults.rules import RESOURCE_KINDS, Rule
from fakesvc.service.series import ServedSeries

UNLIMITED_CORES = 8  # the capacity a cpu fault shrinks on a service that has none
MB = 1024 * 1024
TICK_S = 0.25  # how often memory is checked against its limit while a memory fault is in force


@dataclass(frozen=True)
class Footprint:
    """What one service uses when nothing is wrong: drawn once from the run's seed and its name."""

    idle_cores: float
    base_mb: float
    request_mb: float  # held by each request in flight
    request_cpu_ms: float  # each request's overhead beside its simulated work (parsing, logging)
    probe_every_s: float
    scrape_every_s: float
    background_ms: tuple[float, float]  # a probe's or a scrape's own work

    @classmethod
    def drawn(cls, seed: int | None, service: str) -> Footprint:
        rng = random.Random(None if seed is None else f"{seed}|{service}|footprint")
        low = rng.uniform(0.2, 1.0)
        return cls(
            idle_cores=rng.uniform(0.005, 0.03),
            base_mb=rng.uniform(60.0, 240.0),
            request_mb=rng.uniform(0.1, 0.6),
            request_cpu_ms=rng.uniform(0.2, 0.8),
            probe_every_s=rng.uniform(5.0, 15.0),
            scrape_every_s=rng.uniform(10.0, 30.0),
            background_ms=(low, low + rng.uniform(0.5, 3.0)),
        )


@dataclass(frozen=True)
class Worked:
    """One piece of simulated work: how long it queued, how much longer a fault made it, and which fault."""

    queued_ms: float
    extra_ms: float
    blamed: tuple[int, Rule] | None  # the cpu or memory rule in force, None: capacity alone (load)


class Killable(Protocol):
    """A request in flight that a killed service ends (a hop)."""

    def kill(self, fault: Fault) -> None: ...


class Resources:
    """One service's capacity, CPU and memory (module doc), read by its sampler and its hops."""

    def __init__(
        self,
        chaos: Chaos,
        capacity: int | None,
        footprint: Footprint,
        rng: random.Random,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.chaos = chaos
        self.capacity = capacity
        self.footprint = footprint
        self._rng = rng
        self._clock = clock
        self._busy = 0
        self._waiters: deque[asyncio.Future[None]] = deque()
        self.in_flight: set[Killable] = set()
        self._work_ms = 0.0  # simulated work done since the last reading
        self._idle_walk = 0.0
        self._drift_mb = 0.0
        self._down_until: float | None = None
        self._leak_from: float | None = None

    # -- capacity -------------------------------------------------------------------------------

    def limit(self) -> int | None:
        """Requests worked on at once now: the capacity, less what a cpu fault's stressor takes."""
        cpu = self.chaos.active("cpu")
        if cpu is None:
            return self.capacity
        return max(1, math.floor((self.capacity or UNLIMITED_CORES) * cpu[1].capacity_share))

    async def work(self, ms: float, felt: Callable[[Worked], None]) -> None:
        """Do ``ms`` of simulated work: wait for a slot, then take ``factor`` times longer under a cpu fault.

        ``felt`` hears what the work cost beyond ``ms`` even when the request is
        cancelled meanwhile (its caller gave up while it queued: the wait is the fault's).
        """
        cpu = self.chaos.active("cpu")
        factor = cpu[1].factor if cpu is not None else 1.0
        loop = asyncio.get_running_loop()
        asked = loop.time()
        began: float | None = None
        waited = False
        try:
            waited = await self._acquire()
            began = loop.time()
            await asyncio.sleep(ms * factor / 1000)
        finally:
            now = loop.time()
            queued_ms = ((began if began is not None else now) - asked) * 1000 if waited or began is None else 0.0
            extra_ms = 0.0
            if began is not None:
                worked_ms = (now - began) * 1000
                self._work_ms += worked_ms
                self._release()
                extra_ms = max(0.0, worked_ms - ms) if factor > 1 else 0.0
            blamed = cpu if cpu is not None else (self.chaos.active("memory") if queued_ms > 0 else None)
            felt(Worked(queued_ms, extra_ms, blamed))

    async def _acquire(self) -> bool:
        """Take a slot; True when the work had to queue for it."""
        limit = self.limit()
        if limit is None or (self._busy < limit and not self._waiters):
            self._busy += 1
            return False
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            await waiter  # the releaser counted this request in
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self._release()  # woken and cancelled in the same turn: give the slot on
            else:
                self._waiters.remove(waiter)
            raise
        return True

    def _release(self) -> None:
        self._busy -= 1
        self.wake()

    def wake(self) -> None:
        """Let queued work in while there is room (after a release, or when a fault's window closed)."""
        limit = self.limit()
        while self._waiters and (limit is None or self._busy < limit):
            waiter = self._waiters.popleft()
            if not waiter.done():
                self._busy += 1
                waiter.set_result(None)

    # -- memory and restarts --------------------------------------------------------------------

    def down(self) -> bool:
        """Whether the service is restarting after a kill (it refuses connections)."""
        return self._down_until is not None and self._clock() < self._down_until

    def check_memory(self) -> None:
        """Follow a memory fault: start its leak at the window's start, kill the service at its limit."""
        now = self._clock()
        memory = self.chaos.active("memory")
        if memory is None:
            self._leak_from = None
            return
        index, rule = memory
        if self._down_until is not None and now >= self._down_until:
            self._down_until = None
        if self._leak_from is None:
            self._leak_from = now - max(0.0, self.chaos.since(index))
        if self._down_until is None and self._used_mb(now) >= rule.limit_mb:
            self._kill(index, rule, now)

    def _leaked_mb(self, now: float) -> float:
        memory = self.chaos.active("memory")
        if memory is None or self._leak_from is None:
            return 0.0
        return memory[1].leak_mb_per_s * max(0.0, now - self._leak_from)

    def _used_mb(self, now: float) -> float:
        held = self.footprint.request_mb * len(self.in_flight)
        return self.footprint.base_mb + max(0.0, self._drift_mb) + held + self._leaked_mb(now)

    def _kill(self, index: int, rule: Rule, now: float) -> None:
        self._down_until = now + rule.restart_s
        self._leak_from = self._down_until  # the new process starts clean, and leaks again
        fault = self.chaos.resource_fault(index, rule, f"killed: out of memory at {rule.limit_mb:g} MB", dropped=True)
        for request in list(self.in_flight):
            request.kill(fault)

    def refusal(self) -> Fault | None:
        """The fault a request arriving while the service restarts records (None when it is up)."""
        memory = self.chaos.active("memory")
        if memory is None or not self.down():
            return None
        index, rule = memory
        return self.chaos.resource_fault(index, rule, "refused: restarting after an out-of-memory kill", dropped=True)

    # -- readings -------------------------------------------------------------------------------

    def reading(self, interval_s: float, served: int) -> dict[str, float]:
        """``cpu`` (cores) and ``mem`` (bytes) over the interval that ends now; the work counts start again."""
        work_ms, self._work_ms = self._work_ms, 0.0
        self._idle_walk = 0.8 * self._idle_walk + 0.6 * self._rng.gauss(0.0, 1.0)
        self._drift_mb = 0.95 * self._drift_mb + self._rng.gauss(0.0, 0.5)
        if self.down():
            return {"cpu": 0.0, "mem": 0.0}
        footprint = self.footprint
        idle = max(0.0, footprint.idle_cores * (1 + 0.3 * self._idle_walk))
        cores = idle + (work_ms + served * footprint.request_cpu_ms) / (interval_s * 1000)
        stressed = self.chaos.share_in_force("cpu", interval_s)
        if stressed is not None:  # the stressor: everything the requests are not left, while its window was open
            share, rule = stressed
            whole = self.capacity or UNLIMITED_CORES
            cores = min(float(whole), cores + share * whole * (1 - rule.capacity_share))
        return {"cpu": round(cores, 4), "mem": float(round(self._used_mb(self._clock()) * MB))}


async def background(resources: Resources, series: ServedSeries, period_s: float, rng: random.Random) -> None:
    """One kind of background request (a probe, a scrape) on its period, served like any other until cancelled."""
    low, high = resources.footprint.background_ms
    await asyncio.sleep(rng.uniform(0.0, period_s))  # each service's own phase
    loop = asyncio.get_running_loop()
    while True:
        if not resources.down():  # a restarting process answers nobody, and counts nothing
            began = loop.time()
            await resources.work(rng.uniform(low, high), _ignored)
            series.served(200, (loop.time() - began) * 1000, background=True)
        await asyncio.sleep(period_s)


def _ignored(_worked: Worked) -> None:
    """A background request belongs to no checkout: what its work cost is in the series alone."""


async def watch_resources(resources: Resources) -> None:
    """Follow the resource faults: every :data:`TICK_S` while one is set (a kill lands within a tick of its
    limit; a cpu window that closed gives its capacity back to queued work), else every second."""
    while True:
        resources.check_memory()
        resources.wake()
        watched = any(rule.kind in RESOURCE_KINDS for rule in resources.chaos.rules)
        await asyncio.sleep(TICK_S if watched else 1.0)


class ProcessUse:
    """This process's real CPU (cores) and resident memory (bytes): exported where a service runs alone."""

    def __init__(self) -> None:
        self._cpu_s = time.process_time()
        self._at = time.monotonic()

    def reading(self) -> dict[str, float]:
        cpu_s, at = time.process_time(), time.monotonic()
        cores = (cpu_s - self._cpu_s) / max(at - self._at, 1e-9)
        self._cpu_s, self._at = cpu_s, at
        return {"process-cpu": round(cores, 4), "process-mem": float(_rss_bytes())}


def _rss_bytes() -> int:
    """Resident set size now (Linux's /proc), else the peak the kernel reports."""
    try:
        with open("/proc/self/statm", encoding="ascii") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
