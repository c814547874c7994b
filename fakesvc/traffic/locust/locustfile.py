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

from fakesvc.faults.report import LOOKUP_TIMEOUT_S, decode_faults, injected_faults, injected_path
from fakesvc.graph.model import fill
from fakesvc.jsonfast import dumps_str
from fakesvc.settings import ConfigError
from fakesvc.traffic.locust.options import (
    LoadOptions,
    add_load_arguments,
    load_options,
    order_prefix,
    truth_path,
    worker_seed,
)
from fakesvc.traffic.plan import Checkout, plan
from fakesvc.traffic.run import Outcome, entry_route, new_run_id, truth_line
from fakesvc.traffic.truth import DEFAULT_TIMEOUTS, Verdict

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
        """Send one checkout; the truth line is written even when a stop cuts it (``interrupted``)."""
        status: int | None = None
        error: str | None = None
        faults: list[dict[str, Any]] = []
        trace_id = checkout.trace_id
        start = time.time()
        began = time.perf_counter()
        ended: float | None = None

        def truth(end: float, *, interrupted: bool = False) -> tuple[dict[str, Any], Verdict]:
            latency_ms = (end - began) * 1000
            outcome = Outcome(
                checkout,
                trace_id,
                status,
                None if interrupted else error,
                faults,
                latency_ms,
                start,
                start + latency_ms / 1000,
            )
            return truth_line(
                share.run_id, outcome, share.options.timeouts, interrupted=interrupted, graph=share.options.graph
            )

        route = entry_route(share.options.graph, checkout)
        try:
            with self.client.request(
                route.method,
                fill(route.path, {route.key: quote(checkout.order_id, safe="")}),
                headers=checkout.headers(),
                name=route.path.replace("{", "[").replace("}", "]"),  # Locust's stats: one row per route
                catch_response=True,
            ) as response:
                complete = False
                if response.status_code:
                    status = response.status_code
                    headers = response.headers or {}
                    trace_id = headers.get("x-request-id", trace_id)
                    faults, trimmed = decode_faults(headers)
                    complete = not trimmed
                else:
                    error = f"{type(response.error).__name__}: {response.error}"
                ended = time.perf_counter()
                if not complete:
                    faults = self._injected(trace_id) or faults
                line, verdict = truth(ended)
                if status == verdict.expected_status:
                    response.success()
                else:
                    response.failure(f"expected {verdict.expected_status}, answered {status or error}")
        except gevent.GreenletExit:  # a stop cut it short: written with what it had seen, judged by no one
            share.write(truth(time.perf_counter() if ended is None else ended, interrupted=True)[0])
            raise
        share.write(line)

    def _injected(self, trace_id: str) -> list[dict[str, Any]] | None:
        """What the gateway says it and the services behind it injected (None: no answer in time)."""
        with gevent.Timeout(LOOKUP_TIMEOUT_S, False):
            with self.client.get(
                injected_path(trace_id), name="/chaos/injected/[trace_id]", catch_response=True
            ) as response:
                response.success()  # the harness's own question: not a checkout's outcome
                try:
                    return injected_faults(response.json()) if response.status_code == 200 else None
                except ValueError:  # not JSON
                    return None
        return None
