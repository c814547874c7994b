"""Seeded fault decisions: which rules fire for one request, and what a service injected lately.

With a seed, a decision is a pure function of (seed, service, rule, request
key), so the same seed and the same requests give the same faults whatever
the arrival order or the concurrency.

A rule whose window has ``start_log`` / ``end_log`` has them logged when the
window opens and closes (:mod:`.markers`): by a timer on the running loop, so
they appear without traffic, and, should a request be first, by
:meth:`Chaos.decide` before it decides, so a window's first fault never comes
before its marker.
"""

from __future__ import annotations

import asyncio
import hashlib
import math
import random
import time
from collections import Counter, OrderedDict, deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from fakesvc.faults.markers import Marker, log_marker, markers_for, window_trace_id
from fakesvc.faults.rules import RESOURCE_KINDS, Rule
from fakesvc.graph.model import ENTRY_HOP

INJECTED_TRACES = 10_000
PAST_WINDOWS = 1_000  # windows of replaced rules (always-on too) kept for /chaos/windows, oldest forgotten first
DELAY_KINDS = ("latency", "hang", "loss", *RESOURCE_KINDS)  # what a delay of theirs holds a request for
ENDING_KINDS = ("error", "drop")  # a fault after one of these never happens (nor after one that ``dropped``)
LOSS_CUT_SHARE = 0.5  # of the calls a loss rule takes, those cut at the connection; the rest answer late


@dataclass(frozen=True)
class Fault:
    """What one request gets from one rule (or from a scenario, ``rule=-1``)."""

    service: str
    kind: str
    rule: int
    status: int | None
    message: str
    exception: str
    delay_s: float
    dropped: bool = False  # a loss or a killed service cut the connection: the request got no answer

    @property
    def ends(self) -> bool:
        """Whether the request ends here: an answered error, or a connection cut."""
        return self.kind in ENDING_KINDS or self.dropped

    def truth(self, hop: str = ENTRY_HOP) -> dict[str, Any]:
        """The ground-truth record: structured fields to compute with, and a human ``detail`` to read.

        ``status`` is the answer an ``error`` gives, ``delay_ms`` the time a
        ``latency`` or ``hang`` adds (null for the other kinds), ``hop`` where
        in the checkout's calls the request was (``0.1``: the entry's second
        call): the truth is computed from these, never parsed back from ``detail``.
        """
        delay_ms = round(self.delay_s * 1000, 3) if self.kind in DELAY_KINDS else None
        if self.rule < 0:
            detail = self.message
        elif self.kind == "error":
            detail = f"error {self.status} {self.exception}: {self.message} (rule {self.rule})"
        elif delay_ms is not None:
            detail = f"{self.kind} {delay_ms:.0f} ms (rule {self.rule})"
        elif self.kind == "noise":
            detail = f"noise {self.exception}: {self.message} (rule {self.rule})"
        elif self.kind in RESOURCE_KINDS:
            detail = f"{self.message} (rule {self.rule})"
        else:
            detail = f"connection dropped (rule {self.rule})"
        if self.kind == "loss":
            detail = f"loss: {'connection cut' if self.dropped else f'{delay_ms:.0f} ms late'} (rule {self.rule})"
        status = self.status if self.kind == "error" else None
        record = {
            "service": self.service,
            "kind": self.kind,
            "detail": detail,
            "status": status,
            "delay_ms": None if self.kind in RESOURCE_KINDS or self.dropped else delay_ms,
            "hop": hop,
        }
        if self.kind in (*RESOURCE_KINDS, "loss"):
            record["dropped"] = self.dropped  # a resource fault's delay is what it measured (the hop's record)
        return record


def _unit(seed: int, service: str, index: int, key: str, salt: str) -> float:
    """A uniform number in [0, 1) that depends only on its inputs."""
    digest = hashlib.blake2b(f"{seed}|{service}|{index}|{key}|{salt}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


class Chaos:
    """One service's fault rules, its seeded decisions, and what it injected lately."""

    def __init__(
        self,
        service: str,
        rules: tuple[Rule, ...] = (),
        *,
        seed: int | None = None,
        hang_s: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
        on_marker: Callable[[Marker], None] = log_marker,
    ) -> None:
        self.service = service
        self.seed = seed
        self.hang_s = hang_s
        self._clock = clock
        self._wall_clock = wall_clock
        self._on_marker = on_marker
        self._timers: list[asyncio.TimerHandle] = []
        self._random = random.Random()
        # trace -> (the checkout run it was last seen in, hop -> records)
        self._injected: OrderedDict[str, tuple[str, dict[str, list[dict[str, Any]]]]] = OrderedDict()
        self.injected_by_kind: Counter[str] = Counter()  # every fault applied, for /metrics
        self._rules: tuple[Rule, ...] = ()
        self._past: deque[dict[str, Any]] = deque(maxlen=PAST_WINDOWS)  # windows that opened, of rules since replaced
        self.set_rules(rules)

    @property
    def rules(self) -> tuple[Rule, ...]:
        return self._rules

    def set_rules(self, rules: Iterable[Rule]) -> None:
        """Replace the rules; schedules count from now. Markers not yet logged are forgotten with the old rules.

        A window of the old rules that had opened is kept, ending when it was
        replaced if it had not closed yet: the faults it injected happened.
        """
        self._keep_opened_windows(self._clock())
        self._rules = tuple(rules)
        self._set_at = self._clock()
        self._set_at_wall = self._wall_clock()
        self._marker_traces = {
            index: window_trace_id(self.seed, self.service, index)
            for index, rule in enumerate(self._rules)
            if rule.start_log is not None or rule.end_log is not None
        }
        self._markers = markers_for(self.service, self._rules, self._marker_traces)
        self._announced = 0
        self._arm_timers()
        self._announce(self._set_at)

    def _arm_timers(self) -> None:
        """One loop timer per marker, so a window opens and closes in the logs even without traffic.

        Without a running loop (rules read before the services start, a test's
        fake clock) there are no timers: :meth:`decide` still logs the markers.
        """
        for timer in self._timers:
            timer.cancel()
        self._timers = []
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        self._timers = [loop.call_later(0, self._on_timer, position) for position in range(len(self._markers))]

    def _on_timer(self, position: int) -> None:
        """Log the markers due, or wait until marker ``position`` is (a loop timer may also fire a hair early)."""
        remaining = self._markers[position].at_s - (self._clock() - self._set_at)
        if remaining > 0:
            self._timers.append(asyncio.get_running_loop().call_later(remaining, self._on_timer, position))
            return
        self._announce(self._clock())

    def _announce(self, now: float) -> None:
        """Log the markers due at ``now`` not logged yet, in order (due as :meth:`_active` counts time)."""
        elapsed = now - self._set_at
        while self._announced < len(self._markers) and self._markers[self._announced].at_s <= elapsed:
            marker = self._markers[self._announced]
            self._announced += 1
            self._on_marker(marker)

    def clear(self) -> None:
        self.set_rules(())

    def _active(self, rule: Rule, now: float) -> bool:
        elapsed = now - self._set_at
        if elapsed < rule.start_s:
            return False
        return rule.duration_s is None or elapsed < rule.start_s + rule.duration_s

    def _draw(self, index: int, key: str, salt: str) -> float:
        if self.seed is None:
            return self._random.random()
        return _unit(self.seed, self.service, index, key, salt)

    def decide(self, route: str, key: str, method: str | None = None) -> tuple[Fault, ...]:
        """The faults to inject into one ``method`` request on ``route`` identified by ``key``."""
        if not self._rules:
            return ()
        now = self._clock()
        if self._announced < len(self._markers):
            self._announce(now)
        faults = []
        for index, rule in enumerate(self._rules):
            if rule.kind in RESOURCE_KINDS:  # the service's, not the request's: see :meth:`active`
                continue
            if rule.route is not None and rule.route != route:
                continue
            if rule.method is not None and rule.method != method:
                continue
            if not self._active(rule, now):
                continue
            if rule.probability < 1.0 and self._draw(index, key, "p") >= rule.probability:
                continue
            faults.append(self._fault(index, rule, key))
        return tuple(faults)

    def _fault(self, index: int, rule: Rule, key: str) -> Fault:
        delay_s = 0.0
        if rule.kind == "latency":
            low, high = rule.latency_ms
            delay_s = (low + (high - low) * self._draw(index, key, "latency")) / 1000
        elif rule.kind == "hang":
            delay_s = self.hang_s if rule.hang_s is None else rule.hang_s
        elif rule.kind == "loss":
            if self._draw(index, key, "cut") < LOSS_CUT_SHARE:
                return Fault(self.service, rule.kind, index, None, rule.message, rule.exception, 0.0, dropped=True)
            delay_s = rule.delay_ms / 1000
        status = rule.status if rule.kind == "error" else None
        return Fault(self.service, rule.kind, index, status, rule.message, rule.exception, delay_s)

    def active(self, kind: str) -> tuple[int, Rule] | None:
        """The first rule of ``kind`` in force now (a resource fault holds the whole service), with its index."""
        now = self._clock()
        if self._announced < len(self._markers):
            self._announce(now)
        return next(
            ((index, rule) for index, rule in enumerate(self._rules) if rule.kind == kind and self._active(rule, now)),
            None,
        )

    def share_in_force(self, kind: str, seconds: float) -> tuple[float, Rule] | None:
        """How much of the last ``seconds`` a rule of ``kind`` was in force (0..1, the most of any), and that rule.

        A reading over an interval a window opened or closed in counts the window's part only.
        """
        now = self._clock() - self._set_at
        found: tuple[float, Rule] | None = None
        for rule in self._rules:
            if rule.kind != kind:
                continue
            ends = math.inf if rule.duration_s is None else rule.start_s + rule.duration_s
            share = max(0.0, min(now, ends) - max(now - seconds, rule.start_s)) / seconds if seconds > 0 else 0.0
            if share > 0 and (found is None or share > found[0]):
                found = (min(1.0, share), rule)
        return found

    def since(self, index: int) -> float:
        """How long rule ``index``'s window has been open (seconds; negative before it opens)."""
        return self._clock() - self._set_at - self._rules[index].start_s

    def resource_fault(self, index: int, rule: Rule, what: str, *, dropped: bool = False) -> Fault:
        """The fault a request records when a resource fault touched it: ``what`` it did, in words."""
        return Fault(self.service, rule.kind, index, None, what, rule.exception, 0.0, dropped=dropped)

    def arrived(self, trace_id: str, run: str) -> None:
        """A request of ``trace_id`` reached this service in checkout ``run``: forget an older run of that trace.

        The same seed sends the same trace ids again; what an earlier run
        injected must not be reported for the new one, even at hops where the
        new run injects nothing.
        """
        entry = self._injected.get(trace_id)
        if entry is not None and entry[0] != run:
            del self._injected[trace_id]

    def record(self, trace_id: str, faults: Iterable[Fault], hop: str = ENTRY_HOP, run: str = "") -> None:
        """Remember what this service injected into a trace at one hop of checkout ``run``.

        A service called from several places in one checkout (a shared cache)
        keeps each hop's faults. Bounded, oldest trace forgotten first.
        """
        entry = self._injected.get(trace_id)
        if entry is None or entry[0] != run:
            entry = self._injected[trace_id] = (run, {})
        entry[1][hop] = [fault.truth(hop) for fault in faults]
        self._injected.move_to_end(trace_id)
        if len(self._injected) > INJECTED_TRACES:
            self._injected.popitem(last=False)

    def injected(self, trace_id: str) -> list[dict[str, Any]]:
        entry = self._injected.get(trace_id)
        return [] if entry is None else [record for records in entry[1].values() for record in records]

    def _keep_opened_windows(self, now: float) -> None:
        """Remember the windows of the rules in force that opened by ``now`` (always-on ones did), before they go."""
        if not self._rules:
            return
        elapsed = now - self._set_at
        for index, rule in enumerate(self._rules):
            if rule.start_s <= elapsed:
                ends = elapsed if rule.duration_s is None else min(elapsed, rule.start_s + rule.duration_s)
                window = self._window(index, rule, ends)
                window["replaced"] = _iso(self._set_at_wall + elapsed)
                self._past.append(window)

    @staticmethod
    def _scheduled(rule: Rule) -> bool:
        return bool(rule.start_s) or rule.duration_s is not None

    def _window(self, index: int, rule: Rule, ends_s: float | None) -> dict[str, Any]:
        """Rule ``index``'s window, from its start to ``ends_s`` (seconds after the rules were set; None: open).

        The window names its service and carries the rule's own fields as
        written (``probability``, ``route``, ``status``, ``latency_ms``...);
        ``always_on`` marks a rule with no schedule, in force from when it was
        set until it was replaced.
        """
        window: dict[str, Any] = {"service": self.service, "rule": index, "kind": rule.kind, "detail": rule.describe()}
        window.update(rule.to_json())
        window.update(
            start=_iso(self._set_at_wall + rule.start_s),
            end=None if ends_s is None else _iso(self._set_at_wall + ends_s),
            always_on=not self._scheduled(rule),
        )
        if index in self._marker_traces:
            window.update(start_log=rule.start_log, end_log=rule.end_log, trace_id=self._marker_traces[index])
        return window

    def windows(self) -> list[dict[str, Any]]:
        """Every window, so an incident's start and end can be scored, even if its rule was replaced mid-run.

        First those that opened under rules since replaced (``replaced`` says
        when; a window cut short ends then; the last :data:`PAST_WINDOWS`),
        then each rule in force: a scheduled one with its absolute schedule,
        an always-on one from when it was set, ``end`` null.
        """
        out = list(self._past)
        for index, rule in enumerate(self._rules):
            ends = None if rule.duration_s is None else rule.start_s + rule.duration_s
            out.append(self._window(index, rule, ends))
        return out

    def snapshot(self) -> dict[str, Any]:
        now = self._clock()
        return {
            "service": self.service,
            "seed": self.seed,
            "rules": [rule.to_json() for rule in self._rules],
            "active": [self._active(rule, now) for rule in self._rules],
            "windows": self.windows(),
        }


def _iso(epoch_s: float) -> str:
    return datetime.fromtimestamp(epoch_s, tz=UTC).isoformat()
