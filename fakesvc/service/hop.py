"""The skeleton of one hop, shared by every service of every graph.

A request flows through it in one direction: bind the checkout -> decide and
apply faults -> run the route's script (:mod:`fakesvc.service.script`, which may call
other services) -> log, measure -> answer JSON. The graph only describes the
script; how a hop fails, what evidence an error log carries and how faults
travel back to the caller live here, once.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import random
import re
import secrets
import traceback
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import aiohttp
import structlog
from aiohttp import web
from opentelemetry import trace
from opentelemetry.trace import StatusCode

from fakesvc.config import ServiceConfig
from fakesvc.faults import Chaos, Fault
from fakesvc.faults.chaos import DELAY_KINDS
from fakesvc.faults.noise import log_noise
from fakesvc.faults.report import FAULTS_HEADER, TRIMMED_HEADER, decode_faults, encode_faults
from fakesvc.faults.rules import RESOURCE_KINDS
from fakesvc.graph.model import ENTRY_HOP, Call, Route, Service, child_hop, fill
from fakesvc.jsonfast import dumps_str, loads
from fakesvc.raising import raiser
from fakesvc.service.correlation import REQUEST_ID_HEADER, current_trace_id
from fakesvc.service.http_errors import error_response
from fakesvc.service.records import PROCESS, HopRecords
from fakesvc.service.resources import Resources, Worked
from fakesvc.service.series import ServedSeries
from fakesvc.telemetry.pipeline import Telemetry

SLOW_HOP_MS = 1000.0
LATENCY_METRIC = "request_latency"
CLIENT_CLOSED = 499  # the status a hop records when its caller gave up (nginx's "client closed request")
# An order or item id travels on in the next hop's URL: bounded so the encoded URL stays far
# below aiohttp's 8,190-byte request line (one character encodes to at most 12).
MAX_KEY_CHARS = 256
# What a log message quotes of an exception's text or of a dependency's answer: the message stays
# one readable line however long the injected text (the whole of it stays in the attributes).
MAX_QUOTE_CHARS = 300

_ERROR_CODES = {
    400: "BAD_REQUEST",
    404: "NOT_FOUND",
    408: "REQUEST_TIMEOUT",
    409: "CONFLICT",
    429: "RATE_LIMITED",
    500: "INTERNAL_ERROR",
    502: "BAD_GATEWAY",
    503: "UNAVAILABLE",
    504: "TIMEOUT",
}

_log = structlog.get_logger("fakesvc.service.hop")


def quote_text(text: str) -> str:
    """``text`` cut to :data:`MAX_QUOTE_CHARS` (with an ellipsis): what a message may quote."""
    return text if len(text) <= MAX_QUOTE_CHARS else text[: MAX_QUOTE_CHARS - 1] + "\u2026"


def describe_exception(exc: BaseException) -> str:
    """``ValueError: Payment declined by issuer``: an exception as an on-call engineer quotes it."""
    return f"{type(exc).__name__}: {quote_text(str(exc))}"


_HOW_IT_FAILED = {
    "timeout": "{service} did not answer within {detail}",
    "connection": "connection to {service} failed ({detail})",
    "status": "{service} answered {status} ({detail})",
}


class UpstreamFailure(Exception):
    """A downstream call that did not answer 2xx: a timeout, a lost connection or an error status.

    Its text names the dependency and how it failed (``inventory-service did not
    answer within 2 s``), the words a failed hop's log message goes on with.
    """

    def __init__(self, service: str, reason: str, detail: str, status: int | None = None) -> None:
        how = _HOW_IT_FAILED[reason].format(service=service, detail=quote_text(detail), status=status)
        super().__init__(how)
        self.service = service
        self.reason = reason  # "timeout" | "connection" | "status"
        self.detail = detail
        self.status = status


class HopError(Exception):
    """How a hop fails: the answer's status, an error code, and the exception behind it."""

    def __init__(
        self,
        status: int,
        detail: str,
        *,
        error_code: str,
        cause: BaseException | None = None,
        event: str | None = None,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.error_code = error_code
        self.cause = cause
        self.event = event


def error_code(service_prefix: str, status: int) -> str:
    """``INVENTORY_UNAVAILABLE`` from ``("INVENTORY", 503)``: what dashboards group errors by."""
    return f"{service_prefix}_{_ERROR_CODES.get(status, f'HTTP_{status}')}"


_UPSTREAM_CODES = {"timeout": "UPSTREAM_TIMEOUT", "connection": "UPSTREAM_UNREACHABLE", "status": "UPSTREAM_ERROR"}


def upstream_error_code(service_prefix: str, failure: UpstreamFailure) -> str:
    """``GATEWAY_UPSTREAM_TIMEOUT`` and friends: how a caller labels its downstream's failure."""
    return f"{service_prefix}_{_UPSTREAM_CODES[failure.reason]}"


@dataclass
class HopState:
    """What a running service holds for its hops (one per app): its place in the graph and its parts."""

    service: Service
    config: ServiceConfig
    telemetry: Telemetry
    chaos: Chaos
    tracer: trace.Tracer | None  # None when no span is exported
    rng: random.Random
    urls: Mapping[str, str]  # where each service this one calls listens
    records: HopRecords
    series: ServedSeries  # what its hops served, for its series (the app's sampler reads it)
    resources: Resources  # its capacity, cpu and memory, moved by its chaos's resource faults
    session: aiohttp.ClientSession | None = None
    ready: bool = False


class HopContext:
    """One request's view of its hop: the route, the key, the logger, the faults and answers seen so far."""

    __slots__ = (
        "state",
        "route",
        "request",
        "key",
        "trace_id",
        "hop",
        "run",
        "log",
        "faults",
        "faults_trimmed",
        "own_faults",
        "slow",
        "answers",
        "started",
        "work_ms",
        "applied_ms",
        "calls",
        "queued_ms",
        "task",
        "killed",
    )

    def __init__(self, state: HopState, route: Route, request: web.Request, key: str, trace_id: str) -> None:
        self.state = state
        self.route = route
        self.request = request
        self.key = key
        self.trace_id = trace_id
        self.hop = hop_of(request.headers)
        self.run = run_of(request.headers)
        self.log = _log.bind(**{route.key: key})
        self.faults: list[dict[str, Any]] = []  # this hop's and its downstream's, for the caller
        self.faults_trimmed = False  # the downstream left some out: the caller must ask /chaos/injected
        self.own_faults: list[Fault] = []  # this hop's, for /chaos/injected
        self.slow = False  # set by a step that knows it was slow (a query that hung)
        self.answers: dict[str, dict[str, Any]] = {}  # the first answer of each service called
        self.started = asyncio.get_running_loop().time()
        self.work_ms = 0.0  # the simulated work slept so far (scaled)
        self.applied_ms: list[float | None] = []  # per own fault: the delay that really passed (None: not a delay)
        self.calls: list[dict[str, Any]] = []  # how each call ended, for the hop's record
        self.queued_ms = 0.0  # waited for capacity with no resource fault to blame (load)
        self.task = asyncio.current_task()
        self.killed: Fault | None = None  # the service was killed under it (out of memory)

    @property
    def config(self) -> ServiceConfig:
        return self.state.config

    @property
    def code_prefix(self) -> str:
        return self.state.service.code_prefix

    def inject(self, *faults: Fault) -> None:
        """Note faults of this service, so the caller and the ground truth learn of them (with this hop)."""
        self.own_faults.extend(faults)
        self.applied_ms.extend(None for _ in faults)
        self.state.chaos.record(self.trace_id, self.own_faults, self.hop, self.run)
        self.state.chaos.injected_by_kind.update(fault.kind for fault in faults)
        self.add_faults([fault.truth(self.hop) for fault in faults])

    def add_faults(self, records: list[dict[str, Any]]) -> None:
        """Add fault records for the caller, each once (a shared service can be reported by several paths)."""
        for record in records:
            if record not in self.faults:
                self.faults.append(record)

    def fill(self, template: str) -> str:
        """A template of the graph with this request's key and trace id."""
        if "{" not in template:
            return template
        return fill(template, {self.route.key: self.key, "trace_id": self.trace_id})

    async def simulate(self, low_ms: float, high_ms: float) -> float:
        """Work a baseline latency drawn from [low, high] ms times the latency scale, on the service's capacity.

        What a cpu or memory fault adds to it (the wait for capacity, the slower work)
        is that fault's delay in the hop's record; a wait for capacity with no such
        fault is the hop's ``queued_ms`` (load).
        """
        delay_ms = self.state.rng.uniform(low_ms, high_ms) * self.config.latency_scale
        if delay_ms > 0:
            self.work_ms += delay_ms  # counted before: a hop cancelled in its sleep had this much to do
            await self.state.resources.work(delay_ms, self.felt)
        return delay_ms

    def felt(self, worked: Worked) -> None:
        """What the service's resources added to a piece of work: a resource fault's delay, or load."""
        if worked.blamed is None:
            self.queued_ms += worked.queued_ms
            return
        delay_ms = worked.queued_ms + worked.extra_ms
        if delay_ms <= 0:
            return
        index, rule = worked.blamed
        at = next((i for i, own in enumerate(self.own_faults) if own.kind == rule.kind and own.rule == index), None)
        if at is None:
            self.inject(self.state.chaos.resource_fault(index, rule, f"{rule.describe()}: slowed the request"))
            at = len(self.own_faults) - 1
        self.applied_ms[at] = round((self.applied_ms[at] or 0.0) + delay_ms, 3)

    def kill(self, fault: Fault) -> None:
        """The service was killed under this request: it ends with its connection cut (see the handler)."""
        if self.killed is None and self.task is not None:
            self.killed = fault
            self.task.cancel()

    async def hold(self, fault: Fault) -> None:
        """Apply an injected fault's delay, noting how much of it really passed (less when the hop is cancelled)."""
        index = max(i for i, own in enumerate(self.own_faults) if own is fault)
        loop = asyncio.get_running_loop()
        began = loop.time()
        try:
            await asyncio.sleep(fault.delay_s)
        finally:
            self.applied_ms[index] = round((loop.time() - began) * 1000, 3)

    def span(self, name: str, **attributes: Any) -> Any:
        """A child span of this hop, for work worth seeing in the trace (a query, a charge)."""
        tracer = self.state.tracer
        if tracer is None:
            return contextlib.nullcontext()
        return tracer.start_as_current_span(name, attributes=attributes)

    async def call(self, call: Call) -> dict[str, Any]:
        """Make one call of the script, forwarding the trace and the hop; raise :class:`UpstreamFailure`.

        The timeout is the graph's to the millisecond: aiohttp rounds a timeout over 5 s up to the
        next whole second unless told not to. How the call ended goes into the hop's record.
        """
        session, base_url = self.state.session, self.state.urls[call.service]
        assert session is not None, "only a service with calls calls"
        path = fill(call.path, {self.route.key: quote(self.key, safe="")})
        callee_hop = child_hop(self.hop, call)
        headers = {REQUEST_ID_HEADER: self.trace_id, HOP_HEADER: callee_hop, RUN_HEADER: self.run}
        loop = asyncio.get_running_loop()
        began = loop.time()
        seen: dict[str, Any] = {
            "hop": callee_hop,
            "service": call.service,
            "timeout_ms": round(call.timeout_s * 1000, 3),
        }
        seen["outcome"] = "error"  # unless it ends as one of the ways below
        try:
            async with session.request(
                call.method,
                base_url + path,
                headers=headers,
                timeout=aiohttp.ClientTimeout(total=call.timeout_s, ceil_threshold=math.inf),
            ) as response:
                self._merge_faults(response.headers)
                body = await response.read()
                status = response.status
            seen.update(outcome="answered", status=status)
        except TimeoutError:
            seen["outcome"] = "timeout"
            raise UpstreamFailure(call.service, "timeout", f"{call.timeout_s:g} s") from None
        except aiohttp.ClientError as exc:
            # a connection never made reached no hop; any other error may have reached one that keeps a record
            seen.update(outcome="connection", error=describe_exception(exc))
            seen["reached"] = not isinstance(exc, aiohttp.ClientConnectorError)
            raise UpstreamFailure(call.service, "connection", describe_exception(exc)) from exc
        except asyncio.CancelledError:  # this hop was cancelled while it waited (its own caller gave up)
            seen["outcome"] = "cancelled"
            raise
        finally:
            seen["waited_ms"] = round((loop.time() - began) * 1000, 3)
            seen["lag_ms"] = self.state.telemetry.loop_lag.max_since(began)
            self.calls.append(seen)
        payload = _json_object(body)
        if status >= 400:
            detail = str(payload.get("detail", f"HTTP {status}"))
            if isinstance(payload.get("error_type"), str):  # the exception behind the answer, when it says
                detail = f"{payload['error_type']}: {detail}"
            raise UpstreamFailure(call.service, "status", detail, status)
        return payload

    def _merge_faults(self, headers: Mapping[str, str]) -> None:
        faults, trimmed = decode_faults(headers)
        self.add_faults(faults)
        self.faults_trimmed = self.faults_trimmed or trimmed


HOP_HEADER = "x-fakesvc-hop"
RUN_HEADER = "x-fakesvc-run"  # one checkout's calls share it; a rerun of the same trace id gets a new one
_HOP = re.compile(r"0(\.[0-9]{1,4}){0,32}")
_RUN = re.compile(r"[0-9a-f]{1,32}")


def hop_of(headers: Mapping[str, str]) -> str:
    """Where in the checkout this request is (``0.2``: the entry's third call); the entry when unsaid or malformed."""
    value = headers.get(HOP_HEADER, ENTRY_HOP)
    return value if _HOP.fullmatch(value) else ENTRY_HOP


def decision_key(trace_id: str, hop: str) -> str:
    """What a seeded fault decision is drawn for: one request, i.e. the trace at this hop.

    A service called from two places in one checkout (a shared catalogue) draws
    for each call on its own, as a flaky dependency fails one query and not the
    next; the entry request keeps the bare trace id.
    """
    return trace_id if hop == ENTRY_HOP else f"{trace_id}@{hop}"


def run_of(headers: Mapping[str, str]) -> str:
    """The checkout run this request belongs to: the caller's, or a new one at the edge."""
    value = headers.get(RUN_HEADER, "")
    return value if _RUN.fullmatch(value) else secrets.token_hex(8)


def _json_object(body: bytes) -> dict[str, Any]:
    try:
        value = loads(body)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def exception_evidence(exc: BaseException) -> dict[str, str]:
    """What an analyser reads from an error: the type, the message and a real traceback."""
    return {
        "error_type": type(exc).__name__,
        "exception.type": f"{type(exc).__module__}.{type(exc).__qualname__}",
        "exception.message": str(exc),
        "exception.stacktrace": "".join(traceback.format_exception(exc)),
    }


def _upstream_failure(exc: BaseException | None) -> UpstreamFailure | None:
    while exc is not None and not isinstance(exc, UpstreamFailure):
        exc = exc.__cause__
    return exc


def upstream_evidence(exc: BaseException | None) -> dict[str, Any]:
    """The failed upstream service and its status, when an upstream failure caused ``exc``."""
    failure = _upstream_failure(exc)
    if failure is None:
        return {}
    return {"upstream_service": failure.service, "upstream_status": failure.status, "upstream_reason": failure.reason}


def failure_message(start: str, cause: BaseException) -> str:
    """``Payment failed: inventory-service answered 503 (ConnectionError: ...)``: what happened and where.

    The message starts with the service's own wording (dashboards match on it)
    and goes on with the evidence, because an analyser that keeps only a log's
    level and message (ProdSentinel's summariser) never sees the attributes.
    """
    failure = _upstream_failure(cause)
    return f"{start}: {failure if failure is not None else describe_exception(cause)}"


async def _apply_faults(ctx: HopContext, faults: tuple[Fault, ...]) -> bool:
    """Apply this hop's injected faults in order; return False when the connection was dropped.

    They are recorded before the first is applied (so a caller that gives up
    during a hang can still ask), but only those that will be: faults after an
    error or a drop never happen, so the truth does not list them.
    """
    ending = next((i for i, fault in enumerate(faults) if fault.ends), len(faults) - 1)
    faults = faults[: ending + 1]
    ctx.inject(*faults)
    for fault in faults:
        if fault.kind == "drop" or fault.dropped:
            _cut(ctx)
            return False
        if fault.kind in DELAY_KINDS:
            await ctx.hold(fault)
        elif fault.kind == "noise":
            log_noise(ctx.log, fault.message, fault.exception, ctx.key)
        elif fault.kind == "error":
            try:
                raiser(fault.exception)(fault.message)
            except Exception as exc:
                code = error_code(ctx.code_prefix, fault.status or 500)
                raise HopError(fault.status or 500, fault.message, error_code=code, cause=exc) from exc
    return True


def _cut(ctx: HopContext) -> None:
    """Cut the request's connection: its caller gets no answer."""
    transport = ctx.request.transport
    if transport is not None:
        transport.abort()


def _cut_by(ctx: HopContext, fault: Fault, started: float, *, served: bool = True) -> web.Response:
    """End the request at a resource fault that cut it (a kill, a refusal): recorded, connection cut."""
    ctx.inject(fault)
    _cut(ctx)
    _finish_dropped(ctx, started, served=served)
    return web.Response(status=500)  # never sent: the connection is gone


def key_problem(name: str, value: str) -> str | None:
    """Why ``value`` cannot be an order or item id (None when it can): checked once, at each hop's edge.

    ``.`` and ``..`` would be read as path steps in the next hop's URL (answered 404 there);
    control characters and unbounded lengths have no business in an id.
    """
    if value in (".", ".."):
        return f"{name} must not be '.' or '..': a URL reads them as a path step"
    if len(value) > MAX_KEY_CHARS:
        return f"{name} must be at most {MAX_KEY_CHARS} characters"
    if any(char < " " or char == "\x7f" for char in value):
        return f"{name} must not contain control characters"
    return None


def hop_handler(
    state: HopState, route: Route, step: Callable[[HopContext], Awaitable[dict[str, Any]]]
) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    """The aiohttp handler of one business route, built around its step (the route's script)."""
    prefix = state.service.code_prefix

    async def handle(request: web.Request) -> web.StreamResponse:
        started = asyncio.get_running_loop().time()
        trace_id = current_trace_id.get() or ""
        key = request.match_info[route.key]
        problem = key_problem(route.key, key)
        if problem is not None:  # the caller's mistake, not an incident: answered, not logged
            return error_response(400, problem, error_code=error_code(prefix, 400))
        ctx = HopContext(state, route, request, key, trace_id)
        state.chaos.arrived(trace_id, ctx.run)
        refused = state.resources.refusal()
        if refused is not None:  # restarting after a kill: the connection is refused, and nothing is served
            return _cut_by(ctx, refused, started, served=False)
        state.resources.in_flight.add(ctx)
        try:
            injected = state.chaos.decide(route.path, decision_key(trace_id, ctx.hop), route.method)
            if injected and not await _apply_faults(ctx, injected):
                _finish_dropped(ctx, started)
                return web.Response(status=500)  # never sent: the connection is gone
            body = await step(ctx)
        except HopError as err:
            latency_ms = _elapsed_ms(started)
            _record_failure(ctx, err, latency_ms)
            _measure(ctx, latency_ms, err.status)
            keep_record(ctx, "answered", err.status, latency_ms)
            return _with_faults(error_response(err.status, err.detail, **_error_fields(ctx, err)), ctx)
        except asyncio.CancelledError:
            if ctx.killed is not None and ctx.task is not None and ctx.task.uncancel() == 0:
                return _cut_by(ctx, ctx.killed, started)  # the service was killed under it, not its caller gone
            latency_ms = _elapsed_ms(started)
            _record_cancelled(ctx, latency_ms)
            keep_record(ctx, "cancelled", CLIENT_CLOSED, latency_ms)
            raise
        finally:
            state.resources.in_flight.discard(ctx)
        latency_ms = _elapsed_ms(started)
        body.setdefault("latency_ms", round(latency_ms, 3))
        _record_success(ctx, latency_ms)
        _measure(ctx, latency_ms, 200)
        keep_record(ctx, "answered", 200, latency_ms)
        return _with_faults(web.json_response(body, dumps=dumps_str), ctx)

    return handle


def _error_fields(ctx: HopContext, err: HopError) -> dict[str, str]:
    """The error answer's fields beside ``detail``: its own exception's type, so a caller can quote it."""
    fields = {"order_id": ctx.key, "error_code": err.error_code}
    if err.cause is not None and _upstream_failure(err.cause) is None:
        fields["error_type"] = type(err.cause).__name__
    return fields


def _elapsed_ms(started: float) -> float:
    return (asyncio.get_running_loop().time() - started) * 1000


def _with_faults(response: web.Response, ctx: HopContext) -> web.Response:
    if ctx.faults or ctx.faults_trimmed:
        value, trimmed = encode_faults(ctx.faults)
        response.headers[FAULTS_HEADER] = value
        if trimmed or ctx.faults_trimmed:
            response.headers[TRIMMED_HEADER] = f"/chaos/injected/{ctx.trace_id}"  # where the whole list is
    return response


def _record_success(ctx: HopContext, latency_ms: float) -> None:
    route = ctx.route
    if ctx.slow or latency_ms >= SLOW_HOP_MS:
        message = f"{route.completed}: {_slow_words(route)}, took {latency_ms:.0f} ms"
        ctx.log.warning(message, latency_ms=round(latency_ms, 3), error_code=route.slow_code, slow=True)
    else:
        ctx.log.info(route.completed, latency_ms=round(latency_ms, 3))


def _record_failure(ctx: HopContext, err: HopError, latency_ms: float) -> None:
    evidence: dict[str, Any] = {"error_code": err.error_code, "status": err.status}
    cause = err.cause or err
    evidence.update(exception_evidence(cause))
    evidence.update(upstream_evidence(cause))
    span = trace.get_current_span()
    span.record_exception(cause)
    span.set_status(StatusCode.ERROR, err.detail)
    message = failure_message(err.event or ctx.route.failed, cause)
    ctx.log.error(message, latency_ms=round(latency_ms, 3), **evidence)


def _slow_words(route: Route) -> str:
    """``slow query`` from ``SLOW_QUERY``: the slow code in words."""
    return route.slow_code.replace("_", " ").lower()


def _record_cancelled(ctx: HopContext, latency_ms: float) -> None:
    """The caller gave up (or the service is stopping): still leave what this hop was doing.

    The slow-dependency evidence (a hung query's WARNING, the latency metric an
    analyser thresholds) must not vanish because the caller stopped waiting.
    """
    route = ctx.route
    slow = ctx.slow or any(fault.kind in DELAY_KINDS for fault in ctx.own_faults)
    code = route.slow_code if slow else f"{ctx.code_prefix}_CANCELLED"
    trace.get_current_span().set_status(StatusCode.ERROR, "cancelled: the caller gave up")
    what = f"{_slow_words(route)}, the caller gave up" if slow else "the caller gave up"
    ctx.log.warning(
        f"{route.failed}: {what} after {latency_ms:.0f} ms",
        latency_ms=round(latency_ms, 3),
        error_code=code,
        status=CLIENT_CLOSED,
        cancelled=True,
        slow=slow,
    )
    _measure(ctx, latency_ms, CLIENT_CLOSED)


def _finish_dropped(ctx: HopContext, started: float, *, served: bool = True) -> None:
    latency_ms = _elapsed_ms(started)
    keep_record(ctx, "dropped", None, latency_ms, served=served)
    code = f"{ctx.code_prefix}_CONNECTION_RESET"
    message = f"{ctx.route.failed}: connection reset before the answer was sent"
    ctx.log.error(message, latency_ms=round(latency_ms, 3), error_code=code, status=None)
    _measure(ctx, latency_ms, 0)


def keep_record(ctx: HopContext, outcome: str, status: int | None, elapsed_ms: float, *, served: bool = True) -> None:
    """Keep what this hop did for the truth (:mod:`fakesvc.service.records`): written as it ends, read later.

    ``outcome``: ``answered`` (``status``), ``dropped`` (the connection cut, no
    status) or ``cancelled`` (the caller gave up first, status 499). A resource
    fault's delay is what it measured (``applied_ms``); ``queued_ms`` is the wait
    for capacity no fault explains. A request refused by a restarting service was
    never ``served``: its series do not count it (the process was gone).
    """
    if served:
        ctx.state.series.served(status, elapsed_ms)
    faults = [_kept(fault, ctx.hop, applied) for fault, applied in zip(ctx.own_faults, ctx.applied_ms, strict=True)]
    ctx.state.records.add(
        {
            "trace_id": ctx.trace_id,
            "run": ctx.run,
            "hop": ctx.hop,
            "service": ctx.state.service.name,
            "route": ctx.route.name,
            "outcome": outcome,
            "status": status,
            "elapsed_ms": round(elapsed_ms, 3),
            "work_ms": round(ctx.work_ms, 3),
            "queued_ms": round(ctx.queued_ms, 3),
            "faults": faults,
            "calls": ctx.calls,
            "lag_ms": ctx.state.telemetry.loop_lag.max_since(ctx.started),
            "process": PROCESS,
        }
    )


def _kept(fault: Fault, hop: str, applied_ms: float | None) -> dict[str, Any]:
    record = {**fault.truth(hop), "applied_ms": applied_ms}
    if fault.kind in RESOURCE_KINDS and not fault.dropped:
        record["delay_ms"] = applied_ms or 0.0
    return record


def _measure(ctx: HopContext, latency_ms: float, status: int) -> None:
    route = ctx.route
    ctx.state.telemetry.metric(
        ctx.state.service.name,
        LATENCY_METRIC,
        round(latency_ms, 3),
        "ms",
        {"route": route.path, "status": status, route.key: ctx.key},
    )
