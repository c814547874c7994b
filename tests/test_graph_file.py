"""The graph file loader, its JSON Schema and ``python -m fakesvc.graph check``.

Every bad document gives exactly one expected line (source, path, words), so a
check that stops reporting, or reports noise besides, fails here.
"""

from __future__ import annotations

import copy
import json
import math
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jsonschema
import pytest

import fakesvc.graph
from fakesvc.graph import (
    BUILTIN_GRAPHS,
    Call,
    FailIf,
    Failure,
    FromCall,
    GraphError,
    HangIf,
    KeyFlag,
    Parallel,
    Sleep,
    Span,
    load_graph,
    parse_graph,
    read_document,
)
from fakesvc.graph.model import calls_of
from fakesvc.raising import exception_problem
from fakesvc.settings import ConfigError
from tests.graph_fixtures import MINI_YAML

REPO = Path(__file__).resolve().parents[1]
SCHEMA = json.loads((Path(fakesvc.graph.__file__).parent / "schema.json").read_text(encoding="utf-8"))


def _route(path: str, script: list[Any], **more: Any) -> dict[str, Any]:
    return {"path": path, "method": "GET", "script": script, **more}


MINI: dict[str, Any] = {
    "name": "mini",
    "services": [
        {
            "name": "edge",
            "routes": [
                _route(
                    "/buy/{order_id}",
                    [
                        {"sleep": {"ms": [20, 50]}},
                        {"call": {"service": "pricing", "path": "/price/{order_id}", "timeout_s": 1.0}},
                        {
                            "parallel": [
                                {"call": {"service": "stock", "path": "/stock/{order_id}", "timeout_s": 1.0}},
                                {
                                    "call": {
                                        "service": "ads",
                                        "path": "/ads/{order_id}",
                                        "timeout_s": 0.3,
                                        "on_error": "ignore",
                                    }
                                },
                            ]
                        },
                    ],
                    method="POST",
                    entry=True,
                )
            ],
        },
        {"name": "pricing", "routes": [_route("/price/{order_id}", [{"sleep": {"ms": 5}}])]},
        {"name": "stock", "routes": [_route("/stock/{order_id}", [{"sleep": {"ms": [5, 10]}}])]},
        {"name": "ads", "routes": [_route("/ads/{order_id}", [{"sleep": {"ms": 2}}])]},
    ],
}


def _edge_script(doc: dict[str, Any]) -> list[Any]:
    return doc["services"][0]["routes"][0]["script"]


def _pricing_script(doc: dict[str, Any]) -> list[Any]:
    return doc["services"][1]["routes"][0]["script"]


def _problems(doc: Any, parameters: dict[str, float] | None = None) -> list[str]:
    with pytest.raises(GraphError) as raised:
        parse_graph(doc, "mini.yaml", parameters)
    assert str(raised.value) == "\n".join(raised.value.problems)
    return raised.value.problems


def _set(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    """A mutation of the mini document: ``services.1.port`` = value (list indexes as numbers)."""

    def mutate(doc: dict[str, Any]) -> None:
        *parents, last = [int(part) if part.isdigit() else part for part in path.split(".")]
        target: Any = doc
        for part in parents:
            target = target[part]
        target[last] = value

    return mutate


def _nested_spans(levels: int) -> dict[str, Any]:
    step: dict[str, Any] = {"sleep": {"ms": 1}}
    for _ in range(levels):
        step = {"span": {"name": "deep", "script": [step]}}
    return step


ALLOWED_ROUTE_KEYS = "completed, entry, failed, method, path, response, script, slow_code, weight"
CALL_1 = "services[0].routes[0].script[1].call"
BAD_DOCUMENTS: list[tuple[str, Callable[[dict[str, Any]], None], str]] = [
    (
        "unknown service",
        _set("services.0.routes.0.script.1.call.service", "stok"),
        f"{CALL_1}.service: no service named 'stok' (did you mean 'stock'?)",
    ),
    (
        "unknown route",
        _set("services.0.routes.0.script.1.call.path", "/prise/{order_id}"),
        f"{CALL_1}.path: no route 'GET /prise/{{order_id}}' on pricing (it serves GET /price/{{order_id}})",
    ),
    (
        "method of no route",
        _set("services.0.routes.0.script.1.call.method", "post"),
        f"{CALL_1}.path: no route 'POST /price/{{order_id}}' on pricing (it serves GET /price/{{order_id}})",
    ),
    (
        "call path with another key",
        _set("services.0.routes.0.script.1.call.path", "/price/{id}"),
        f"{CALL_1}.path: the placeholder must be the route's key {{order_id}} (got {{id}})",
    ),
    (
        "cycle",
        lambda doc: _pricing_script(doc).append(
            {"call": {"service": "edge", "path": "/buy/{order_id}", "timeout_s": 1}}
        ),
        "services[1].routes[0].script[1].call: cycle edge -> pricing -> edge",
    ),
    (
        "a service calling itself",
        lambda doc: _pricing_script(doc).append(
            {"call": {"service": "pricing", "path": "/price/{order_id}", "timeout_s": 1}}
        ),
        "services[1].routes[0].script[1].call: cycle pricing -> pricing (a service calling itself)",
    ),
    (
        "duplicate service names",
        lambda doc: doc["services"].append(copy.deepcopy(doc["services"][2])),
        "services[4].name: duplicate name 'stock' (also services[2])",
    ),
    (
        "duplicate ports",
        lambda doc: (_set("services.1.port", 9000)(doc), _set("services.2.port", 9000)(doc)),
        "services[2].port: duplicate port 9000 (also services[1])",
    ),
    (
        "duplicate code prefixes",
        _set("services.2.code_prefix", "PRICING"),
        "services[2].code_prefix: duplicate code prefix 'PRICING' (also services[1])",
    ),
    (
        "duplicate routes",
        lambda doc: doc["services"][1]["routes"].append(_route("/price/{item_id}", [])),
        "services[1].routes[1]: duplicate route GET /price/{item_id} (also routes[0])",
    ),
    (
        "unknown key",
        _set("services.0.routes.0.metod", "GET"),
        f"services[0].routes[0].metod: unknown key (did you mean 'method'?) (allowed: {ALLOWED_ROUTE_KEYS})",
    ),
    (
        "upper-case key",
        _set("Name", "mini"),
        "Name: unknown key (did you mean 'name'?) (allowed: name, parameters, services)",
    ),
    (
        "missing key",
        lambda doc: doc["services"][1]["routes"][0].pop("script"),
        "services[1].routes[0].script: is required",
    ),
    (
        "NaN",
        _set("services.0.routes.0.script.1.call.timeout_s", math.nan),
        f"{CALL_1}.timeout_s: must be a finite number, not NaN",
    ),
    (
        "infinity",
        _set("services.0.routes.0.script.0.sleep.ms.1", math.inf),
        "services[0].routes[0].script[0].sleep.ms[1]: must be a finite number, not infinity",
    ),
    (
        "-infinity",
        _set("services.0.routes.0.script.1.call.timeout_s", -math.inf),
        f"{CALL_1}.timeout_s: must be a finite number, not -infinity",
    ),
    (
        "negative",
        _set("services.1.routes.0.script.0.sleep.ms", -1),
        "services[1].routes[0].script[0].sleep.ms: must be a number of at least 0 and at most 600000 (got -1)",
    ),
    (
        "huge",
        _set("services.0.routes.0.script.1.call.timeout_s", 1e9),
        f"{CALL_1}.timeout_s: must be a number of at least 0.001 and at most 3600 (got 1000000000)",
    ),
    (
        "zero timeout",
        _set("services.0.routes.0.script.1.call.timeout_s", 0),
        f"{CALL_1}.timeout_s: must be a number of at least 0.001 and at most 3600 (got 0)",
    ),
    (
        "bool number",
        _set("services.0.routes.0.script.1.call.timeout_s", True),
        f"{CALL_1}.timeout_s: must be a number, not a boolean (true)",
    ),
    (
        "sleep range reversed",
        _set("services.0.routes.0.script.0.sleep.ms", [50, 20]),
        "services[0].routes[0].script[0].sleep.ms: high must be at least low (got [50, 20])",
    ),
    (
        "bad port",
        _set("services.1.port", 70000),
        "services[1].port: must be a whole number of at least 1 and at most 65535 (got 70000)",
    ),
    ("empty graph", _set("services", []), "services: must be a list of 1 to 100 services (got 0)"),
    (
        "no entry route",
        _set("services.0.routes.0.entry", False),
        "services: no entry route (mark the routes the traffic generator sends to with entry: true)",
    ),
    (
        "entry routes on two services",
        _set("services.1.routes.0.entry", True),
        "services: entry routes on more than one service (edge: POST /buy/{order_id}; pricing: GET /price/{order_id}); "
        "they all belong to one edge service",
    ),
    (
        "weight without entry",
        _set("services.1.routes.0.weight", 2),
        "services[1].routes[0].weight: only an entry route has a weight (add entry: true, or drop weight)",
    ),
    (
        "fail_if after a call",
        lambda doc: _edge_script(doc).append(
            {"fail_if": {"key_contains": "x", "status": 500, "exception": "ValueError", "message": "no"}}
        ),
        "services[0].routes[0].script[3].fail_if: must come before every call of the route (the first is "
        "script[1].call): scenario faults start a hop",
    ),
    (
        "a keyword for an exception",
        lambda doc: _edge_script(doc).insert(
            0, {"fail_if": {"key_contains": "x", "status": 500, "exception": "class", "message": "no"}}
        ),
        "services[0].routes[0].script[0].fail_if.exception: must be an exception class name: ASCII letters, "
        "digits and _, not a Python keyword (like ValueError)",
    ),
    *[
        (
            f"{name}, which one message cannot raise",
            lambda doc, name=name: _edge_script(doc).insert(
                0, {"fail_if": {"key_contains": "x", "status": 500, "exception": name, "message": "no"}}
            ),
            f"services[0].routes[0].script[0].fail_if.exception: {exception_problem(name)}",
        )
        for name in ("ExceptionGroup", "UnicodeDecodeError")
    ],
    (
        "hang_if after a call, in a parallel's span",
        lambda doc: _edge_script(doc)[2]["parallel"].append(
            {"span": {"name": "late", "script": [{"hang_if": {"key_contains": "x", "s": 1}}]}}
        ),
        "services[0].routes[0].script[2].parallel[2].span.script[0].hang_if: must come before every call of the "
        "route (the first is script[1].call): scenario faults start a hop",
    ),
    (
        "sleep in a parallel",
        lambda doc: _edge_script(doc)[2]["parallel"].append({"sleep": {"ms": 1}}),
        "services[0].routes[0].script[2].parallel[2].sleep: not allowed in a parallel (one of call, span, parallel)",
    ),
    (
        "unknown step",
        lambda doc: _pricing_script(doc).append({"slep": {"ms": 1}}),
        "services[1].routes[0].script[1].slep: unknown step (did you mean 'sleep'?) "
        "(one of sleep, log, call, parallel, fail_if, hang_if, span)",
    ),
    (
        "bad parameter reference",
        lambda doc: (
            _set("parameters", {"timeout_s": 1})(doc),
            _set("services.0.routes.0.script.1.call.timeout_s", "$timeout")(doc),
        ),
        f"{CALL_1}.timeout_s: unknown parameter $timeout (did you mean 'timeout_s'?) (declared: timeout_s)",
    ),
    (
        "parameter out of bounds",
        lambda doc: (
            _set("parameters", {"t": 5000})(doc),
            _set("services.0.routes.0.script.1.call.timeout_s", "$t")(doc),
        ),
        f"{CALL_1}.timeout_s: must be a number of at least 0.001 and at most 3600 (got 5000) (from $t)",
    ),
    ("negative parameter", _set("parameters", {"t": -1}), "parameters.t: must be a number of at least 0 (got -1)"),
    ("unicode graph name", _set("name", "mïni"), "name: must be lower-case letters, digits and '-' (got 'mïni')"),
    (
        "unicode service name",
        lambda doc: (
            _set("services.3.name", "àds")(doc),
            _set("services.0.routes.0.script.2.parallel.1.call.service", "àds")(doc),
        ),
        "services[3].name: must be lower-case letters, digits and '-', starting with a letter (got 'àds')",
    ),
    ("control character", _set("name", "mi\x07ni"), "name: must not contain control characters (found U+0007)"),
    (
        "control character in a message",
        _set("services.1.routes.0.completed", "done\nreally"),
        "services[1].routes[0].completed: must not contain control characters (found U+000A)",
    ),
    ("empty message", _set("services.1.routes.0.failed", ""), "services[1].routes[0].failed: must not be empty"),
    (
        "over-long message",
        _set("services.1.routes.0.failed", "x" * 201),
        "services[1].routes[0].failed: must be at most 200 characters (got 201)",
    ),
    (
        "deep nesting",
        lambda doc: _pricing_script(doc).append(_nested_spans(8)),
        "services[1].routes[0].script[1]" + ".span.script[0]" * 7 + ".span.script: nested too deeply "
        "(at most 8 levels of scripts in spans and parallels)",
    ),
    (
        "placeholder not a whole segment",
        _set("services.1.routes.0.path", "/price/x{order_id}"),
        "services[1].routes[0].path: the placeholder must be a whole segment like {order_id} (got 'x{order_id}')",
    ),
    (
        "reserved path",
        _set("services.1.routes.0.path", "/chaos/{order_id}"),
        "services[1].routes[0].path: /chaos/{order_id} is reserved: every service serves /healthz, /readyz, "
        "/metrics, /telemetry and /chaos itself",
    ),
    (
        "unknown template placeholder",
        _set("services.1.routes.0.response", {"id": "{item_id}"}),
        "services[1].routes[0].response.id: unknown placeholder {item_id} (a template may use {order_id} and "
        "{trace_id})",
    ),
    (
        "from_call of a service not called",
        _set("services.1.routes.0.response", {"n": {"from_call": "stock", "field": "n"}}),
        "services[1].routes[0].response.n.from_call: must name a service this route calls (it calls: none; got "
        "'stock')",
    ),
    (
        "key_flag too small",
        _set("services.1.routes.0.response", {"ok": {"key_flag": {"false_one_in": 1}}}),
        "services[1].routes[0].response.ok.key_flag.false_one_in: must be a whole number of at least 2 and at most "
        "1000000 (got 1)",
    ),
    (
        "unreachable service",
        lambda doc: doc["services"].append({"name": "extra", "routes": [_route("/x/{id}", [])]}),
        "services[4]: extra is never called from an entry route",
    ),
]


def test_the_checkout_graph_loads_to_the_model() -> None:
    graph = load_graph("checkout")
    assert "checkout" in BUILTIN_GRAPHS
    assert graph.names == ("api-gateway", "payment-service", "inventory-service")
    assert [service.port for service in graph.services] == [8003, 8004, 8002]
    assert [service.code_prefix for service in graph.services] == ["GATEWAY", "PAYMENT", "INVENTORY"]
    assert graph.edge.name == "api-gateway"
    gateway, payment, inventory = (service.routes[0] for service in graph.services)
    assert gateway.name == "POST /checkout/{order_id}" and gateway.entry and gateway.completed == "Checkout completed"
    assert gateway.response == {"status": "SUCCESS", "order_id": "{order_id}", "trace_id": "{trace_id}"}
    (pay,) = calls_of(gateway.script)
    assert pay == Call(
        "payment-service", "/pay/{order_id}", "POST", "/pay/{order_id}", 5.0, "fail", {"any": Failure(500)}, 0
    )
    span, stock = payment.script
    assert isinstance(span, Span) and span.attributes == {"payment.order_id": "{order_id}"}
    assert span.steps == (
        Sleep(100, 400),
        FailIf("fail-pay", 500, "ValueError", "Payment declined by issuer", "PAYMENT_DECLINED"),
    )
    assert isinstance(stock, Call) and (stock.method, stock.route, stock.timeout_s, stock.index) == (
        "GET",
        "/inventory/{item_id}",
        2.0,
        0,
    )
    assert stock.failure("timeout") == Failure(504, "PAYMENT_TIMEOUT", "Payment timeout")
    assert payment.response == {
        "order_id": "{order_id}",
        "status": "AUTHORIZED",
        "available": FromCall("inventory-service", "available"),
    }
    assert inventory.slow_code == "SLOW_QUERY" and inventory.response["available"] == KeyFlag(10)  # type: ignore[index]
    assert inventory.script[0].steps[0] == HangIf("timeout", 5.0, "query hangs")  # type: ignore[union-attr]
    assert graph.parameters == {"payment_timeout_s": 5.0, "inventory_timeout_s": 2.0, "hang_s": 5.0}


def test_parameters_override_the_file_and_builtins_are_cached() -> None:
    graph = load_graph("checkout", {"inventory_timeout_s": 1.0, "not_declared": 9.0})
    assert graph.parameters == {"payment_timeout_s": 5.0, "inventory_timeout_s": 1.0, "hang_s": 5.0}
    assert next(calls_of(graph.service("payment-service").routes[0].script)).timeout_s == 1.0
    assert load_graph("checkout") is load_graph("checkout")
    assert load_graph("checkout", {"inventory_timeout_s": 1.0}) is not load_graph("checkout")
    with pytest.raises(GraphError) as raised:
        load_graph("checkout", {"hang_s": math.inf})
    assert raised.value.problems == [
        "checkout.yaml: parameters.hang_s (override): must be a finite number, not infinity"
    ]


def test_the_minimal_example_loads_exactly_as_written(tmp_path: Path) -> None:
    (tmp_path / "mini.yaml").write_text(MINI_YAML, encoding="utf-8")
    graph = load_graph(tmp_path / "mini.yaml")
    assert graph.services == parse_graph(MINI, "mini.yaml").services
    assert graph.names == ("edge", "pricing", "stock", "ads") and graph.edge.name == "edge"
    assert [service.port for service in graph.services] == [None] * 4
    assert [service.code_prefix for service in graph.services] == ["EDGE", "PRICING", "STOCK", "ADS"]
    buy = graph.services[0].routes[0]
    sleep, pricing, parallel = buy.script
    assert sleep == Sleep(20, 50) and graph.services[1].routes[0].script == (Sleep(5, 5),)
    assert isinstance(parallel, Parallel)
    assert [
        (call.service, call.method, call.index, call.timeout_s, call.on_error) for call in calls_of(buy.script)
    ] == [
        ("pricing", "GET", 0, 1.0, "fail"),
        ("stock", "GET", 1, 1.0, "fail"),
        ("ads", "GET", 2, 0.3, "ignore"),
    ]
    assert pricing == Call("pricing", "/price/{order_id}", "GET", "/price/{order_id}", 1.0, index=0)
    assert graph.entry_routes() == [(graph.services[0], buy)] and buy.weight == 1.0


def test_a_json_file_loads_like_the_yaml(tmp_path: Path) -> None:
    (tmp_path / "mini.json").write_text(json.dumps(MINI), encoding="utf-8")
    assert load_graph(str(tmp_path / "mini.json")).services == parse_graph(MINI, "mini.yaml").services


def test_check_prints_the_services_routes_and_edges(tmp_path: Path) -> None:
    (tmp_path / "mini.yaml").write_text(MINI_YAML, encoding="utf-8")
    done = _check(tmp_path, "mini.yaml")
    assert (done.returncode, done.stderr) == (0, "")
    assert done.stdout.splitlines() == [
        "graph mini (mini.yaml)",
        "service edge port 8100 (FAKESVC_BASE_PORT default 8100 + 0) code EDGE",
        "  POST /buy/{order_id} (entry, weight 1)",
        "    edge -> pricing GET /price/{order_id} timeout 1 s",
        "    edge -> stock GET /stock/{order_id} timeout 1 s [parallel]",
        "    edge -> ads GET /ads/{order_id} timeout 0.3 s (fallback) [parallel]",
        "service pricing port 8101 (FAKESVC_BASE_PORT default 8100 + 1) code PRICING",
        "  GET /price/{order_id}",
        "service stock port 8102 (FAKESVC_BASE_PORT default 8100 + 2) code STOCK",
        "  GET /stock/{order_id}",
        "service ads port 8103 (FAKESVC_BASE_PORT default 8100 + 3) code ADS",
        "  GET /ads/{order_id}",
    ]


def test_check_of_a_builtin_name_prints_its_ports(tmp_path: Path) -> None:
    done = _check(tmp_path, "checkout")
    assert done.returncode == 0
    assert "service payment-service port 8004 code PAYMENT" in done.stdout.splitlines()
    assert "    api-gateway -> payment-service POST /pay/{order_id} timeout 5 s" in done.stdout.splitlines()


def test_check_of_a_bad_file_prints_every_problem_on_stderr_and_exits_2(tmp_path: Path) -> None:
    doc = copy.deepcopy(MINI)
    _set("services.0.routes.0.script.1.call.service", "stok")(doc)
    _set("services.1.port", 0)(doc)
    (tmp_path / "bad.json").write_text(json.dumps(doc), encoding="utf-8")
    done = _check(tmp_path, "bad.json")
    assert (done.returncode, done.stdout) == (2, "")
    assert done.stderr.splitlines() == [
        "bad.json: services[1].port: must be a whole number of at least 1 and at most 65535 (got 0)",
        f"bad.json: {CALL_1}.service: no service named 'stok' (did you mean 'stock'?)",
    ]


def test_the_command_has_help_and_room_for_more_subcommands(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "fakesvc.graph", "--help"], capture_output=True, text=True, cwd=REPO)
    assert done.returncode == 0 and "check" in done.stdout and "validate a graph" in done.stdout
    bare = subprocess.run([sys.executable, "-m", "fakesvc.graph"], capture_output=True, text=True, cwd=REPO)
    assert bare.returncode == 2 and "COMMAND" in bare.stderr


def _check(cwd: Path, source: str) -> subprocess.CompletedProcess[str]:
    env = {"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"}
    command = [sys.executable, "-m", "fakesvc.graph", "check", source]
    return subprocess.run(command, capture_output=True, text=True, cwd=cwd, env=env, timeout=60)


@pytest.mark.parametrize(("mutate", "line"), [case[1:] for case in BAD_DOCUMENTS], ids=[c[0] for c in BAD_DOCUMENTS])
def test_a_bad_document_gives_exactly_its_line(mutate: Callable[[dict[str, Any]], None], line: str) -> None:
    doc = copy.deepcopy(MINI)
    mutate(doc)
    assert _problems(doc) == [f"mini.yaml: {line}"]


def test_several_problems_in_one_document_are_all_reported() -> None:
    doc = copy.deepcopy(MINI)
    for name in ("unknown service", "duplicate ports", "NaN", "unknown key"):
        next(case[1] for case in BAD_DOCUMENTS if case[0] == name)(doc)
    problems = _problems(doc)
    assert len(problems) == 4
    assert f"mini.yaml: {CALL_1}.service: no service named 'stok' (did you mean 'stock'?)" in problems
    assert f"mini.yaml: {CALL_1}.timeout_s: must be a finite number, not NaN" in problems
    assert "mini.yaml: services[2].port: duplicate port 9000 (also services[1])" in problems
    assert any(problem.startswith("mini.yaml: services[0].routes[0].metod: unknown key") for problem in problems)


@pytest.mark.parametrize(
    ("document", "line"),
    [
        (None, "mini.yaml: empty document (a graph is a mapping with name and services)"),
        ([MINI], "mini.yaml: the document must be a mapping with name and services (got a list)"),
        ("mini", "mini.yaml: the document must be a mapping with name and services (got 'mini')"),
    ],
)
def test_a_document_that_is_no_mapping_is_one_line(document: Any, line: str) -> None:
    assert _problems(document) == [line]


def test_file_errors_name_the_file_and_the_reason(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    cases = {
        "g.json": ('{"name": "mini",\n "services": [}', "g.json: line 2: JSON syntax error: Expecting value"),
        "g.yaml": (
            "name: mini\nservices: [\n  - x\n",
            "g.yaml: line 3: YAML syntax error: expected the node content, but found '-'",
        ),
        "dup.yaml": ("name: a\nname: b\n", "dup.yaml: line 2: YAML syntax error: duplicate key 'name'"),
        "empty.yaml": ("# nothing\n", "empty.yaml: empty document (a graph is a mapping with name and services)"),
        "list.yaml": ("- 1\n", "list.yaml: the document must be a mapping with name and services (got a list)"),
    }
    for name, (text, line) in cases.items():
        Path(name).write_text(text, encoding="utf-8")
        with pytest.raises(GraphError) as raised:
            load_graph(name)
        assert raised.value.problems == [line], name
    Path("dir.yaml").mkdir()
    for source, line in (
        ("missing.yaml", "missing.yaml: cannot read: No such file or directory"),
        ("dir.yaml", "dir.yaml: cannot read: Is a directory"),
        (
            "chekout",
            "chekout: no such file, nor a built-in graph (did you mean 'checkout'?) (built-in: checkout, shop)",
        ),
    ):
        with pytest.raises(GraphError) as raised:
            load_graph(source)
        assert raised.value.problems == [line]
    assert isinstance(raised.value, ConfigError)


def test_the_schema_accepts_the_builtin_graphs_and_the_examples() -> None:
    validator = jsonschema.Draft202012Validator(SCHEMA)
    jsonschema.Draft202012Validator.check_schema(SCHEMA)
    for name in BUILTIN_GRAPHS:
        validator.validate(read_document(Path(fakesvc.graph.__file__).parent / "graphs" / f"{name}.yaml"))
    validator.validate(MINI)
    with_everything = copy.deepcopy(MINI)
    with_everything["parameters"] = {"t": 1}
    _set("services.0.routes.0.script.1.call.timeout_s", "$t")(with_everything)
    _set("services.0.routes.0.weight", 2)(with_everything)
    _set("services.1.routes.0.response", {"x": {"key_flag": {"false_one_in": 3}}, "n": None, "t": "{trace_id}"})(
        with_everything
    )
    _set("services.1.port", 8100)(with_everything)
    validator.validate(with_everything)


@pytest.mark.parametrize(
    "mutate",
    [
        _set("services", []),
        _set("services.0.routes.0.metod", "GET"),
        _set("services.0.routes.0.method", "FETCH"),
        _set("services.0.routes.0.script.0.sleep.ms", [1, 2, 3]),
        _set("services.0.routes.0.script.0", {"sleep": {"ms": 1}, "log": {"level": "info", "message": "x"}}),
        _set("services.0.routes.0.script.1.call.timeout_s", "5"),
        _set("services.0.routes.0.script.1.call.on_error", "retry"),
        _set("services.1.port", 0),
        _set("services.1.name", "Pricing"),
        _set("services.1.routes.0.path", "/price"),
        _set("services.1.routes.0.path", "/healthz/{order_id}"),
        lambda doc: doc.pop("name"),
    ],
)
def test_the_schema_rejects_bad_documents(mutate: Callable[[dict[str, Any]], None]) -> None:
    doc = copy.deepcopy(MINI)
    mutate(doc)
    assert list(jsonschema.Draft202012Validator(SCHEMA).iter_errors(doc))
    assert _problems(doc)  # and the loader agrees
