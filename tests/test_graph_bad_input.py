"""A new user's graph file at its worst: every bad value is one line naming its place, exit 2, no traceback.

Most cases call the loader in-process (the same code both CLIs run); a few run
``python -m fakesvc.graph check`` and ``supervisor.py --graph`` for the exit
status and the single line on stderr.
"""

from __future__ import annotations

import copy
import json
import os
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from fakesvc.config import ServiceConfig
from fakesvc.graph import GraphError, load, load_graph, parse_graph
from fakesvc.graph import __main__ as graph_cli
from fakesvc.graph.placement import graph_of
from fakesvc.settings import ConfigError
from tests.graph_fixtures import MINI_YAML

REPO = Path(__file__).resolve().parents[1]
MINI: dict[str, Any] = yaml.safe_load(re.sub(r"path: (/\S*?\{\w+\})", r'path: "\1"', MINI_YAML))  # plain YAML quotes {
SENTINEL = 7_654_321  # written into a document, then replaced by the bad number's text
HUGE = "9" * 5000  # past Python's 4,300-digit int() limit
PAST_FLOAT = "9" * 400  # int() reads it, float() cannot
EDGE_CALL = "services[0].routes[0].script[1].call"
CALL_KEYS = "services.0.routes.0.script.1.call"


def _problems(doc: Any) -> list[str]:
    """The loader's lines for ``doc``; each is one line and the error's text is exactly them."""
    with pytest.raises(GraphError) as raised:
        parse_graph(doc, "g.yaml")
    return _one_line_each(raised.value)


def _file_problems(path: Path) -> list[str]:
    with pytest.raises(GraphError) as raised:
        load_graph(str(path))
    return _one_line_each(raised.value)


def _one_line_each(error: GraphError) -> list[str]:
    assert str(error) == "\n".join(error.problems)
    assert error.problems and all("\n" not in line and "Traceback" not in line for line in error.problems)
    return error.problems


def _with(path: str, value: Any) -> dict[str, Any]:
    """MINI with the value at ``services.1.port`` (list indexes as numbers) set to ``value``."""
    doc = copy.deepcopy(MINI)
    *parents, last = [int(part) if part.isdigit() else part for part in path.split(".")]
    target: Any = doc
    for part in parents:
        target = target[part]
    target[last] = value
    return doc


def _write(tmp_path: Path, name: str, doc: dict[str, Any], number: str = "") -> Path:
    """``doc`` as a JSON or YAML file, the :data:`SENTINEL` written as ``number`` (text no dumper would write)."""
    text = json.dumps(doc) if name.endswith(".json") else yaml.safe_dump(doc, sort_keys=False)
    path = tmp_path / name
    path.write_text(text.replace(str(SENTINEL), number) if number else text, encoding="utf-8")
    return path


# --- 1. the size of a file and the work inside it ----------------------------------------------------------------


def test_a_file_over_the_cap_is_refused_before_it_is_parsed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    big = tmp_path / "big.yaml"
    big.write_bytes(b"[" * (load.MAX_FILE_BYTES + 1))  # parsed, it would be a syntax (or depth) error instead
    assert _file_problems(big) == [
        f"{big}: larger than 4,194,304 bytes, the most a graph file may hold "
        "(a graph is a few KB; raise FAKESVC_GRAPH_MAX_BYTES if this one is meant)"
    ]
    monkeypatch.setenv("FAKESVC_GRAPH_MAX_BYTES", "100")
    small = tmp_path / "g.json"
    small.write_text(json.dumps(MINI), encoding="utf-8")
    assert _file_problems(small)[0].startswith(f"{small}: larger than 100 bytes")
    monkeypatch.setenv("FAKESVC_GRAPH_MAX_BYTES", str(small.stat().st_size))
    assert load_graph(str(small)).name == "mini"


def test_a_device_that_never_ends_is_read_no_further_than_the_cap() -> None:
    if not Path("/dev/zero").exists():
        pytest.skip("no /dev/zero here")
    assert _file_problems(Path("/dev/zero"))[0].startswith("/dev/zero: larger than 4,194,304 bytes")


@pytest.mark.parametrize("raw", ["0", "-1", "4MB", "1e6", " ", "\u0661\u0662", HUGE])
def test_a_bad_size_cap_setting_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, raw: str) -> None:
    monkeypatch.setenv("FAKESVC_GRAPH_MAX_BYTES", raw)
    path = _write(tmp_path, "g.yaml", MINI)
    if not raw.strip():
        assert load_graph(str(path)).name == "mini"  # empty is unset: the default
        return
    (line,) = _file_problems(path)
    assert line.startswith("FAKESVC_GRAPH_MAX_BYTES: must be a whole number of bytes > 0 (got ")


def test_a_file_of_too_many_values_stops_while_it_is_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(load, "MAX_VALUES", 500)
    path = tmp_path / "g.yaml"
    path.write_text(MINI_YAML.replace("ms: 5}", "ms: [" + "1, " * 600 + "1]}"), encoding="utf-8")
    assert _file_problems(path) == [f"{path}: line 18: more than 500 values (a graph has far fewer)"]


def test_an_alias_used_everywhere_is_counted_at_each_use(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A few hundred nodes that a walk would read a hundred times over: stopped, not walked."""
    monkeypatch.setattr(load, "MAX_VALUES", 2000)
    fields = ", ".join(f"f{index}: 1" for index in range(100))
    routes = "".join(
        f"      - {{path: /r{index}/{{order_id}}, script: [], response: *fields}}\n" for index in range(50)
    )
    text = MINI_YAML.replace("script: [{sleep: {ms: 5}}]", f"script: []\n        response: &fields {{{fields}}}")
    path = tmp_path / "g.yaml"
    path.write_text(text + "  - name: more\n    routes:\n" + routes, encoding="utf-8")
    problems = _file_problems(path)
    assert problems[-1].endswith(": more than 2,000 values to read (a YAML alias counts each time it is used)")


def test_a_report_stops_after_a_screenful_of_problems() -> None:
    doc = _with("services.0.routes.0.script", [{"slep": {"ms": 1}} for _ in range(150)])
    problems = _problems(doc)
    assert len(problems) == load.MAX_PROBLEMS + 1
    assert problems[-1] == f"g.yaml: stopped after {load.MAX_PROBLEMS} problems: fix these and check again"


# --- 2. paths an HTTP client or router would rewrite --------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "words"),
    [
        ("/price/./{order_id}", "must not hold a '.' segment (got '/price/./{order_id}'): the HTTP client"),
        ("/price/../price/{order_id}", "must not hold a '..' segment (got '/price/../price/{order_id}')"),
        ("/{order_id}/..", "must not hold a '..' segment (got '/{order_id}/..')"),
        ("/price//{order_id}", "must not hold an empty segment (got '/price//{order_id}'): remove the extra /"),
        ("/price/{order_id}/", "must not hold an empty segment (got '/price/{order_id}/')"),
        ("/price/%2e/{order_id}", "must not hold %-escapes (got '/price/%2e/{order_id}')"),
        ("/price/%2E%2E/{order_id}", "must not hold %-escapes (got '/price/%2E%2E/{order_id}')"),
    ],
)
def test_a_path_the_client_would_normalise_is_refused(path: str, words: str) -> None:
    """In the callee's route and in the call: each is named by its own place."""
    route = _problems(_with("services.1.routes.0.path", path))
    call = _problems(_with("services.0.routes.0.script.1.call.path", path))
    assert len(route) == 1 and route[0].startswith(f"g.yaml: services[1].routes[0].path: {words}")
    assert len(call) == 1 and call[0].startswith(f"g.yaml: {EDGE_CALL}.path: {words}")


def test_dots_inside_a_segment_are_plain_characters() -> None:
    doc = _with("services.1.routes.0.path", "/price/.../v1.2/{order_id}")
    doc["services"][0]["routes"][0]["script"][1]["call"]["path"] = "/price/.../v1.2/{order_id}"
    assert parse_graph(doc, "g.yaml").services[1].routes[0].path == "/price/.../v1.2/{order_id}"


# --- 3. numbers ---------------------------------------------------------------------------------------------------

NUMERIC_FIELDS = [
    ("services.1.port", "services[1].port"),
    ("services.1.routes.0.script.0.sleep.ms", "services[1].routes[0].script[0].sleep.ms"),
    ("services.0.routes.0.script.1.call.timeout_s", f"{EDGE_CALL}.timeout_s"),
    ("services.0.routes.0.weight", "services[0].routes[0].weight"),
    ("parameters", "parameters.t"),
    ("services.1.routes.0.response", "services[1].routes[0].response.n"),
]


def _numeric(path: str, value: Any) -> dict[str, Any]:
    """MINI with ``value`` in one numeric field (a parameter and a response field are mappings of their own)."""
    if path == "parameters":
        return _with(path, {"t": value})
    if path.endswith("response"):
        return _with(path, {"n": value})
    return _with(path, value)


@pytest.mark.parametrize("suffix", [".yaml", ".json"])
@pytest.mark.parametrize(("path", "where"), NUMERIC_FIELDS, ids=[field[1] for field in NUMERIC_FIELDS])
def test_a_5000_digit_number_is_one_line(tmp_path: Path, path: str, where: str, suffix: str) -> None:
    for sign in ("", "-"):
        file = _write(tmp_path, f"g{suffix}", _numeric(path, SENTINEL), sign + HUGE)
        assert _file_problems(file) == [
            f"{file}: {where}: must be a finite number (got a 5,000-digit number; no field takes more than 308 digits)"
        ]


@pytest.mark.parametrize(
    ("text", "words"),
    [
        (PAST_FLOAT, "must be a finite number (got a 400-digit number; no field takes more than 308 digits)"),
        ("0x" + "f" * 5000, "must be a finite number (got a 5,000-digit number; no field takes more than 308 digits)"),
        ("0x" + "f" * 300, "must be a finite number (got a number past any float)"),
        ("1.0e+400", "must be a finite number, not infinity"),
        ("-1.0e+400", "must be a finite number, not -infinity"),
        (".nan", "must be a finite number, not NaN"),
        (".inf", "must be a finite number, not infinity"),
        ("true", "must be a number, not a boolean (true)"),
        ("''", "must be a number or a $parameter (got '')"),
        ("1.0e30", "must be a number or a $parameter (got '1.0e30', a string to YAML: write 1.0e+30)"),
    ],
)
def test_a_bad_yaml_number_is_one_line(tmp_path: Path, text: str, words: str) -> None:
    file = _write(tmp_path, "g.yaml", _with("services.0.routes.0.script.1.call.timeout_s", SENTINEL), text)
    assert _file_problems(file) == [f"{file}: {EDGE_CALL}.timeout_s: {words}"]


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("NaN", "must be a finite number, not NaN"),
        ("Infinity", "must be a finite number, not infinity"),
        ("-Infinity", "must be a finite number, not -infinity"),
        ("1e400", "must be a finite number, not infinity"),
        (PAST_FLOAT, "must be a finite number (got a 400-digit number; no field takes more than 308 digits)"),
        ("false", "must be a number, not a boolean (false)"),
        ("null", "must be a number or a $parameter (got null)"),
    ],
)
def test_a_bad_json_number_is_one_line(tmp_path: Path, text: str, words: str) -> None:
    file = _write(tmp_path, "g.json", _with("services.0.routes.0.script.1.call.timeout_s", SENTINEL), text)
    assert _file_problems(file) == [f"{file}: {EDGE_CALL}.timeout_s: {words}"]


def test_numbers_past_64_bits_are_refused_where_they_are_passed_on() -> None:
    problems = _problems(_numeric("services.1.routes.0.response", 2**63))
    assert problems == [
        "g.yaml: services[1].routes[0].response.n: a whole number must fit in 64 bits, -2**63 to 2**63-1 "
        "(got 9223372036854775808)"
    ]
    assert parse_graph(_numeric("services.1.routes.0.response", -(2**63)), "g.yaml")


def test_negative_zero_is_zero() -> None:
    graph = parse_graph(_with("services.1.routes.0.script.0.sleep.ms", -0.0) | {"parameters": {"t": -0.0}}, "g.yaml")
    sleep = graph.services[1].routes[0].script[0]
    assert str(sleep) == "Sleep(low_ms=0.0, high_ms=0.0)" and str(graph.parameters["t"]) == "0.0"


@pytest.mark.parametrize(("value", "words"), [(True, "true"), (False, "false")])
def test_a_boolean_where_a_number_goes_is_one_line(value: bool, words: str) -> None:
    assert _problems(_with("services.1.port", value)) == [
        f"g.yaml: services[1].port: must be a number, not a boolean ({words})"
    ]


# --- 4. a base port the graph overflows ---------------------------------------------------------------------------


def _fifty(tmp_path: Path) -> Path:
    services = [
        {"name": f"s{index}", "routes": [{"path": "/r/{order_id}", "entry": index == 0, "script": []}]}
        for index in range(50)
    ]
    for index, service in enumerate(services[:-1]):
        service["routes"][0]["script"] = [
            {"call": {"service": f"s{index + 1}", "path": "/r/{order_id}", "timeout_s": 5}}
        ]
    return _write(tmp_path, "fifty.yaml", {"name": "fifty", "services": services})


BASE_PORT_LINE = (
    "FAKESVC_BASE_PORT (--base-port) 65500: the graph fifty has 50 services, and s36 (index 36) would listen "
    "on 65536, past 65535; use a base port of at most 65486 (or 0 for free ports)"
)


def test_a_base_port_the_graph_overflows_is_refused_at_start(tmp_path: Path) -> None:
    path = str(_fifty(tmp_path))
    with pytest.raises(ConfigError) as raised:
        graph_of(ServiceConfig(graph=path, base_port=65500))
    assert str(raised.value) == BASE_PORT_LINE
    assert graph_of(ServiceConfig(graph=path, base_port=65486)).name == "fifty"
    assert graph_of(ServiceConfig(graph=path, base_port=0)).name == "fifty"


# --- 5. duplicate keys ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "line"),
    [
        ('{"name": "a", "name": "mini", "services": []}', "name: duplicate key 'name' (write it once)"),
        (
            '{"name": "mini", "services": [{"name": "a", "routes": [{"path": "/a/{k}", "script": '
            '[{"sleep": {"ms": 1, "ms": 2}}]}]}]}',
            "services[0].routes[0].script[0].sleep.ms: duplicate key 'ms' (write it once)",
        ),
        ('{"name": "mini", "parameters": {"": 1, "": 2}}', "parameters['']: duplicate key '' (write it once)"),
    ],
)
def test_a_json_key_written_twice_is_refused_by_its_path(tmp_path: Path, text: str, line: str) -> None:
    path = tmp_path / "g.json"
    path.write_text(text, encoding="utf-8")
    assert _file_problems(path) == [f"{path}: {line}"]


def test_a_yaml_key_written_twice_is_refused_too(tmp_path: Path) -> None:
    path = tmp_path / "g.yaml"
    path.write_text(MINI_YAML.replace("method: GET\n", "method: GET\n        method: POST\n", 1), encoding="utf-8")
    assert _file_problems(path) == [f"{path}: line 18: YAML syntax error: duplicate key 'method'"]


# --- 6. where a port comes from -----------------------------------------------------------------------------------


def test_check_says_what_the_base_port_is(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    path = str(_write(tmp_path, "g.yaml", MINI))
    monkeypatch.delenv("FAKESVC_BASE_PORT", raising=False)
    assert graph_cli.main(["check", path]) == 0
    assert "service pricing port 8101 (FAKESVC_BASE_PORT default 8100 + 1) code PRICING" in capsys.readouterr().out
    monkeypatch.setenv("FAKESVC_BASE_PORT", "9000")
    assert graph_cli.main(["check", path]) == 0
    assert "service pricing port 9001 (FAKESVC_BASE_PORT 9000 + 1) code PRICING" in capsys.readouterr().out
    assert graph_cli.main(["check", "--base-port", "0", path]) == 0
    assert "service pricing port free (FAKESVC_BASE_PORT 0: any free port) code PRICING" in capsys.readouterr().out
    assert graph_cli.main(["check", "--base-port", "65500", str(_fifty(tmp_path))]) == 2
    assert capsys.readouterr() == ("", BASE_PORT_LINE + "\n")


# --- 7. names, strings and nesting --------------------------------------------------------------------------------

BAD_TEXT: list[tuple[str, Callable[[], dict[str, Any]], str]] = [
    ("empty name", lambda: _with("name", ""), "name: must not be empty"),
    ("empty callee", lambda: _with(f"{CALL_KEYS}.service", ""), f"{EDGE_CALL}.service: must not be empty"),
    (
        "empty message",
        lambda: _with("services.0.routes.0.failed", ""),
        "services[0].routes[0].failed: must not be empty",
    ),
    (
        "RTL override",
        lambda: _with("services.0.routes.0.completed", "Order \u202edecalp"),
        "services[0].routes[0].completed: must not contain control characters (found U+202E)",
    ),
    (
        "NUL",
        lambda: _with(f"{CALL_KEYS}.service", "pric\x00ing"),
        f"{EDGE_CALL}.service: must not contain control characters (found U+0000)",
    ),
    (
        "newline in a path",
        lambda: _with("services.1.routes.0.path", "/price/{order_id}\n"),
        "services[1].routes[0].path: must not contain control characters (found U+000A)",
    ),
    (
        "newline in a key",
        lambda: _with("services.1.routes.0.met\nhod", "GET"),
        "services[1].routes[0]['met\\nhod']: unknown key (did you mean 'method'?) (allowed: completed, entry, failed, method, path, "
        "response, script, slow_code, weight)",
    ),
    (
        "RTL override in a key",
        lambda: _with("services.1.routes.0.response", {"ok\u202e": 1}),
        "services[1].routes[0].response['ok\\u202e']: must not contain control characters (found U+202E)",
    ),
    (
        "empty key",
        lambda: _with("services.1.routes.0.response", {"": 1}),
        "services[1].routes[0].response['']: must not be empty",
    ),
    (
        "a step of many keys",
        lambda: _with("services.1.routes.0.script.0", {f"k\n{index}": 1 for index in range(1000)}),
        "services[1].routes[0].script[0]: a step is a mapping of one key, one of sleep, log, call, parallel, "
        "fail_if, hang_if, span (got keys k\\n0, k\\n1, k\\n2, k\\n3, ...)",
    ),
    (
        "nested lists in a response",
        lambda: _with("services.1.routes.0.response", {"n": _nested_list(200)}),
        "services[1].routes[0].response.n: must be a string template, a number, a boolean, null, "
        "{from_call: SERVICE, field: NAME} or {key_flag: {false_one_in: N}} (got a list)",
    ),
    (
        "nested spans",
        lambda: _with("services.1.routes.0.script", [_nested_spans(9)]),
        "services[1].routes[0].script[0]" + ".span.script[0]" * 7 + ".span.script: nested too deeply "
        "(at most 8 levels of scripts in spans and parallels)",
    ),
]


def _nested_list(levels: int) -> list[Any]:
    value: list[Any] = []
    for _ in range(levels):
        value = [value]
    return value


def _nested_spans(levels: int) -> dict[str, Any]:
    step: dict[str, Any] = {"sleep": {"ms": 1}}
    for _ in range(levels):
        step = {"span": {"name": "deep", "script": [step]}}
    return step


@pytest.mark.parametrize(("make", "line"), [case[1:] for case in BAD_TEXT], ids=[case[0] for case in BAD_TEXT])
def test_a_bad_name_or_string_is_one_line(make: Callable[[], dict[str, Any]], line: str) -> None:
    assert _problems(make()) == [f"g.yaml: {line}"]


@pytest.mark.parametrize(
    ("name", "code"), [("pricing\u202egnp", "U+202E"), ("pric\x00ing", "U+0000"), ("a\nb", "U+000A")]
)
def test_a_service_name_with_a_control_character_is_refused(name: str, code: str) -> None:
    """The calls to the service as the file meant it are then unknown: said too, each on its own line."""
    problems = _problems(_with("services.1.name", name))
    assert problems[0] == f"g.yaml: services[1].name: must not contain control characters (found {code})"
    assert problems[1:] == [f"g.yaml: {EDGE_CALL}.service: no service named 'pricing'"]


@pytest.mark.parametrize(("name", "text"), [("deep.yaml", "a: " + "[" * 100_000), ("deep.json", "[" * 100_000)])
def test_nesting_past_what_a_parser_can_read_is_one_line(tmp_path: Path, name: str, text: str) -> None:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    assert _file_problems(path) == [f"{path}: nested too deeply to read"]


def test_a_file_name_with_a_newline_stays_one_line(tmp_path: Path) -> None:
    path = tmp_path / "a\nb.yaml"
    path.write_text("name: [\n", encoding="utf-8")
    (line,) = _file_problems(path)
    assert line.startswith(f"{tmp_path}/a\\nb.yaml: line 2: YAML syntax error")
    _write(tmp_path, "a\nb.yaml", _with("name", ""))
    assert _file_problems(path) == [f"{tmp_path}/a\\nb.yaml: name: must not be empty"]


# --- the command lines: exit 2, one line, nothing else ------------------------------------------------------------


def _run(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {"PYTHONPATH": str(REPO), "PATH": os.environ.get("PATH", "/usr/bin:/bin")}
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, cwd=cwd, env=env, timeout=60)


def test_graph_check_of_a_5000_digit_number_exits_2_with_one_line(tmp_path: Path) -> None:
    _write(tmp_path, "g.yaml", _with("services.1.port", SENTINEL), HUGE)
    done = _run(tmp_path, "-m", "fakesvc.graph", "check", "g.yaml")
    assert (done.returncode, done.stdout) == (2, "")
    assert done.stderr.splitlines() == [
        "g.yaml: services[1].port: must be a finite number (got a 5,000-digit number; no field takes more than "
        "308 digits)"
    ]


def test_the_supervisor_refuses_bad_graphs_with_one_line(tmp_path: Path) -> None:
    _write(tmp_path, "g.json", _with("services.1.routes.0.script.0.sleep.ms", SENTINEL), HUGE)
    done = _run(tmp_path, str(REPO / "supervisor.py"), "--graph", "g.json")
    assert (done.returncode, done.stdout) == (2, "")
    assert done.stderr.splitlines() == [
        "fakesvc: g.json: services[1].routes[0].script[0].sleep.ms: must be a finite number (got a 5,000-digit "
        "number; no field takes more than 308 digits)"
    ]
    _fifty(tmp_path)
    done = _run(tmp_path, str(REPO / "supervisor.py"), "--graph", "fifty.yaml", "--base-port", "65500")
    assert (done.returncode, done.stdout, done.stderr) == (2, "", f"fakesvc: {BASE_PORT_LINE}\n")
