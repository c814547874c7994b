"""What a run could not honour is refused at the start, one line, exit 2; a fault near a timeout is only noted.

Each rule is run from the real command line (``graph check``, ``supervisor.py``,
``python -m fakesvc.traffic``, a service alone), the refusal and the boundary
that passes; the arithmetic behind them is pinned down beside.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from fakesvc.faults.rules import Rule
from fakesvc.graph.feasibility import check_timeouts, near_timeout
from fakesvc.graph.load import load_graph, parse_graph
from fakesvc.settings import ConfigError
from fakesvc.traffic.config import TrafficConfig
from fakesvc.traffic.feasibility import _in_every_id, _index_blocks, check_order_ids
from fakesvc.traffic.plan import order_id
from tests.processes import ROOT

# No backend, no telemetry, any free port: a refused start must not get as far as listening anyway.
QUIET = {
    "FAKESVC_SINK": "off",
    "FAKESVC_TELEMETRY": "",
    "OTEL_TRACES_EXPORTER": "none",
    "FAKESVC_BASE_PORT": "0",
    "GATEWAY_PORT": "0",
    "PAYMENT_PORT": "0",
    "INVENTORY_PORT": "0",
}
NOBODY = "http://127.0.0.1:1"  # refuses connections at once: a traffic run that passed its checks exits 1 there


def pair(timeout_s: str = "0.2", key: str = "no-stock", low_ms: float = 20) -> str:
    """edge calls back (``timeout_s`` as YAML reads it), which may fail by order id and sleeps [low_ms, 30] ms."""
    return f"""\
name: pair
services:
  - name: edge
    routes:
      - path: /buy/{{order_id}}
        method: POST
        entry: true
        script:
          - call: {{service: back, path: "/work/{{order_id}}", timeout_s: {timeout_s}}}
  - name: back
    routes:
      - path: /work/{{order_id}}
        method: GET
        script:
          - fail_if: {{key_contains: "{key}", status: 503, exception: LookupError, message: No stock}}
          - sleep: {{ms: [{low_ms!r}, 30]}}
"""


def run(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """``python ARGS`` in the repository, with a clean environment plus ``env``; its stderr must be traceback-free."""
    environ = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "PYTHONPATH": str(ROOT),
        "FAKESVC_SPILL_DIR": str(tmp_path / "spill"),
        **QUIET,
        **env,
    }
    done = subprocess.run([sys.executable, *args], capture_output=True, text=True, cwd=ROOT, env=environ, timeout=60)
    assert "Traceback" not in done.stderr, done.stderr
    return done


def refused(done: subprocess.CompletedProcess[str]) -> str:
    """The one line a refused start printed (exit 2, nothing else on stderr)."""
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2 and len(lines) == 1, done.stderr
    return lines[0]


def write(tmp_path: Path, name: str, text: str) -> str:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return str(path)


# --- 1. a call timeout under 1 ms is no graph -------------------------------------------------------------------

CALL = "services[0].routes[0].script[0].call.timeout_s"


@pytest.mark.parametrize(
    ("timeout_s", "shown"), [("0.0005", "0.0005"), ("1.0e-300", "1e-300"), ("0.000999", "0.000999")]
)
def test_graph_check_refuses_a_timeout_under_1_ms_naming_its_place(tmp_path: Path, timeout_s: str, shown: str) -> None:
    done = run(tmp_path, "-m", "fakesvc.graph", "check", write(tmp_path, "pair.yaml", pair(timeout_s)))
    assert done.stdout == ""
    assert refused(done) == (
        f"{tmp_path / 'pair.yaml'}: {CALL}: must be a number of at least 0.001 and at most 3600 (got {shown})"
    )


@pytest.mark.parametrize("timeout_s", ["0.001", "0.002"])
def test_graph_check_takes_a_timeout_of_1_ms_and_more(tmp_path: Path, timeout_s: str) -> None:
    graph = write(tmp_path, "pair.yaml", pair(timeout_s, low_ms=0))  # no work: only the bound is tried
    done = run(tmp_path, "-m", "fakesvc.graph", "check", graph)
    assert done.returncode == 0, done.stderr
    assert f"edge -> back GET /work/{{order_id}} timeout {timeout_s} s" in done.stdout


def test_the_supervisor_refuses_a_timeout_setting_under_1_ms(tmp_path: Path) -> None:
    """A setting overriding a graph parameter is bounded like the number it stands for."""
    done = run(
        tmp_path,
        "supervisor.py",
        "--latency-scale",
        "0",
        "--rate",
        "5",
        "--count",
        "1",
        FAKESVC_INVENTORY_TIMEOUT_S="1e-300",
    )
    assert refused(done) == (
        "fakesvc: checkout.yaml: services[1].routes[0].script[1].call.timeout_s: must be a number of at least "
        "0.001 and at most 3600 (got 1e-300) (from $inventory_timeout_s)"
    )


# --- 2. a timeout below the callee's least work at the latency scale --------------------------------------------

CHECKOUT_AT_100 = (
    "checkout.yaml: api-gateway POST /checkout/{order_id}: its call to payment-service times out after 5 s, but "
    "payment-service POST /pay/{order_id} takes at least 12,000 ms at latency scale 100: the call can never succeed "
    "(raise its timeout_s or lower --latency-scale)"
)


def test_the_checkout_at_latency_scale_100_is_refused_by_the_supervisor_and_graph_check(tmp_path: Path) -> None:
    """Payment's least work at 100 is 100 ms x 100 plus inventory's 20 ms x 100 (its 2 s timeout allows that)."""
    assert refused(run(tmp_path, "supervisor.py", "--latency-scale", "100", "--rate", "5", "--count", "1")) == (
        f"fakesvc: {CHECKOUT_AT_100}"
    )
    assert refused(run(tmp_path, "-m", "fakesvc.graph", "check", "checkout", FAKESVC_LATENCY_SCALE="100")) == (
        CHECKOUT_AT_100
    )
    assert refused(run(tmp_path, "-m", "fakesvc.gateway", "--latency-scale", "100")) == f"fakesvc: {CHECKOUT_AT_100}"


def test_the_checkout_at_latency_scale_10_passes_graph_check(tmp_path: Path) -> None:
    done = run(tmp_path, "-m", "fakesvc.graph", "check", "checkout", "--latency-scale", "10")
    assert done.returncode == 0 and done.stderr == "", done.stderr


def test_a_timeout_equal_to_the_least_work_starts_and_one_below_is_refused(tmp_path: Path) -> None:
    """back's least work is 20 ms: a 20 ms timeout may succeed (when the machine is quick enough), 19 ms never."""
    below = run(
        tmp_path,
        "supervisor.py",
        "--graph",
        write(tmp_path, "below.yaml", pair("0.019")),
        "--rate",
        "5",
        "--count",
        "1",
    )
    assert refused(below) == (
        f"fakesvc: {tmp_path / 'below.yaml'}: edge POST /buy/{{order_id}}: its call to back times out after 0.019 s, "
        "but back GET /work/{order_id} takes at least 20 ms at latency scale 1: the call can never succeed "
        "(raise its timeout_s or lower --latency-scale)"
    )
    equal = write(tmp_path, "equal.yaml", pair("0.02"))
    done = run(tmp_path, "supervisor.py", "--graph", equal, "--rate", "50", "--count", "1", "--quiet")
    assert done.returncode in (0, 1) and "never succeed" not in done.stderr, done.stderr  # a checkout ran


def test_least_work_adds_sequences_takes_the_slowest_branch_and_caps_a_call_at_its_timeout() -> None:
    """mid's least work is 10 + (5 + 5) + max(30, 100) ms times the scale, a call no longer than its timeout."""
    graph = parse_graph(yaml.safe_load(LEAST), "least.yaml")
    with pytest.raises(
        ConfigError, match=r"^least.yaml: mid GET /m/\{order_id\}: its call to slow times out after 0.1 s"
    ):
        check_timeouts(graph, 1.0, graph.names)  # the fallback to slow can never succeed either
    check_timeouts(graph, 0.0, graph.names)  # no simulated work at all
    check_timeouts(graph, 6.0, ["edge"])  # 60 + 60 + 180 = 300 ms: the 0.3 s timeout may just be met
    with pytest.raises(ConfigError, match=r"mid GET /m/\{order_id\} takes at least 300.5 ms at latency scale 6.01: "):
        check_timeouts(graph, 6.01, ["edge"])
    with pytest.raises(ConfigError, match=r"takes at least 3,000 ms at latency scale 100: "):  # fast is cut at 1 s
        check_timeouts(graph, 100.0, ["edge"])


LEAST = """
name: least
services:
  - name: edge
    routes:
      - path: /buy/{order_id}
        method: POST
        entry: true
        script: [{call: {service: mid, path: "/m/{order_id}", timeout_s: 0.3}}]
  - name: mid
    routes:
      - path: /m/{order_id}
        script:
          - hang_if: {key_contains: slow, s: 60}
          - sleep: {ms: [10, 500]}
          - span: {name: work, script: [{sleep: {ms: 5}}, {log: {level: info, message: x}}, {sleep: {ms: [5, 9]}}]}
          - parallel:
              - call: {service: fast, path: "/f/{order_id}", timeout_s: 1}
              - call: {service: slow, path: "/s/{order_id}", timeout_s: 0.1, on_error: ignore}
  - name: fast
    routes: [{path: "/f/{order_id}", script: [{sleep: {ms: 30}}]}]
  - name: slow
    routes: [{path: "/s/{order_id}", script: [{sleep: {ms: 5000}}]}]
"""


# --- 3. a scenario key every order id holds -----------------------------------------------------------------------


@pytest.mark.parametrize("key", ["ord", "-", "ord-0"])
def test_a_traffic_run_refuses_a_key_every_order_id_holds(tmp_path: Path, key: str) -> None:
    graph = write(tmp_path, "pair.yaml", pair(key=key))
    line = (
        f"fakesvc: back GET /work/{{order_id}}: fail_if key_contains {key!r} is in every order id of this run "
        "(ord-000000-success too), so every checkout would hit it whatever its scenario "
        "(use a key only its own scenario's order ids hold)"
    )
    assert refused(run(tmp_path, "supervisor.py", "--graph", graph, "--rate", "5", "--count", "1")) == line
    traffic = run(
        tmp_path, "-m", "fakesvc.traffic", "--target", NOBODY, "--rate", "5", "--count", "1", "--graph", graph
    )
    assert refused(traffic) == line


def test_a_key_the_index_digits_hold_is_refused_while_they_do_and_taken_once_they_do_not(tmp_path: Path) -> None:
    """``ord-0`` is in ord-000000 .. ord-099999: refused for 100,000 checkouts, taken for 100,001."""
    graph = write(tmp_path, "pair.yaml", pair(key="ord-0"))
    command = ("-m", "fakesvc.traffic", "--target", NOBODY, "--rate", "5", "--graph", graph, "--count")
    assert "'ord-0' is in every order id" in refused(run(tmp_path, *command, "100000"))
    taken = run(tmp_path, *command, "100001")
    assert taken.returncode == 1 and "nothing answers at" in taken.stderr, taken.stderr


def test_a_mix_of_only_the_keys_own_scenario_is_taken(tmp_path: Path) -> None:
    """Every checkout of ``--mix timeout=1`` hangs on purpose; with success in the mix, all is well too."""
    for mix in ("timeout=1", "success=1,timeout=1"):
        done = run(tmp_path, "-m", "fakesvc.traffic", "--target", NOBODY, "--rate", "5", "--count", "1", "--mix", mix)
        assert done.returncode == 1 and "nothing answers at" in done.stderr, done.stderr


@pytest.mark.parametrize("count", [1, 2, 9, 10, 11, 100, 101, 1000, 1001, 10101, 10102])
@pytest.mark.parametrize(
    "key", ["ord", "0", "00", "0000", "000000", "0-s", "-000", "d-00", "1", "01", "cc", "s-", "-f"]
)
@pytest.mark.parametrize("scenarios", [["success"], ["success", "fail-pay"]])
def test_the_structural_answer_is_every_order_ids_answer(key: str, count: int, scenarios: list[str]) -> None:
    expected = all(key in order_id(index, name) for index in range(count) for name in scenarios)
    assert _in_every_id(key, scenarios, count) is expected


@pytest.mark.parametrize("count", [1, 10, 999_999, 1_000_000, 1_000_001, 12_345_678])
def test_the_index_blocks_are_exactly_the_run_s_index_digits(count: int) -> None:
    """Each block keeps one width: 000000 .. 999999 are six digits, 1000000 on seven."""
    start = 0
    for fixed, free in _index_blocks(count):
        assert fixed + "0" * free == order_id(start, "x")[4:-2]
        assert len(order_id(start + 10**free - 1, "x")) == len(order_id(start, "x"))
        start += 10**free
    assert start == count


def test_the_check_reads_the_mix_and_the_run_length() -> None:
    graph = parse_graph(yaml.safe_load(pair(key="00")), "pair.yaml")
    run_of = {
        count: TrafficConfig("", 5, count=count, mix={"success": 1, "00": 1}, graph=graph) for count in (1, 10102)
    }
    with pytest.raises(ConfigError, match="'00' is in every order id"):
        check_order_ids(run_of[1])
    check_order_ids(run_of[10102])  # ord-010101 has no 00
    check_order_ids(TrafficConfig("", 5, count=1, mix={"success": 0, "00": 1}, graph=graph))  # its own scenario only
    healthy = parse_graph(yaml.safe_load(pair(key="cc")), "pair.yaml")  # "success" holds "cc": not its scenario
    with pytest.raises(ConfigError, match="'cc' is in every order id of this run \\(ord-000000-success too\\)"):
        check_order_ids(TrafficConfig("", 5, count=1, mix={"success": 1, "cc": 1}, graph=healthy))


# --- 4. a fault rule near a caller's timeout is noted, not refused -----------------------------------------------------

NEAR_LINE = (
    "back: the {rule} rule comes within 50 ms of edge's 0.2 s timeout on it: such checkouts may time out or not, "
    "and the truth labels each as observed"
)


def test_a_latency_rule_near_the_timeout_is_kept_with_one_line(tmp_path: Path) -> None:
    """probability 0: the rule never fires, so the one checkout succeeds and the run exits 0."""
    rules = write(
        tmp_path, "near.json", json.dumps({"back": [{"kind": "latency", "latency_ms": 150, "probability": 0}]})
    )
    graph = write(tmp_path, "pair.yaml", pair(low_ms=0))
    done = run(tmp_path, "supervisor.py", "--graph", graph, "--chaos", rules, "--rate", "50", "--count", "1", "--quiet")
    assert done.returncode == 0, done.stderr
    assert done.stderr.splitlines()[0] == NEAR_LINE.format(rule="latency 150 ms")
    farther = write(
        tmp_path, "far.json", json.dumps({"back": [{"kind": "latency", "latency_ms": 149, "probability": 0}]})
    )
    done = run(
        tmp_path, "supervisor.py", "--graph", graph, "--chaos", farther, "--rate", "50", "--count", "1", "--quiet"
    )
    assert done.returncode == 0 and "within 50 ms" not in done.stderr, done.stderr


@pytest.mark.parametrize(
    ("rule", "near"),
    [
        (Rule("latency", latency_ms=(150.0, 150.0)), True),  # 50 ms short: 200 - 150 <= 50
        (Rule("latency", latency_ms=(149.0, 149.9)), False),
        (Rule("latency", latency_ms=(10.0, 160.0)), True),  # the range reaches in
        (Rule("latency", latency_ms=(249.0, 900.0)), True),  # 49 ms past
        (Rule("latency", latency_ms=(250.0, 900.0)), False),  # 50 ms past: times out every time
        (Rule("hang", hang_s=0.2), True),
        (Rule("hang"), False),  # FAKESVC_HANG_S, 5 s here
        (Rule("hang", hang_s=0.2, route="/work/{order_id}", method="GET"), True),
        (Rule("hang", hang_s=0.2, method="POST"), False),  # no caller's call reaches it
        (Rule("hang", hang_s=0.2, route="/other/{order_id}"), False),
        (Rule("error"), False),
    ],
)
def test_which_rules_are_near_a_timeout(rule: Rule, near: bool) -> None:
    graph = parse_graph(yaml.safe_load(pair()), "pair.yaml")
    line = near_timeout(graph, "back", rule, hang_s=5.0)
    assert (line == NEAR_LINE.format(rule=rule.describe())) if near else line == ""


def test_the_builtin_graphs_and_profiles_start_at_latency_scale_1_with_no_note() -> None:
    """The shipped profiles keep away from the timeouts (docs/incidents.md says so of each)."""
    from fakesvc.faults.profiles import GRAPH_PROFILES, profile_rules

    for name, profiles in GRAPH_PROFILES.items():
        graph = load_graph(name)
        check_timeouts(graph, 1.0, graph.names)
        for profile in profiles:
            for service, rules in profile_rules(profile, graph).items():
                assert [near_timeout(graph, service, rule, 5.0) for rule in rules] == [""] * len(rules), profile
