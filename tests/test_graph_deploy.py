"""``python -m fakesvc.graph deploy``: for the checkout it writes the checked-in ``compose.yaml`` and
``deploy/k8s/`` byte for byte; for any other graph, files that pass the same schemas and linters as the
checked-in ones, whose containers, probes, URLs and traffic run fit the graph.

No Docker daemon and no cluster here: nothing generated is run in containers (docs/deploy.md says so).
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import kubernetes_validate
import pytest
import yaml

from fakesvc import settings
from fakesvc.config import SERVICE_SETTINGS, ServiceConfig, service_config
from fakesvc.graph.__main__ import main
from fakesvc.graph.deploy import COMPOSE_FILE, K8S_DIR
from fakesvc.graph.load import GraphError, load_graph
from fakesvc.graph.model import Graph
from fakesvc.graph.placement import graph_of, port_of, url_of
from fakesvc.healthcheck import Command, command_of, health_urls
from tests.deploy_fixtures import (
    ROOT,
    TOOLS,
    check_entry_points,
    compose_environment,
    compose_services,
    compose_v1_problems,
    kustomization_objects,
    objects_of,
    pod_environment,
    pod_spec,
    published,
)

KUBERNETES_VERSION = "1.37.0"  # as tests/test_deploy_k8s.py
# A graph of the user's own: its edge is not listed first (the probe's default service), no service names a
# port (base port plus index), and the edge's cache call is a fallback.
USER_GRAPH = """\
name: mini
services:
  - name: stock
    routes:
      - path: /stock/{item_id}
        method: GET
        script:
          - sleep: {ms: [1, 3]}
  - name: api
    routes:
      - path: /orders/{order_id}
        method: POST
        entry: true
        script:
          - call: {service: stock, path: "/stock/{order_id}", timeout_s: 1.0}
          - call: {service: cache, path: "/cache/{order_id}", timeout_s: 0.2, on_error: ignore}
  - name: cache
    routes:
      - path: /cache/{key}
        method: GET
        script:
          - fail_if: {key_contains: cache-down, status: 503, exception: ConnectionError, message: Cache down}
          - sleep: {ms: 1}
"""


def deploy(*args: str) -> int:
    return main(["deploy", *args])


def files_under(directory: Path) -> dict[str, str]:
    return {str(path.relative_to(directory)): path.read_text() for path in directory.rglob("*") if path.is_file()}


# --- the checkout is the checked-in files ------------------------------------------------------------------------


def test_the_checkout_deployment_is_the_checked_in_compose_file_and_kustomization(tmp_path: Path) -> None:
    """Editing compose.yaml or deploy/k8s/ without the generator (or the other way round) fails here."""
    assert deploy("--graph", "checkout", "--out", str(tmp_path)) == 0
    expected = {COMPOSE_FILE: (ROOT / COMPOSE_FILE).read_text()}
    expected |= {f"{K8S_DIR}/{name}": text for name, text in files_under(ROOT / K8S_DIR).items()}
    generated = files_under(tmp_path)
    assert sorted(generated) == sorted(expected)
    for name, text in expected.items():
        assert generated[name] == text, f"{name} differs: python -m fakesvc.graph deploy --graph checkout --out ."


# --- any other graph: what was written, as the containers would see it -------------------------------------------


@dataclass(frozen=True)
class Deployed:
    source: str  # what --graph was given
    graph: Graph
    out: Path


@dataclass(frozen=True)
class Container:
    """One container, as its process would see it; a mounted graph file is read from the copy it is mounted from."""

    name: str
    command: list[str]
    environ: dict[str, str]
    host: str | None  # the name others reach it by (None: nobody does)
    port: int | None  # the port it is reached at (published, or its Service's)
    probe_port: int | None  # the port its health check asks (None: it has none)


@pytest.fixture(scope="module", params=["shop", "user-file"])
def deployed(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Deployed:
    source = "shop"
    if request.param == "user-file":
        path = tmp_path_factory.mktemp("graph") / "my graph.yaml"  # any file name: the copy is named by the graph
        path.write_text(USER_GRAPH)
        source = str(path)
    out = tmp_path_factory.mktemp("deployed")
    assert deploy("--graph", source, "--out", str(out)) == 0
    return Deployed(source, load_graph(source), out)


@pytest.fixture(scope="module")
def compose_containers(deployed: Deployed) -> dict[str, Container]:
    return {name: _compose_container(deployed.out, name, service) for name, service in _compose(deployed).items()}


@pytest.fixture(scope="module")
def k8s_containers(deployed: Deployed, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Container]:
    objects = kustomization_objects(deployed.out / K8S_DIR)
    scratch = tmp_path_factory.mktemp("configmaps")
    for name, config_map in objects_of(objects, "ConfigMap").items():  # what a configMap volume would hold
        for key, text in config_map["data"].items():
            (scratch / name).mkdir(exist_ok=True)
            (scratch / name / key).write_text(text)
    return {
        container["name"]: _k8s_container(objects, workload, container, scratch)
        for workload in objects
        if workload["kind"] in ("Deployment", "StatefulSet", "Job")
        for container in pod_spec(workload)["containers"] + pod_spec(workload).get("initContainers", [])
    }


@pytest.fixture(params=["compose", "k8s"])
def containers(request: pytest.FixtureRequest, deployed: Deployed) -> dict[str, Container]:
    """The compose file's containers, then the kustomization's (``deployed`` makes them follow its graphs)."""
    return request.getfixturevalue(f"{request.param}_containers")


def _compose(deployed: Deployed) -> dict[str, dict[str, Any]]:
    return compose_services(deployed.out / COMPOSE_FILE)


def _on_host(value: str, mounts: Mapping[str, Path]) -> str:
    for inside, outside in mounts.items():
        value = value.replace(inside, str(outside))
    return value


def _seen(command: Sequence[str], environ: Mapping[str, str], mounts: Mapping[str, Path]) -> dict[str, Any]:
    return {
        "command": [_on_host(arg, mounts) for arg in command],
        "environ": {key: _on_host(value, mounts) for key, value in environ.items()},
    }


def _url_port(urls: list[str]) -> int | None:
    return urlsplit(urls[0]).port if urls else None


def _compose_container(out: Path, name: str, service: dict[str, Any]) -> Container:
    binds = [entry.split(":") for entry in service.get("volumes", []) if entry.startswith("./")]
    seen = _seen(service["command"], compose_environment(service), {inside: out / host for host, inside, *_ in binds})
    test = service["healthcheck"].get("test")  # a role named: the environment only; none: the container's command
    probe = None if test is None else Command(test[4]) if len(test) > 4 else command_of(seen["command"])
    return Container(
        name,
        **seen,
        host=name,
        port=next(iter(published(service)), None),
        probe_port=None if probe is None else _url_port(health_urls(probe, seen["environ"])),
    )


def _k8s_container(
    objects: list[dict[str, Any]], workload: dict[str, Any], container: dict[str, Any], scratch: Path
) -> Container:
    volumes = {volume["name"]: volume for volume in pod_spec(workload).get("volumes", [])}
    mounts = {
        mount["mountPath"]: scratch / volumes[mount["name"]]["configMap"]["name"]
        for mount in container.get("volumeMounts", [])
        if "configMap" in volumes.get(mount["name"], {})
    }
    seen = _seen(container["command"], pod_environment(container, objects), mounts)
    labels = workload["spec"]["template"]["metadata"]["labels"]
    service = next(
        (s for s in objects_of(objects, "Service").values() if s["spec"]["selector"].items() <= labels.items()), None
    )
    named = {port["name"]: port["containerPort"] for port in container.get("ports", [])}
    probe = container.get("readinessProbe", {}).get("httpGet")
    is_main = container in pod_spec(workload)["containers"]
    return Container(
        container["name"],
        **seen,
        host=service["metadata"]["name"] if service and is_main else None,
        port=service["spec"]["ports"][0]["port"] if service and is_main else None,
        probe_port=named[probe["port"]] if probe else None,
    )


@dataclass(frozen=True)
class Running:
    """A ``python -m fakesvc.service NAME`` container, and the settings and graph it starts with."""

    container: Container
    config: ServiceConfig
    graph: Graph


def by_service(containers: Mapping[str, Container]) -> dict[str, Running]:
    """The container running each service, its command and environment read as the service reads them."""
    found: dict[str, Running] = {}
    for container in containers.values():
        if container.command[:3] != ["python", "-m", "fakesvc.service"]:
            continue  # the sink, the traffic run, the Job's wait for the edge
        command = command_of(container.command)
        parser = argparse.ArgumentParser()
        settings.add_settings(parser, SERVICE_SETTINGS)
        parser.add_argument("service")
        args = parser.parse_args(list(command.args))
        config = service_config(args, container.environ)
        assert args.service not in found, f"{args.service} runs in {found[args.service].container.name} too"
        found[args.service] = Running(container, config, graph_of(config))
    return found


def shape(graph: Graph) -> tuple[str, tuple[str, ...], list[tuple[str, str, str]]]:
    return graph.name, graph.names, graph.edges()


def test_the_compose_file_is_valid(deployed: Deployed) -> None:
    result = subprocess.run(
        [str(TOOLS / "check-jsonschema"), "--builtin-schema", "vendor.compose-spec", str(deployed.out / COMPOSE_FILE)],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_compose_v1_loads_the_compose_file(deployed: Deployed) -> None:
    assert compose_v1_problems(deployed.out / COMPOSE_FILE) == []


def test_every_kubernetes_object_is_valid(deployed: Deployed) -> None:
    for obj in kustomization_objects(deployed.out / K8S_DIR):
        kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl is not installed (it is not on PyPI)")
def test_kubectl_kustomize_renders_the_same_objects(deployed: Deployed) -> None:
    directory = deployed.out / K8S_DIR
    result = subprocess.run(["kubectl", "kustomize", str(directory)], capture_output=True, text=True, check=True)

    def key(obj: dict[str, Any]) -> tuple[str, str]:
        return obj["kind"], obj["metadata"]["name"]

    rendered = [doc for doc in yaml.safe_load_all(result.stdout) if doc]
    assert sorted(rendered, key=key) == sorted(kustomization_objects(directory), key=key)


async def test_every_command_is_an_entry_point_of_the_image(
    compose_containers: dict[str, Container], k8s_containers: dict[str, Container]
) -> None:
    # one command per entry point and set of flags: --help does not change with a service's name
    commands = {
        (*c.command[:3], *(arg.split("=", 1)[0] for arg in c.command if arg.startswith("--"))): c.command
        for c in [*compose_containers.values(), *k8s_containers.values()]
    }
    await check_entry_points(commands.values())


def test_every_service_runs_in_a_container_whose_probe_asks_its_port(
    deployed: Deployed, containers: dict[str, Container]
) -> None:
    running = by_service(containers)
    assert set(running) == set(deployed.graph.names)
    for name, found in running.items():
        assert shape(found.graph) == shape(deployed.graph), name
        container = found.container
        listens = _url_port(health_urls(command_of(container.command), container.environ))
        port = port_of(deployed.graph, name, ServiceConfig())  # where the graph places it
        assert container.probe_port == listens == port_of(found.graph, name, found.config) == port, name
        assert container.port == port, f"{name} is reached at {container.port}, listens on {port}"


def test_every_caller_finds_each_service_it_calls_at_that_service_s_container(
    containers: dict[str, Container],
) -> None:
    running = by_service(containers)
    hosts = {found.container.host: callee for callee, found in running.items()}
    for caller, found in running.items():
        for callee in found.graph.callees(caller):
            url = urlsplit(url_of(found.graph, callee, found.config))
            assert hosts.get(url.hostname) == callee, f"{caller} -> {callee}: {url.geturl()} is not its container"
            assert url.port == running[callee].container.port, f"{caller} -> {callee}: {url.geturl()}"


def test_the_traffic_run_targets_the_edge_and_runs_the_same_graph(
    deployed: Deployed, containers: dict[str, Container]
) -> None:
    traffic = containers["traffic"]
    assert command_of(traffic.command).role == "traffic" and traffic.probe_port is None
    target = urlsplit(next(arg for arg in traffic.command if arg.startswith("--target=")).split("=", 1)[1])
    edge = by_service(containers)[deployed.graph.edge.name].container
    assert (target.hostname, target.port) == (edge.host, edge.port)
    parser = argparse.ArgumentParser()  # as python -m fakesvc.traffic reads its graph: --graph, else the environment
    settings.add_settings(parser, [setting for setting in SERVICE_SETTINGS if setting.env == "FAKESVC_GRAPH"])
    args, _ = parser.parse_known_args(list(command_of(traffic.command).args))
    assert shape(graph_of(service_config(args, traffic.environ))) == shape(deployed.graph)


def test_compose_starts_the_traffic_run_once_every_service_is_healthy(
    deployed: Deployed, compose_containers: dict[str, Container]
) -> None:
    traffic = _compose(deployed)["traffic"]
    assert traffic["restart"] == "no" and traffic["healthcheck"] == {"disable": True}
    hosts = [found.container.host for found in by_service(compose_containers).values()]
    assert traffic["depends_on"] == {host: {"condition": "service_healthy"} for host in hosts}


def test_the_job_waits_until_the_edge_is_ready(deployed: Deployed, k8s_containers: dict[str, Container]) -> None:
    (wait,) = [container for container in k8s_containers.values() if container.name.endswith("-ready")]
    assert wait.command[:3] == ["python", "-m", "fakesvc.healthcheck"]
    urls = [urlsplit(url) for url in health_urls(Command(wait.command[3], tuple(wait.command[4:])), wait.environ)]
    edge = by_service(k8s_containers)[deployed.graph.edge.name].container
    assert [(url.hostname, url.port, url.path) for url in urls] == [(edge.host, edge.port, "/readyz")]


def test_a_graph_file_is_copied_next_to_compose_yaml_and_into_a_config_map(deployed: Deployed) -> None:
    objects = objects_of(kustomization_objects(deployed.out / K8S_DIR), "ConfigMap")
    if deployed.source == "shop":  # a built-in graph is named, not copied
        assert not (deployed.out / "graph").exists() and "fakesvc-graph" not in objects
        return
    (copy,) = (deployed.out / "graph").iterdir()
    assert copy.name == "mini.yaml" and copy.read_bytes() == Path(deployed.source).read_bytes()
    assert objects["fakesvc-graph"]["data"] == {"mini.yaml": USER_GRAPH}


# --- the command line --------------------------------------------------------------------------------------------


def test_a_bad_graph_exits_2_with_the_loader_s_lines(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(USER_GRAPH.replace("service: stock", "service: stok"))
    with pytest.raises(GraphError) as loaded:
        load_graph(str(bad))
    assert deploy("--graph", str(bad), "--out", str(tmp_path / "out")) == 2
    assert capsys.readouterr() == ("", "\n".join(loaded.value.problems) + "\n")
    assert not (tmp_path / "out").exists()


def test_a_service_named_like_a_part_of_the_deployment_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    clash = tmp_path / "clash.yaml"
    clash.write_text(USER_GRAPH.replace("cache", "sink"))
    assert deploy("--graph", str(clash), "--out", str(tmp_path / "out")) == 2
    assert "service sink: the deployment names its own 'sink'" in capsys.readouterr().err


def test_a_non_empty_directory_is_refused_unless_forced(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "notes.txt").write_text("mine")
    assert deploy("--graph", "shop", "--out", str(tmp_path)) == 2
    assert "not empty (use --force" in capsys.readouterr().err
    assert [path.name for path in tmp_path.iterdir()] == ["notes.txt"]
    assert deploy("--graph", "shop", "--out", str(tmp_path), "--force") == 0
    assert (tmp_path / "notes.txt").read_text() == "mine" and (tmp_path / COMPOSE_FILE).is_file()
    assert str(tmp_path / COMPOSE_FILE) in capsys.readouterr().out.splitlines()


def test_the_help_says_what_force_does(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        deploy("--help")
    assert done.value.code == 0
    assert "--force" in capsys.readouterr().out
