"""The fault-control API: ``/chaos`` on every service, ``/chaos/services`` on the supervisor's gateway."""

from __future__ import annotations

import hmac
import ipaddress
import json
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from fakesvc.faults.chaos import Chaos
from fakesvc.faults.rules import RuleError, parse_rules, rules_by_service


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def refusal(request: web.Request, admin_token: str | None, bind_host: str) -> web.Response | None:
    """Why a rule change is refused (401/403), or None when it may go ahead."""
    if admin_token is None:
        if _is_loopback(bind_host):
            return None
        return web.json_response(
            {"detail": "fault control is off: set FAKESVC_ADMIN_TOKEN to change rules off loopback"},
            status=403,
        )
    offered = request.headers.get("Authorization", "").removeprefix("Bearer ").strip()
    offered = offered or request.headers.get("X-Admin-Token", "")
    if hmac.compare_digest(offered.encode(), admin_token.encode()):
        return None
    return web.json_response({"detail": "a valid admin token is required"}, status=401)


async def _json_body(request: web.Request) -> Any:
    """The request's JSON body; ValueError when it is not JSON."""
    return json.loads(await request.read())


def chaos_routes(
    chaos: Chaos,
    *,
    admin_token: str | None,
    bind_host: str,
    downstream_windows: Callable[[], Awaitable[list[dict[str, Any]]]] | None = None,
    downstream_injected: Callable[[str], Awaitable[list[dict[str, Any]]]] | None = None,
) -> list[web.RouteDef]:
    """``GET/PUT/DELETE /chaos``, ``GET /chaos/windows`` and ``GET /chaos/injected/{trace_id}``.

    Changing rules needs ``Authorization: Bearer <token>`` when a token is set,
    and is refused outright off loopback without one. ``/chaos/windows`` adds
    the windows of the services downstream, so the gateway answers for the chain;
    ``/chaos/injected`` adds their faults in the trace the same way.
    """

    def refused(request: web.Request) -> web.Response | None:
        return refusal(request, admin_token, bind_host)

    async def get_rules(_request: web.Request) -> web.Response:
        return web.json_response(chaos.snapshot())

    async def put_rules(request: web.Request) -> web.Response:
        if (denied := refused(request)) is not None:
            return denied
        try:
            payload = await _json_body(request)
        except ValueError:
            return web.json_response({"detail": 'body must be JSON: {"rules": [...]}'}, status=400)
        if not isinstance(payload, dict) or "rules" not in payload:
            return web.json_response({"detail": 'body must be {"rules": [...]}'}, status=400)
        try:
            rules = parse_rules(payload["rules"])
        except RuleError as exc:
            return web.json_response({"detail": str(exc)}, status=400)
        chaos.set_rules(rules)
        return web.json_response(chaos.snapshot())

    async def delete_rules(request: web.Request) -> web.Response:
        if (denied := refused(request)) is not None:
            return denied
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
    chaos_by_service: dict[str, Chaos], *, admin_token: str | None, bind_host: str
) -> list[web.RouteDef]:
    """``GET/PUT /chaos/services``: every service's rules in one call, for the supervisor.

    The body of a PUT is keyed by service like a rules file; every service's
    rules are validated before any is replaced, so a bad rule changes nothing.
    """

    async def get_all(_request: web.Request) -> web.Response:
        return web.json_response({name: chaos.snapshot() for name, chaos in chaos_by_service.items()})

    async def put_all(request: web.Request) -> web.Response:
        if (denied := refusal(request, admin_token, bind_host)) is not None:
            return denied
        try:
            document = await _json_body(request)
        except ValueError:
            return web.json_response({"detail": "body must be JSON keyed by service"}, status=400)
        try:
            rules = rules_by_service(document, "body")
            unknown = sorted(set(rules) - set(chaos_by_service))
            if unknown:
                raise RuleError(f"body: {unknown[0]} does not run in this process")
        except RuleError as exc:
            return web.json_response({"detail": str(exc)}, status=400)
        for name, service_rules in rules.items():
            chaos_by_service[name].set_rules(service_rules)
        return await get_all(request)

    return [web.get("/chaos/services", get_all), web.put("/chaos/services", put_all)]
