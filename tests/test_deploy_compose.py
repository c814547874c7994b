"""compose.yaml and its ProdSentinel override: valid against the Compose specification, and every
command, port, URL and healthcheck in them matches the image and the configuration.

``docker-compose up`` of this file runs for real in ``deploy/smoke.sh`` (it needs a Docker daemon and
root, so it is not part of the test command); these tests hold what can be checked without one.
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from tests.deploy_fixtures import (
    ROOT,
    TOOLS,
    check_entry_points,
    compose_services,
    compose_v1_problems,
    interpolate,
    listen_port,
    probe_paths,
    published,
    role_of,
    route_status,
    yaml_documents,
)
from tests.deploy_fixtures import compose_environment as environment

BASE = ROOT / "compose.yaml"
PRODSENTINEL = ROOT / "compose.prodsentinel.yaml"
OTEL = ROOT / "compose.otel.yaml"
TELEMETRY_SENDERS = ("gateway", "payment", "inventory")  # the processes with a batcher


def services(path: Any = BASE) -> dict[str, dict[str, Any]]:
    return compose_services(path)


def test_both_files_are_valid_compose_files() -> None:
    result = subprocess.run(
        [str(TOOLS / "check-jsonschema"), "--builtin-schema", "vendor.compose-spec", str(BASE), str(PRODSENTINEL)],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_checker_rejects_what_compose_would(tmp_path: Path) -> None:
    """The schema check is not a formality: a misspelt key fails it."""
    broken = tmp_path / "compose.yaml"
    broken.write_text(BASE.read_text().replace("depends_on:", "depend_on:"))
    result = subprocess.run(
        [str(TOOLS / "check-jsonschema"), "--builtin-schema", "vendor.compose-spec", str(broken)],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 1 and "depend_on" in result.stdout + result.stderr


@pytest.mark.parametrize("path", [BASE, PRODSENTINEL, OTEL], ids=lambda path: path.name)
def test_compose_v1_loads_the_file(path: Path) -> None:
    """Debian's docker-compose 1.29 refused a top-level name and healthcheck.start_interval when it ran them."""
    assert compose_v1_problems(path) == []


def test_compose_v1_problems_are_found(tmp_path: Path) -> None:
    broken = tmp_path / "compose.yaml"
    broken.write_text("name: x\n" + BASE.read_text().replace("retries: 3", "retries: 3\n    start_interval: 2s"))
    assert compose_v1_problems(broken)[:2] == ["top-level name", "sink: healthcheck.start_interval"]


def test_every_service_runs_the_image_fakesvc_image_names() -> None:
    """FAKESVC_IMAGE swaps the image (deploy/smoke.sh runs its own build's tag); fakesvc:local by default."""
    raw = yaml_documents(BASE)[0]["services"]
    for name, service in raw.items():
        assert interpolate(service["image"]) == "fakesvc:local", name
        assert (
            interpolate(service["image"], {"FAKESVC_IMAGE": "registry.example/fakesvc:1"})
            == "registry.example/fakesvc:1"
        )


def test_the_three_services_sink_and_generator_are_separate_containers() -> None:
    roles = {name: role_of(service["command"]) for name, service in services().items()}
    assert roles == {"sink": "sink", "inventory": "inventory", "payment": "payment", "gateway": "gateway"} | {
        "traffic": "traffic"
    }


async def test_every_command_is_an_entry_point_of_the_image() -> None:
    commands = [service["command"] for service in services().values()]
    commands += [
        service["healthcheck"]["test"][1:]
        for service in services().values()
        if "test" in service.get("healthcheck", {})
    ]
    await check_entry_points(commands)


def test_each_service_publishes_the_port_it_listens_on_and_its_callers_use_it() -> None:
    everything = services()
    ports = {name: listen_port(service["command"], environment(service)) for name, service in everything.items()}
    assert ports == {"sink": 8000, "inventory": 8002, "payment": 8004, "gateway": 8003, "traffic": None}
    for name, service in everything.items():
        assert published(service) == ([ports[name]] if ports[name] else []), name
        env = environment(service)
        for variable in ("PRODSENTINEL_URL", "PAYMENT_URL", "INVENTORY_URL"):
            url = urlsplit(env[variable])
            assert url.port == ports[url.hostname], f"{name}: {variable}={env[variable]}"
    target = next(arg for arg in everything["traffic"]["command"] if arg.startswith("--target="))
    url = urlsplit(target.split("=", 1)[1])
    assert url.port == ports[url.hostname] == 8003


def test_every_process_binds_every_address_and_has_the_admin_token_from_a_variable() -> None:
    raw = yaml_documents(BASE)[0]["services"]
    for name, service in services().items():
        assert environment(service)["FAKESVC_HOST"] == "0.0.0.0", name
        assert raw[name]["environment"]["FAKESVC_ADMIN_TOKEN"].startswith("${FAKESVC_ADMIN_TOKEN"), name


def test_the_sink_keeps_its_database_and_the_generator_its_truth_on_named_volumes() -> None:
    document = interpolate(yaml_documents(BASE)[0])
    everything = document["services"]

    def volume_at(service: dict[str, Any], path: str) -> str:
        mounts = dict(reversed(entry.split(":", 1)) for entry in service["volumes"])
        directory = next(mount for mount in mounts if path.startswith(mount + "/"))
        return mounts[directory]

    sink_env = environment(everything["sink"])
    assert volume_at(everything["sink"], sink_env["FAKESVC_SINK_DB"]) in document["volumes"]
    truth = next(arg.split("=", 1)[1] for arg in everything["traffic"]["command"] if arg.startswith("--truth="))
    report = next(arg.split("=", 1)[1] for arg in everything["traffic"]["command"] if arg.startswith("--report="))
    assert volume_at(everything["traffic"], truth) == volume_at(everything["traffic"], report) in document["volumes"]
    for name in TELEMETRY_SENDERS:  # each outbox outlives its container
        assert (
            volume_at(everything[name], environment(everything[name])["FAKESVC_SPILL_DIR"] + "/x")
            in document["volumes"]
        )
    traffic = everything["traffic"]
    assert traffic["restart"] == "no" and traffic["healthcheck"] == {"disable": True}
    assert {dependency["condition"] for dependency in traffic["depends_on"].values()} == {"service_healthy"}


@pytest.mark.parametrize("name", ["sink", "inventory", "payment", "gateway"])
async def test_each_healthcheck_asks_a_real_route_of_its_own_process(aiohttp_client: Any, name: str) -> None:
    service = services()[name]
    probe = service["healthcheck"]["test"]
    assert probe[0] == "CMD"
    role = role_of(service["command"])
    assert probe[1:] == ["python", "-m", "fakesvc.healthcheck", role]
    for path in probe_paths(probe[1:]):
        assert await route_status(aiohttp_client, role, path) == 200


def test_the_prodsentinel_override_joins_its_network_and_sends_there_instead_of_the_sink() -> None:
    override = yaml_documents(PRODSENTINEL)[0]
    network = override["networks"]["prodsentinel"]
    assert network["external"] is True and network["name"] == "${PRODSENTINEL_NETWORK:-prodsentinel_default}"
    assert interpolate(network["name"]) == "prodsentinel_default"
    assert interpolate(network["name"], {"PRODSENTINEL_NETWORK": "ps_default"}) == "ps_default"
    changed = services(PRODSENTINEL)
    assert set(changed) <= set(services())
    for name in TELEMETRY_SENDERS:
        assert changed[name]["environment"]["PRODSENTINEL_URL"] == "http://backend:8000", name
        assert set(changed[name]["networks"]) == {"default", "prodsentinel"}, name
    assert changed["sink"] == {"profiles": ["embedded-sink"]}  # not started unless asked for
    assert not any("sink" in service.get("depends_on", {}) for service in services().values())
