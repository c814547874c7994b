"""What each hop did, kept where it ran until the traffic generator fetches it: the truth's raw material.

A hop writes one record as it ends (answered, dropped, or cancelled because
its caller gave up): the faults it injected and the delay each really added,
its simulated work, the time it took, its answer, and each call it made (the
callee's hop, how it ended, how long it waited, how late the loop was
meanwhile). Nothing asks for a record inside a request: the generator reads
them in batches after its checkouts end (``POST /chaos/records``), as a
tracing backend joins spans by trace id after the fact, and a busy process
only makes the answer later, never wrong. A record stays until the reader says
it is done with it or :data:`KEEP_S` has passed; no count caps it.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

import aiohttp
import structlog
from aiohttp import web
from opentelemetry.instrumentation.utils import suppress_http_instrumentation

from fakesvc.faults.inputs import InputError, read_json
from fakesvc.jsonfast import dumps_str

KEEP_S = 15 * 60.0  # a record not fetched by then is forgotten
MAX_TRACES_PER_REQUEST = 1000
MAX_TRACE_ID_CHARS = 256
FANOUT_TIMEOUT_S = 10.0  # how long a service waits for the services behind it to send theirs
RECORDS_PATH = "/chaos/records"
PROCESS = f"{socket.gethostname()}:{os.getpid()}"  # what tells processes (and containers) apart

_log = structlog.get_logger("fakesvc.service.records")


class HopRecords:
    """One service's hop records by trace id, each kept until read and released, or :data:`KEEP_S` old."""

    def __init__(self, keep_s: float = KEEP_S, clock: Callable[[], float] = time.monotonic) -> None:
        self.keep_s = keep_s
        self._clock = clock
        self._by_trace: OrderedDict[str, tuple[float, list[dict[str, Any]]]] = OrderedDict()
        self.expired = 0  # records forgotten unread: a reader that never came, or came too late

    def add(self, record: dict[str, Any]) -> None:
        now = self._clock()
        self._expire(now)
        trace_id = record["trace_id"]
        entry = self._by_trace.pop(trace_id, None)
        records = entry[1] if entry is not None else []
        records.append(record)
        self._by_trace[trace_id] = (now, records)  # the newest record moves its trace to the end

    def read(self, trace_ids: Iterable[str]) -> dict[str, list[dict[str, Any]]]:
        """The records of each trace id that has any (they stay until :meth:`release`)."""
        self._expire(self._clock())
        found = {}
        for trace_id in trace_ids:
            entry = self._by_trace.get(trace_id)
            if entry is not None:
                found[trace_id] = list(entry[1])
        return found

    def release(self, trace_ids: Iterable[str]) -> None:
        """Forget the records of traces the reader has assembled."""
        for trace_id in trace_ids:
            self._by_trace.pop(trace_id, None)

    def __len__(self) -> int:
        return sum(len(records) for _, records in self._by_trace.values())

    def _expire(self, now: float) -> None:
        while self._by_trace:
            trace_id, (at, records) = next(iter(self._by_trace.items()))
            if now - at < self.keep_s:
                return
            del self._by_trace[trace_id]
            self.expired += len(records)


def parse_request(payload: Any) -> tuple[list[str], list[str]]:
    """``{"read": [...], "release": [...]}``: the trace ids to read and those to forget; :class:`InputError` else."""
    if not isinstance(payload, dict) or not set(payload) <= {"read", "release"}:
        raise InputError('body: must be {"read": [trace ids], "release": [trace ids]}')
    lists = []
    for key in ("read", "release"):
        value = payload.get(key, [])
        if not isinstance(value, list) or len(value) > MAX_TRACES_PER_REQUEST:
            raise InputError(f"body.{key}: must be a list of at most {MAX_TRACES_PER_REQUEST} trace ids")
        for index, trace_id in enumerate(value):
            if not isinstance(trace_id, str) or not 0 < len(trace_id) <= MAX_TRACE_ID_CHARS:
                raise InputError(f"body.{key}[{index}]: must be a trace id of 1 to {MAX_TRACE_ID_CHARS} characters")
        lists.append(value)
    return lists[0], lists[1]


Gathered = dict[str, Any]  # {"records": {trace: [record]}, "processes": {process: lag}, "unreachable": [service]}
Downstream = Callable[[list[str], list[str]], Awaitable[list[Gathered]]]


def records_route(
    service: str, records: HopRecords, loop_lag: Callable[[], dict[str, Any]], downstream: Downstream | None
) -> web.RouteDef:
    """``POST /chaos/records``: this service's records of the traces asked for, and those of every service behind it.

    Each answer also carries its process's loop lag over its life, so the
    reader learns every process's lag, not only the edge's. A service behind
    that does not answer is named in ``unreachable``; its records wait for the
    next request.
    """

    async def handle(request: web.Request) -> web.Response:
        try:
            read, release = parse_request(await read_json(request))
        except InputError as exc:
            raise web.HTTPBadRequest(text=str(exc)) from None
        gathered: Gathered = {
            "records": records.read(read),
            "processes": {PROCESS: {"services": [service], "loop_lag_ms": loop_lag()}},
            "unreachable": [],
        }
        records.release(release)
        if downstream is not None:
            for other in await downstream(read, release):
                merge(gathered, other)
        return web.json_response(gathered, dumps=dumps_str)

    return web.post(RECORDS_PATH, handle)


def merge(into: Gathered, other: Gathered) -> None:
    """Add ``other``'s records, processes and unreachable services to ``into``, each record once.

    A service behind two callers answers both: its records come twice.
    """
    for trace_id, found in other.get("records", {}).items():
        mine = into["records"].setdefault(trace_id, [])
        seen = {(record.get("service"), record.get("hop"), record.get("run")) for record in mine}
        mine.extend(
            record for record in found if (record.get("service"), record.get("hop"), record.get("run")) not in seen
        )
    for process, found in other.get("processes", {}).items():
        mine = into["processes"].setdefault(process, {**found, "services": []})
        mine["services"] = sorted({*mine["services"], *found.get("services", [])})
    into["unreachable"] = sorted({*into["unreachable"], *other.get("unreachable", [])})


async def fetch_records(
    session: aiohttp.ClientSession,
    base_url: str,
    read: list[str],
    release: list[str],
    *,
    name: str,
    timeout_s: float = FANOUT_TIMEOUT_S,
) -> Gathered:
    """Ask the service at ``base_url`` for the records of ``read`` (and to forget ``release``).

    A service that does not answer is reported ``unreachable`` (with what went
    wrong, logged once per failure), never raised: the reader asks again.
    """
    body = json.dumps({"read": read, "release": release})
    try:
        with suppress_http_instrumentation():  # the harness's own call: no span in anyone's trace
            async with session.post(
                base_url + RECORDS_PATH,
                data=body,
                headers={"Content-Type": "application/json"},
                timeout=aiohttp.ClientTimeout(total=timeout_s),
            ) as response:
                payload = await response.json() if response.status == 200 else None
        if isinstance(payload, dict) and isinstance(payload.get("records"), dict):
            return payload
        error = f"HTTP {response.status}"
    except (TimeoutError, aiohttp.ClientError, ValueError) as exc:
        error = f"{type(exc).__name__}: {exc}"
    _log.warning("Hop records unavailable, asking again later", upstream_service=name, error=error, harness=True)
    return {"records": {}, "processes": {}, "unreachable": [name]}


def downstream_records(session: Callable[[], aiohttp.ClientSession | None], urls: dict[str, str]) -> Downstream:
    """What asks every service this one calls for its records (and, through it, the services behind it)."""

    async def ask(read: list[str], release: list[str]) -> list[Gathered]:
        client = session()
        if client is None:  # not started, or stopping
            return [{"records": {}, "processes": {}, "unreachable": sorted(urls)}]
        return list(
            await asyncio.gather(*(fetch_records(client, url, read, release, name=name) for name, url in urls.items()))
        )

    return ask
