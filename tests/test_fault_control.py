"""Fault control at the HTTP edge: who may change faults, and what a change may hold.

The services' ``/chaos`` and ``/chaos/services`` and the sink's ``/sink/faults``
share one check of the caller and one reader of the body, so every case runs
against every route that changes faults. A refused change must leave the old
faults in force and the read routes answering.
"""

from __future__ import annotations

import asyncio
import io
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from aiohttp.typedefs import Handler

from fakesvc import gateway
from fakesvc.faults import Chaos, ChaosConfig, parse_rules, services_routes
from fakesvc.faults.access import is_loopback
from fakesvc.service.app import HOP_STATE, MAX_BODY_BYTES
from fakesvc.serving.runner import RunningServices
from fakesvc.sink import SinkConfig, SinkFaults, create_app
from fakesvc.sink.app import MAX_SIGNAL_BYTES
from fakesvc.telemetry.logs import configure_logging
from supervisor import supervise
from tests.conftest import FAST, recording_telemetry
from tests.telemetry_fixtures import free_port, remote_telemetry

REMOTE = "X-Test-Remote"
TOKEN = "s3cret"


@web.middleware
async def as_remote(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Test-only: the caller seems to be at ``X-Test-Remote`` (``request.clone`` is aiohttp's public way)."""
    remote = request.headers.get(REMOTE)
    return await handler(request if remote is None else request.clone(remote=remote))


def service_app(token: str | None) -> web.Application:
    """A real gateway app with the supervisor's ``/chaos/services``; inventory starts with one rule."""
    app = gateway.create_app(FAST, recording_telemetry(), admin_token=token)
    inventory = Chaos("inventory-service", parse_rules([{"kind": "latency", "latency_ms": 5}]))
    app[HOP_STATE].chaos.set_rules(parse_rules([{"kind": "drop", "probability": 0.5}]))
    app.router.add_routes(
        services_routes({"api-gateway": app[HOP_STATE].chaos, "inventory-service": inventory}, admin_token=token)
    )
    app.middlewares.insert(0, as_remote)
    return app


def sink_app(token: str | None) -> web.Application:
    app = create_app(SinkConfig(db_path=":memory:", faults=SinkFaults(error_rate=0.25), admin_token=token))
    app.middlewares.insert(0, as_remote)
    return app


APPS = {"service": service_app, "sink": sink_app}
READ = {"service": "/chaos/services", "sink": "/sink/faults"}


@dataclass(frozen=True)
class Change:
    app: str
    method: str
    path: str
    body: Any = None

    def __str__(self) -> str:
        return f"{self.method} {self.path}"


CHANGES = [
    Change("service", "PUT", "/chaos", {"rules": [{"kind": "hang", "hang_s": 1}]}),
    Change("service", "DELETE", "/chaos"),
    Change("service", "PUT", "/chaos/services", {"inventory-service": []}),
    Change("sink", "PUT", "/sink/faults", {"error_rate": 0.5}),
    Change("sink", "DELETE", "/sink/faults"),
]


async def client_for(aiohttp_client: Any, app: str, token: str | None = None) -> TestClient:
    return await aiohttp_client(APPS[app](token))


async def state(client: TestClient, app: str) -> Any:
    response = await client.get(READ[app])
    assert response.status == 200
    body = await response.json()
    if app == "service":  # what a change may alter; "active" and "windows" follow from the rules
        return {name: snapshot["rules"] for name, snapshot in body.items()}
    return body


async def send(client: TestClient, change: Change, headers: dict[str, str] | None = None) -> Any:
    return await client.request(change.method, change.path, json=change.body, headers=headers)


@pytest.mark.parametrize("change", CHANGES, ids=str)
async def test_a_loopback_caller_without_a_proxy_may_change_faults(aiohttp_client: Any, change: Change) -> None:
    client = await client_for(aiohttp_client, change.app)
    before = await state(client, change.app)
    assert (await send(client, change)).status == 200
    assert await state(client, change.app) != before


@pytest.mark.parametrize("change", CHANGES, ids=str)
@pytest.mark.parametrize(
    ("headers", "reason"),
    [
        ({"Forwarded": "for=203.0.113.9"}, "proxy header Forwarded present"),
        ({"X-Forwarded-For": "203.0.113.9"}, "proxy header X-Forwarded-For present"),
        ({"Via": "1.1 tunnel"}, "proxy header Via present"),
        ({REMOTE: "203.0.113.9"}, "remote 203.0.113.9 is not loopback"),
        ({REMOTE: "10.0.0.2", "Authorization": f"Bearer {TOKEN}"}, "remote 10.0.0.2 is not loopback"),
    ],
    ids=["forwarded", "x-forwarded-for", "via", "remote", "token-unset"],
)
async def test_without_a_token_a_proxied_or_remote_caller_is_refused_and_nothing_changes(
    aiohttp_client: Any, change: Change, headers: dict[str, str], reason: str
) -> None:
    client = await client_for(aiohttp_client, change.app)
    before = await state(client, change.app)
    response = await send(client, change, headers)
    assert response.status == 403 and reason in (await response.json())["detail"]
    assert await state(client, change.app) == before


@pytest.mark.parametrize("change", CHANGES, ids=str)
async def test_with_a_token_every_caller_needs_it_in_any_case_of_bearer(aiohttp_client: Any, change: Change) -> None:
    client = await client_for(aiohttp_client, change.app, token=TOKEN)
    before = await state(client, change.app)
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Basic {TOKEN}"}, {"X-Admin-Token": ""}):
        assert (await send(client, change, headers)).status == 401
    assert await state(client, change.app) == before
    for headers in (
        {"Authorization": f"bearer {TOKEN}"},
        {"Authorization": f"BEARER  {TOKEN} ", REMOTE: "203.0.113.9", "X-Forwarded-For": "203.0.113.9"},
        {"X-Admin-Token": TOKEN},
    ):
        assert (await send(client, change, headers)).status == 200


@pytest.mark.parametrize("app", ["service", "sink"])
async def test_an_undecodable_authorization_header_is_a_401_without_an_error_log(
    aiohttp_client: Any, app: str, caplog: pytest.LogCaptureFixture
) -> None:
    stream = io.StringIO()
    configure_logging(stream)
    client = await client_for(aiohttp_client, app, token=TOKEN)
    path = "/chaos" if app == "service" else "/sink/faults"
    reader, writer = await asyncio.open_connection(client.server.host, client.server.port)
    writer.write(
        f"DELETE {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nAuthorization: Bearer ".encode()
        + b"\xff\xfe\r\n\r\n"
    )
    head = await reader.readline()
    writer.close()
    assert head.split()[1] == b"401"
    assert '"ERROR"' not in stream.getvalue() and "Traceback" not in stream.getvalue()
    assert not [record for record in caplog.records if record.levelno >= logging.ERROR]


@pytest.mark.parametrize(
    ("remote", "loopback"),
    [("127.0.0.1", True), ("127.8.9.10", True), ("::1", True), ("::ffff:127.0.0.1", True)]
    + [("10.0.0.1", False), ("::ffff:10.0.0.1", False), ("fe80::1%eth0", False), ("", False), (None, False)],
)
def test_loopback_is_decided_from_the_address(remote: str | None, loopback: bool) -> None:
    assert is_loopback(remote) is loopback


BAD_NUMBERS = ("NaN", "Infinity", "-Infinity", "1e309", "1e300", "-1", "true", "10" + "0" * 40)


def service_rule(key: str, value: str) -> tuple[str, str, str]:
    kind = {"latency_ms": "latency", "hang_s": "hang", "status": "error"}.get(key, "drop")
    return "/chaos", f'{{"rules": [{{"kind": "{kind}", "{key}": {value}}}]}}', f"rules[0].{key}"


# (app, path, raw body, the key the answer must name)
BAD_BODIES = (
    [
        ("service",) + service_rule(key, value)
        for key in ("probability", "latency_ms", "hang_s")
        for value in BAD_NUMBERS
    ]
    + [("service",) + service_rule(key, value) for key in ("start_s", "duration_s") for value in BAD_NUMBERS]
    + [("service",) + service_rule("status", value) for value in ("NaN", "true", "200", "500.5", "1e309")]
    + [
        ("service", "/chaos", '{"rules": [{"kind": "latency", "latency_ms": [NaN, 5]}]}', "rules[0].latency_ms[0]"),
        ("service", "/chaos", '{"rules": [{"kind": "latency", "latency_ms": [5, 1e309]}]}', "rules[0].latency_ms[1]"),
        ("service", "/chaos", '{"rules": [{"kind": "error", "message": "%s"}]}' % ("x" * 1025), "rules[0].message"),
        ("service", "/chaos", '{"rules": [{"kind": "error", "exception": "%s"}]}' % ("E" * 65), "rules[0].exception"),
        (  # a 400 that names the routes the service does serve
            "service",
            "/chaos",
            '{"rules": [{"kind": "drop", "route": "/nope"}]}',
            "rules[0].route: the service serves no route '/nope' (use /",
        ),
        ("service", "/chaos", json.dumps({"rules": [{"kind": "drop"}] * 101}), "rules: at most 100"),
        ("service", "/chaos", '{"rules": [], "extra": NaN}', 'body: must be {"rules"'),
        (
            "service",
            "/chaos/services",
            '{"inventory-service": [{"kind": "hang", "hang_s": Infinity}]}',
            "body[inventory-service][0].hang_s",
        ),
        (
            "service",
            "/chaos/services",
            '{"inventory-service": [{"kind": "drop", "route": "/checkout/{order_id}"}]}',
            "body[inventory-service][0].route",
        ),
    ]
    + [
        ("sink", "/sink/faults", f'{{"{key}": {value}}}', key)
        for key in ("latency_ms", "error_rate")
        for value in BAD_NUMBERS
    ]
    + [("sink", "/sink/faults", f'{{"retry_after_s": {value}}}', "retry_after_s") for value in BAD_NUMBERS]
    + [("sink", "/sink/faults", f'{{"error_status": {value}}}', "error_status") for value in ("NaN", "true", "200")]
    + [("sink", "/sink/faults", f'{{"seed": {value}}}', "seed") for value in ("NaN", "1.5", "1" + "0" * 30)]
    + [
        ("sink", "/sink/faults", '{"outages": [{"start_s": NaN, "duration_s": 1}]}', "outages[0].start_s"),
        ("sink", "/sink/faults", '{"outages": [{"start_s": 0, "duration_s": 1e300}]}', "outages[0].duration_s"),
        ("sink", "/sink/faults", json.dumps({"outages": [{"start_s": 0, "duration_s": 1}] * 101}), "outages"),
    ]
)


@pytest.mark.parametrize(("app", "path", "body", "key"), BAD_BODIES)
async def test_a_bad_value_is_a_400_naming_its_key_and_nothing_changes(
    aiohttp_client: Any, app: str, path: str, body: str, key: str
) -> None:
    client = await client_for(aiohttp_client, app)
    before = await state(client, app)
    response = await client.put(path, data=body, headers={"Content-Type": "application/json"})
    assert response.status == 400
    assert (await response.json())["detail"].startswith(key)
    assert await state(client, app) == before  # the old faults stay, and reading them still works
    if app == "service":
        assert (await client.get("/chaos")).status == 200 and (await client.get("/chaos/windows")).status == 200


@pytest.mark.parametrize("path", ["/chaos", "/chaos/services", "/sink/faults"])
async def test_deep_nesting_is_a_400_and_a_body_too_large_a_json_413(aiohttp_client: Any, path: str) -> None:
    app = "sink" if path.startswith("/sink") else "service"
    client = await client_for(aiohttp_client, app)
    response = await client.put(path, data="[" * 30_000 + "]" * 30_000)
    assert response.status == 400 and "nested too deeply" in (await response.json())["detail"]
    limit = MAX_SIGNAL_BYTES if app == "sink" else MAX_BODY_BYTES
    response = await client.put(path, data=b" " * (limit + 1))
    assert response.status == 413 and response.content_type == "application/json"
    assert (await response.json())["detail"]


async def test_under_the_supervisor_one_token_guards_the_services_and_the_embedded_sink(tmp_path: Path) -> None:
    sink_url = f"http://127.0.0.1:{free_port()}"
    statuses: dict[str, list[int]] = {}

    async def work(running: RunningServices, _stop: asyncio.Event) -> None:
        targets = {
            "sink": ("DELETE", f"{sink_url}/sink/faults"),
            "inventory": ("DELETE", f"{running.urls['inventory-service']}/chaos"),
            "all": ("PUT", f"{running.urls['api-gateway']}/chaos/services"),
        }
        async with aiohttp.ClientSession() as session:
            for name, (method, url) in targets.items():
                for headers in ({}, {"Authorization": f"Bearer {TOKEN}"}):
                    async with session.request(method, url, json={}, headers=headers) as response:
                        statuses.setdefault(name, []).append(response.status)

    telemetry = remote_telemetry(sink_url, tmp_path / "spill")
    sink = {"sink": "on", "sink_db": str(tmp_path / "signals.db")}
    await supervise(FAST, telemetry, ChaosConfig(admin_token=TOKEN), sink, True, work)
    assert statuses == {"sink": [401, 200], "inventory": [401, 200], "all": [401, 200]}
