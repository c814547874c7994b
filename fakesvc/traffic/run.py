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

from fakesvc.faults.report import decode_faults
from fakesvc.graph.load import load_graph
from fakesvc.graph.model import Graph, Route, fill
from fakesvc.jsonfast import dumps_str
from fakesvc.service.hop import RUN_HEADER
from fakesvc.service.records import PROCESS
from fakesvc.serving.stop_signals import StopEvent
from fakesvc.telemetry.batcher import dead_letters_text
from fakesvc.telemetry.loop_lag import window
from fakesvc.traffic.collect import Collector
from fakesvc.traffic.config import TrafficConfig
from fakesvc.traffic.observed import CAUSES, EdgeView, Observed, observe
from fakesvc.traffic.plan import Checkout, plan
from fakesvc.traffic.truth import Timeouts, Verdict, checkout_graph, judge, tree_of
from fakesvc.truth import graph_fields


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
    timed_out: bool = False  # the generator's own wait ran out


def truth_line(
    run_id: str,
    outcome: Outcome,
    timeouts: Timeouts,
    *,
    interrupted: bool = False,
    graph: Graph | None = None,
    observed: Observed | None = None,
) -> tuple[dict[str, Any], Verdict]:
    """A checkout's truth line and its replayed verdict; one home for the format.

    With ``observed`` (the built-in generator: assembled from the hops' records)
    the root causes and ``cause`` are the observed ones, and the replay's
    ``expected_status`` stays beside them as a fidelity figure. Without (the
    Locust file), the replay of the faults its answer reported is the truth.
    """
    faults = observed.faults if observed is not None else outcome.faults
    verdict = judge(faults, timeouts, graph, outcome.checkout.entry or None)
    causes = observed.root_cause_services if observed is not None else verdict.root_cause_services
    line: dict[str, Any] = {
        "run_id": run_id,
        "trace_id": outcome.trace_id,
        "order_id": outcome.checkout.order_id,
        "scenario": outcome.checkout.scenario,
        "entry": entry_name(graph, outcome.checkout),
        "faults": faults,
        "root_cause_service": causes[0] if causes else None,
        "root_cause_services": list(causes),
        "expected_status": verdict.expected_status,
        "status": outcome.status,
        "latency_ms": round(outcome.latency_ms, 3),
        "start": _iso(outcome.start),
        "end": _iso(outcome.end),
    }
    if observed is not None:
        line["cause"] = observed.cause
        if observed.missing_hops:
            line["missing_hops"] = observed.missing_hops
        if observed.harness is not None:
            line["harness"] = observed.harness
        if observed.load is not None:
            line["load"] = observed.load
    if outcome.error is not None:
        line["error"] = outcome.error
    if interrupted:
        line["interrupted"] = True
    line.update(graph_fields(graph))  # the graph to read it with, when it is not the checkout
    return line, verdict


def observe_outcome(graph: Graph, timeouts: Timeouts, outcome: Outcome, records: list[dict[str, Any]]) -> Observed:
    """A checkout's observed truth: its hops' records read against ``graph``, with what the generator saw."""
    view = EdgeView(outcome.status, outcome.error, outcome.timed_out, outcome.latency_ms, timeouts.checkout_s * 1000)
    return observe(tree_of(graph, outcome.checkout.entry or None), records, view)


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
        self.mismatches = 0  # observed status != the replay's: the replay's fidelity, not the verdict
        self.unexpected_errors = 0  # transport errors where the replay expected an answer
        self.causes: Counter[str] = Counter()  # completed checkouts by observed cause
        self.harness_lines: list[dict[str, Any]] = []  # the first few, for the summary
        self.truth: list[str] = []
        self.truth_write: asyncio.Future[None] | None = None  # the append in its thread, if one is under way
        self.telemetry: dict[str, Any] = {}
        self.wall_start = time.time()
        self.graph = config.graph or checkout_graph(config.timeouts)  # what the records are read against

    def assemble(self, outcome: Outcome, records: list[dict[str, Any]], last_chance: bool, interrupted: bool) -> bool:
        """Assemble a checkout's observed truth from its records and record it; False to wait for missing ones."""
        observed = observe_outcome(self.graph, self.config.timeouts, outcome, records)
        if observed.cause == "incomplete" and not last_chance:
            return False
        self.record(outcome, observed, interrupted=interrupted)
        return True

    def record(self, outcome: Outcome, observed: Observed, *, interrupted: bool = False) -> None:
        """One truth line; a checkout cut short by a stop is written too, ``interrupted``, and counted in no cause."""
        status = outcome.status
        answered = "interrupted" if interrupted else str(status) if status is not None else "error"
        self.outcomes[(outcome.checkout.scenario, answered)] += 1
        self.latencies.setdefault(outcome.checkout.scenario, []).append(outcome.latency_ms)
        line, verdict = truth_line(
            self.run_id,
            outcome,
            self.config.timeouts,
            interrupted=interrupted,
            graph=self.config.graph,
            observed=observed,
        )
        if not interrupted:
            self.completed += 1
            self.causes[observed.cause] += 1
            if status != verdict.expected_status:
                self.mismatches += 1
                self.unexpected_errors += outcome.error is not None
            if observed.cause == "harness" and len(self.harness_lines) < 3:
                self.harness_lines.append(line)
        if self.config.truth_path:
            self.truth.append(dumps_str(line))

    def all_latencies(self) -> list[float]:
        return sorted(value for values in self.latencies.values() for value in values)


async def _send(
    run: Run,
    session: aiohttp.ClientSession,
    collector: Collector,
    checkout: Checkout,
    scheduled: float,
    offset: float,
) -> None:
    """One checkout; latency counts from ``scheduled`` (loop time).

    Its truth is assembled later, from the hops' records (:mod:`.collect`):
    nothing is asked of the services while it runs. Its requests carry a run
    token of their own, so records of an earlier run of the same trace id are
    never taken for its own.
    """
    loop = asyncio.get_running_loop()
    status: int | None = None
    error: str | None = None
    faults: list[dict[str, Any]] = []
    timed_out = False
    trace_id = checkout.trace_id
    token = secrets.token_hex(8)
    end: float | None = None
    try:
        try:
            method, url = entry_request(run.config, checkout)
            headers = {**checkout.headers(), RUN_HEADER: token}
            async with session.request(method, url, headers=headers) as response:
                await response.read()
                status = response.status
                trace_id = response.headers.get("x-request-id", trace_id)
                faults = decode_faults(response.headers)[0]
        except TimeoutError as exc:
            error, timed_out = f"TimeoutError: {exc}", True
        except aiohttp.ClientError as exc:
            error = f"{type(exc).__name__}: {exc}"
        end = loop.time()
    except asyncio.CancelledError:
        cut_at = loop.time() if end is None else end
        latency_ms = (cut_at - scheduled) * 1000
        cut = Outcome(checkout, trace_id, status, None, faults, latency_ms, scheduled + offset, cut_at + offset)
        collector.add(trace_id, token, lambda records, last: run.assemble(cut, records, last, interrupted=True))
        raise
    finally:
        run.in_flight -= 1
    outcome = Outcome(
        checkout, trace_id, status, error, faults, (end - scheduled) * 1000, scheduled + offset, end + offset, timed_out
    )
    collector.add(trace_id, token, lambda records, last: run.assemble(outcome, records, last, interrupted=False))


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
    """Append the lines so far, in a thread, after the append before it has ended.

    A caller cancelled while its append runs (the progress task, at the run's end)
    leaves the thread writing: the next call waits for it first, so the run's last
    call returns only once every line is in the file, each append whole and in order.
    """
    if run.truth_write is not None:
        await asyncio.shield(run.truth_write)
    if not run.truth or not run.config.truth_path:
        return
    lines, run.truth = run.truth, []
    run.truth_write = asyncio.ensure_future(asyncio.to_thread(_append, run.config.truth_path, lines))
    await asyncio.shield(run.truth_write)


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
    _start_truth(config)
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
        collector = Collector(session, config.target)
        await collector.start()
        started = loop.time()
        offset = time.time() - started
        reporter = asyncio.ensure_future(_progress(run, session, progress_stream, started))
        fetcher = asyncio.ensure_future(collector.run())
        tasks: set[asyncio.Task[None]] = set()
        schedule = asyncio.ensure_future(_schedule(run, session, collector, started, offset, tasks))
        stopped = await _until_done_or_stopped(schedule, stop)
        send_window = loop.time() - started
        if tasks and not stopped:
            stopped = await _until_done_or_stopped(asyncio.ensure_future(asyncio.wait(set(tasks))), stop)
        if tasks:
            _done, cut = await asyncio.wait(tasks, timeout=drain_s)
            for task in cut:
                task.cancel()
            await asyncio.gather(*cut, return_exceptions=True)
        fetcher.cancel()
        await asyncio.gather(fetcher, return_exceptions=True)
        await collector.drain(give_up_s=drain_s if stopped else None)
        reporter.cancel()
        await asyncio.gather(reporter, return_exceptions=True)
        run.telemetry = await _get_json(session, f"{config.target}/telemetry") or run.telemetry
        windows = await _get_json(session, f"{config.target}/chaos/windows") or []
    await _write_truth(run)
    signum = stop.signum if stopped and stop is not None else None
    report = _report(run, send_window, windows, stopped, signal.Signals(signum).name if signum is not None else None)
    report["loop_lag"] = loop_lag_by_process(collector.at_start, collector.processes)
    _write_report(config, report)
    return report


def not_started(config: TrafficConfig, signum: int) -> dict[str, Any]:
    """The report of a run a stop signal ended before its first checkout: interrupted, all zeros.

    Its truth (empty) and report are written when asked for, as a run cut later writes them.
    """
    _start_truth(config)
    report = _report(Run(config), 0.0, [], True, signal.Signals(signum).name)
    report["loop_lag"] = []
    _write_report(config, report)
    return report


def _start_truth(config: TrafficConfig) -> None:
    if config.truth_path:
        Path(config.truth_path).write_text("")


def _write_report(config: TrafficConfig, report: dict[str, Any]) -> None:
    if config.report_path:
        Path(config.report_path).write_text(json.dumps(report, indent=2))


def loop_lag_by_process(at_start: dict[str, Any], at_end: dict[str, Any]) -> list[dict[str, Any]]:
    """Each service process's loop lag over the run (its life, if not reached at the start), worst p99 first.

    The generator's own process (the supervisor's) is marked.
    """
    rows = []
    for process, found in at_end.items():
        before = at_start.get(process, {}).get("loop_lag_ms")
        lag = window(before, found.get("loop_lag_ms") or {})
        row = {"process": process, "services": found.get("services", []), **lag}
        if process == PROCESS:
            row["generator"] = True  # the supervisor: the generator shares this loop
        rows.append(row)
    return sorted(rows, key=lambda row: -(row.get("p99_ms") or 0.0))


async def _schedule(
    run: Run,
    session: aiohttp.ClientSession,
    collector: Collector,
    started: float,
    offset: float,
    tasks: set[asyncio.Task[None]],
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
        task = asyncio.ensure_future(_send(run, session, collector, checkout, scheduled, offset))
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
        # completed checkouts by observed cause: explained (healthy, fault) or not (harness, incomplete)
        "labelled": run.completed,
        "causes": {cause: run.causes[cause] for cause in CAUSES},
        "harness_examples": run.harness_lines,
        # the replay's fidelity: the share of completed checkouts whose status it predicted
        "replay_agreement": round(1 - run.mismatches / run.completed, 4) if run.completed else None,
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
    "exit status of a traffic run: 0 every checkout's outcome was explained (healthy, or by injected faults); "
    "1 one or more failed with no injected cause (the harness's) or lack hop records (the summary says how many "
    "and what to do), or telemetry signals were dropped; 2 a bad setting; 130 / 143 cut short by SIGINT / SIGTERM (report and truth still written)"
)


def exit_status(report: dict[str, Any]) -> int:
    """What a run tells scripts: 128 + the signal that cut it (130, 143); else 1 if any checkout's outcome
    is unexplained (``harness`` or ``incomplete``) or a telemetry signal was dropped, else 0. Dead letters
    and the replay's misses leave it as is."""
    if report["interrupted"] and report["signal"] is not None:
        return 128 + signal.Signals[report["signal"]].value
    return 1 if unexplained(report) or dropped_signals(report) else 0


def dropped_signals(report: dict[str, Any]) -> int:
    """Telemetry signals the run lost (lost evidence: the run fails); dead letters are the backend's refusals."""
    return int((report.get("telemetry") or {}).get("dropped") or 0)


def unexplained(report: dict[str, Any]) -> int:
    causes = report.get("causes", {})
    return int(causes.get("harness", 0)) + int(causes.get("incomplete", 0))


def harness_line(report: dict[str, Any]) -> str | None:
    """The plain line a user reads when the harness, not a fault, broke checkouts: how many, the worst lag, what to do."""
    causes = report.get("causes", {})
    harness, incomplete = causes.get("harness", 0), causes.get("incomplete", 0)
    if not harness and not incomplete:
        return None
    worst = next(iter(report.get("loop_lag") or []), None)
    if worst is None or worst.get("p99_ms") is None:
        lag = "loop lag unknown"
    else:
        where = (
            "the supervisor"
            if worst.get("generator")
            else f"process {worst['process']} ({', '.join(worst['services'])})"
        )
        lag = f"loop lag p99 {worst['p99_ms']:,.0f} ms, max {worst['max_ms']:,.0f} ms in {where}"
    parts = []
    if harness:
        parts.append(f"{harness} checkouts failed with no injected cause")
    if incomplete:
        parts.append(f"{incomplete} lack hop records (see missing_hops in the truth)")
    return (
        f"harness overloaded: {' and '.join(parts)} ({lag}); lower --rate, raise --latency-scale timeouts, "
        "or run the services in separate processes"
    )


def outcome_line(report: dict[str, Any]) -> str:
    """The summary's last line: what the exit status says, and why."""
    status = exit_status(report)
    if report["interrupted"]:
        not_started = report["scheduled_total"] - report["scheduled"]
        return (
            f"run {report['run_id']} interrupted by {report['signal'] or 'a stop'}: {report['cut_short']} checkouts "
            f"cut short, {not_started} not started; exit {status}"
        )
    causes = report["causes"]
    if status and unexplained(report):
        return (
            f"run {report['run_id']} FAILED: {unexplained(report)} checkouts not explained by injected faults "
            f"({causes['harness']} harness-caused, {causes['incomplete']} incomplete); exit {status}"
        )
    if status:
        return f"run {report['run_id']} FAILED: {dropped_signals(report)} telemetry signals dropped; exit {status}"
    return f"run {report['run_id']} passed: every checkout's outcome is explained; exit 0"


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
    causes = report["causes"]
    agreement = report["replay_agreement"]
    lines.append(
        f"labelled {report['labelled']}: healthy {causes['healthy']}, faulty {causes['fault']}, "
        f"harness-caused {causes['harness']}, incomplete {causes['incomplete']}; "
        f"replay agreement {'n/a' if agreement is None else f'{agreement:.1%}'}; "
        f"fault windows: {len(report['fault_windows'])}"
    )
    for row in report.get("loop_lag") or []:
        if row.get("samples"):
            who = "supervisor" if row.get("generator") else row["process"]
            lines.append(
                f"loop lag {who} ({', '.join(row['services'])}): p50 {row['p50_ms']} ms, "
                f"p99 {row['p99_ms']} ms, max {row['max_ms']} ms"
            )
    telemetry = report.get("telemetry") or {}
    if telemetry.get("remote"):
        lines.append(
            f"telemetry: sent {telemetry.get('sent')}, backlog {telemetry.get('backlog')}, "
            f"dead-lettered {dead_letters_text(telemetry)}, uncertain {telemetry.get('uncertain', 0)}, "
            f"dropped {telemetry.get('dropped')}"
        )
    lines.append(outcome_line(report))
    return "\n".join(lines)
