"""Chaos rules: strict parsing, seeded decisions, schedules, the control API, files and profiles."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from fakesvc.faults import (
    INJECTED_TRACES,
    PROFILE_NAMES,
    Chaos,
    Fault,
    InputError,
    RuleError,
    chaos_config,
    chaos_routes,
    load_chaos_file,
    parse_rules,
    profile_rules,
)
from fakesvc.faults.rules import rules_by_service, service_routes
from fakesvc.graph.load import load_graph
from fakesvc.service.http_errors import json_errors
from fakesvc.settings import ConfigError

ROUTE = "/inventory/{item_id}"


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.mark.parametrize(
    ("rules", "message"),
    [
        ([{"kind": "explode"}], "rules[0].kind: must be one of error, latency, hang, drop, noise, cpu, memory, loss"),
        ([{"kind": "noise", "message": ""}], "rules[0].message: must be a non-empty string"),
        ([{"kind": "noise", "message": "x" * 1025}], "rules[0].message: must be a non-empty string of at most 1024"),
        ([{"kind": "noise", "exception": "Cache Miss"}], "rules[0].exception: must be an exception class name"),
        ([{"kind": "noise", "probability": float("nan")}], "rules[0].probability: must be a finite number"),
        ([{"kind": "noise", "message": {"nested": ["x"]}}], "rules[0].message: must be a non-empty string"),
        ([{"kind": "error", "start_log": 5}], "rules[0].start_log: must be a non-empty string"),
        ([{"kind": "error", "start_log": ""}], "rules[0].start_log: must be a non-empty string"),
        (
            [{"kind": "error", "start_log": "x" * 1025}],
            "rules[0].start_log: must be a non-empty string of at most 1024",
        ),
        ([{"kind": "error", "duration_s": 5, "end_log": ["Rollback"]}], "rules[0].end_log: must be a non-empty string"),
        ([{"kind": "error", "end_log": "Rollback"}], "rules[0].end_log: needs duration_s"),
        ([{"kind": "error", "probability": 1.5}], "rules[0].probability: must be a finite number between 0 and 1"),
        ([{"kind": "error", "status": 200}], "rules[0].status: must be a whole number between 400 and 599"),
        ([{"kind": "latency"}], "rules[0].latency_ms: a latency rule needs latency_ms"),
        ([{"kind": "latency", "latency_ms": [50, 10]}], "rules[0].latency_ms: max must be >= min"),
        ([{"kind": "drop"}, {"kind": "hang", "start_s": -1}], "rules[1].start_s: must be a finite number between 0"),
        ([{"kind": "latency", "latency_ms": float("nan")}], "rules[0].latency_ms: must be a finite number"),
        ([{"kind": "hang", "hang_s": float("inf")}], "rules[0].hang_s: must be a finite number"),
        ([{"kind": "drop", "duration_s": 1e300}], "rules[0].duration_s: must be a finite number between 0 and 604800"),
        ([{"kind": "drop", "colour": "red"}], "rules[0].colour: unknown key"),
        ([{"kind": "error", "route": "inventory"}], "rules[0].route: must be a path pattern"),
        ([{"kind": "drop", "method": "FETCH"}], "rules[0].method: must be one of GET, POST, PUT, DELETE, PATCH"),
        ([{"kind": "drop", "method": ""}], "rules[0].method: must be a non-empty string"),
        ([{"kind": "drop", "method": "G\u00c9T"}], "rules[0].method: must be one of GET"),
        ([{"kind": "drop", "method": "GET" * 10}], "rules[0].method: must be a non-empty string of at most 16"),
        ([{"kind": "drop", "method": ["GET"]}], "rules[0].method: must be a non-empty string"),
        ([{"kind": "drop", "method": None}], "rules[0].method: must be a non-empty string"),
        ([{"kind": "error", "exception": "not a name"}], "rules[0].exception: must be an exception class name"),
        ({"kind": "error"}, "rules: must be a list of rules"),
        (["error"], "rules[0]: must be an object"),
    ],
)
def test_malformed_rules_say_what_and_where(rules: Any, message: str) -> None:
    with pytest.raises(InputError) as info:
        parse_rules(rules)
    assert str(info.value).startswith(message)


def test_a_noise_rule_has_realistic_defaults_and_logs_its_own_words() -> None:
    (default,) = parse_rules([{"kind": "noise"}])
    assert default.to_json() == {
        "kind": "noise",
        "probability": 1.0,
        "message": "Cache miss for {key}: cache read timed out (retried, served from DB)",
        "exception": "TimeoutError",
    }
    (fault,) = Chaos("payment-service", parse_rules([{"kind": "noise", "message": "Metrics push failed"}])).decide(
        "/pay/{order_id}", "t"
    )
    truth = fault.truth()
    assert (truth["kind"], truth["status"], truth["delay_ms"]) == ("noise", None, None)
    assert truth["detail"] == "noise TimeoutError: Metrics push failed (rule 0)"


def test_rules_round_trip_through_json() -> None:
    raw = [
        {
            "kind": "error",
            "probability": 0.5,
            "route": ROUTE,
            "status": 503,
            "message": "DB down",
            "exception": "ConnectionError",
        },
        {"kind": "drop", "probability": 1.0, "route": ROUTE, "method": "GET"},
        {"kind": "latency", "probability": 1.0, "latency_ms": [100.0, 200.0], "start_s": 5.0, "duration_s": 10.0},
        {"kind": "hang", "probability": 1.0, "hang_s": 2.0},
        {"kind": "drop", "probability": 0.1},
        {"kind": "noise", "probability": 0.3, "message": "Cache miss", "exception": "KeyError"},
        {
            "kind": "error",
            "probability": 1.0,
            "status": 500,
            "message": "Injected fault",
            "exception": "RuntimeError",
            "start_s": 2.0,
            "duration_s": 3.0,
            "start_log": "Deploy v2",
            "end_log": "Rollback to v1",
        },
    ]
    rules = parse_rules({"rules": raw})
    assert [rule.to_json() for rule in rules] == raw
    assert parse_rules([rule.to_json() for rule in rules]) == rules


def test_each_kind_decides_its_fault() -> None:
    chaos = Chaos(
        "inventory-service",
        parse_rules(
            [
                {"kind": "error", "status": 503, "message": "DB down", "exception": "ConnectionError"},
                {"kind": "latency", "latency_ms": 250},
                {"kind": "hang"},
                {"kind": "drop"},
            ]
        ),
        seed=1,
        hang_s=4.0,
    )
    faults = chaos.decide(ROUTE, "trace-1")
    assert faults == (
        Fault("inventory-service", "error", 0, 503, "DB down", "ConnectionError", 0.0),
        Fault("inventory-service", "latency", 1, None, "Injected fault", "RuntimeError", 0.25),
        Fault("inventory-service", "hang", 2, None, "Injected fault", "RuntimeError", 4.0),
        Fault("inventory-service", "drop", 3, None, "Injected fault", "RuntimeError", 0.0),
    )
    assert [f.truth()["detail"] for f in faults] == [
        "error 503 ConnectionError: DB down (rule 0)",
        "latency 250 ms (rule 1)",
        "hang 4000 ms (rule 2)",
        "connection dropped (rule 3)",
    ]


def test_seeded_decisions_follow_the_probability_and_repeat_exactly() -> None:
    rules = parse_rules(
        [{"kind": "error", "probability": 0.05}, {"kind": "latency", "latency_ms": [10, 20], "probability": 0.5}]
    )
    keys = [f"trace-{i}" for i in range(10_000)]
    first = [Chaos("payment-service", rules, seed=42).decide(ROUTE, key) for key in keys]
    hits = sum(1 for faults in first if any(f.kind == "error" for f in faults))
    assert 400 < hits < 600  # 5 % of 10,000, within ~4.5 standard deviations
    shuffled = Chaos("payment-service", rules, seed=42)
    assert {key: shuffled.decide(ROUTE, key) for key in reversed(keys)} == dict(zip(keys, first))
    other = [Chaos("payment-service", rules, seed=43).decide(ROUTE, key) for key in keys]
    assert other != first
    delays = [f.delay_s for faults in first for f in faults if f.kind == "latency"]
    assert min(delays) >= 0.010 and max(delays) <= 0.020 and len(set(delays)) > 100


def test_route_patterns_limit_a_rule() -> None:
    chaos = Chaos("payment-service", parse_rules([{"kind": "drop", "route": "/pay/{order_id}"}]))
    assert chaos.decide("/pay/{order_id}", "k") and not chaos.decide("/other", "k")


def test_a_method_limits_a_rule_to_requests_of_that_method() -> None:
    (rule,) = parse_rules([{"kind": "drop", "route": "/cart/{order_id}", "method": "delete"}])
    assert rule.method == "DELETE"  # written in any case, kept as the graph writes methods
    chaos = Chaos("cartservice", (rule,))
    assert chaos.decide("/cart/{order_id}", "k", "DELETE")
    assert not chaos.decide("/cart/{order_id}", "k", "GET") and not chaos.decide("/other", "k", "DELETE")
    anywhere = Chaos("cartservice", parse_rules([{"kind": "drop", "method": "GET"}]))
    assert anywhere.decide("/a", "k", "GET") and not anywhere.decide("/a", "k", "POST")


def test_a_rule_may_name_only_a_method_its_service_serves_there() -> None:
    served = service_routes(load_graph("shop"), "cartservice")
    assert served == {"/cart/{order_id}": ("GET", "DELETE")}
    assert parse_rules([{"kind": "drop", "route": "/cart/{order_id}", "method": "DELETE"}], routes=served)
    with pytest.raises(
        RuleError,
        match=r"rules\[0\].method: the service serves no POST on /cart/\{order_id\} \(it serves DELETE, GET\)$",
    ):
        parse_rules([{"kind": "drop", "route": "/cart/{order_id}", "method": "POST"}], routes=served)
    with pytest.raises(RuleError, match=r"rules\[0\].method: the service serves no PUT on any route"):
        parse_rules([{"kind": "drop", "method": "PUT"}], routes=served)
    with pytest.raises(RuleError, match=r"^file\[cartservice\]\[0\].method: the service serves no PUT"):
        rules_by_service({"cartservice": [{"kind": "drop", "method": "PUT"}]}, "file", load_graph("shop"))


def test_schedules_count_from_when_rules_were_set() -> None:
    clock = FakeClock()
    chaos = Chaos("inventory-service", clock=clock, wall_clock=lambda: 1_700_000_000.0)
    chaos.set_rules(parse_rules([{"kind": "drop", "start_s": 10, "duration_s": 5}]))
    for offset, active in ((0, False), (9.99, False), (10, True), (14.99, True), (15, False), (100, False)):
        clock.now = 1000.0 + offset
        assert bool(chaos.decide(ROUTE, "k")) is active, offset
    assert chaos.windows() == [
        {
            "service": "inventory-service",
            "rule": 0,
            "kind": "drop",
            "detail": "drop connection",
            "probability": 1.0,
            "start_s": 10.0,
            "duration_s": 5.0,
            "start": "2023-11-14T22:13:30+00:00",
            "end": "2023-11-14T22:13:35+00:00",
            "always_on": False,
        }
    ]


def test_injected_faults_are_remembered_per_trace_within_a_bound() -> None:
    chaos = Chaos("inventory-service", parse_rules([{"kind": "hang"}]))
    for i in range(INJECTED_TRACES + 5):
        chaos.record(f"t{i}", chaos.decide(ROUTE, f"t{i}"))
    assert chaos.injected("t0") == [] and chaos.injected(f"t{INJECTED_TRACES + 4}")[0]["kind"] == "hang"
    assert len(chaos._injected) == INJECTED_TRACES


def control_app(chaos: Chaos) -> web.Application:
    app = web.Application(middlewares=[json_errors()])
    app.router.add_routes(chaos_routes(chaos, admin_token=None))
    return app


async def test_control_api_replaces_reads_and_clears_rules(aiohttp_client: Any) -> None:
    chaos = Chaos("inventory-service")
    client = await aiohttp_client(control_app(chaos))
    response = await client.put("/chaos", json={"rules": [{"kind": "latency", "latency_ms": [5, 10]}]})
    assert response.status == 200
    body = await (await client.get("/chaos")).json()
    assert body["rules"] == [{"kind": "latency", "probability": 1.0, "latency_ms": [5.0, 10.0]}] and body["active"] == [
        True
    ]
    for bad in (b"{nope", json.dumps({"rules": [{"kind": "boom"}]}).encode(), json.dumps([1]).encode()):
        response = await client.put("/chaos", data=bad)
        assert response.status == 400 and (await response.json())["detail"]
    for rule, key in (({"kind": "noise", "message": ""}, "message"), ({"kind": "noise", "colour": 1}, "colour")):
        response = await client.put("/chaos", json={"rules": [rule]})
        assert response.status == 400 and (await response.json())["detail"].startswith(f"rules[0].{key}: ")
    assert len(chaos.rules) == 1  # the old rules stay in force
    assert (await client.delete("/chaos")).status == 200 and chaos.rules == ()
    chaos.record("t1", [Fault("inventory-service", "drop", 0, None, "", "", 0.0)])
    assert (await (await client.get("/chaos/injected/t1")).json())["faults"][0]["kind"] == "drop"


def test_a_rule_may_name_only_the_route_its_service_serves() -> None:
    assert parse_rules([{"kind": "drop", "route": ROUTE}], routes=(ROUTE,))[0].route == ROUTE
    with pytest.raises(
        RuleError,
        match=r"rules\[0\].route: the service serves no route '/pay/\{order_id\}' \(use /inventory/\{item_id\}\)$",
    ):
        parse_rules([{"kind": "drop", "route": "/pay/{order_id}"}], routes=(ROUTE,))
    with pytest.raises(RuleError, match=r"inventory-service\]\[0\].route"):
        profile_file = {"inventory-service": [{"kind": "drop", "route": "/checkout/{order_id}"}]}
        rules_by_service(profile_file, "file")
    with pytest.raises(RuleError, match="at most 100 rules"):
        parse_rules([{"kind": "drop"}] * 101)


def test_rule_files_in_json_and_toml(tmp_path: Path) -> None:
    json_file = tmp_path / "rules.json"
    json_file.write_text(json.dumps({"inventory-service": [{"kind": "drop", "probability": 0.2}]}))
    toml_file = tmp_path / "rules.toml"
    toml_file.write_text('[[payment-service]]\nkind = "latency"\nlatency_ms = [100, 200]\n')
    assert load_chaos_file(str(json_file))["inventory-service"][0].probability == 0.2
    assert load_chaos_file(str(toml_file))["payment-service"][0].latency_ms == (100.0, 200.0)
    json_file.write_text(json.dumps({"billing": []}))
    with pytest.raises(RuleError, match="unknown service 'billing'"):
        load_chaos_file(str(json_file))
    with pytest.raises(RuleError, match="cannot read"):
        load_chaos_file(str(tmp_path / "missing.json"))


def test_profiles_load_and_the_config_reports_bad_input_in_one_line(tmp_path: Path) -> None:
    assert set(PROFILE_NAMES) >= {"none", "classic", "incident"}
    for name in PROFILE_NAMES:
        profile_rules(name)
    classic = profile_rules("classic")
    assert classic["inventory-service"][0].message == "Inventory DB unavailable"
    assert classic["inventory-service"][0].probability == 0.05 and classic["payment-service"][0].probability == 0.01
    assert chaos_config(environ={"FAKESVC_CHAOS_PROFILE": "incident"}).rules["inventory-service"]
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"inventory-service": [{"kind": "nope"}]}))
    with pytest.raises(ConfigError, match=r"bad.json\[inventory-service\]\[0\].kind"):
        chaos_config(environ={"FAKESVC_CHAOS": str(bad)})
