"""Graphs as a user runs them: ``supervisor.py --graph``, ``python -m fakesvc.service NAME``, the control API.

The shop and a user's own file run end to end in one process (real sockets,
the embedded sink); a bad graph file stops everything before it starts; fault
rules and ``/chaos/services`` speak the graph's names and routes.
"""

from __future__ import annotations

import io
import json
import sqlite3
import subprocess
import sys
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import aiohttp
import pytest

from fakesvc.faults import ChaosConfig
from fakesvc.graph.load import load_graph
from fakesvc.serving.runner import RunningServices, start_services
from fakesvc.telemetry.logs import configure_logging
from fakesvc.traffic.locust import LOCUSTFILE
from fakesvc.truth import read_truth
from tests.conftest import FAST, recording_telemetry
from tests.graph_fixtures import MINI_YAML
from tests.processes import ROOT, spawn, start_supervisor

# The issue's example, with a scenario of its own at pricing.
MINI = MINI_YAML.replace(
    "script: [{sleep: {ms: 5}}]",
    "script: [{fail_if: {key_contains: no-price, status: 503, exception: LookupError, message: No price list}}, "
    "{sleep: {ms: 5}}]",
)
ON_FREE_PORTS = {"FAKESVC_BASE_PORT": "0"}


def truth_lines(path: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


async def test_the_shop_runs_end_to_end_in_one_process(tmp_path: Path) -> None:
    truth = tmp_path / "t.jsonl"
    supervisor = await start_supervisor(
        tmp_path,
        "--graph", "shop", "--rate", "40", "--count", "80", "--truth", str(truth), "--seed", "4", "--quiet",
        **ON_FREE_PORTS,
    )  # fmt: skip
    status, stderr = await supervisor.exited(timeout=60)
    assert status == 0, stderr
    assert "every checkout's outcome is explained" in stderr and "Traceback" not in stderr
    lines = truth_lines(truth)
    assert len(lines) == 80
    assert {line["entry"] for line in lines} == {"GET /browse/{order_id}", "POST /checkout/{order_id}"}
    assert {line["scenario"] for line in lines} == {"success", "card-declined", "cart-hang"}
    assert all(line["status"] == line["expected_status"] for line in lines)
    declined = [line for line in lines if line["scenario"] == "card-declined"]
    # a declined card fails an order (payment's 402 becomes the frontend's 500), never a page that pays nothing
    for line in declined:
        ordered = line["entry"] == "POST /checkout/{order_id}"
        assert (line["status"], line["root_cause_service"]) == ((500, "paymentservice") if ordered else (200, None))
    with sqlite3.connect(supervisor.db) as db:
        services = {row[0] for row in db.execute("SELECT DISTINCT service_name FROM raw_signals")}
    assert services == set(load_graph("shop").names)  # every one of the 11 services emitted telemetry


async def test_a_users_graph_file_runs_and_its_scenario_is_in_the_mix(tmp_path: Path) -> None:
    graph = tmp_path / "mini.yaml"
    graph.write_text(MINI)
    truth = tmp_path / "t.jsonl"
    supervisor = await start_supervisor(
        tmp_path, "--graph", str(graph), "--rate", "50", "--count", "40", "--truth", str(truth), "--seed", "2",
        "--quiet", **ON_FREE_PORTS,
    )  # fmt: skip
    status, stderr = await supervisor.exited(timeout=60)
    assert status == 0, stderr
    lines = truth_lines(truth)
    failed = [line for line in lines if line["scenario"] == "no-price"]
    assert failed and all(
        (line["status"], line["root_cause_service"]) == (502, "pricing") for line in failed
    )  # pricing's 503 is the edge's 502 (a failed call), blamed on pricing
    assert {line["status"] for line in lines if line["scenario"] == "success"} == {200}


@pytest.mark.parametrize(
    ("document", "line"),
    [
        (MINI.replace("service: pricing,", "service: pricng,"), "no service named 'pricng' (did you mean 'pricing'?)"),
        (MINI.replace("timeout_s: 0.3", "timeout_s: .nan"), "timeout_s: must be a finite number"),
        ("name: empty\nservices: []\n", "services: "),
    ],
    ids=["unknown service", "NaN timeout", "empty graph"],
)
def test_a_bad_graph_file_stops_the_supervisor_before_anything_starts(tmp_path: Path, document: str, line: str) -> None:
    graph = tmp_path / "bad.yaml"
    graph.write_text(document)
    done = subprocess.run(
        [sys.executable, str(ROOT / "supervisor.py"), "--graph", str(graph), "--rate", "5", "--count", "1"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
        env={"PATH": "/usr/bin:/bin", "FAKESVC_SINK": "off"},
    )
    assert done.returncode == 2, done.stderr
    assert line in done.stderr and "Traceback" not in done.stderr
    assert "listening on" not in done.stderr + done.stdout  # nothing started


def test_one_service_of_a_graph_refuses_a_name_the_graph_lacks() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "fakesvc.service", "cartservise", "--graph", "shop"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    assert done.returncode == 2
    assert done.stderr.strip().splitlines()[-1].startswith("fakesvc: graph shop has no service 'cartservise' (use ")


@pytest.fixture
async def shop() -> AsyncIterator[RunningServices]:
    started = await start_services(
        load_graph("shop").names, replace(FAST, graph="shop", base_port=0), recording_telemetry(), ChaosConfig()
    )
    yield started
    await started.stop()


async def test_fault_control_speaks_the_graphs_services_and_routes(shop: RunningServices) -> None:
    edge = shop.urls["frontend"]
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{edge}/chaos/services") as response:
            assert set(await response.json()) == set(load_graph("shop").names)  # every service, from the edge
        bad_route = {"rules": [{"kind": "drop", "route": "/cart/{item_id}"}]}
        async with session.put(f"{shop.urls['cartservice']}/chaos", json=bad_route) as response:
            assert response.status == 400
            assert "serves no route '/cart/{item_id}' (use /cart/{order_id})" in (await response.json())["detail"]
        async with session.put(f"{edge}/chaos/services", json={"api-gateway": []}) as response:
            assert response.status == 400
            assert "unknown service 'api-gateway' (use frontend, checkoutservice" in (await response.json())["detail"]
        async with session.get(f"{shop.urls['redis-cart']}/chaos") as response:
            assert (await response.json())["rules"] == []  # the refused changes changed nothing
        rule = {"redis-cart": [{"kind": "error", "status": 503, "message": "OOM command not allowed"}]}
        async with session.put(f"{edge}/chaos/services", json=rule) as response:
            assert response.status == 200
        async with session.post(f"{edge}/checkout/ord-1") as response:
            assert response.status == 500
            faults = json.loads(response.headers["x-fakesvc-faults"])
        # the cart is read at hop 0.0.0 (frontend -> checkoutservice -> cartservice -> redis-cart), once
        assert [(fault["service"], fault["hop"]) for fault in faults] == [("redis-cart", "0.0.0.0")]


async def test_a_rule_with_a_method_fails_only_that_method_of_a_path(shop: RunningServices) -> None:
    """cartservice serves GET and DELETE on /cart/{order_id}: emptying the cart fails, reading it does not."""
    cart = shop.urls["cartservice"]
    async with aiohttp.ClientSession() as session:
        wrong = {"rules": [{"kind": "error", "route": "/cart/{order_id}", "method": "POST"}]}
        async with session.put(f"{cart}/chaos", json=wrong) as response:
            assert response.status == 400
            assert "serves no POST on /cart/{order_id} (it serves DELETE, GET)" in (await response.json())["detail"]
        for bad in ("", "G\u00c9T", "GET" * 10, float("nan"), float("inf"), ["GET"], {"m": "GET"}):
            body = json.dumps({"rules": [{"kind": "drop", "route": "/cart/{order_id}", "method": bad}]})
            async with session.put(f"{cart}/chaos", data=body) as response:
                assert response.status == 400, bad
        async with session.get(f"{cart}/chaos") as response:
            assert (await response.json())["rules"] == []  # every refused change changed nothing
        rule = {"kind": "error", "status": 503, "route": "/cart/{order_id}", "method": "DELETE", "message": "read-only"}
        async with session.put(f"{cart}/chaos", json={"rules": [rule]}) as response:
            assert response.status == 200
            assert (await response.json())["rules"][0]["method"] == "DELETE"
        async with session.get(f"{shop.urls['frontend']}/browse/o-1") as response:  # reads the cart: untouched
            assert response.status == 200 and "x-fakesvc-faults" not in response.headers
        async with session.post(f"{shop.urls['frontend']}/checkout/o-2") as response:
            assert response.status == 500
            faults = json.loads(response.headers["x-fakesvc-faults"])
    # checkoutservice reads the cart first (hop 0.0.0) and empties it last (its eighth call, 0.0.7)
    assert [(fault["service"], fault["hop"]) for fault in faults] == [("cartservice", "0.0.7")]


@pytest.mark.parametrize("hop", ["", "1", "0.", "0.x", "0." + ".".join(["1"] * 40), "0.99999", "0.-1"])
async def test_a_malformed_hop_header_is_read_as_the_entry(shop: RunningServices, hop: str) -> None:
    async with aiohttp.ClientSession() as session:
        rule = {"rules": [{"kind": "latency", "latency_ms": 1}]}
        async with session.put(f"{shop.urls['adservice']}/chaos", json=rule) as response:
            assert response.status == 200
        headers = {"x-fakesvc-hop": hop, "x-fakesvc-run": "not hex!"}
        async with session.get(f"{shop.urls['adservice']}/ads/o-1", headers=headers) as response:
            assert response.status == 200
            (fault,) = json.loads(response.headers["x-fakesvc-faults"])
    assert fault["hop"] == "0"


async def test_services_of_a_graph_in_separate_processes_find_each_other_by_their_url_settings(
    tmp_path: Path,
) -> None:
    """``python -m fakesvc.service NAME --graph shop``: the cart finds its cache at ``REDIS_CART_URL``."""
    env = {
        "FAKESVC_LATENCY_SCALE": "0",
        "FAKESVC_TELEMETRY": "",
        "OTEL_TRACES_EXPORTER": "none",
        "FAKESVC_SPILL_DIR": str(tmp_path / "spill"),
        "FAKESVC_BASE_PORT": "0",
    }
    cache = await spawn(["-m", "fakesvc.service", "redis-cart", "--graph", "shop"], env, stdout=False)
    cart = None
    try:
        await cache.read_until("redis-cart listening on")
        cart = await spawn(
            ["-m", "fakesvc.service", "cartservice", "--graph", "shop"],
            {**env, "REDIS_CART_URL": cache.url("redis-cart")},
            stdout=False,
        )
        await cart.read_until("cartservice listening on")
        async with aiohttp.ClientSession() as session:
            async with session.get(f"{cart.url('cartservice')}/cart/o-1") as response:
                assert response.status == 200 and (await response.json())["items"] == 3
            rule = {"rules": [{"kind": "drop", "route": "/get/{order_id}"}]}
            async with session.put(f"{cache.url('redis-cart')}/chaos", json=rule) as response:
                assert response.status == 200
            async with session.get(f"{cart.url('cartservice')}/cart/o-2") as response:
                assert response.status == 502  # the cache's drop, a failed call: the cart's own 502
                body = await response.json()
        assert body["detail"].startswith("Cart read failed: connection to redis-cart failed")
    finally:
        for process in (cart, cache):
            if process is not None:
                await process.kill()


def test_the_example_in_the_graph_docs_is_a_valid_graph(tmp_path: Path) -> None:
    text = (ROOT / "docs" / "graphs.md").read_text()
    example = tmp_path / "example.yaml"
    example.write_text(text.split("```yaml\n", 1)[1].split("```", 1)[0])
    graph = load_graph(example)
    assert graph.names == ("edge", "pricing", "stock", "ads") and graph.scenarios() == ["no-price"]


async def test_locust_users_browse_and_check_out_the_shop(tmp_path: Path) -> None:
    """The packaged Locust file on FAKESVC_GRAPH=shop: both entry routes, the shop's mix, the truth as answered."""
    supervisor = await start_supervisor(tmp_path, "--graph", "shop", FAKESVC_SEED="3", **ON_FREE_PORTS)
    try:
        await supervisor.read_until("frontend listening on")
        locust = Path(sys.executable).with_name("locust")
        args = ["--headless", "--host", supervisor.url("frontend"), "-u", "3", "-r", "3", "-t", "4s"]
        args += ["--seed", "5", "--truth", str(tmp_path / "truth.jsonl"), "--pace", "0.05", "--stop-timeout", "10"]
        process = await spawn([str(locust), "-f", str(LOCUSTFILE), *args], {"FAKESVC_GRAPH": "shop"})
        status, rest = await process.exited(120)
        assert status == 0, ("".join(process.stderr_lines) + rest)[-3000:]
    finally:
        await supervisor.kill()
    lines = list(read_truth(tmp_path / "truth-w0.jsonl"))
    assert {line["entry"] for line in lines} == {"GET /browse/{order_id}", "POST /checkout/{order_id}"}
    assert {line["scenario"] for line in lines} <= {"success", "card-declined", "cart-hang"}
    assert all(line["status"] == line["expected_status"] for line in lines if not line.get("interrupted"))


async def test_a_failed_fallback_is_a_warning_naming_the_dependency_and_the_page_still_renders(
    shop: RunningServices,
) -> None:
    stream = io.StringIO()
    configure_logging(stream)
    async with aiohttp.ClientSession() as session:
        rule = {"rules": [{"kind": "error", "status": 503, "message": "ads index rebuilding"}]}
        async with session.put(f"{shop.urls['adservice']}/chaos", json=rule) as response:
            assert response.status == 200
        async with session.get(f"{shop.urls['frontend']}/browse/o-7") as response:
            assert response.status == 200 and (await response.json())["status"] == "OK"
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    (warning,) = [line for line in lines if line["service"] == "frontend" and line["level"] == "WARNING"]
    assert (
        warning["event"]
        == "Page rendered without adservice: adservice answered 503 (RuntimeError: ads index rebuilding)"
    )
    assert (warning["error_code"], warning["upstream_service"], warning["upstream_status"]) == (
        "FRONTEND_DEGRADED",
        "adservice",
        503,
    )
    assert not [line for line in lines if line["service"] == "frontend" and line["level"] == "ERROR"]


@pytest.mark.parametrize(
    ("env", "line"),
    [
        ({"FAKESVC_GRAPH": ""}, "FAKESVC_GRAPH: must not be empty"),
        ({"FAKESVC_GRAPH": "\u00e9t\u00e9"}, "\u00e9t\u00e9: no such file, nor a built-in graph"),
        ({"FAKESVC_BASE_PORT": "nan"}, "FAKESVC_BASE_PORT: must be a port number (got 'nan')"),
        ({"CARTSERVICE_PORT": "inf"}, "CARTSERVICE_PORT: must be a port number (got 'inf')"),
        ({"CARTSERVICE_PORT": "99999999"}, "CARTSERVICE_PORT: must be a port number between 0 and 65535"),
        ({"CARTSERVICE_PORT": "\u0663"}, "CARTSERVICE_PORT: must be a port number (got '\u0663')"),
        ({"REDIS_CART_URL": "ftp://cache"}, "REDIS_CART_URL: must be an http:// or https:// URL with a host"),
    ],
    ids=["empty graph", "unicode graph", "NaN base port", "infinite port", "huge port", "arabic digit", "bad URL"],
)
def test_a_bad_graph_or_placement_setting_stops_everything_at_start(
    tmp_path: Path, env: dict[str, str], line: str
) -> None:
    done = subprocess.run(
        [sys.executable, str(ROOT / "supervisor.py"), "--rate", "5", "--count", "1"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
        env={"PATH": "/usr/bin:/bin", "FAKESVC_SINK": "off", "FAKESVC_GRAPH": "shop", **env},
    )
    assert done.returncode == 2, done.stderr
    (said,) = done.stderr.strip().splitlines()  # one line, and nothing started or sent before it
    assert said.startswith(f"fakesvc: {line}"), said
