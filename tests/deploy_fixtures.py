"""Helpers for the deployment tests: read the Dockerfile, compose and Kubernetes files, and check what
they name against the real code (entry points, ports, health routes).

No Docker daemon and no cluster run here: what can be checked without them is
checked against the real schemas, linters and the real apps.
"""

from __future__ import annotations

import asyncio
import json
import re
import shlex
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml
from aiohttp import web

from fakesvc import gateway, inventory, payment
from fakesvc.healthcheck import ENTRY_POINTS, Command, command_of, health_urls
from fakesvc.sink import SinkConfig
from fakesvc.sink import create_app as create_sink_app
from tests.conftest import FAST, recording_telemetry

ROOT = Path(__file__).resolve().parent.parent
TOOLS = Path(sys.executable).parent  # hadolint, check-jsonschema: installed by the test extra beside python
APPS = {"gateway": gateway.create_app, "payment": payment.create_app, "inventory": inventory.create_app}


def yaml_documents(path: Path) -> list[dict[str, Any]]:
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml when the wheel has it: 10x faster
    return [doc for doc in yaml.load_all(path.read_text(), Loader=loader) if doc is not None]


def compose_services(path: Path) -> dict[str, dict[str, Any]]:
    """A compose file's services, variables replaced by their defaults (as ``docker compose`` would with none set)."""
    return interpolate(yaml_documents(path)[0]["services"])


def compose_environment(service: dict[str, Any]) -> dict[str, str]:
    """What the container's process sees: the image's ENV, then the service's environment."""
    return {**image_environment(), **{key: str(value) for key, value in service.get("environment", {}).items()}}


# Keys of the Compose specification that Compose v1 (docker-compose 1.29: Debian bookworm's, Ubuntu 22.04's)
# refuses ("does not match any of the regexes"); deploy/smoke.sh runs compose.yaml on it for real.
COMPOSE_V1_REFUSES_AT_TOP = frozenset({"name", "include"})
COMPOSE_V1_REFUSES_IN_HEALTHCHECK = frozenset({"start_interval"})


def compose_v1_problems(path: Path) -> list[str]:
    """What in a compose file Compose v1 would refuse to load."""
    document = yaml_documents(path)[0]
    problems = [f"top-level {key}" for key in sorted(COMPOSE_V1_REFUSES_AT_TOP & set(document))]
    for name, service in document.get("services", {}).items():
        healthcheck = (service or {}).get("healthcheck", {})
        problems += [
            f"{name}: healthcheck.{key}" for key in sorted(COMPOSE_V1_REFUSES_IN_HEALTHCHECK & set(healthcheck))
        ]
    return problems


def published(service: dict[str, Any]) -> list[int]:
    """Container ports of ``HOST_IP:HOST_PORT:CONTAINER_PORT`` entries."""
    return [int(str(entry).rsplit(":", 1)[1]) for entry in service.get("ports", [])]


def kustomization_objects(directory: Path) -> list[dict[str, Any]]:
    """A kustomization's objects: its resources in order, each in its namespace."""
    kustomization = yaml_documents(directory / "kustomization.yaml")[0]
    assert set(kustomization) <= {"apiVersion", "kind", "namespace", "resources"}, "teach this the new field"
    objects = []
    for resource in kustomization["resources"]:
        for document in yaml_documents(directory / resource):
            if document["kind"] != "Namespace":
                document["metadata"]["namespace"] = kustomization["namespace"]
            objects.append(document)
    return objects


def objects_of(objects: Iterable[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {obj["metadata"]["name"]: obj for obj in objects if obj["kind"] == kind}


def pod_spec(workload: dict[str, Any]) -> dict[str, Any]:
    return workload["spec"]["template"]["spec"]


def pod_environment(container: dict[str, Any], objects: Iterable[dict[str, Any]]) -> dict[str, str]:
    """What a container's process sees: the image's ENV, its ConfigMaps and Secrets, then its env."""
    objects = list(objects)
    environ = dict(image_environment())
    for source in container.get("envFrom", []):
        if "configMapRef" in source:
            environ.update(objects_of(objects, "ConfigMap")[source["configMapRef"]["name"]]["data"])
        else:
            environ.update(objects_of(objects, "Secret")[source["secretRef"]["name"]]["stringData"])
    environ.update({item["name"]: item["value"] for item in container.get("env", [])})
    return environ


_VARIABLE = re.compile(r"\$\{(\w+)(?::?[-?]([^}]*))?\}")


def interpolate(value: Any, environ: Mapping[str, str] | None = None) -> Any:
    """Compose's ``${VAR}``, ``${VAR:-default}`` and ``${VAR:?message}``, here with the defaults."""
    environ = environ or {}
    if isinstance(value, str):
        return _VARIABLE.sub(lambda m: environ.get(m.group(1), m.group(2) or ""), value)
    if isinstance(value, list):
        return [interpolate(item, environ) for item in value]
    if isinstance(value, dict):
        return {key: interpolate(item, environ) for key, item in value.items()}
    return value


@dataclass(frozen=True)
class Instruction:
    keyword: str
    arguments: str


def dockerfile_stages(path: Path = ROOT / "Dockerfile") -> list[list[Instruction]]:
    """The Dockerfile's instructions by stage (continuation lines joined, comments dropped).

    A global ``ARG NAME=default`` before the first ``FROM`` (the base image's build argument) is
    substituted in the ``FROM`` lines, as a build without ``--build-arg`` sees them.
    """
    stages: list[list[Instruction]] = []
    global_args: dict[str, str] = {}
    logical = ""
    for line in path.read_text().splitlines():
        if not logical and (not line.strip() or line.lstrip().startswith("#")):
            continue
        logical += line.rstrip("\\").strip() + " "
        if line.endswith("\\"):
            continue
        keyword, _, arguments = logical.strip().partition(" ")
        logical = ""
        if not stages and keyword.upper() == "ARG":
            name, _, default = arguments.strip().partition("=")
            global_args[name] = default
            continue
        if keyword.upper() == "FROM":
            stages.append([])
            for name, default in global_args.items():
                arguments = arguments.replace(f"${{{name}}}", default)
        stages[-1].append(Instruction(keyword.upper(), arguments.strip()))
    return stages


def image_environment() -> dict[str, str]:
    """The ``ENV`` of the image's final stage."""
    environ: dict[str, str] = {}
    for instruction in dockerfile_stages()[-1]:
        if instruction.keyword == "ENV":
            for item in shlex.split(instruction.arguments):
                name, _, value = item.partition("=")
                environ[name] = value
    return environ


def image_scripts() -> dict[str, Path]:
    """Scripts the final stage copies from the source tree: path in the image -> file in the repository."""
    scripts = {}
    for instruction in dockerfile_stages()[-1]:
        if instruction.keyword == "COPY" and not instruction.arguments.startswith("--from"):
            source, destination = instruction.arguments.split()
            scripts[destination] = ROOT / source
    return scripts


def exec_form(arguments: str) -> list[str]:
    """``CMD ["python", ...]``'s list (the exec form: no shell in between)."""
    parsed = json.loads(arguments)
    assert isinstance(parsed, list) and all(isinstance(item, str) for item in parsed), arguments
    return parsed


async def check_entry_points(commands: Iterable[Sequence[str]]) -> None:
    """Each command runs a real entry point of the image, and its flags are that entry point's.

    The command is run with ``--help`` from this source tree (what the image installs):
    it must exit 0, and every ``--flag`` the command passes must be in the help.
    """
    scripts = image_scripts()
    unique = {tuple(command) for command in commands}

    async def check(command: tuple[str, ...]) -> None:
        assert command[0] == "python", command
        if command[1] == "-m":
            module, rest = command[2], command[3:]
            assert module.startswith("fakesvc."), f"{module} is not in the installed package"
            argv = ["-m", module]
        else:
            assert command[1] in scripts, f"{command[1]} is not copied into the image"
            argv, rest = [str(scripts[command[1]])], command[2:]
        process = await asyncio.create_subprocess_exec(
            sys.executable, *argv, "--help", cwd=ROOT, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
        )
        out, err = await process.communicate()
        assert process.returncode == 0, f"{command}: {err.decode()}"
        for flag in (arg.split("=", 1)[0] for arg in rest if arg.startswith("--")):
            # whole flags only: argparse would take an abbreviation, the help would not list it
            assert re.search(rf"(?<![\w-]){re.escape(flag)}(?![\w-])", out.decode()), f"{command}: no flag {flag}"

    await asyncio.gather(*(check(command) for command in unique))


def listen_port(command: Sequence[str], environ: Mapping[str, str]) -> int | None:
    """The port the command's process listens on under ``environ`` (None for the traffic generator)."""
    urls = health_urls(command_of(command), environ)
    return urlsplit(urls[0]).port if urls else None


def probe_paths(probe_command: Sequence[str]) -> set[str]:
    """The routes ``python -m fakesvc.healthcheck ROLE`` asks (one per service it checks)."""
    assert list(probe_command[:3]) == ["python", "-m", "fakesvc.healthcheck"], probe_command
    role = probe_command[3] if len(probe_command) > 3 else None
    assert role in ENTRY_POINTS, f"a probe in a compose file or manifest names its role: {probe_command}"
    return {urlsplit(url).path for url in health_urls(Command(role), {})}


def real_app(role: str) -> web.Application:
    """The application the role runs (the sink on an in-memory database)."""
    if role == "sink":
        return create_sink_app(SinkConfig(db_path=":memory:"))
    return APPS[role](FAST, recording_telemetry())


async def route_status(aiohttp_client: Any, role: str, path: str) -> int:
    """What the real app of ``role`` answers to ``GET path``."""
    client = await aiohttp_client(real_app(role))
    response = await client.get(path)
    return response.status


def role_of(command: Sequence[str]) -> str:
    return command_of(command).role
