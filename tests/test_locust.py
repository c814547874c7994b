"""The packaged Locust file: real Locust processes (headless, and a master with two workers) against the supervisor.

Locust is never imported here: it monkey-patches the process with gevent,
which the asyncio tests around it would not survive. It runs as users run it,
in subprocesses, and the truth its workers write is checked against what the
embedded sink stored.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from collections.abc import AsyncIterator
from itertools import islice
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from fakesvc.settings import ConfigError
from fakesvc.traffic.locust import LOCUSTFILE
from fakesvc.traffic.locust.options import DEFAULT_MIX_TEXT, load_options, order_prefix, truth_path, worker_seed
from fakesvc.traffic.plan import plan
from fakesvc.truth import read_truth
from tests.conftest import OBSERVED_TRUTH_KEYS
from tests.processes import FAST_TIMEOUTS, Process, Supervisor, spawn, start_supervisor
from tests.telemetry_fixtures import eventually, free_port

MIX = "success=50,fail-pay=25,timeout=25"
# A random inventory failure on top of the scenarios: faults from a rule, judged by the truth.
CHAOS = {
    "inventory-service": [{"kind": "error", "status": 503, "probability": 0.2, "message": "Inventory DB unavailable"}]
}
# Locust's truth replays the chain with the services' timeouts: it is given the supervisor's (FAST_TIMEOUTS).


def _options(**given: str | None) -> argparse.Namespace:
    values: dict[str, str | None] = {"mix": DEFAULT_MIX_TEXT, "seed": None, "truth": None, "pace": "0", "run_id": None}
    return argparse.Namespace(**{**values, **given})


@pytest.mark.parametrize(
    ("given", "message"),
    [
        ({"mix": "bogus"}, "--mix: must be SCENARIO=WEIGHT"),
        ({"mix": ""}, "--mix: must be SCENARIO=WEIGHT"),
        ({"mix": "success=nan"}, "--mix: weight of success must be a finite number >= 0"),
        ({"mix": "success=inf"}, "--mix: weight of success must be a finite number >= 0"),
        ({"mix": "success=-1"}, "--mix: weight of success must be a finite number >= 0"),
        ({"mix": "success=\u0661"}, "--mix: weight of success must be a number"),
        ({"mix": "success=1e308,timeout=1e308"}, "--mix: the weights must add up to a finite number"),
        ({"mix": "success=0"}, "--mix: at least one weight must be > 0"),
        ({"seed": "1.5"}, "--seed: must be a whole number"),
        ({"seed": "\u0661"}, "--seed: must be a whole number"),
        ({"pace": "nan"}, "--pace: must be a finite number >= 0"),
        ({"pace": "inf"}, "--pace: must be a finite number >= 0"),
        ({"pace": "-1"}, "--pace: must be a finite number >= 0"),
        ({"pace": ""}, "--pace: must be a number"),
        ({"truth": "/no/such/dir/truth"}, "--truth: no directory '/no/such/dir'"),
        ({"truth": "."}, "--truth: must end in a file name prefix"),
        ({"truth": "out/"}, "--truth: must end in a file name prefix"),
    ],
)
def test_bad_load_options_are_one_clear_line(given: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_options(_options(**given))
    assert str(info.value).startswith(message), str(info.value)


def test_truth_is_written_one_file_per_worker(tmp_path: Path) -> None:
    assert truth_path(str(tmp_path / "truth"), 3) == tmp_path / "truth-w3.jsonl"
    assert truth_path(str(tmp_path / "truth.jsonl"), 0) == tmp_path / "truth-w0.jsonl"
    assert load_options(_options(truth=str(tmp_path / "truth"), seed=" 7 ", pace="0.5")).seed == 7


def test_each_worker_plans_its_own_checkouts_reproducibly() -> None:
    """Two workers never share an order id or a trace id; a seed gives each worker the same checkouts again."""
    mix = {"success": 1.0, "fail-pay": 1.0}

    def share(seed: int | None, index: int) -> list[tuple[str, str]]:
        checkouts = plan(mix, worker_seed(seed, index), prefix=order_prefix(index))
        return [(c.order_id, c.trace_id) for c in islice(checkouts, 500)]

    first, second = share(7, 0), share(7, 1)
    assert share(7, 0) == first
    assert not {o for o, _ in first} & {o for o, _ in second}
    assert not {t for _, t in first} & {t for _, t in second}
    assert share(8, 0) != first
    assert share(None, 0) != share(None, 0)  # no seed: random


@pytest.fixture
async def supervisor(tmp_path: Path) -> AsyncIterator[Supervisor]:
    """The supervisor with its embedded sink and no traffic of its own, and a fault rule at inventory."""
    chaos = tmp_path / "chaos.json"
    chaos.write_text(json.dumps(CHAOS))
    sup = await start_supervisor(tmp_path, FAKESVC_CHAOS=str(chaos), FAKESVC_SEED="11")
    try:
        await sup.read_until("api-gateway listening on")
        yield sup
    finally:
        await sup.kill()


def _load_args(supervisor: Supervisor, truth: Path, run_s: int, users: int) -> list[str]:
    return [
        "--headless",
        "--host",
        supervisor.url("gateway"),
        "-u",
        str(users),
        "-r",
        str(users),
        "-t",
        f"{run_s}s",
        "--mix",
        MIX,
        "--seed",
        "5",
        "--truth",
        str(truth),
        "--pace",
        "0.1",
    ]


async def _finished(process: Process, timeout: float = 120) -> str:
    """Locust's exit status 0 (no checkout answered other than its truth expected), else fail with its stderr."""
    status, rest = await process.exited(timeout)
    stderr = "".join(process.stderr_lines) + rest
    assert status == 0, stderr[-3000:]
    return stderr


async def _check_against_sink(supervisor: Supervisor, lines: list[dict[str, Any]]) -> None:
    """Each truth line: the truth's keys, its expected status answered, its trace's signals stored by the sink."""
    assert lines
    assert len({line["trace_id"] for line in lines}) == len(lines), "a trace id was sent twice"
    for line in lines:
        assert [key for key in line if key != "error"] == OBSERVED_TRUTH_KEYS, line
        assert line["status"] == line["expected_status"] and line["cause"] in ("healthy", "fault"), line
    assert {line["status"] for line in lines} == {200, 500}
    assert any(f["service"] == "inventory-service" and f["kind"] == "error" for line in lines for f in line["faults"])
    sink = supervisor.urls["sink"]
    async with aiohttp.ClientSession() as session:
        for line in lines:

            async def stored(trace_id: str = line["trace_id"]) -> bool:
                async with session.get(f"{sink}/query/traces/{trace_id}") as response:
                    signals = await response.json()
                return {"api-gateway", "payment-service"} <= {signal["service_name"] for signal in signals}

            await eventually(stored, what=f"the signals of {line['order_id']} in the sink")


async def test_headless_locust_f_writes_the_truth(supervisor: Supervisor, tmp_path: Path) -> None:
    """``locust -f`` the packaged file, one process: worker 0's truth, judged against the sink."""
    locust = Path(sys.executable).with_name("locust")
    args = _load_args(supervisor, tmp_path / "truth.jsonl", run_s=4, users=2)
    process = await spawn([str(locust), "-f", str(LOCUSTFILE), "--stop-timeout", "10", *args], FAST_TIMEOUTS)
    await _finished(process)
    lines = list(read_truth(tmp_path / "truth-w0.jsonl"))
    assert {line["order_id"].split("-")[1] for line in lines} == {"w0"}
    assert len({line["run_id"] for line in lines}) == 1
    await _check_against_sink(supervisor, lines)


async def test_a_master_and_two_workers_write_disjoint_mergeable_truth(supervisor: Supervisor, tmp_path: Path) -> None:
    """``python -m fakesvc.traffic.locust``: a master and two workers on loopback; the merged truth matches the sink."""
    port = str(free_port())
    entry = ["-m", "fakesvc.traffic.locust"]
    worker = [*entry, "--worker", "--master-host", "127.0.0.1", "--master-port", port]
    workers = [await spawn(worker, FAST_TIMEOUTS) for _ in range(2)]
    master_args = ["--master", "--master-bind-host", "127.0.0.1", "--master-bind-port", port, "--expect-workers", "2"]
    truth = tmp_path / "truth"
    master = await spawn([*entry, *master_args, *_load_args(supervisor, truth, run_s=6, users=4)], FAST_TIMEOUTS)
    try:
        await _finished(master)
        for process in workers:
            await _finished(process)
    finally:
        for process in (master, *workers):
            await process.kill()
    shares = [truth_path(str(truth), index).read_text() for index in range(2)]
    merged = tmp_path / "merged.jsonl"
    merged.write_text("".join(shares))  # cat
    lines = list(read_truth(merged))
    assert {line["order_id"].split("-")[1] for line in lines} == {"w0", "w1"}, "both workers sent"
    assert len({line["run_id"] for line in lines}) == 1, "the master names the run for its workers"
    assert not any(line.get("interrupted") for line in lines), "the stop timeout lets checkouts in flight finish"
    await _check_against_sink(supervisor, lines)


async def test_a_bad_flag_stops_locust_with_one_line_and_exit_2() -> None:
    process = await spawn(["-m", "fakesvc.traffic.locust", "--headless", "--mix", "success=nan"], {})
    status, rest = await process.exited(60)
    assert status == 2
    assert (rest.strip().splitlines() or [""])[-1] == (
        "fakesvc: --mix: weight of success must be a finite number >= 0 (got 'success=nan')"
    )


async def test_the_entry_point_help_lists_its_own_options_then_locusts() -> None:
    """Locust prints its help before it loads a Locust file: the entry point shows the Locust file's options first."""
    process = await spawn(["-m", "fakesvc.traffic.locust", "--help"], {})
    status, _ = await process.exited(60)
    assert status == 0
    help_text = "".join(process.stdout_lines)
    assert help_text.index("--truth PREFIX") < help_text.index("--expect-workers")
    assert "--pace SECONDS" in help_text and "(env FAKESVC_SEED; default unset: random)" in help_text


def test_without_locust_the_entry_point_says_how_to_install_it(tmp_path: Path) -> None:
    """A plain install has no Locust: one line naming the extra, exit 2 (Locust hidden from the import system)."""
    hide = (
        "import importlib.util, runpy, sys; find = importlib.util.find_spec; "
        "importlib.util.find_spec = lambda name, *rest: None if name == 'locust' else find(name, *rest); "
        "sys.argv = ['fakesvc.traffic.locust', '--headless']; "
        "runpy.run_module('fakesvc.traffic.locust', run_name='__main__')"
    )
    done = subprocess.run([sys.executable, "-c", hide], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert done.stderr.strip() == "fakesvc: Locust is not installed: pip install 'fakesvc[locust]'"
