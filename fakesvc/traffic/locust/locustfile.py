"""Locust users that check out against the api-gateway and write the same truth lines as ``python -m fakesvc.traffic``.

Each process that runs users (the one process of a headless run, or each
worker of ``--master`` + ``--worker``s) follows its own plan: a seed derived
from ``--seed`` and its Locust worker index, order ids tagged ``ord-wN``. So no
two workers send the same checkout, and a seed replays the same checkouts on
each worker. Users are closed-loop: each starts its next checkout when the
last one ended (``--pace`` spaces them). Each such process writes its own
truth file, ``PREFIX-wN.jsonl``; ``cat`` merges them.

A request counts as a Locust failure when its status differs from the one its
truth line expects (a ``fail-pay`` checkout's 500 is a success), so Locust's
failure count and exit status say what the built-in generator's do.
"""

from __future__ import annotations

import logging
import secrets
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import IO, Any
from urllib.parse import quote

import gevent
from locust import FastHttpUser, constant_pacing, events, task
from locust.env import Environment
from locust.exception import StopUser
from locust.runners import STATE_CLEANUP, STATE_STOPPED, STATE_STOPPING, LocalRunner, WorkerRunner

from fakesvc.faults.report import decode_faults
from fakesvc.graph.model import Graph, fill
from fakesvc.jsonfast import dumps_str
from fakesvc.service.hop import RUN_HEADER
from fakesvc.service.records import RECORDS_PATH
from fakesvc.settings import ConfigError
from fakesvc.traffic.collect import INTERVAL_S, WAIT_S
from fakesvc.traffic.locust.options import (
    LoadOptions,
    add_load_arguments,
    load_options,
    order_prefix,
    truth_path,
    worker_seed,
)
from fakesvc.traffic.observed import Observed
from fakesvc.traffic.plan import Checkout, plan
from fakesvc.traffic.run import Outcome, entry_route, new_run_id, observe_outcome, truth_line
from fakesvc.traffic.truth import DEFAULT_TIMEOUTS, checkout_graph

_log = logging.getLogger("fakesvc.locust")
_STOPPING = (STATE_STOPPING, STATE_CLEANUP, STATE_STOPPED)


@dataclass
class _Share:
    """This process's part of the run: its plan, its truth file, the run's id and options."""

    options: LoadOptions
    run_id: str
    checkouts: Iterator[Checkout]
    truth: IO[str] | None

    def write(self, line: dict[str, Any]) -> None:
        if self.truth is not None:
            self.truth.write(dumps_str(line) + "\n")  # line-buffered: a killed worker keeps every line written

    def close(self) -> None:
        if self.truth is not None:
            self.truth.close()
            self.truth = None


_share: _Share | None = None


@events.init_command_line_parser.add_listener
def _arguments(parser: Any, **_kwargs: Any) -> None:
    add_load_arguments(parser)


@events.init.add_listener
def _check_options(environment: Environment, **_kwargs: Any) -> None:
    """Stop with one line (exit 2) on a bad flag where the flags are given; name the run for every worker."""
    options = environment.parsed_options
    if options is None or isinstance(environment.runner, WorkerRunner):
        return  # a worker gets the master's flags when the run starts
    try:
        load_options(options)
    except ConfigError as exc:
        print(f"fakesvc: {exc}", file=sys.stderr, flush=True)
        sys.exit(2)
    options.run_id = options.run_id or new_run_id()  # parsed options travel to the workers


@events.test_start.add_listener
def _start(environment: Environment, **_kwargs: Any) -> None:
    """Take this process's share of the plan and open its truth file (a master sends no checkout)."""
    global _share
    runner = environment.runner
    if not isinstance(runner, LocalRunner | WorkerRunner) or environment.parsed_options is None:
        return  # a master
    try:
        options = load_options(environment.parsed_options)
        index = runner.worker_index
        path = truth_path(options.truth_prefix, index) if options.truth_prefix is not None else None
        truth = path.open("w", encoding="utf-8", buffering=1) if path is not None else None
    except (ConfigError, OSError) as exc:  # e.g. the truth's directory exists on the master's host only
        _log.error("fakesvc: worker %d cannot run: %s", runner.worker_index, exc)
        _share = None
        environment.process_exit_code = 2
        gevent.spawn(runner.quit)
        return
    if _share is not None:
        _share.close()
    entries = [(route.name, route.weight) for _, route in options.graph.entry_routes()]
    checkouts = plan(options.mix, worker_seed(options.seed, index), prefix=order_prefix(index), entries=entries)
    _share = _Share(options, environment.parsed_options.run_id or new_run_id(), checkouts, truth)
    CheckoutUser.wait_time = constant_pacing(options.pace_s)
    _log.info("fakesvc: run %s, worker %d, truth %s", _share.run_id, index, path)


@events.test_stop.add_listener
def _stop(**_kwargs: Any) -> None:
    """Users have stopped (or were cut) by now: the truth is whole."""
    if _share is not None:
        _share.close()


class CheckoutUser(FastHttpUser):
    """One closed-loop shopper: a checkout, its truth line, the next checkout."""

    host = "http://127.0.0.1:8003"
    # The generator's own patience: a gateway slower than this is judged "no answer" by the truth, as here.
    network_timeout = connection_timeout = DEFAULT_TIMEOUTS.checkout_s
    wait_time = constant_pacing(0)  # --pace sets it when the run starts

    @task
    def checkout(self) -> None:
        share = _share
        if share is None or self.environment.runner is None or self.environment.runner.state in _STOPPING:
            # No share (this process could not start), or woken from --pace's wait just as the run stops:
            # a checkout started now would be killed mid-flight.
            raise StopUser()
        self._checkout(share, next(share.checkouts))

    def _checkout(self, share: _Share, checkout: Checkout) -> None:
        """Send one checkout, then read its hops' records and write its observed truth line.

        The line is written even when a stop cuts it (``interrupted``, with what its records say so far).
        """
        status: int | None = None
        error: str | None = None
        timed_out = False
        faults: list[dict[str, Any]] = []
        trace_id = checkout.trace_id
        token = secrets.token_hex(8)
        start = time.time()
        began = time.perf_counter()
        ended: float | None = None
        records: list[dict[str, Any]] = []
        graph = share.options.graph or checkout_graph(share.options.timeouts)

        def outcome(end: float, *, interrupted: bool = False) -> Outcome:
            latency_ms = (end - began) * 1000
            return Outcome(
                checkout,
                trace_id,
                status,
                None if interrupted else error,
                faults,
                latency_ms,
                start,
                start + latency_ms / 1000,
                timed_out,
            )

        def line(seen: Outcome, observed: Observed, *, interrupted: bool = False) -> dict[str, Any]:
            options = share.options
            return truth_line(
                share.run_id, seen, options.timeouts, interrupted=interrupted, graph=options.graph, observed=observed
            )[0]

        route = entry_route(share.options.graph, checkout)
        try:
            with self.client.request(
                route.method,
                fill(route.path, {route.key: quote(checkout.order_id, safe="")}),
                headers={**checkout.headers(), RUN_HEADER: token},
                name=route.path.replace("{", "[").replace("}", "]"),  # Locust's stats: one row per route
                catch_response=True,
            ) as response:
                if response.status_code:
                    status = response.status_code
                    headers = response.headers or {}
                    trace_id = headers.get("x-request-id", trace_id)
                    faults = decode_faults(headers)[0]
                else:
                    error = f"{type(response.error).__name__}: {response.error}"
                    timed_out = isinstance(response.error, TimeoutError)
                ended = time.perf_counter()
                seen = outcome(ended)
                observed = self._observe(graph, share, seen, token, records)
                if observed.cause in ("healthy", "fault"):
                    response.success()
                else:
                    response.failure(f"{observed.cause}: {observed.harness or observed.missing_hops}")
        except gevent.GreenletExit:  # a stop cut it short: written with what its records said, judged by no one
            cut = outcome(time.perf_counter() if ended is None else ended, interrupted=True)
            share.write(line(cut, observe_outcome(graph, share.options.timeouts, cut, records), interrupted=True))
            raise
        share.write(line(seen, observed))

    def _observe(
        self, graph: Graph, share: _Share, seen: Outcome, token: str, records: list[dict[str, Any]]
    ) -> Observed:
        """Read the checkout's records from the gateway until they are whole, or :data:`WAIT_S` has passed.

        ``records`` is filled in place, so a stop in between still writes what came.
        """
        deadline = time.monotonic() + WAIT_S
        while True:
            gevent.sleep(INTERVAL_S)  # the hops behind a failed call end a moment after the answer
            last = time.monotonic() >= deadline
            with self.client.post(
                RECORDS_PATH, json={"read": [seen.trace_id]}, name=RECORDS_PATH, catch_response=True
            ) as response:
                response.success()  # the harness's own question: not a checkout's outcome
                try:
                    found = response.json()["records"].get(seen.trace_id, []) if response.status_code == 200 else []
                except (ValueError, KeyError, TypeError, AttributeError):  # not the records' JSON
                    found = []
            records[:] = [record for record in found if record.get("run") == token]
            observed = observe_outcome(graph, share.options.timeouts, seen, records)
            if observed.cause != "incomplete" or last:
                with self.client.post(
                    RECORDS_PATH, json={"release": [seen.trace_id]}, name=RECORDS_PATH, catch_response=True
                ) as response:
                    response.success()
                return observed
