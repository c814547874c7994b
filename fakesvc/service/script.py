"""A route's script, run for one request: sleep, log, call, parallel, scenario faults, child spans.

The graph file says what a hop does (:mod:`fakesvc.graph.model`); this is the
one interpreter of it, so every service of every graph fails, logs and
answers alike. Each step kind is one function; how a failed call becomes this
hop's answer is the call's ``errors`` mapping, a fallback (``on_error:
ignore``) logs a WARNING and goes on.
"""

from __future__ import annotations

import asyncio
import zlib
from typing import Any

from fakesvc.faults.scenarios import scenario_fault
from fakesvc.graph.model import Call, FailIf, FromCall, HangIf, KeyFlag, Log, Parallel, Route, Sleep, Span, Step
from fakesvc.raising import raiser
from fakesvc.service.hop import (
    HopContext,
    HopError,
    UpstreamFailure,
    error_code,
    upstream_error_code,
    upstream_evidence,
)


async def run_route(ctx: HopContext) -> dict[str, Any]:
    """Run the request's route script and build its answer body."""
    await run_steps(ctx, ctx.route.script)
    return response_body(ctx, ctx.route)


async def run_steps(ctx: HopContext, steps: tuple[Step, ...]) -> None:
    for step in steps:
        await run_step(ctx, step)


async def run_step(ctx: HopContext, step: Step) -> None:
    if isinstance(step, Sleep):
        await ctx.simulate(step.low_ms, step.high_ms)
    elif isinstance(step, Log):
        getattr(ctx.log, step.level)(ctx.fill(step.message))
    elif isinstance(step, Span):
        attributes = {
            name: ctx.fill(value) if isinstance(value, str) else value for name, value in step.attributes.items()
        }
        with ctx.span(step.name, **attributes):
            await run_steps(ctx, step.steps)
    elif isinstance(step, Call):
        await _call(ctx, step)
    elif isinstance(step, Parallel):
        await _parallel(ctx, step)
    elif isinstance(step, FailIf):
        _fail_if(ctx, step)
    elif isinstance(step, HangIf):
        await _hang_if(ctx, step)


async def _call(ctx: HopContext, call: Call) -> None:
    """One call; its failure fails this hop as the call's ``errors`` say, or, for a fallback, is logged and passed over."""
    try:
        ctx.answers.setdefault(call.service, await ctx.call(call))
    except UpstreamFailure as exc:
        if call.on_error == "ignore":
            ctx.log.warning(
                f"{ctx.route.completed} without {call.service}: {exc}",
                error_code=f"{ctx.code_prefix}_DEGRADED",
                degraded=True,
                **upstream_evidence(exc),
            )
            return
        failure = call.failure(exc.reason)
        code = failure.error_code or upstream_error_code(ctx.code_prefix, exc)
        words = failure.message or ctx.route.failed
        raise HopError(failure.status, f"{words}: {exc}", error_code=code, cause=exc, event=failure.message) from exc


async def _parallel(ctx: HopContext, block: Parallel) -> None:
    """Every branch runs to its end; when several failed, the first in the file decides (the truth replays that)."""
    outcomes = await asyncio.gather(*(run_step(ctx, step) for step in block.steps), return_exceptions=True)
    for outcome in outcomes:
        if isinstance(outcome, BaseException):
            raise outcome


def _fail_if(ctx: HopContext, step: FailIf) -> None:
    if step.key_contains not in ctx.key:
        return
    try:
        raiser(step.exception)(step.message)
    except Exception as exc:
        detail = f"{type(exc).__name__}: {exc}"
        ctx.inject(scenario_fault(ctx.state.service.name, step.key_contains, "error", detail, status=step.status))
        code = step.error_code or error_code(ctx.code_prefix, step.status)
        raise HopError(step.status, str(exc), error_code=code, cause=exc) from exc


async def _hang_if(ctx: HopContext, step: HangIf) -> None:
    if step.key_contains not in ctx.key:
        return
    detail = f"{step.detail} {step.seconds:g} s"
    fault = scenario_fault(ctx.state.service.name, step.key_contains, "hang", detail, delay_s=step.seconds)
    ctx.inject(fault)
    ctx.slow = True
    await ctx.hold(fault)


def response_body(ctx: HopContext, route: Route) -> dict[str, Any]:
    """The route's success body: its ``response`` with templates filled in (or ``{key: ..., "status": "OK"}``)."""
    if route.response is None:
        return {route.key: ctx.key, "status": "OK"}
    return {name: _value(ctx, value) for name, value in route.response.items()}


def _value(ctx: HopContext, value: Any) -> Any:
    if isinstance(value, str):
        return ctx.fill(value)
    if isinstance(value, FromCall):
        return ctx.answers.get(value.service, {}).get(value.field)
    if isinstance(value, KeyFlag):
        return zlib.crc32(ctx.key.encode()) % value.false_one_in != 0
    return value
