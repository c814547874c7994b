"""The report's ``fault_windows``: every rule in force during a run, named by its service, always-on rules too.

A window carries its service, the rule's own fields, ``start`` and ``end``
(wall-clock ISO times) and ``always_on``; a rule with no schedule is in force
from when it was set (``end`` null while it still is); a rule replaced
mid-run keeps its window with ``replaced``. Fake clocks throughout, but for
one short run of the shop as a user starts it.
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from fakesvc.faults import Chaos, chaos_routes, parse_rules
from fakesvc.faults.chaos import PAST_WINDOWS
from tests.processes import ROOT, spawn

SERVICE = "inventory-service"
SET_AT = 1_700_000_000.0  # the wall clock when rules are set: 2023-11-14T22:13:20+00:00
SET_AT_ISO = "2023-11-14T22:13:20+00:00"


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def chaos_on(clock: FakeClock, service: str = SERVICE) -> Chaos:
    """A service's chaos whose wall clock moves with ``clock`` (``SET_AT`` at its start)."""
    return Chaos(service, clock=clock, wall_clock=lambda: SET_AT + clock.now - 1000.0)


def control_app(chaos: Chaos, downstream: str | None = None) -> web.Application:
    """``/chaos`` of one service; with ``downstream``, its ``/chaos/windows`` adds that service's, as the edge's does."""

    async def downstream_windows() -> list[dict[str, Any]]:
        async with aiohttp.ClientSession() as session, session.get(f"{downstream}/chaos/windows") as response:
            windows: list[dict[str, Any]] = await response.json()
            return windows

    app = web.Application()
    app.router.add_routes(
        chaos_routes(chaos, admin_token=None, downstream_windows=downstream_windows if downstream else None)
    )
    return app


def test_an_always_on_rule_is_a_window_from_when_it_was_set_still_open() -> None:
    clock = FakeClock()
    chaos = chaos_on(clock)
    chaos.set_rules(parse_rules([{"kind": "error", "status": 503, "route": "/reserve", "probability": 0.25}]))
    clock.now += 30
    assert chaos.windows() == [
        {
            "service": SERVICE,
            "rule": 0,
            "kind": "error",
            "detail": "error 503 RuntimeError: Injected fault",
            "probability": 0.25,
            "route": "/reserve",
            "status": 503,
            "message": "Injected fault",
            "exception": "RuntimeError",
            "start": SET_AT_ISO,
            "end": None,
            "always_on": True,
        }
    ]


def test_a_scheduled_window_keeps_its_start_and_end_and_names_its_service() -> None:
    chaos = chaos_on(FakeClock(), "payment-service")
    chaos.set_rules(parse_rules([{"kind": "latency", "latency_ms": [10, 20], "start_s": 10, "duration_s": 5}]))
    (window,) = chaos.windows()
    assert (window["service"], window["kind"], window["latency_ms"], window["always_on"]) == (
        "payment-service",
        "latency",
        [10.0, 20.0],
        False,
    )
    assert (window["start"], window["end"]) == ("2023-11-14T22:13:30+00:00", "2023-11-14T22:13:35+00:00")
    assert "replaced" not in window


async def test_a_rule_replaced_mid_run_is_kept_with_replaced(aiohttp_client: Any) -> None:
    clock = FakeClock()
    chaos = chaos_on(clock)
    client = await aiohttp_client(control_app(chaos))
    assert (await client.put("/chaos", json={"rules": [{"kind": "drop", "method": "POST"}]})).status == 200
    clock.now += 20
    assert (await client.put("/chaos", json={"rules": [{"kind": "hang", "hang_s": 2}]})).status == 200
    clock.now += 5
    assert (await client.delete("/chaos")).status == 200
    dropped, hung = await (await client.get("/chaos/windows")).json()
    assert (dropped["service"], dropped["kind"], dropped["method"], dropped["always_on"]) == (
        SERVICE,
        "drop",
        "POST",
        True,
    )
    assert (dropped["start"], dropped["end"], dropped["replaced"]) == (SET_AT_ISO, *["2023-11-14T22:13:40+00:00"] * 2)
    assert (hung["kind"], hung["hang_s"], hung["start"]) == ("hang", 2.0, dropped["end"])
    assert hung["end"] == hung["replaced"] == "2023-11-14T22:13:45+00:00"


async def test_the_edge_answers_with_the_windows_of_the_services_behind_it(aiohttp_client: Any) -> None:
    clock = FakeClock()
    inventory = chaos_on(clock)
    inventory.set_rules(parse_rules([{"kind": "drop"}]))
    behind = await aiohttp_client(control_app(inventory))
    gateway = chaos_on(clock, "api-gateway")
    gateway.set_rules(parse_rules([{"kind": "noise", "start_s": 5, "duration_s": 1}]))
    edge = await aiohttp_client(control_app(gateway, str(behind.make_url(""))))
    windows = await (await edge.get("/chaos/windows")).json()
    assert [(w["service"], w["kind"], w["always_on"]) for w in windows] == [
        ("api-gateway", "noise", False),
        (SERVICE, "drop", True),
    ]


def test_the_history_of_always_on_rules_is_bounded() -> None:
    clock = FakeClock()
    chaos = chaos_on(clock)
    for delay_ms in range(PAST_WINDOWS + 5):
        chaos.set_rules(parse_rules([{"kind": "latency", "latency_ms": delay_ms}]))
        clock.now += 1
    windows = chaos.windows()
    assert len(windows) == PAST_WINDOWS + 1  # the kept history, and the rule in force
    # 4 of the PAST_WINDOWS + 4 replaced were forgotten, oldest first
    assert windows[0]["latency_ms"] == 4 and windows[-1]["end"] is None


async def test_the_shop_email_down_run_reports_the_email_service_always_on(tmp_path: Path) -> None:
    report_path = tmp_path / "r.json"
    args = ["--graph", "shop", "--chaos-profile", "email-down", "--rate", "5", "--count", "10"]
    env = {"FAKESVC_LATENCY_SCALE": "0", "FAKESVC_SINK": "off", "FAKESVC_TELEMETRY": "", "OTEL_TRACES_EXPORTER": "none"}
    supervisor = await spawn(
        [str(ROOT / "supervisor.py"), *args, "--report", str(report_path), "--base-port", "0", "--quiet"],
        env,
        cwd=tmp_path,
        stdout=False,
    )
    status, stderr = await supervisor.exited(timeout=60)
    assert status == 0, stderr
    report = json.loads(report_path.read_text())
    by_service = {window["service"]: window for window in report["fault_windows"]}
    assert set(by_service) == {"emailservice", "paymentservice"}
    email = by_service["emailservice"]
    assert (email["kind"], email["status"], email["exception"], email["probability"]) == (
        "error",
        503,
        "ConnectionRefusedError",
        1.0,
    )
    assert email["always_on"] is True and email["end"] is None and "replaced" not in email
    assert datetime.fromisoformat(email["start"]) <= datetime.fromisoformat(report["started"])  # on before the run
    assert by_service["paymentservice"]["always_on"] is False  # the profile's scheduled latency
