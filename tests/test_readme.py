"""The README's commands, run in order as a reader pastes them: the README cannot drift from the code.

Each ``sh`` block is run with bash in a fresh directory (``supervisor.py`` named
by its path), with three changes a reader would not need: the interpreter is
this one (the venv the suite runs in), long runs are shortened, and the ports are free ones (``localhost:8003``
and ``localhost:8000`` rewritten to match). The install steps are skipped (the
suite already runs in the installed package) and so is the test command itself.
A command the README says keeps serving is started in the background.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shlex
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.processes import ROOT, Process, spawn
from tests.telemetry_fixtures import free_port

README = ROOT / "README.md"
BLOCK = re.compile(r"```sh\n(.*?)```", re.S)
SERVING = ("python supervisor.py", "python -m fakesvc.sink")  # commands that serve until stopped


def commands() -> list[list[str]]:
    """The README's ``sh`` blocks, one list of commands each (continuation lines joined)."""
    return [
        [line for line in block.replace("\\\n", " ").splitlines() if line.strip()]
        for block in BLOCK.findall(README.read_text())
    ]


class Reader:
    """Runs README commands in ``cwd`` the way a reader would, on free ports."""

    def __init__(self, cwd: Path) -> None:
        self.cwd = cwd
        self.ports = {"gateway": free_port(), "payment": free_port(), "inventory": free_port(), "sink": free_port()}
        self.env = {
            "GATEWAY_PORT": str(self.ports["gateway"]),
            "PAYMENT_PORT": str(self.ports["payment"]),
            "INVENTORY_PORT": str(self.ports["inventory"]),
            "FAKESVC_SINK_PORT": str(self.ports["sink"]),
            "FAKESVC_BASE_PORT": "0",  # a graph's services without a port of their own
            "FAKESVC_SPILL_DIR": str(cwd / "outbox"),
        }
        self.background: list[Process] = []

    def adapt(self, command: str) -> str:
        command = command.split("&& ")[-1]  # the install steps before it have been done
        command = re.sub(r"(?<![\w/.-])(\.venv/bin/)?python3?(?= )", shlex.quote(sys.executable), command)
        command = command.replace(" supervisor.py", f" {shlex.quote(str(ROOT / 'supervisor.py'))}")  # run elsewhere
        command = re.sub(r"--duration \d+", "--duration 2", command)
        command = command.replace("localhost:8003", f"127.0.0.1:{self.ports['gateway']}")
        return command.replace("localhost:8000", f"127.0.0.1:{self.ports['sink']}")

    async def run(self, command: str, timeout_s: float = 90) -> str:
        """Run one command; its stdout. It must exit 0."""
        process = await asyncio.create_subprocess_exec(
            "bash",
            "-c",
            self.adapt(command),
            cwd=self.cwd,
            env={**_environ(), **self.env},
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await asyncio.wait_for(process.communicate(), timeout_s)
        assert process.returncode == 0, f"{command!r} exited {process.returncode}:\n{err.decode()[-3000:]}"
        return out.decode()

    async def serve(self, command: str, ready: str) -> None:
        """Start a command that serves until stopped; wait for its ``ready`` line on stderr."""
        args = shlex.split(self.adapt(command))
        assert args[0] == sys.executable, command
        process = await spawn(args[1:], self.env, cwd=self.cwd)
        self.background.append(process)
        await process.read_until(ready)

    async def stop(self) -> None:
        for process in reversed(self.background):
            await process.stop(signal.SIGINT)  # as Ctrl-C
            await process.kill()


def _environ() -> dict[str, str]:
    """This environment without fakesvc's settings: the reader's shell has none of them."""
    return {key: value for key, value in os.environ.items() if not key.startswith(("FAKESVC_", "PRODSENTINEL_"))}


@pytest.fixture
async def reader(tmp_path: Path) -> AsyncIterator[Reader]:
    reader = Reader(tmp_path)
    yield reader
    await reader.stop()


async def test_the_first_command_runs_the_main_job(reader: Reader) -> None:
    [first] = commands()[0]
    assert first.startswith("python3 -m venv .venv && ") and "supervisor.py --rate" in first
    await reader.run(first)
    lines = (reader.cwd / "logs.jsonl").read_text().splitlines()
    assert lines and all(json.loads(line)["service"] for line in lines)
    assert (reader.cwd / "fakesvc-signals.db").stat().st_size > 0


async def test_the_curls_against_a_serving_supervisor(reader: Reader) -> None:
    curls = commands()[1]
    await reader.serve("python supervisor.py", "api-gateway listening on")
    answers = [await reader.run(curl) for curl in curls]
    statuses = [json.loads(answer).get("status") for answer in answers[:3]]
    assert statuses == ["SUCCESS", None, None]  # the two failures answer {"detail": ..., "trace_id": ...}
    assert "payment" in json.loads(answers[1])["detail"].lower()
    assert json.loads(answers[3])["items"]  # the sink stored the checkouts just sent


async def test_the_walkthrough_step_by_step(reader: Reader) -> None:
    sink_block, steps = commands()[3], commands()[4]
    [sink] = sink_block
    await reader.serve(sink, "listening on")
    run, truth, curl, windows, score = steps
    reader.env["PRODSENTINEL_URL"] = f"http://127.0.0.1:{reader.ports['sink']}"  # where the reader's port 8000 is
    await reader.run(run)  # 2 s of it: the incident starts later, the mix's timeouts are inventory's
    faulty = (await reader.run(truth)).splitlines()
    assert faulty and all("root cause inventory-service" in line for line in faulty)
    trace_id = faulty[0].split()[0]
    stored = json.loads(await reader.run(curl.replace("TRACE_ID", trace_id)))
    assert stored and {item["trace_id"] for item in stored} == {trace_id}
    assert (await reader.run(windows)).strip().startswith("[")
    table = await reader.run(score)  # the reference analyser's guesses, scored against the truth
    scored = json.loads((reader.cwd / "score.json").read_text())
    assert scored["faulty"] >= len(faulty) and scored["ac@1"] == 1.0, table  # faulty: those of inventory
    assert "ac@1" in table.lower()


async def test_the_cases_commands(reader: Reader) -> None:
    """The suite, shortened to one case of a few seconds; the methods line installs RCAEval from PyPI (not here)."""
    suite, methods = commands()[5]
    assert methods.startswith("cd bench && python methods.py ../cases")
    short = suite.replace("--services all --repeat 3", "--services cartservice --faults cpu --repeat 1")
    short = short.replace("--time-scale 0.25", "--warmup 6 --fault-s 4 --recovery 2 --time-scale 0.5 --rate 5")
    assert short != suite
    printed = await reader.run(short, timeout_s=120)
    case = reader.cwd / "cases" / "cartservice_cpu" / "1"
    assert printed.split() == [str(case)] or printed.strip().endswith("cartservice_cpu/1")
    assert int((case / "inject_time.txt").read_text()) > 0
    header = (case / "data.csv").read_text().splitlines()[0].split(",")
    assert header[0] == "time" and "cartservice_cpu" in header and "frontend_mem" in header
    assert "cartservice_cpu/1" in (reader.cwd / "cases" / "index.csv").read_text()


async def test_the_graph_commands(reader: Reader) -> None:
    check, run, truth = commands()[6]
    printed = await reader.run(check)
    assert "service frontend" in printed and "frontend -> checkoutservice POST /orders/{order_id}" in printed
    await reader.run(run)  # its 2 s: the shop's own scenarios run in the mix
    lines = (reader.cwd / "shop-truth.jsonl").read_text().splitlines()
    assert len(lines) == 40 and all(json.loads(line)["status"] == json.loads(line)["expected_status"] for line in lines)
    await reader.run(truth)
