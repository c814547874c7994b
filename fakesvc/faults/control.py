"""The fault-control API: ``/chaos`` on every service, ``/chaos/services`` on the gateway.

A change is checked whole before anything changes: who asks (:mod:`.access`),
then the body and every value in it (:mod:`.inputs`, :mod:`.rules`). A refused
change leaves the old rules in force.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import aiohttp
from aiohttp import web

from fakesvc.faults import fanout
from fakesvc.faults.access import check_caller
from fakesvc.faults.chaos import Chaos
from fakesvc.faults.inputs import InputError, read_json
from fakesvc.faults.rules import Routes, parse_rules, rules_by_service
from fakesvc.graph.model import Graph


def chaos_routes(
    chaos: Chaos,
    *,
    routes: Routes | None = None,
    admin_token: str | None,
    downstream_windows: Callable[[], Awaitable[list[dict[str, Any]]]] | None = None,
    downstream_injected: Callable[[str], Awaitable[list[dict[str, Any]]]] | None = None,
) -> list[web.RouteDef]:
    """``GET/PUT/DELETE /chaos``, ``GET /chaos/windows`` and ``GET /chaos/injected/{trace_id}``.

    Reading needs nothing; changing rules needs a caller :func:`check_caller`
    lets through; a rule may name only one of ``routes`` (the service's
    business routes, when known). ``/chaos/windows`` adds the windows of the
    services downstream, so the edge answers for the graph; ``/chaos/injected``
    adds their faults in the trace the same way.
    """

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


def services_routes(
    chaos_by_service: dict[str, Chaos],
    *,
    admin_token: str | None,
    remote: Mapping[str, str] | None = None,
    graph: Graph | None = None,
) -> list[web.RouteDef]:
    """``GET/PUT /chaos/services``: every service's rules in one call, served by the edge (the gateway).

    The body of a PUT is keyed by service like a rules file; every service's
    rules are validated before any is replaced, so a bad rule changes nothing.
    Services in this process are changed in place; those in ``remote`` (name ->
    base URL, e.g. other containers) through their ``/chaos`` with the admin
    token, before the local ones. A remote that refuses is a 502 naming it and
    the services already changed.
    """
    remote = dict(remote or {})

    async def get_all(_request: web.Request) -> web.Response:
        snapshots = {name: chaos.snapshot() for name, chaos in chaos_by_service.items()}
        if remote:
            async with aiohttp.ClientSession() as session:
                try:
                    for name, url in remote.items():
                        snapshots[name] = await fanout.get_rules(session, name, url)
                except fanout.RemoteError as exc:
                    raise web.HTTPBadGateway(text=str(exc)) from None
        return web.json_response(snapshots)

    async def put_all(request: web.Request) -> web.Response:
        check_caller(request, admin_token)
        try:
            rules = rules_by_service(await read_json(request), "body", graph)
            unknown = sorted(set(rules) - set(chaos_by_service) - set(remote))
            if unknown:
                raise InputError(f"body: {unknown[0]} does not run in this process")
        except InputError as exc:
            raise web.HTTPBadRequest(text=str(exc)) from None
        changed: list[str] = []
        async with aiohttp.ClientSession() as session:
            for name in (name for name in rules if name in remote):
                try:
                    await fanout.put_rules(session, name, remote[name], rules[name], admin_token)
                except fanout.RemoteError as exc:
                    raise web.HTTPBadGateway(text=f"{exc} (already changed: {', '.join(changed) or 'none'})") from None
                changed.append(name)
        for name, service_rules in rules.items():
            if name in chaos_by_service:
                chaos_by_service[name].set_rules(service_rules)
        return await get_all(request)

    return [web.get("/chaos/services", get_all), web.put("/chaos/services", put_all)]
