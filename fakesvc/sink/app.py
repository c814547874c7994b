"""The sink's HTTP face: ProdSentinel's ingestion routes, query routes, statistics and faults."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import structlog
from aiohttp import web
from aiohttp.typedefs import Handler

from fakesvc.faults.access import check_caller
from fakesvc.faults.inputs import InputError, read_json
from fakesvc.jsonfast import dumps_str, loads
from fakesvc.service.http_errors import json_errors, quiet_parser_errors
from fakesvc.sink.faults import FaultState, SinkFaults, parse_faults
from fakesvc.sink.flaws import IncidentLookup, Pace
from fakesvc.sink.query import parse_signal_query
from fakesvc.sink.store import SignalStore
from fakesvc.sink.validation import validate

ENDPOINTS = {"/ingest/logs": "log", "/ingest/traces": "trace", "/ingest/metrics": "metric"}
MAX_SIGNAL_BYTES = 1024 * 1024


@dataclass(frozen=True)
class SinkConfig:
    host: str = "127.0.0.1"
    port: int = 8000
    db_path: str = "fakesvc-signals.db"
    faults: SinkFaults = field(default_factory=SinkFaults)
    duplicate_status: int = 202  # 500 mimics the real backend: an error, and the connection dropped
    admin_token: str | None = None  # FAKESVC_ADMIN_TOKEN: guards /sink/faults as it guards /chaos
    trace_race: bool = False  # FAKESVC_SINK_TRACE_RACE: ProdSentinel's incident race, and its duplicate answer
    pace: float | None = None  # FAKESVC_SINK_PACE: at most this many ingests a second (None: no bound)


@dataclass
class SinkState:
    config: SinkConfig
    store: SignalStore
    faults: FaultState
    pace: Pace | None = None
    counts: Counter[str] = field(default_factory=Counter)
    started: float = field(default_factory=time.monotonic)


STATE = web.AppKey("sink_state", SinkState)
_log = structlog.get_logger("fakesvc.sink")


def _json(body: object, status: int = 200) -> web.Response:
    return web.json_response(body, status=status, dumps=dumps_str)


def _error(status: int, detail: object) -> web.Response:
    return _json({"detail": detail}, status)


def _drop(request: web.Request, state: SinkState) -> web.Response:
    """Cut the connection without an answer, as a backend that is down does."""
    state.counts["dropped_outage"] += 1
    if request.transport is not None:
        request.transport.abort()
    return web.Response(status=503)  # never sent: the connection is gone


async def _faulted(request: web.Request, state: SinkState) -> web.StreamResponse | None:
    """Apply the sink's own faults to an ingestion request: drop it, delay it, or fail it."""
    if state.faults.in_outage():
        return _drop(request, state)
    faults = state.faults.faults
    if faults.latency_ms:
        await asyncio.sleep(faults.latency_ms / 1000)
    if state.faults.error():
        state.counts["errors_injected"] += 1
        response = _json({"detail": "Injected fault"}, faults.error_status)
        if faults.retry_after_s is not None:
            response.headers["Retry-After"] = f"{faults.retry_after_s:g}"
        return response
    return None


def _hang_up(request: web.Request) -> web.Response:
    """ProdSentinel's answer to an exception: a 500, then the socket closed *without* ``Connection: close``.

    A client already reusing the keep-alive connection for its next request gets
    a reset. (The response's ``force_close()`` would announce the close with that
    header; the real server does not. Closing the connection's handler instead
    lets this answer be written, then shuts the socket, and takes no request
    pipelined behind it.)
    """
    request.protocol.close()
    return _error(500, "Internal server error")


def _duplicate(request: web.Request, config: SinkConfig) -> web.Response | None:
    """The answer to a repeated signal_id, or None when it is accepted again."""
    if config.trace_race:
        return _hang_up(request)
    if config.duplicate_status == 202:
        return None
    response = _error(config.duplicate_status, "Internal server error")
    response.force_close()
    return response


async def ingest(request: web.Request) -> web.StreamResponse:
    state = request.app[STATE]
    signal_type = ENDPOINTS[request.path]
    if (faulted := await _faulted(request, state)) is not None:
        return faulted
    raw = await request.read()
    try:
        body = loads(raw)
    except (ValueError, RecursionError) as exc:  # RecursionError: nested deeper than the parser goes
        state.counts["rejected"] += 1
        msg = "JSON nested too deeply" if isinstance(exc, RecursionError) else "JSON decode error"
        return _json({"detail": [{"type": "json_invalid", "loc": ["body"], "msg": msg, "input": {}}]}, 422)
    problems = validate(signal_type, body)
    if problems:
        state.counts["rejected"] += 1
        return _json({"detail": problems}, 422)
    incident = await IncidentLookup.start(state.store, body["trace_id"]) if state.config.trace_race else None
    if state.pace is not None:
        await state.pace.wait_turn()  # the transaction's time: the lookup above may be stale by its end
    if incident is not None and await incident.poisoned():
        state.counts["refused_poisoned"] += 1
        return _hang_up(request)
    stored = await state.store.insert(
        (body["signal_id"], signal_type, body["trace_id"], body["service_name"], body["timestamp"], raw.decode())
    )
    if not stored:
        state.counts["duplicates"] += 1
        if (refused := _duplicate(request, state.config)) is not None:
            return refused
    else:
        state.counts[f"accepted_{signal_type}"] += 1
    return _json({"status": "accepted"}, 202)


async def health(request: web.Request) -> web.StreamResponse:
    state = request.app[STATE]
    if state.faults.in_outage():
        return _drop(request, state)
    return _json({"status": "ok"})


async def query_signals(request: web.Request) -> web.Response:
    """ProdSentinel's ``GET /query/signals``: a page of signals, newest first, and the total."""
    query = parse_signal_query({name: request.query.getall(name)[-1] for name in request.query})  # last wins
    if isinstance(query, list):
        return _json({"detail": query}, 422)
    items, total = await request.app[STATE].store.query(query)
    return _json({"items": items, "total": total, "limit": query.limit, "offset": query.offset})


async def query_trace(request: web.Request) -> web.Response:
    """ProdSentinel's ``GET /query/traces/{trace_id}``: the trace's signals, oldest first."""
    return _json(await request.app[STATE].store.trace(request.match_info["trace_id"]))


async def stats(request: web.Request) -> web.Response:
    state = request.app[STATE]
    uptime = time.monotonic() - state.started
    accepted = {kind: state.counts[f"accepted_{kind}"] for kind in ("log", "trace", "metric")}
    return _json(
        {
            "accepted": accepted,
            "accepted_total": sum(accepted.values()),
            "duplicates": state.counts["duplicates"],
            "rejected": state.counts["rejected"],
            "errors_injected": state.counts["errors_injected"],
            "dropped_outage": state.counts["dropped_outage"],
            "client_disconnects": state.counts["client_disconnects"],
            "poisoned_traces": len(await state.store.poisoned()),
            "refused_poisoned": state.counts["refused_poisoned"],
            "stored": await state.store.counts(),
            "uptime_s": round(uptime, 3),
            "accepted_per_s": round(sum(accepted.values()) / uptime, 1) if uptime else 0.0,
            "db": state.config.db_path,
        }
    )


async def poisoned(request: web.Request) -> web.Response:
    """``GET /sink/poisoned``: the traces the incident race poisoned (``--trace-race``), for a bench to set aside."""
    return _json({"trace_ids": await request.app[STATE].store.poisoned()})


async def get_faults(request: web.Request) -> web.Response:
    return _json(request.app[STATE].faults.faults.to_json())


async def put_faults(request: web.Request) -> web.Response:
    state = request.app[STATE]
    check_caller(request, state.config.admin_token)
    try:
        faults = parse_faults(await read_json(request))
    except InputError as exc:
        return _error(400, str(exc))
    state.faults.set(faults)
    return _json(faults.to_json())


async def delete_faults(request: web.Request) -> web.Response:
    state = request.app[STATE]
    check_caller(request, state.config.admin_token)
    state.faults.set(SinkFaults())
    return _json(SinkFaults().to_json())


@web.middleware
async def client_disconnects(request: web.Request, handler: Handler) -> web.StreamResponse:
    """A client that hangs up mid-request (a sender's watchdog did) is routine, not an error.

    Reading the body of a request whose connection is gone raises
    ``ConnectionResetError``; without this, the error middleware would log it
    as an unhandled ERROR with a traceback, into the stdout an analyser reads.
    """
    try:
        return await handler(request)
    except ConnectionResetError:
        request.app[STATE].counts["client_disconnects"] += 1
        _log.debug("Client disconnected before the answer", path=request.path)
        return web.Response(status=499)  # never sent: the connection is gone


def create_app(config: SinkConfig) -> web.Application:
    """The sink application; its SQLite store opens and closes with it."""
    quiet_parser_errors()
    app = web.Application(middlewares=[json_errors(_error), client_disconnects], client_max_size=MAX_SIGNAL_BYTES)
    pace = None if config.pace is None else Pace(config.pace)
    state = SinkState(config, SignalStore(config.db_path), FaultState(config.faults), pace)
    app[STATE] = state
    for path in ENDPOINTS:
        app.router.add_post(path, ingest)
    app.router.add_get("/ingest/health", health)
    app.router.add_get("/query/signals", query_signals)
    app.router.add_get("/query/traces/{trace_id}", query_trace)
    app.router.add_get("/stats", stats)
    app.router.add_get("/sink/poisoned", poisoned)
    app.router.add_get("/sink/faults", get_faults)
    app.router.add_put("/sink/faults", put_faults)
    app.router.add_delete("/sink/faults", delete_faults)

    async def storage(_app: web.Application) -> AsyncIterator[None]:
        await state.store.open()
        yield
        await state.store.close()

    app.cleanup_ctx.append(storage)
    return app


@dataclass
class SinkServer:
    """A sink running in this event loop."""

    runner: web.AppRunner
    url: str

    async def stop(self) -> None:
        await self.runner.cleanup()


async def start_sink(config: SinkConfig) -> SinkServer:
    """Serve the sink in the running loop (port 0 picks a free port; ``url`` says which)."""
    runner = web.AppRunner(create_app(config), access_log=None, shutdown_timeout=2.0)
    await runner.setup()
    try:
        await web.TCPSite(runner, config.host, config.port).start()  # no SO_REUSEADDR: on Windows it shares ports
    except BaseException:
        await runner.cleanup()
        raise
    host, port = runner.addresses[0][:2]
    return SinkServer(runner, f"http://{host}:{port}")
