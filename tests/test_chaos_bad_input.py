"""Bad input to the chaos rules, as a new user writes it: every mistake is a clear 400 or one line and exit 2.

``PUT /chaos`` (and ``/chaos/services``) answers a bad body with a 400 naming
the place and leaves the rules in force as they were; a rules file or a
profile name given at start is refused in one line (exit 2 from the CLIs).
"""

from __future__ import annotations

import builtins
import json
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from fakesvc.faults import Chaos, InputError, chaos_config, chaos_routes, parse_rules, services_routes
from fakesvc.faults.profiles import GRAPH_PROFILES, load_chaos_file
from fakesvc.faults.rules import service_routes
from fakesvc.graph.load import load_graph
from fakesvc.raising import raiser
from fakesvc.service.http_errors import json_errors
from fakesvc.settings import ConfigError
from tests.processes import ROOT, spawn

SERVICE = "inventory-service"
ROUTE = "/inventory/{item_id}"
START = [{"kind": "latency", "latency_ms": 5, "probability": 0.5}]  # the rules in force before every bad PUT


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def control_app(chaos: Chaos) -> web.Application:
    app = web.Application(middlewares=[json_errors()])
    routes = service_routes(load_graph("checkout"), SERVICE)
    app.router.add_routes(chaos_routes(chaos, routes=routes, admin_token=None))
    app.router.add_routes(services_routes({SERVICE: chaos}, admin_token=None))
    return app


@pytest.fixture
async def client(aiohttp_client: Any) -> TestClient:
    return await aiohttp_client(control_app(Chaos(SERVICE, parse_rules(START))))


async def refused(client: TestClient, body: str, path: str = "/chaos") -> str:
    """PUT ``body``: it must be a 400 that changes nothing; its detail."""
    response = await client.put(path, data=body, headers={"Content-Type": "application/json"})
    assert response.status == 400, await response.text()
    detail: str = (await response.json())["detail"]
    snapshot = await (await client.get("/chaos")).json()
    assert snapshot["rules"] == [rule.to_json() for rule in parse_rules(START)]  # the old rules stay in force
    assert "\n" not in detail
    return detail


def put_rule(rule: dict[str, Any]) -> str:
    return json.dumps({"rules": [rule]})  # ASCII: a control character travels as its \u escape


def rules_file(tmp_path: Path, text: str, suffix: str = ".json") -> str:
    path = tmp_path / f"rules{suffix}"
    path.write_text(text, encoding="utf-8")
    return str(path)


def config_error(path: str) -> str:
    with pytest.raises(ConfigError) as info:
        chaos_config(environ={"FAKESVC_CHAOS": path})
    message = str(info.value)
    assert "\n" not in message and message.startswith("--chaos: "), message
    return message


# --- 1. control characters -------------------------------------------------------------------------------------

CONTROLS = ["\n", "\r", "\x00", "\x1b", "\u202e", "\u200b", "\ufeff", "\u2028", "\u2029", "\ud800"]
TEXT_FIELDS = {
    "message": {"kind": "error"},
    "start_log": {"kind": "drop"},
    "end_log": {"kind": "drop", "duration_s": 5},
    "route": {"kind": "drop"},
    "method": {"kind": "drop"},
    "exception": {"kind": "noise"},
}


@pytest.mark.parametrize("char", CONTROLS, ids=lambda char: f"U+{ord(char):04X}")
@pytest.mark.parametrize("field", TEXT_FIELDS)
async def test_a_control_character_in_any_text_is_a_400_naming_the_field(
    client: TestClient, field: str, char: str
) -> None:
    value = {"route": ROUTE, "method": "GET"}.get(field, "Inventory DB") + char + "tail"
    detail = await refused(client, put_rule({**TEXT_FIELDS[field], field: value}))
    assert detail.startswith(f"rules[0].{field}: must not contain control characters (found U+{ord(char):04X} at ")


@pytest.mark.parametrize("char", ["\n", "\u202e", "\x00"], ids=lambda char: f"U+{ord(char):04X}")
def test_a_control_character_in_a_rules_file_is_one_line(tmp_path: Path, char: str) -> None:
    path = rules_file(tmp_path, json.dumps({SERVICE: [{"kind": "error", "message": f"forged{char}line"}]}))
    assert f"[{SERVICE}][0].message: must not contain control characters" in config_error(path)


async def test_unicode_text_that_is_not_a_control_is_kept_as_written(client: TestClient) -> None:
    words = "Ошибка базы 数据库 café 💥 \u05e9\u05dc\u05d5\u05dd"
    rule = {"kind": "error", "message": words, "start_log": words, "end_log": words, "duration_s": 9}
    response = await client.put("/chaos", json={"rules": [rule]})
    assert response.status == 200
    (kept,) = (await response.json())["rules"]
    assert (kept["message"], kept["start_log"], kept["end_log"]) == (words, words, words)


# --- 2. duplicate keys -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "body", "detail"),
    [
        ("/chaos", '{"rules": [{"kind": "drop"}], "rules": []}', "body: key 'rules' is written twice"),
        ("/chaos", '{"rules": [{"kind": "drop", "kind": "error"}]}', "rules[0]: key 'kind' is written twice"),
        (
            "/chaos",
            '{"rules": [{"kind": "drop"}, {"kind": "latency", "latency_ms": 5, "latency_ms": 9}]}',
            "rules[1]: key 'latency_ms' is written twice",
        ),
        ("/chaos", '{"rules": [{"kind": "drop", "x": {"a": 1, "a": 2}}]}', "rules[0].x: key 'a' is written twice"),
        ("/chaos", '{"rules": [], "r\\u202eules": 1, "r\\u202eules": 2}', "body: key 'r\\u202eules' is written"),
        (
            "/chaos/services",
            '{"inventory-service": [{"kind": "drop"}], "inventory-service": []}',
            "body: key 'inventory-service' is written twice",
        ),
    ],
)
async def test_a_key_written_twice_in_a_body_is_a_400_naming_it_and_where(
    client: TestClient, path: str, body: str, detail: str
) -> None:
    assert (await refused(client, body, path)).startswith(detail)


@pytest.mark.parametrize(
    ("suffix", "text", "detail"),
    [
        (".json", '{"inventory-service": [{"kind": "drop"}], "inventory-service": []}', "key 'inventory-service'"),
        (".json", '{"inventory-service": [{"kind": "drop", "kind": "error"}]}', "inventory-service[0]: key 'kind'"),
        (".yaml", "inventory-service:\n  - kind: drop\n    kind: error\n", "inventory-service[0]: key 'kind'"),
        (".yml", "inventory-service: []\ninventory-service:\n  - kind: drop\n", "key 'inventory-service'"),
        (".yaml", "a: &x {k: 1, k: 2}\nb: *x\n", "a: key 'k'"),
        (".toml", '[[inventory-service]]\nkind = "drop"\nkind = "error"\n', "not valid TOML"),
    ],
)
def test_a_key_written_twice_in_a_rules_file_is_refused_naming_it(
    tmp_path: Path, suffix: str, text: str, detail: str
) -> None:
    path = rules_file(tmp_path, text, suffix)
    with pytest.raises(InputError, match=r"^" + path.replace(".", r"\.")) as info:
        load_chaos_file(path)
    assert detail in str(info.value)
    assert detail in config_error(path)


def test_a_yaml_rules_file_reads_like_json(tmp_path: Path) -> None:
    path = rules_file(tmp_path, "inventory-service:\n  - kind: latency\n    latency_ms: [100, 200]\n", ".yaml")
    assert load_chaos_file(path)[SERVICE][0].latency_ms == (100.0, 200.0)


# --- 3. exception classes ----------------------------------------------------------------------------------------


def _takes_one_message(cls: type[BaseException]) -> bool:
    try:
        cls("message")
    except TypeError:
        return False
    return True


BUILTIN_EXCEPTIONS = {
    name: found
    for name, found in vars(builtins).items()
    if isinstance(found, type) and issubclass(found, BaseException)
}
CANNOT = sorted(name for name, cls in BUILTIN_EXCEPTIONS.items() if not _takes_one_message(cls))
CAN = sorted(set(BUILTIN_EXCEPTIONS) - set(CANNOT))


def test_the_builtins_that_need_more_than_a_message_are_the_known_ones() -> None:
    assert {"ExceptionGroup", "BaseExceptionGroup", "UnicodeDecodeError", "UnicodeEncodeError"} <= set(CANNOT)


@pytest.mark.parametrize("name", CANNOT)
async def test_an_exception_that_cannot_take_one_message_is_a_400_listing_them(client: TestClient, name: str) -> None:
    detail = await refused(client, put_rule({"kind": "error", "exception": name}))
    assert detail.startswith(f"rules[0].exception: {name} cannot be raised with one message (refused: ")
    assert all(other in detail for other in CANNOT) and "allowed: any other builtin exception" in detail


@pytest.mark.parametrize("name", CAN)
def test_every_other_builtin_exception_is_raised_with_its_message(name: str) -> None:
    (rule,) = parse_rules([{"kind": "error", "exception": name, "message": "Inventory DB unavailable"}])
    with pytest.raises(Exception) as info:  # a BaseException that is not an Exception is raised as a RuntimeError
        raiser(rule.exception)(rule.message)
    assert type(info.value).__name__ == name or type(info.value) is BUILTIN_EXCEPTIONS[name]  # IOError is OSError
    assert "Inventory DB unavailable" in str(info.value)


@pytest.mark.parametrize(
    ("name", "detail"),
    [
        ("message", "message cannot name the exception here"),
        ("__debug__", "__debug__ cannot name the exception here"),
        ("\ufb01Error", "must be an exception class name"),  # Python would read it as fiError
        ("Ошибка", "must be an exception class name"),
        ("None", "must be an exception class name"),
    ],
)
async def test_a_name_that_would_not_raise_itself_is_refused(client: TestClient, name: str, detail: str) -> None:
    assert (await refused(client, put_rule({"kind": "error", "exception": name}))).startswith(
        f"rules[0].exception: {detail}"
    )


# --- 4. keys of another kind, unknown keys ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("rule", "key", "owners"),
    [
        ({"kind": "latency", "latency_ms": 500, "status": 503}, "status", "error"),
        ({"kind": "latency", "latency_ms": 500, "message": "slow"}, "message", "error and noise"),
        ({"kind": "drop", "latency_ms": 500}, "latency_ms", "latency"),
        ({"kind": "hang", "exception": "TimeoutError"}, "exception", "error and noise"),
        ({"kind": "noise", "status": 500}, "status", "error"),
        ({"kind": "error", "hang_s": 1}, "hang_s", "hang"),
    ],
)
async def test_a_key_of_another_kind_is_a_400_naming_the_key_the_kind_and_what_it_takes(
    client: TestClient, rule: dict[str, Any], key: str, owners: str
) -> None:
    kind = rule["kind"]
    detail = await refused(client, put_rule(rule))
    assert detail.startswith(f"rules[0].{key}: does not apply to a {kind} rule (it is for {owners}); ")
    assert f"a {kind} rule takes kind, probability, route, method, start_s, duration_s" in detail


@pytest.mark.parametrize(
    ("rule", "detail"),
    [
        ({"kind": "latency", "latency": 500}, "rules[0].latency: unknown key (did you mean 'latency_ms'?)"),
        ({"kind": "drop", "probabilty": 0.5}, "rules[0].probabilty: unknown key (did you mean 'probability'?)"),
        ({"kind": "drop", "duration": 5}, "rules[0].duration: unknown key (did you mean 'duration_s'?)"),
        (
            {"kind": "laterncy"},
            "rules[0].kind: must be one of error, latency, hang, drop, noise, cpu, memory, loss (got 'laterncy')",
        ),
        ({"kind": "drop", "a\nb": 1}, "rules[0]['a\\nb']: unknown key (allowed: kind,"),
    ],
)
async def test_an_unknown_key_or_kind_gets_the_nearest_known_one(
    client: TestClient, rule: dict[str, Any], detail: str
) -> None:
    got = await refused(client, put_rule(rule))
    assert got.startswith(detail)
    if rule["kind"] == "laterncy":
        assert got.endswith("(did you mean 'latency'?)")


# --- 5. profile names --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("typo", "graph", "meant"), [("incidnet", "checkout", "incident"), ("catalog-outgae", "shop", "catalog-outage")]
)
def test_a_misspelt_profile_gets_the_nearest_name(typo: str, graph: str, meant: str) -> None:
    with pytest.raises(ConfigError, match=rf"unknown profile \(did you mean '{meant}'\?\)"):
        chaos_config(environ={"FAKESVC_CHAOS_PROFILE": typo}, graph=load_graph(graph))


def test_a_profile_of_another_graph_names_the_graph_it_is_for() -> None:
    with pytest.raises(ConfigError, match=r"^--chaos-profile: profile 'email-down' is not for graph checkout \(it is"):
        chaos_config(environ={"FAKESVC_CHAOS_PROFILE": "email-down"})


@pytest.mark.parametrize("doc", ["faults.md", "configuration.md"])
def test_the_docs_list_every_graphs_profiles(doc: str) -> None:
    text = (ROOT / "docs" / doc).read_text()
    for profiles in GRAPH_PROFILES.values():
        for name in profiles:
            assert f"`{name}`" in text, f"{name} is not in docs/{doc}"


@pytest.mark.parametrize(
    ("args", "start"),
    [
        (["--chaos-profile", "incidnet"], "fakesvc: --chaos-profile: unknown profile (did you mean 'incident'?)"),
        (["--chaos", "RULES"], "fakesvc: --chaos: RULES[inventory-service][0].status: does not apply to a latency"),
    ],
)
async def test_the_cli_exits_2_with_one_line(tmp_path: Path, args: list[str], start: str) -> None:
    path = rules_file(tmp_path, json.dumps({SERVICE: [{"kind": "latency", "latency_ms": 1, "status": 503}]}))
    process = await spawn(["-m", "fakesvc.payment", *(path if arg == "RULES" else arg for arg in args)], {})
    status, stderr = await process.exited()
    assert status == 2 and len(stderr.strip().splitlines()) == 1, stderr
    assert stderr.startswith(start.replace("RULES", path)), stderr


# --- 6. windows of replaced rules --------------------------------------------------------------------------------


def test_a_window_that_opened_is_kept_when_its_rule_is_replaced_or_deleted() -> None:
    clock = FakeClock()
    chaos = Chaos(SERVICE, clock=clock, wall_clock=lambda: 1_700_000_000.0)
    chaos.set_rules(parse_rules([{"kind": "error", "start_s": 10, "duration_s": 30}, {"kind": "drop", "start_s": 90}]))
    clock.now += 25  # inside the error's window; the drop's has not opened
    chaos.set_rules(parse_rules([{"kind": "latency", "latency_ms": 5, "start_s": 5, "duration_s": 5}]))
    clock.now += 60  # the latency's window opened and closed
    chaos.clear()
    assert [(w["kind"], w["start"], w["end"], w["replaced"]) for w in chaos.windows()] == [
        ("error", "2023-11-14T22:13:30+00:00", "2023-11-14T22:13:45+00:00", "2023-11-14T22:13:45+00:00"),
        ("latency", "2023-11-14T22:13:25+00:00", "2023-11-14T22:13:30+00:00", "2023-11-14T22:14:20+00:00"),
    ]


async def test_chaos_windows_answers_for_a_rule_replaced_mid_run(aiohttp_client: Any) -> None:
    clock = FakeClock()
    chaos = Chaos(SERVICE, clock=clock, wall_clock=lambda: 1_700_000_000.0)
    client = await aiohttp_client(control_app(chaos))
    windowed = {"kind": "error", "status": 503, "start_s": 0, "duration_s": 60, "start_log": "Deploy v2"}
    assert (await client.put("/chaos", json={"rules": [windowed]})).status == 200
    clock.now += 20
    assert (await client.put("/chaos", json={"rules": [{"kind": "drop", "probability": 0.1}]})).status == 200
    window, drop = await (await client.get("/chaos/windows")).json()
    assert window["kind"] == "error" and window["start_log"] == "Deploy v2"
    assert (window["start"], window["end"]) == ("2023-11-14T22:13:20+00:00", "2023-11-14T22:13:40+00:00")
    assert (drop["kind"], drop["probability"], drop["end"], drop["always_on"]) == ("drop", 0.1, None, True)
    assert (await (await client.get("/chaos")).json())["windows"] == [window, drop]


# --- 7. values no rule can hold ----------------------------------------------------------------------------------

HUGE_INT = "9" * 5000
BAD_VALUES = [HUGE_INT, "NaN", "Infinity", "-Infinity", "1e400", "-1e400", "1" + "0" * 40, '""', "{}", "[]"]
BAD_VALUES += ['{"a": 1}', "[[1, 2]]", '["x"]', "null", "true", '"\\u0000"']
FIELDS = {  # each field, in a rule otherwise valid for it
    "kind": {},
    "probability": {"kind": "drop"},
    "route": {"kind": "drop"},
    "method": {"kind": "drop"},
    "status": {"kind": "error"},
    "message": {"kind": "error"},
    "exception": {"kind": "error"},
    "latency_ms": {"kind": "latency"},
    "hang_s": {"kind": "hang"},
    "start_s": {"kind": "drop"},
    "duration_s": {"kind": "drop"},
    "start_log": {"kind": "drop"},
    "end_log": {"kind": "drop", "duration_s": 5},
}


def raw_rule(field: str, value: str) -> str:
    others = "".join(f"{json.dumps(key)}: {json.dumps(item)}, " for key, item in FIELDS[field].items())
    return f'{{{others}"{field}": {value}}}'


@pytest.mark.parametrize("value", BAD_VALUES, ids=lambda value: value[:12])
@pytest.mark.parametrize("field", FIELDS)
async def test_a_value_no_rule_can_hold_is_a_400_naming_its_field(client: TestClient, field: str, value: str) -> None:
    detail = await refused(client, f'{{"rules": [{raw_rule(field, value)}]}}')
    assert detail.startswith(f"rules[0].{field}"), detail
    assert len(detail) < 1000  # the 5,000 digits are not echoed back


@pytest.mark.parametrize(
    ("field", "value"),
    [("kind", "\u00e9rror"), ("route", "/inventory/\u00e9"), ("method", "G\u00c9T"), ("exception", "\u00c9rror")]
    + [("status", "\u0665\u0660\u0663"), ("probability", "\u0661")],  # Arabic-Indic digits, as strings
)
async def test_unicode_where_a_name_or_number_belongs_is_a_400(client: TestClient, field: str, value: str) -> None:
    rule = {**FIELDS[field], field: value}
    assert (await refused(client, put_rule(rule))).startswith(f"rules[0].{field}")


@pytest.mark.parametrize("value", [HUGE_INT, "NaN", "1e400", '""', '{"a": 1}', "[]"], ids=lambda value: value[:12])
@pytest.mark.parametrize("field", ["probability", "status", "latency_ms", "message"])
def test_a_bad_value_in_a_rules_file_is_one_line(tmp_path: Path, field: str, value: str) -> None:
    path = rules_file(tmp_path, f'{{"{SERVICE}": [{raw_rule(field, value)}]}}')
    message = config_error(path)
    assert message.startswith(f"--chaos: {path}[{SERVICE}][0].{field}: ") and len(message) < 1000


@pytest.mark.parametrize(
    ("text", "detail"),
    [
        ("", "must be JSON"),
        ("{", "must be JSON (line 1"),
        ("\u0000", "must be JSON"),
        ('{"billing": []}', "unknown service 'billing'"),
        ('{"inventroy-service": []}', "(did you mean 'inventory-service'?)"),
        ("[" * 100_000, "JSON nested too deeply"),
    ],
    ids=["empty", "truncated", "nul", "service", "service-typo", "deep"],
)
def test_a_rules_file_that_is_no_rules_is_one_line(tmp_path: Path, text: str, detail: str) -> None:
    assert detail in config_error(rules_file(tmp_path, text))


def test_a_rules_file_that_is_not_utf8_is_one_line(tmp_path: Path) -> None:
    path = tmp_path / "rules.json"
    path.write_bytes(b'{"inventory-service": [{"kind": "error", "message": "\xff"}]}')
    assert "not UTF-8 text (byte" in config_error(str(path))
