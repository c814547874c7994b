"""Open-loop traffic: checkouts start on schedule, whatever the earlier ones are doing.

Latency counts from the scheduled start (no coordinated omission); when the
cap on checkouts in flight is reached, an arrival is skipped and counted, so
the rate stays the rate.

A stop (SIGINT, SIGTERM) ends the schedule; checkouts in flight get a grace
to finish, and those still running after it are cut and written to the truth
as such. The exit status a run earns is decided here, once (``exit_status``).
"""

from __future__ import annotations

import asyncio
import json
import secrets
import signal
import sys
import time
from collections import Counter
from datetime import UTC, datetime
from itertools import islice
from pathlib import Path
from typing import Any, NamedTuple, TextIO
from urllib.parse import quote

import aiohttp

from fakesvc.faults.report import decode_faults, fetch_injected
from fakesvc.graph.load import load_graph
from fakesvc.graph.model import Graph, Route, fill
from fakesvc.jsonfast import dumps_str
from fakesvc.serving.stop_signals import StopEvent
from fakesvc.traffic.config import TrafficConfig
from fakesvc.traffic.plan import Checkout, plan
from fakesvc.traffic.truth import Timeouts, Verdict, judge


def _iso(epoch_s: float) -> str:
    return datetime.fromtimestamp(epoch_s, tz=UTC).isoformat()


def percentile(sorted_values: list[float], q: float) -> float | None:
    if not sorted_values:
        return None
    return round(sorted_values[min(len(sorted_values) - 1, int(q * len(sorted_values)))], 3)


def new_run_id() -> str:
    """Sortable and unique enough to tell two runs apart in one truth file or database: time + 6 hex digits."""
    return f"{datetime.now(UTC):%Y%m%dT%H%M%SZ}-{secrets.token_hex(3)}"


class Outcome(NamedTuple):
    """What one checkout saw: its answer (or the error instead), the faults injected, and when."""

    checkout: Checkout
    trace_id: str  # the id the gateway answered with (the planned one unless it chose another)
    status: int | None
    error: str | None
    faults: list[dict[str, Any]]
    latency_ms: float
    start: float  # epoch seconds
    end: float


def truth_line(
    run_id: str, outcome: Outcome, timeouts: Timeouts, *, interrupted: bool = False, graph: Graph | None = None
) -> tuple[dict[str, Any], Verdict]:
    """A checkout's truth line and its verdict; one home for the format.

    The built-in generator and the Locust file both write these, so a scorer
    reads their truth the same way.
    """
    verdict = judge(outcome.faults, timeouts, graph, outcome.checkout.entry or None)
    line: dict[str, Any] = {
        "run_id": run_id,
        "trace_id": outcome.trace_id,
        "order_id": outcome.checkout.order_id,
        "scenario": outcome.checkout.scenario,
        "entry": entry_name(graph, outcome.checkout),
        "faults": outcome.faults,
        "root_cause_service": verdict.root_cause_service,
        "root_cause_services": list(verdict.root_cause_services),
        "expected_status": verdict.expected_status,
        "status": outcome.status,
        "latency_ms": round(outcome.latency_ms, 3),
        "start": _iso(outcome.start),
        "end": _iso(outcome.end),
    }
    if outcome.error is not None:
        line["error"] = outcome.error
    if interrupted:
        line["interrupted"] = True
    return line, verdict


class Run:
    """The state of one traffic run: outcomes, latencies, the truth not yet written."""

    def __init__(self, config: TrafficConfig) -> None:
        self.config = config
        self.run_id = new_run_id()
        self.sent = 0
        self.skipped = 0
        self.completed = 0
        self.in_flight = 0
        self.outcomes: Counter[tuple[str, str]] = Counter()
        self.latencies: dict[str, list[float]] = {}
        self.mismatches = 0
        self.unexpected_errors = 0  # transport errors where the truth expected an answer
        self.cut: list[Outcome] = []  # checkouts still running when the drain grace ran out
        self.truth: list[str] = []
        self.telemetry: dict[str, Any] = {}
        self.wall_start = time.time()

    def record(self, outcome: Outcome, *, interrupted: bool = False) -> None:
        """One truth line; a checkout cut short by a stop is written too, ``interrupted``, and judged by no one."""
        status = outcome.status
        answered = "interrupted" if interrupted else str(status) if status is not None else "error"
        self.outcomes[(outcome.checkout.scenario, answered)] += 1
        self.latencies.setdefault(outcome.checkout.scenario, []).append(outcome.latency_ms)
        line, verdict = truth_line(
            self.run_id, outcome, self.config.timeouts, interrupted=interrupted, graph=self.config.graph
        )
        if not interrupted:
            self.completed += 1
            if status != verdict.expected_status:
                self.mismatches += 1
                self.unexpected_errors += outcome.error is not None
        if self.config.truth_path:
            self.truth.append(dumps_str(line))

    def all_latencies(self) -> list[float]:
        return sorted(value for values in self.latencies.values() for value in values)


async def _send(run: Run, session: aiohttp.ClientSession, checkout: Checkout, scheduled: float, offset: float) -> None:
    """One checkout; latency counts from ``scheduled`` (loop time).

    Like a service whose downstream failed it, the generator asks the gateway
    what was injected when it got no answer (a drop, its own timeout) or a
    trimmed fault header, so the truth is whole.
    """
    loop = asyncio.get_running_loop()
    status: int | None = None
    error: str | None = None
    faults: list[dict[str, Any]] = []
    complete = False
    trace_id = checkout.trace_id
    end: float | None = None
    try:
        try:
            method, url = entry_request(run.config, checkout)
            async with session.request(method, url, headers=checkout.headers()) as response:
                await response.read()
                status = response.status
                trace_id = response.headers.get("x-request-id", trace_id)
                faults, trimmed = decode_faults(response.headers)
                complete = not trimmed
        except (TimeoutError, aiohttp.ClientError) as exc:
            error = f"{type(exc).__name__}: {exc}"
        end = loop.time()
        if not complete:
            faults = await fetch_injected(session, run.config.target, trace_id) or faults
    except asyncio.CancelledError:
        cut_at = loop.time() if end is None else end
        latency_ms = (cut_at - scheduled) * 1000
        run.cut.append(
            Outcome(checkout, trace_id, status, None, faults, latency_ms, scheduled + offset, cut_at + offset)
        )
        raise
    finally:
        run.in_flight -= 1
    run.record(
        Outcome(checkout, trace_id, status, error, faults, (end - scheduled) * 1000, scheduled + offset, end + offset)
    )


def entry_route(graph: Graph | None, checkout: Checkout) -> Route:
    """The entry route a checkout is sent to (the checkout graph's ``POST /checkout/{order_id}``)."""
    routes = (graph or load_graph("checkout")).entries  # worked out once per graph, read per checkout
    return routes.get(checkout.entry) or next(iter(routes.values()))


def entry_name(graph: Graph | None, checkout: Checkout) -> str:
    return entry_route(graph, checkout).name


def entry_request(config: TrafficConfig, checkout: Checkout) -> tuple[str, str]:
    """The method and URL of a checkout: its entry route at the target."""
    route = entry_route(config.graph, checkout)
    return route.method, config.target + fill(route.path, {route.key: quote(checkout.order_id, safe="")})


async def _get_json(session: aiohttp.ClientSession, url: str) -> Any:
    try:
        async with session.get(url, timeout=aiohttp.ClientTimeout(total=2)) as response:
            return await response.json() if response.status == 200 else None
    except (TimeoutError, aiohttp.ClientError, ValueError):
        return None


async def _progress(run: Run, session: aiohttp.ClientSession, stream: TextIO, started: float) -> None:
    """Once a second: rate, outcomes, latency percentiles, the telemetry backlog; and the truth so far."""
    loop = asyncio.get_running_loop()
    while True:
        await asyncio.sleep(1.0)
        run.telemetry = await _get_json(session, f"{run.config.target}/telemetry") or run.telemetry
        await _write_truth(run)
        if not run.config.progress:
            continue
        elapsed = loop.time() - started
        values = run.all_latencies()
        outcomes = " | ".join(
            f"{scenario} "
            + " ".join(f"{status}:{n}" for (s, status), n in sorted(run.outcomes.items()) if s == scenario)
            for scenario in sorted({scenario for scenario, _ in run.outcomes})
        )
        backlog = run.telemetry.get("backlog", "n/a") if run.telemetry else "n/a"
        print(
            f"[{elapsed:5.1f}s] sent {run.sent} ({run.sent / elapsed:.1f}/s) done {run.completed} "
            f"in-flight {run.in_flight} skipped {run.skipped} [{outcomes}] "
            f"p50 {percentile(values, 0.5)} p95 {percentile(values, 0.95)} p99 {percentile(values, 0.99)} ms "
            f"telemetry backlog {backlog}",
            file=stream,
            flush=True,
        )


async def _write_truth(run: Run) -> None:
    if not run.truth or not run.config.truth_path:
        return
    lines, run.truth = run.truth, []
    await asyncio.to_thread(_append, run.config.truth_path, lines)


def _append(path: str, lines: list[str]) -> None:
    with open(path, "a", encoding="utf-8") as file:
        file.writelines(line + "\n" for line in lines)


async def run_traffic(
    config: TrafficConfig,
    *,
    progress_stream: TextIO = sys.stderr,
    stop: StopEvent | None = None,
    drain_s: float = 3.0,
) -> dict[str, Any]:
    """Send the planned checkouts on schedule; return (and write) the report.

    When ``stop`` is set, no further checkout starts; those in flight get
    ``drain_s`` to finish (then they are cancelled and written to the truth as
    interrupted), and the report, ``"interrupted": true``, covers what was sent.
    """
    if config.truth_path:
        Path(config.truth_path).write_text("")
    run = Run(config)
    print(
        f"traffic run {run.run_id}: {config.total} checkouts at {config.rate:g}/s to {config.target} "
        f"(seed {config.seed})",
        file=progress_stream,
        flush=True,
    )
    loop = asyncio.get_running_loop()
    connector = aiohttp.TCPConnector(limit=config.max_in_flight)
    timeout = aiohttp.ClientTimeout(total=config.timeouts.checkout_s)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        started = loop.time()
        offset = time.time() - started
        reporter = asyncio.ensure_future(_progress(run, session, progress_stream, started))
        tasks: set[asyncio.Task[None]] = set()
        schedule = asyncio.ensure_future(_schedule(run, session, started, offset, tasks))
        stopped = await _until_done_or_stopped(schedule, stop)
        send_window = loop.time() - started
        if tasks and not stopped:
            stopped = await _until_done_or_stopped(asyncio.ensure_future(asyncio.wait(set(tasks))), stop)
        if tasks:
            _done, cut = await asyncio.wait(tasks, timeout=drain_s)
            for task in cut:
                task.cancel()
            await asyncio.gather(*cut, return_exceptions=True)
        await _record_cut(run, session)
        reporter.cancel()
        await asyncio.gather(reporter, return_exceptions=True)
        run.telemetry = await _get_json(session, f"{config.target}/telemetry") or run.telemetry
        windows = await _get_json(session, f"{config.target}/chaos/windows") or []
    await _write_truth(run)
    signum = stop.signum if stopped and stop is not None else None
    report = _report(run, send_window, windows, stopped, signal.Signals(signum).name if signum is not None else None)
    if config.report_path:
        Path(config.report_path).write_text(json.dumps(report, indent=2))
    return report


async def _record_cut(run: Run, session: aiohttp.ClientSession) -> None:
    """Write the checkouts cut short, with what the gateway says it injected into them (it still runs)."""
    cut, run.cut = run.cut, []
    found = await asyncio.gather(*(fetch_injected(session, run.config.target, c.trace_id) for c in cut))
    for c, faults in zip(cut, found, strict=True):
        run.record(c._replace(faults=faults or c.faults), interrupted=True)


async def _schedule(
    run: Run, session: aiohttp.ClientSession, started: float, offset: float, tasks: set[asyncio.Task[None]]
) -> None:
    """Start each planned checkout at its time (open loop); their tasks go into ``tasks``."""
    config = run.config
    loop = asyncio.get_running_loop()
    interval = 1.0 / config.rate
    entries = [(route.name, route.weight) for _, route in (config.graph or load_graph("checkout")).entry_routes()]
    for checkout in islice(plan(config.mix, config.seed, entries=entries), config.total):
        scheduled = started + checkout.index * interval
        delay = scheduled - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        if run.in_flight >= config.max_in_flight:
            run.skipped += 1
            continue
        run.sent += 1
        run.in_flight += 1
        task = asyncio.ensure_future(_send(run, session, checkout, scheduled, offset))
        tasks.add(task)
        task.add_done_callback(tasks.discard)


async def _until_done_or_stopped(work: asyncio.Future[Any], stop: asyncio.Event | None) -> bool:
    """Wait for ``work`` (the schedule, then the last checkouts) to end, or cancel it when ``stop`` is set first.

    Whether it was stopped.
    """
    if stop is None:
        await work
        return False
    stopped = asyncio.ensure_future(stop.wait())
    either: list[asyncio.Future[Any]] = [work, stopped]
    try:
        await asyncio.wait(either, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopped.cancel()
        work.cancel()  # nothing once it is done; the schedule only ever waits in its sleep: no checkout half started
        await asyncio.gather(work, return_exceptions=True)
    if not work.cancelled():
        work.result()  # an error in the schedule is the run's
    return stop.is_set()


def _report(
    run: Run, send_window_s: float, windows: list[dict[str, Any]], interrupted: bool, signal_name: str | None
) -> dict[str, Any]:
    config = run.config
    values = run.all_latencies()
    by_scenario = {}
    for scenario, latencies in sorted(run.latencies.items()):
        ordered = sorted(latencies)
        by_scenario[scenario] = {
            "count": len(ordered),
            "statuses": {status: n for (s, status), n in sorted(run.outcomes.items()) if s == scenario},
            "p50_ms": percentile(ordered, 0.5),
            "p95_ms": percentile(ordered, 0.95),
            "p99_ms": percentile(ordered, 0.99),
        }
    scheduled = run.sent + run.skipped
    return {
        "run_id": run.run_id,
        "interrupted": interrupted,
        "signal": signal_name,  # the stop signal's name when interrupted by one
        "target": config.target,
        "seed": config.seed,
        "mix": config.mix,
        "rate_target": config.rate,
        # arrivals per second over the sending window: N arrivals span N-1 intervals
        "rate_achieved": round((scheduled - 1) / send_window_s, 2) if scheduled > 1 and send_window_s > 0 else None,
        "scheduled": scheduled,
        "scheduled_total": config.total,  # more than "scheduled" when a stop ended the schedule early
        "sent": run.sent,
        "completed": run.completed,
        "skipped": run.skipped,
        "errors": sum(n for (_, status), n in run.outcomes.items() if status == "error"),
        "unexpected_errors": run.unexpected_errors,
        "mismatches": run.mismatches,
        "cut_short": sum(n for (_, status), n in run.outcomes.items() if status == "interrupted"),
        "latency_ms": {
            "p50": percentile(values, 0.5),
            "p95": percentile(values, 0.95),
            "p99": percentile(values, 0.99),
            "max": round(values[-1], 3) if values else None,
        },
        "scenarios": by_scenario,
        "telemetry": run.telemetry,
        "fault_windows": windows,
        "started": _iso(run.wall_start),
        "ended": _iso(time.time()),
    }


EXIT_STATUSES = (
    "exit status of a traffic run: 0 every checkout answered as its truth expected; 1 one or more did not "
    "(the summary's last line says how many); 2 a bad setting; 130 / 143 cut short by SIGINT / SIGTERM "
    "(report and truth still written)"
)


def exit_status(report: dict[str, Any]) -> int:
    """What a run tells scripts: 128 + the signal that cut it (130, 143); else 1 if any checkout answered
    other than its truth expected (a transport error the truth did not expect included), else 0."""
    if report["interrupted"] and report["signal"] is not None:
        return 128 + signal.Signals[report["signal"]].value
    return 1 if report["mismatches"] else 0


def outcome_line(report: dict[str, Any]) -> str:
    """The summary's last line: what the exit status says, and why."""
    status = exit_status(report)
    if report["interrupted"]:
        not_started = report["scheduled_total"] - report["scheduled"]
        return (
            f"run {report['run_id']} interrupted by {report['signal'] or 'a stop'}: {report['cut_short']} checkouts "
            f"cut short, {not_started} not started; exit {status}"
        )
    if status:
        return (
            f"run {report['run_id']} FAILED: {report['mismatches']} checkouts answered other than expected "
            f"({report['unexpected_errors']} of them transport errors); exit {status}"
        )
    return f"run {report['run_id']} passed: every checkout answered as expected; exit 0"


def format_summary(report: dict[str, Any]) -> str:
    """The end-of-run table."""
    latency = report["latency_ms"]
    width = max([10, *map(len, report["scenarios"])])  # a graph's scenario names can be longer than the checkout's
    lines = [
        f"traffic to {report['target']}: {report['sent']} sent, {report['completed']} completed, "
        f"{report['skipped']} skipped, {report['errors']} transport errors, "
        f"rate {report['rate_achieved']}/s (target {report['rate_target']}/s)",
        f"{'scenario':<{width}} {'count':>7} {'statuses':<28} {'p50 ms':>9} {'p95 ms':>9} {'p99 ms':>9}",
    ]
    for scenario, row in report["scenarios"].items():
        statuses = ", ".join(f"{status}: {n}" for status, n in row["statuses"].items())
        lines.append(
            f"{scenario:<{width}} {row['count']:>7} {statuses:<28} {row['p50_ms']!s:>9} {row['p95_ms']!s:>9} {row['p99_ms']!s:>9}"
        )
    lines.append(
        f"{'all':<{width}} {report['completed']:>7} {'':<28} {latency['p50']!s:>9} {latency['p95']!s:>9} {latency['p99']!s:>9}"
    )
    lines.append(f"observed != expected status: {report['mismatches']}; fault windows: {len(report['fault_windows'])}")
    telemetry = report.get("telemetry") or {}
    if telemetry.get("remote"):
        lines.append(
            f"telemetry: sent {telemetry.get('sent')}, backlog {telemetry.get('backlog')}, "
            f"dead-lettered {telemetry.get('dead_lettered')}, dropped {telemetry.get('dropped')}"
        )
    lines.append(outcome_line(report))
    return "\n".join(lines)
