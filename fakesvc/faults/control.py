"""The fault-control API: ``/chaos`` on every service, ``/chaos/services`` on the supervisor's gateway.

A change is checked whole before anything changes: who asks (:mod:`.access`),
then the body and every value in it (:mod:`.inputs`, :mod:`.rules`). A refused
change leaves the old rules in force.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from fakesvc import BUSINESS_ROUTES
from fakesvc.faults.access import check_caller
from fakesvc.faults.chaos import Chaos
from fakesvc.faults.inputs import InputError, read_json
from fakesvc.faults.rules import parse_rules, rules_by_service


def chaos_routes(
    chaos: Chaos,
    *,
    admin_token: str | None,
    downstream_windows: Callable[[], Awaitable[list[dict[str, Any]]]] | None = None,
    downstream_injected: Callable[[str], Awaitable[list[dict[str, Any]]]] | None = None,
) -> list[web.RouteDef]:
    """``GET/PUT/DELETE /chaos``, ``GET /chaos/windows`` and ``GET /chaos/injected/{trace_id}``.

    Reading needs nothing; changing rules needs a caller :func:`check_caller`
    lets through. ``/chaos/windows`` adds the windows of the services
    downstream, so the gateway answers for the chain; ``/chaos/injected`` adds
    their faults in the trace the same way.
    """
    routes = (BUSINESS_ROUTES[chaos.service],) if chaos.service in BUSINESS_ROUTES else None

    async def get_rules(_request: web.Request) -> web.Response:
        return web.json_response(chaos.snapshot())

    async def put_rules(request: web.Request) -> web.Response:
        check_caller(request, admin_token)
        try:
            payload = await read_json(request)
            if not isinstance(payload, dict) or set(payload) != {"rules"}:
                raise InputError('body: must be {"rules": [...]}')
            rules = parse_rules(payload["rules"], routes=routes)
        except InputError as exc:
            raise web.HTTPBadRequest(text=str(exc)) from None
        chaos.set_rules(rules)
        return web.json_response(chaos.snapshot())

    async def delete_rules(request: web.Request) -> web.Response:
        check_caller(request, admin_token)
        chaos.clear()
        return web.json_response(chaos.snapshot())

    async def get_windows(_request: web.Request) -> web.Response:
        windows = chaos.windows()
        if downstream_windows is not None:
            windows += await downstream_windows()
        return web.json_response(windows)

    async def get_injected(request: web.Request) -> web.Response:
        trace_id = request.match_info["trace_id"]
        faults = chaos.injected(trace_id)
        if downstream_injected is not None:
            faults += await downstream_injected(trace_id)
        return web.json_response({"trace_id": trace_id, "faults": faults})

    return [
        web.get("/chaos", get_rules),
        web.put("/chaos", put_rules),
        web.delete("/chaos", delete_rules),
        web.get("/chaos/windows", get_windows),
        web.get("/chaos/injected/{trace_id}", get_injected),
    ]


def services_routes(chaos_by_service: dict[str, Chaos], *, admin_token: str | None) -> list[web.RouteDef]:
    """``GET/PUT /chaos/services``: every service's rules in one call, for the supervisor.

    The body of a PUT is keyed by service like a rules file; every service's
    rules are validated before any is replaced, so a bad rule changes nothing.
    """

    async def get_all(_request: web.Request) -> web.Response:
        return web.json_response({name: chaos.snapshot() for name, chaos in chaos_by_service.items()})

    async def put_all(request: web.Request) -> web.Response:
        check_caller(request, admin_token)
        try:
            rules = rules_by_service(await read_json(request), "body")
            unknown = sorted(set(rules) - set(chaos_by_service))
            if unknown:
                raise InputError(f"body: {unknown[0]} does not run in this process")
        except InputError as exc:
            raise web.HTTPBadRequest(text=str(exc)) from None
        for name, service_rules in rules.items():
            chaos_by_service[name].set_rules(service_rules)
        return await get_all(request)

    return [web.get("/chaos/services", get_all), web.put("/chaos/services", put_all)]
