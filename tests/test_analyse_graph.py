"""The analyser and the scorer on any graph: the shop end to end, its names in free text, a graph never seen before."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from fakesvc.analyse import judge, summarise
from fakesvc.analyse.__main__ import main as analyse_main
from fakesvc.analyse.graphs import CallGraph, deepest_first
from fakesvc.graph.load import load_graph
from fakesvc.score.__main__ import main as score_main
from fakesvc.score.mentions import ranked_services
from fakesvc.telemetry.signals import span_signal
from tests.processes import start_supervisor
from tests.telemetry_fixtures import sink_on
from tests.test_analyse import item, log
from tests.test_score_prodsentinel import FakeProdSentinel, at

SHOP = load_graph("shop")
CATALOG = "productcatalogservice"


def shop_run_env() -> dict[str, str]:
    """Every shop service on a free port (the file fixes 8110-8120)."""
    return {f"{service.code_prefix}_PORT": "0" for service in SHOP.services}


@pytest.fixture(scope="module")
def shop_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A short ``supervisor.py --graph shop --chaos-profile catalog-outage`` run: its truth and its signals' file."""
    tmp_path = tmp_path_factory.mktemp("shop")
    truth = tmp_path / "truth.jsonl"
    args = ("--graph", "shop", "--chaos-profile", "catalog-outage", "--chaos-time-scale", "0.05")
    traffic = ("--rate", "40", "--count", "160", "--seed", "1", "--truth", str(truth))

    async def run() -> Path:
        supervisor = await start_supervisor(tmp_path, *args, *traffic, **shop_run_env())
        try:
            status, stderr = await supervisor.exited(timeout=60)
        finally:
            await supervisor.kill()
        assert status == 0, stderr
        return supervisor.db

    return truth, asyncio.run(run())


async def analysed_and_scored(tmp_path: Path, truth: Path, db: Path, *flags: str) -> dict[str, Any]:
    """``analyse --truth T --from SINK FLAGS | score --truth T --predictions -``, the score report."""
    sink = await sink_on(0, db)
    predictions, report = tmp_path / "predictions.jsonl", tmp_path / "score.json"
    try:
        argv = ["--truth", str(truth), "--from", sink.url, "--out", str(predictions), *flags]
        assert await asyncio.to_thread(analyse_main, argv) == 0
    finally:
        await sink.stop()
    score_argv = ["--truth", str(truth), "--predictions", str(predictions), "--out", str(report)]
    assert await asyncio.to_thread(score_main, score_argv) == 0
    return json.loads(report.read_text())


@pytest.mark.parametrize("evidence", ["full", "summary"])
async def test_the_analyser_on_a_shop_run_names_the_catalogue_the_truth_blames(
    tmp_path: Path, shop_run: tuple[Path, Path], evidence: str, capsys: pytest.CaptureFixture[str]
) -> None:
    truth, db = shop_run
    causes = [json.loads(line)["root_cause_services"] for line in truth.read_text().splitlines()]
    assert sum(cause == [CATALOG] for cause in causes) >= 10  # the outage hit enough checkouts to judge
    report = await analysed_and_scored(tmp_path, truth, db, "--graph", "shop", "--evidence", evidence)
    assert report["checkouts"] == len(causes) and report["faulty"] == sum(bool(cause) for cause in causes)
    assert report["ac@1"] >= 0.9, report
    # Pages whose only failure was the recommendations' (a fallback's) call to the catalogue are healthy by
    # the truth; the reference rule flags them (docs/analyser.md): its precision is what it is, not 1.
    assert 0.5 <= report["detection_precision"] < 1, report
    assert report["by_service"][CATALOG]["ac@1"] >= 0.9
    if evidence == "summary":  # read on the checkout's graph, no message names a dependency: the catalogue is lost
        unnamed = tmp_path / "unnamed.jsonl"  # a truth that names no graph (older than the field) is the checkout's
        lines = [json.loads(line) for line in truth.read_text().splitlines()]
        unnamed.write_text(
            "".join(json.dumps({k: v for k, v in line.items() if k != "graph"}) + "\n" for line in lines)
        )
        wrong = await analysed_and_scored(tmp_path, unnamed, db, "--evidence", evidence)
        assert wrong["by_service"][CATALOG]["ac@1"] < 0.5, wrong
    capsys.readouterr()


@pytest.mark.parametrize(
    ("text", "ranked"),
    [
        ("cart timed out", ["cartservice"]),
        ("Redis stalled, so the cart service answered 504", ["redis-cart", "cartservice"]),
        ("redis-cart GET blocked; cartservice gave up; the frontend failed", ["redis-cart", "cartservice", "frontend"]),
        ("the Redis cart cache stalled", ["redis-cart"]),
        ("productcatalog pool exhausted; checkout and payment waited", [CATALOG, "checkoutservice", "paymentservice"]),
        ("carts, emails and ads: plurals are no names", []),
    ],
)
def test_shop_names_in_free_text_match_one_service_each(text: str, ranked: list[str]) -> None:
    assert ranked_services(text, SHOP.names) == ranked


def test_the_longest_name_at_a_place_wins_whatever_the_file_order() -> None:
    assert ranked_services("cart-db is down, the cart waits", ["cart", "cart-db"]) == ["cart-db", "cart"]


def test_every_shop_form_names_exactly_its_service() -> None:
    for service in SHOP.names:
        assert ranked_services(service, SHOP.names) == [service]
        assert ranked_services(service.replace("-", " ").upper(), SHOP.names) == [service]


def test_the_deepest_service_is_the_longest_call_path_from_the_edge() -> None:
    order = deepest_first(SHOP)
    assert order[0] == "redis-cart" and order[-1] == "frontend" and sorted(order) == sorted(SHOP.names)
    assert deepest_first(load_graph("checkout")) == ["inventory-service", "payment-service", "api-gateway"]


async def test_scoring_prodsentinel_reads_the_graphs_names(
    aiohttp_server: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sentinel = FakeProdSentinel()
    sentinel.incidents.clear()
    sentinel.analyses.clear()
    sentinel.add("t1", "high", 0.5, "Redis (redis-cart) stalled; the cart service timed out", 61)
    server: TestServer = await aiohttp_server(sentinel.app())
    truth = tmp_path / "truth.jsonl"
    line = {
        "run_id": "r",
        "trace_id": "t1",
        "scenario": "success",
        "root_cause_services": ["redis-cart"],
        "start": at(0),
        "end": at(1),
    }
    truth.write_text(json.dumps({**line, "faults": [{"service": "redis-cart", "kind": "hang"}]}) + "\n")
    scores = {}
    for graph in ("shop", "checkout"):
        out = tmp_path / f"{graph}.json"
        argv = ["--truth", str(truth), "--prodsentinel", str(server.make_url("")), "--graph", graph, "--out", str(out)]
        assert await asyncio.to_thread(score_main, argv) == 0
        scores[graph] = json.loads(out.read_text())["ac@1"]
    assert scores == {"shop": 1.0, "checkout": 0.0}
    capsys.readouterr()


# A graph no code has seen: the edge calls two services at once.
USER_GRAPH = """
name: toll
services:
  - name: tollbooth
    routes:
      - path: /pass/{order_id}
        method: POST
        entry: true
        script:
          - parallel:
              - call: {service: quasar-service, path: "/q/{order_id}", timeout_s: 3}
              - call: {service: zebra-store, path: "/z/{order_id}", timeout_s: 3}
  - name: quasar-service
    routes:
      - path: /q/{order_id}
        method: GET
        script: [{sleep: {ms: 5}}]
  - name: zebra-store
    routes:
      - path: /z/{order_id}
        method: GET
        script: [{sleep: {ms: 5}}]
"""


def span(service: str, duration_ms: float) -> dict[str, Any]:
    return item(span_signal(service, "t", f"{service}-span", None, duration_ms, "UNSET", {}))


# Zebra spends 1.5 s of its own beside a 0.9 s quasar: a chain reading would give zebra 0.6 s, quasar 0.9 s.
SLOW_ZEBRA = [span("tollbooth", 1510), span("zebra-store", 1500), span("quasar-service", 900)]
FAILED_ZEBRA = [
    log("zebra-store", "ERROR", "Request failed: KeyError: 'lane 4'"),
    log("tollbooth", "ERROR", "Request failed: zebra-store answered 500 (KeyError: 'lane 4')"),
]


@pytest.fixture
def user_graph(tmp_path: Path) -> Path:
    path = tmp_path / "toll.yaml"
    path.write_text(USER_GRAPH)
    return path


def test_a_user_graph_is_ranked_from_its_own_structure(user_graph: Path) -> None:
    calls = CallGraph.of(load_graph(user_graph))
    slow = judge(summarise(SLOW_ZEBRA), calls=calls)
    assert slow is not None and (slow.services[0], slow.kind) == ("zebra-store", "latency")
    failed = judge(summarise(FAILED_ZEBRA), calls=calls)
    assert failed is not None and (failed.services[0], failed.kind) == ("zebra-store", "error")
    on_checkout = judge(summarise(SLOW_ZEBRA))  # read on the checkout's graph, tollbooth waits for no one
    assert on_checkout is not None and on_checkout.services[0] == "tollbooth"
    assert deepest_first(load_graph(user_graph)) == ["quasar-service", "zebra-store", "tollbooth"]
    names = load_graph(user_graph).names
    assert ranked_services("The Zebra Store lanes jammed; quasar waited on tollbooth", names) == [
        "zebra-store",
        "quasar-service",
        "tollbooth",
    ]


async def test_the_cli_takes_a_user_graph_file(
    aiohttp_server: Any, tmp_path: Path, user_graph: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    async def answer(request: web.Request) -> web.Response:
        return web.json_response(FAILED_ZEBRA if request.match_info["trace_id"] == "bad" else [])

    app = web.Application()
    app.router.add_get("/query/traces/{trace_id}", answer)
    server = await aiohttp_server(app)
    truth = tmp_path / "truth.jsonl"
    truth.write_text("".join(json.dumps({"run_id": "r", "trace_id": t}) + "\n" for t in ("ok", "bad")))
    argv = ["--truth", str(truth), "--from", str(server.make_url("")).rstrip("/"), "--graph", str(user_graph)]
    assert await asyncio.to_thread(analyse_main, argv) == 0
    (line,) = capsys.readouterr().out.splitlines()
    assert json.loads(line)["services"][:2] == ["zebra-store", "tollbooth"]


@pytest.mark.parametrize("cli", [analyse_main, score_main])
def test_a_graph_that_cannot_be_read_is_one_line_and_exit_2(
    tmp_path: Path, cli: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    truth = tmp_path / "truth.jsonl"
    truth.write_text(json.dumps({"run_id": "r", "trace_id": "t", "scenario": "success"}) + "\n")
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: bad\nservices: [{name: Not A Name, routes: []}, {routes: 7}]\n")
    source = ["--from", "http://127.0.0.1:1"] if cli is analyse_main else ["--prodsentinel", "http://127.0.0.1:1"]
    try:
        status = cli(["--truth", str(truth), *source, "--graph", str(bad)])
    except SystemExit as exit:
        status = exit.code
    err = capsys.readouterr().err
    assert status == 2 and err.startswith("fakesvc: --graph: ") and err.count("\n") == 1, err
