"""deploy/k8s: every object valid against the Kubernetes 1.37 schemas (kubernetes-validate's bundled
ones, strict), and the references between them (selectors, ports, ConfigMap, Secret, probe routes,
commands) matching each other and the real code.

No cluster here. The kustomization is rendered in Python (its resources, with its namespace); where
``kubectl`` is installed, ``kubectl kustomize`` must render the same objects.
"""

from __future__ import annotations

import copy
import functools
import shutil
import subprocess
from typing import Any
from urllib.parse import urlsplit

import kubernetes_validate
import pytest
import yaml

from tests.deploy_fixtures import (
    ROOT,
    check_entry_points,
    kustomization_objects,
    listen_port,
    objects_of,
    pod_environment,
    pod_spec,
    role_of,
    route_status,
)

K8S = ROOT / "deploy" / "k8s"
KUBERNETES_VERSION = "1.37.0"
SERVICES = ("gateway", "payment", "inventory")
WORKLOADS = ("Deployment", "StatefulSet", "Job")


@functools.cache
def render() -> list[dict[str, Any]]:
    """The kustomization's objects (read once: do not mutate)."""
    return kustomization_objects(K8S)


def by_kind(kind: str) -> dict[str, dict[str, Any]]:
    return objects_of(render(), kind)


def container_environment(container: dict[str, Any]) -> dict[str, str]:
    """What the container's process sees: the image's ENV, its ConfigMaps and Secrets, then its env."""
    return pod_environment(container, render())


def test_every_object_is_valid_against_the_kubernetes_schemas() -> None:
    objects = render()
    assert {obj["kind"] for obj in objects} == {
        "Namespace",
        "ConfigMap",
        "Secret",
        "Deployment",
        "Service",
        "StatefulSet",
        "Job",
        "PersistentVolumeClaim",
    }
    for obj in objects:
        kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)


def test_the_validator_rejects_what_the_api_server_would() -> None:
    """The schema check is not a formality: a misspelt field fails it."""
    deployment = copy.deepcopy(by_kind("Deployment")["gateway"])
    deployment["spec"]["template"]["spec"]["containers"][0]["readinesProbe"] = {"httpGet": {"path": "/readyz"}}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBERNETES_VERSION, strict=True)


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl is not installed (it is not on PyPI)")
def test_kubectl_kustomize_renders_the_same_objects() -> None:
    result = subprocess.run(["kubectl", "kustomize", str(K8S)], capture_output=True, text=True, check=True)
    rendered = [doc for doc in yaml.safe_load_all(result.stdout) if doc]

    def key(obj: dict[str, Any]) -> tuple[str, str]:
        return obj["kind"], obj["metadata"]["name"]

    assert sorted(rendered, key=key) == sorted(render(), key=key)


def test_one_replica_per_service_with_requests_limits_and_its_own_outbox_volume() -> None:
    deployments = by_kind("Deployment")
    assert set(deployments) == set(SERVICES)
    for name, deployment in deployments.items():
        assert deployment["spec"]["replicas"] == 1, name
        (container,) = pod_spec(deployment)["containers"]
        outbox = container_environment(container)["FAKESVC_SPILL_DIR"]
        mounts = {mount["mountPath"]: mount["name"] for mount in container["volumeMounts"]}
        volume = next(mounts[path] for path in mounts if outbox == path or outbox.startswith(path + "/"))
        assert {"name": volume, "emptyDir": {}} in pod_spec(deployment)["volumes"], name
    for workload in [*deployments.values(), *by_kind("StatefulSet").values(), *by_kind("Job").values()]:
        for container in pod_spec(workload)["containers"] + pod_spec(workload).get("initContainers", []):
            assert set(container["resources"]) == {"requests", "limits"}, container["name"]
            assert set(container["resources"]["limits"]) >= {"cpu", "memory"}, container["name"]


def test_the_sink_is_a_stateful_set_with_a_claim_and_the_generator_a_job() -> None:
    (sink,) = by_kind("StatefulSet").values()
    (container,) = pod_spec(sink)["containers"]
    assert role_of(container["command"]) == "sink"
    database = container_environment(container)["FAKESVC_SINK_DB"]
    claims = {claim["metadata"]["name"] for claim in sink["spec"]["volumeClaimTemplates"]}
    assert any(m["name"] in claims and database.startswith(m["mountPath"] + "/") for m in container["volumeMounts"])
    (job,) = by_kind("Job").values()
    (traffic,) = pod_spec(job)["containers"]
    assert role_of(traffic["command"]) == "traffic" and pod_spec(job)["restartPolicy"] == "Never"
    assert "readinessProbe" not in traffic and "livenessProbe" not in traffic
    claim = next(v["persistentVolumeClaim"]["claimName"] for v in pod_spec(job)["volumes"])
    assert claim in by_kind("PersistentVolumeClaim")
    truth = next(arg.split("=", 1)[1] for arg in traffic["command"] if arg.startswith("--truth="))
    assert truth.startswith(traffic["volumeMounts"][0]["mountPath"] + "/")


def test_the_admin_token_comes_from_a_secret_every_service_and_the_sink_read() -> None:
    secrets = by_kind("Secret")
    assert all("FAKESVC_ADMIN_TOKEN" in secret["stringData"] for secret in secrets.values())
    assert not any("FAKESVC_ADMIN_TOKEN" in cm["data"] for cm in by_kind("ConfigMap").values())
    for workload in [*by_kind("Deployment").values(), *by_kind("StatefulSet").values()]:
        (container,) = pod_spec(workload)["containers"]
        assert "FAKESVC_ADMIN_TOKEN" in container_environment(container), workload["metadata"]["name"]


def test_references_resolve_selectors_ports_configmaps_and_secrets() -> None:
    workloads = [obj for obj in render() if obj["kind"] in WORKLOADS]
    for workload in workloads:
        for container in pod_spec(workload)["containers"]:
            for source in container.get("envFrom", []):
                kind, ref = ("ConfigMap", "configMapRef") if "configMapRef" in source else ("Secret", "secretRef")
                assert source[ref]["name"] in by_kind(kind), source
    ports: dict[str, int] = {}
    for name, service in by_kind("Service").items():
        selected = [
            w
            for w in workloads
            if service["spec"]["selector"].items() <= w["spec"]["template"]["metadata"]["labels"].items()
        ]
        assert len(selected) == 1, f"Service {name} selects {len(selected)} workloads"
        (container,) = pod_spec(selected[0])["containers"]
        (port,) = service["spec"]["ports"]
        named = {p["name"]: p["containerPort"] for p in container["ports"]}
        assert (
            named[port["targetPort"]]
            == port["port"]
            == listen_port(container["command"], container_environment(container))
        )
        ports[name] = port["port"]
    for workload in workloads:
        if workload["kind"] != "Deployment":
            continue
        selector = workload["spec"]["selector"]["matchLabels"]
        assert selector.items() <= workload["spec"]["template"]["metadata"]["labels"].items()
    (config,) = by_kind("ConfigMap").values()
    for variable in ("PRODSENTINEL_URL", "PAYMENT_URL", "INVENTORY_URL"):
        url = urlsplit(config["data"][variable])
        assert ports[url.hostname] == url.port, variable
    (job,) = by_kind("Job").values()
    target = next(arg for arg in pod_spec(job)["containers"][0]["command"] if arg.startswith("--target="))
    assert urlsplit(target.split("=", 1)[1]).port == ports["gateway"]


async def test_every_command_is_an_entry_point_of_the_image() -> None:
    commands = [
        container["command"]
        for obj in render()
        if obj["kind"] in WORKLOADS
        for container in pod_spec(obj)["containers"] + pod_spec(obj).get("initContainers", [])
    ]
    await check_entry_points(commands)


PROBES = [(name, "readinessProbe", "/readyz") for name in SERVICES] + [
    (name, "livenessProbe", "/healthz") for name in SERVICES
]


@pytest.mark.parametrize(("name", "probe", "path"), PROBES + [("sink", "readinessProbe", "/ingest/health")])
async def test_probes_ask_real_routes_on_the_container_port(
    aiohttp_client: Any, name: str, probe: str, path: str
) -> None:
    workload = {**by_kind("Deployment"), **by_kind("StatefulSet")}[name]
    (container,) = pod_spec(workload)["containers"]
    get = container[probe]["httpGet"]
    assert get["path"] == path
    assert {p["name"]: p["containerPort"] for p in container["ports"]}[get["port"]] == listen_port(
        container["command"], container_environment(container)
    )
    assert await route_status(aiohttp_client, role_of(container["command"]), path) == 200


def test_the_job_waits_for_the_gateway_and_a_finished_run_is_not_repeated() -> None:
    (job,) = by_kind("Job").values()
    (wait,) = pod_spec(job)["initContainers"]
    environ = container_environment(wait)
    assert wait["command"] == ["python", "-m", "fakesvc.healthcheck", "gateway"]
    assert (
        listen_port(["python", "-m", "fakesvc.gateway"], environ)
        == by_kind("Service")["gateway"]["spec"]["ports"][0]["port"]
    )
    assert environ["FAKESVC_HOST"] == "gateway"
    rules = job["spec"]["podFailurePolicy"]["rules"]
    assert {"action": "FailJob", "onExitCodes": {"containerName": "traffic", "operator": "In", "values": [1]}} in rules
