"""The container image: the Dockerfile passes hadolint and says what the issue asks, and the health probe
it runs finds the right route and port for each command and answers like a Docker HEALTHCHECK.

No Docker daemon here: the image is not built in the tests (docs/deploy.md says what was not run).
"""

from __future__ import annotations

import asyncio
import re
import subprocess
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from fakesvc.faults import ChaosConfig
from fakesvc.healthcheck import ROLES, Command, command_of, container_command, health_urls, probe
from fakesvc.serving.runner import start_services
from fakesvc.settings import ConfigError
from tests.conftest import FAST, recording_telemetry
from tests.deploy_fixtures import (
    ROOT,
    TOOLS,
    check_entry_points,
    dockerfile_stages,
    exec_form,
    image_environment,
    image_scripts,
    route_status,
)
from tests.telemetry_fixtures import free_port, sink_on


def test_hadolint_finds_nothing_and_every_ignored_rule_is_explained() -> None:
    result = subprocess.run(
        [str(TOOLS / "hadolint"), "--no-color", "Dockerfile"], cwd=ROOT, capture_output=True, text=True
    )
    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")
    lines = (ROOT / "Dockerfile").read_text().splitlines()
    for index, line in enumerate(lines):
        if "hadolint ignore=" in line:
            neighbours = lines[index - 1 : index] + lines[index + 1 : index + 2]
            assert any(n.startswith("#") and "hadolint" not in n for n in neighbours), f"unexplained: {line}"


def test_the_image_is_multi_stage_on_a_pinned_slim_python_3_11_and_runs_as_a_user_without_build_tools() -> None:
    stages = dockerfile_stages()
    base = stages[0][0].arguments.split()[0]
    assert re.fullmatch(r"python:3\.11\.\d+-slim-\w+(@sha256:[0-9a-f]{64})?", base), base
    assert all(stage[0].arguments.split()[0] in (base, "base") for stage in stages), "every stage is on the pinned base"
    final = stages[-1]
    assert len(stages) >= 3 and final[0].arguments == "base"
    runs = " ".join(i.arguments for i in final if i.keyword == "RUN")
    assert not re.search(r"\b(pip|apt-get|apk|gcc|make|build-essential)\b", runs), runs
    copies = [i.arguments for i in final if i.keyword == "COPY"]
    assert copies == ["--from=build /opt/venv /opt/venv", "supervisor.py /app/supervisor.py"]
    user = [i.arguments for i in final if i.keyword == "USER"]
    assert len(user) == 1 and re.fullmatch(r"[1-9]\d*:[1-9]\d*", user[0]), user
    assert image_environment()["FAKESVC_HOST"] == "0.0.0.0"


def test_the_image_healthcheck_is_the_python_probe_and_the_default_command_the_supervisor() -> None:
    final = {i.keyword: i.arguments for i in dockerfile_stages()[-1]}
    healthcheck = final["HEALTHCHECK"]
    assert re.search(r"--interval=\d+s", healthcheck) and re.search(r"--timeout=\d+s", healthcheck)
    assert exec_form(healthcheck.split(" CMD ", 1)[1]) == ["python", "-m", "fakesvc.healthcheck"]
    assert exec_form(final["CMD"]) == ["python", "/app/supervisor.py"]
    assert command_of(exec_form(final["CMD"])).role == "supervisor"


async def test_the_image_commands_are_real_entry_points() -> None:
    final = {i.keyword: i.arguments for i in dockerfile_stages()[-1]}
    commands = [exec_form(final["CMD"]), exec_form(final["HEALTHCHECK"].split(" CMD ", 1)[1])]
    commands += [["python", "-m", f"fakesvc.{name}"] for name in ("gateway", "payment", "inventory", "sink", "traffic")]
    await check_entry_points(commands)


def test_dockerignore_keeps_exactly_what_the_copy_lines_need() -> None:
    rules = [line for line in (ROOT / ".dockerignore").read_text().splitlines() if line and not line.startswith("#")]
    assert rules[0] == "*", "everything is excluded first: only what is named below reaches the build"
    kept = {rule[1:].rstrip("/") for rule in rules if rule.startswith("!")}
    sources = {
        source.rstrip("/")
        for stage in dockerfile_stages()
        for i in stage
        if i.keyword == "COPY" and not i.arguments.startswith("--from")
        for source in i.arguments.split()[:-1]
    }
    assert sources <= kept, sources - kept
    assert all((ROOT / path).exists() for path in kept)
    assert image_scripts() == {"/app/supervisor.py": ROOT / "supervisor.py"}


# The probe: which command, which port, which route.

COMMANDS = [
    (["python", "-m", "fakesvc.payment"], {}, ["http://127.0.0.1:8004/readyz"]),
    (["python", "-m", "fakesvc.payment", "--payment-port", "9104"], {"PAYMENT_PORT": "7"}, [":9104/readyz"]),
    (["python", "-m", "fakesvc.inventory"], {"INVENTORY_PORT": "9102", "FAKESVC_HOST": "0.0.0.0"}, [":9102/readyz"]),
    (["/sbin/docker-init", "--", "python", "-m", "fakesvc.gateway"], {"FAKESVC_HOST": "::"}, ["//127.0.0.1:8003/"]),
    (["python", "-m", "fakesvc.gateway", "--host", "::1"], {"FAKESVC_HOST": "10.0.0.1"}, ["//[::1]:8003/readyz"]),
    (["python", "-m", "fakesvc.sink", "--port", "9100"], {"FAKESVC_SINK_PORT": "1"}, [":9100/ingest/health"]),
    (["python", "-m", "fakesvc.sink"], {"FAKESVC_SINK_HOST": "sink"}, ["http://sink:8000/ingest/health"]),
    (["python", "/app/supervisor.py", "--gateway-port=9003"], {}, [":9003/readyz", ":8004/readyz", ":8002/readyz"]),
    (["python", "-m", "fakesvc.traffic", "--target", "http://gateway:8003"], {}, []),
]


@pytest.mark.parametrize(("argv", "environ", "expected"), COMMANDS, ids=lambda v: str(v)[:60])
def test_the_probe_reads_the_command_and_the_same_settings_it_does(
    argv: list[str], environ: dict[str, str], expected: list[str]
) -> None:
    urls = health_urls(command_of(argv), environ)
    assert len(urls) == len(expected) and all(part in url for part, url in zip(expected, urls)), urls


@pytest.mark.parametrize("role", ROLES)
def test_the_probe_imports_no_server(role: str) -> None:
    """It runs every 30 s in every container: reading the settings must not load aiohttp (0.75 s of CPU once)."""
    code = (
        "import sys; from fakesvc.healthcheck import Command, health_urls; "
        f"health_urls(Command({role!r}), {{}}); print(sorted(m for m in ('aiohttp', 'opentelemetry') if m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]", done.stdout


@pytest.mark.parametrize(
    "argv",
    [[], ["python"], ["python", "-m"], ["python", "-m", "fakesvc.nothing"], ["bash", "-c", "python -m fakesvc.sink"]],
)
def test_a_command_that_is_no_entry_point_is_a_config_error(argv: list[str]) -> None:
    with pytest.raises(ConfigError, match="name a role"):
        command_of(argv)


def test_the_container_command_is_read_from_a_nul_separated_cmdline(tmp_path: Path) -> None:
    cmdline = tmp_path / "cmdline"
    cmdline.write_bytes(b"python\0-m\0fakesvc.payment\0--payment-port\0\xff\xfe9\0")
    assert container_command(cmdline) == Command("payment", ("--payment-port", "\ufffd\ufffd9"))
    with pytest.raises(ConfigError, match="cannot read"):
        container_command(tmp_path / "missing")
    cmdline.write_bytes(b"")
    with pytest.raises(ConfigError):
        container_command(cmdline)


@pytest.mark.parametrize(
    ("environ", "setting"),
    [
        ({"PAYMENT_PORT": "NaN"}, "PAYMENT_PORT"),
        ({"PAYMENT_PORT": "70000"}, "PAYMENT_PORT"),
        ({"PAYMENT_PORT": "\u0661"}, "PAYMENT_PORT"),
        ({"PAYMENT_PORT": ""}, "PAYMENT_PORT"),
    ],
)
def test_a_bad_setting_is_one_line_and_exit_2(environ: dict[str, str], setting: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "fakesvc.healthcheck", "payment"],
        env={"PATH": "/usr/bin:/bin", **environ},
        cwd=ROOT,
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
    )
    assert result.returncode == 2 and result.stderr.count("\n") == 1 and setting in result.stderr, result.stderr


async def run_probe(role: str, **environ: str) -> tuple[int, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "fakesvc.healthcheck",
        role,
        cwd=ROOT,
        env={"PATH": "/usr/bin:/bin", **environ},
        stdin=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    _, err = await process.communicate()
    assert process.returncode is not None
    return process.returncode, err.decode()


async def test_the_probe_passes_against_a_real_service_and_fails_once_it_stops() -> None:
    port = free_port()
    config = replace(FAST, payment_port=port)
    running = await start_services(("payment-service",), config, recording_telemetry(), ChaosConfig())
    try:
        assert await run_probe("payment", PAYMENT_PORT=str(port)) == (0, "")
    finally:
        await running.stop()
    status, err = await run_probe("payment", PAYMENT_PORT=str(port))
    assert status == 1 and f"127.0.0.1:{port}/readyz unreachable" in err


async def test_the_probe_passes_against_a_real_sink(tmp_path: Path) -> None:
    port = free_port()
    server = await sink_on(port, tmp_path / "signals.db")
    try:
        assert await run_probe("sink", FAKESVC_SINK_PORT=str(port)) == (0, "")
    finally:
        await server.stop()


async def test_an_answer_other_than_200_is_unhealthy(aiohttp_server: Any) -> None:
    app = web.Application()

    async def not_ready(_request: web.Request) -> web.Response:
        return web.json_response({"detail": "not ready"}, status=503)

    app.router.add_get("/readyz", not_ready)
    server = await aiohttp_server(app)
    reason = await asyncio.to_thread(probe, str(server.make_url("/readyz")))
    assert reason is not None and reason.endswith("answered 503")


@pytest.mark.parametrize(
    ("role", "path"), [("gateway", "/readyz"), ("inventory", "/readyz"), ("sink", "/ingest/health")]
)
async def test_the_routes_the_probe_asks_are_real(aiohttp_client: Any, role: str, path: str) -> None:
    assert path in health_urls(Command(role), {})[0]
    assert await route_status(aiohttp_client, role, path) == 200
