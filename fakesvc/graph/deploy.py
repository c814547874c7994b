"""``python -m fakesvc.graph deploy``: the Compose file and the Kubernetes kustomization of any graph.

One container per service (``python -m fakesvc.service NAME --graph=G``), the
embedded sink, and a one-shot traffic run against the graph's edge; every
caller finds the services it calls at ``<PREFIX>_URL``, their container's DNS
name. The built-in checkout keeps its own entry points and names (``gateway``,
``payment``, ``inventory``): what this writes for it *is* the checked-in
``compose.yaml`` and ``deploy/k8s/``, byte for byte (tests/test_graph_deploy.py).
The text comes from templates, not a YAML dumper, so the files keep their
comments and flow style. A graph file that is not built in is copied next to
the compose file (mounted) and into a ConfigMap, at :data:`GRAPH_DIR`.
"""

from __future__ import annotations

import json
import re
import string
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import yaml

from fakesvc.config import ServiceConfig
from fakesvc.graph.load import BUILTIN_GRAPHS, load_graph
from fakesvc.graph.model import Graph, Service
from fakesvc.graph.placement import port_of
from fakesvc.healthcheck import CHECKOUT_ROLES, ENTRY_POINTS
from fakesvc.sink_address import SINK_PORT

COMPOSE_FILE = "compose.yaml"
K8S_DIR = "deploy/k8s"  # as in the repository: from DIR, `kubectl apply -k deploy/k8s`
GRAPH_COPY_DIR = "graph"  # DIR/graph/NAME.yaml: the copy compose mounts
GRAPH_DIR = "/etc/fakesvc"  # where the containers read a graph file
# Names the deployment gives its own parts (compose services, k8s objects and files): no service may take them.
RESERVED_NAMES = ("sink", "traffic", "config", "namespace", "kustomization", "graph")
_DNS_LABEL = re.compile(r"[a-z]([-a-z0-9]{0,61}[a-z0-9])?")  # a Kubernetes Service or container name
_SINK_PORT = int(SINK_PORT.default)  # in its container, and published on the host like every service's
_ROLES = {service: role for role, service in CHECKOUT_ROLES.items()}


class DeployError(ValueError):
    """A valid graph that cannot be deployed as is (a name the deployment needs, ports the host publishes twice)."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("\n".join(problems))


class _Text(string.Template):
    """A file's text with ``@name`` holes (``$`` is compose's own interpolation)."""

    delimiter = "@"


@dataclass(frozen=True)
class Unit:
    """A service of the graph as one container: the name callers reach it by, what it runs, where it listens."""

    service: str  # its name in the graph
    name: str  # compose service, Kubernetes Deployment and Service, DNS name
    prefix: str  # <PREFIX>_PORT moves the published port, <PREFIX>_URL is where callers find it
    port: int
    command: tuple[str, ...]
    role: str | None  # the checkout's own entry point (gateway, payment, inventory); None: fakesvc.service


class GraphFile(NamedTuple):
    """A graph that is not built in, as the containers get it: its file name there (the graph's name) and text."""

    name: str
    text: str


@dataclass(frozen=True)
class Plan:
    """What a deployment of one graph consists of, before it is written as text."""

    graph: Graph
    units: tuple[Unit, ...]  # in the graph's file order
    selector: str | None  # FAKESVC_GRAPH: a built-in's name or the mounted file; None: the default graph
    graph_file: GraphFile | None  # None: a built-in graph, named

    @property
    def edge(self) -> Unit:
        return _edge(self.graph, self.units)

    @property
    def callees(self) -> list[Unit]:
        """The services some caller calls, in file order: each gets a ``<PREFIX>_URL`` every container sees."""
        called = {callee for name in self.graph.names for callee in self.graph.callees(name)}
        return [unit for unit in self.units if unit.service in called]


# --- the plan --------------------------------------------------------------------------------------------------


def plan(source: str) -> Plan:
    """The deployment of the graph ``source`` names; :class:`GraphError` or :class:`DeployError` if it cannot be."""
    graph = load_graph(source)
    graph_file = None if source in BUILTIN_GRAPHS else _graph_file(graph, Path(source))
    selector = _selector(source, graph_file)
    units = tuple(_unit(graph, service, selector) for service in graph.services)
    problems = _problems(graph, units)
    if problems:
        raise DeployError(problems)
    return Plan(graph, units, selector, graph_file)


def _graph_file(graph: Graph, path: Path) -> GraphFile:
    """Named by its graph (safe in any path or key), its text exactly as written (no newline translation)."""
    suffix = ".json" if path.suffix.lower() == ".json" else ".yaml"  # the loader reads JSON by its suffix
    return GraphFile(f"{graph.name}{suffix}", path.read_bytes().decode("utf-8"))


def _selector(source: str, graph_file: GraphFile | None) -> str | None:
    """What FAKESVC_GRAPH and --graph say: nothing for the default graph, a built-in's name, or the mounted file."""
    if graph_file is not None:
        return f"{GRAPH_DIR}/{graph_file.name}"
    return None if source == ServiceConfig.graph else source


def _edge(graph: Graph, units: Iterable[Unit]) -> Unit:
    return next(unit for unit in units if unit.service == graph.edge.name)


def _unit(graph: Graph, service: Service, selector: str | None) -> Unit:
    """The checkout (the default graph) runs its own entry points; any other graph runs fakesvc.service."""
    role = _ROLES.get(service.name) if selector is None else None
    if role is not None:
        command: tuple[str, ...] = ("python", "-m", ENTRY_POINTS[role])
    else:
        command = ("python", "-m", ENTRY_POINTS["service"], service.name, f"--graph={selector}")
    port = port_of(graph, service.name, ServiceConfig())
    return Unit(service.name, role or service.name, service.code_prefix, port, command, role)


def _problems(graph: Graph, units: tuple[Unit, ...]) -> list[str]:
    """What would make the files invalid or the containers clash, one line each, named like the loader's."""
    problems = [
        f"{graph.source}: service {unit.name}: the deployment names its own {unit.name!r}; rename the service"
        for unit in units
        if unit.name in RESERVED_NAMES
    ]
    for name in [unit.name for unit in units] + [_ready(_edge(graph, units))]:
        if not _DNS_LABEL.fullmatch(name):
            problems.append(f"{graph.source}: {name!r} is not a Kubernetes name (at most 63 characters, no '-' last)")
    published: dict[int, str] = {_SINK_PORT: "sink"}
    for unit in units:
        if unit.port in published:
            problems.append(f"{graph.source}: service {unit.name}: port {unit.port} is {published[unit.port]}'s too")
        published.setdefault(unit.port, unit.name)
    return problems


def _ready(edge: Unit) -> str:
    """The traffic Job's init container, waiting for the edge."""
    return f"{edge.name}-ready"


# --- text helpers ----------------------------------------------------------------------------------------------


def _scalar(text: str) -> str:
    """``text`` as a YAML scalar that reads back as that string, plain when it can be (also inside ``{...}``)."""
    plain = yaml.safe_load(f"[{text}]") == [text] if text.strip() == text else False
    return text if plain else json.dumps(text)


def _flow(items: Iterable[str]) -> str:
    """``["python", "-m", ...]``: a flow list of strings, as the checked-in files write commands."""
    return json.dumps(list(items))


def _lines(indent: str, items: Iterable[str]) -> str:
    """Lines to append at the end of a template line: each starts a new line at ``indent``."""
    return "".join(f"\n{indent}{item}" for item in items)


def _entries(indent: str, pairs: Iterable[tuple[str, str]]) -> str:
    return _lines(indent, (f"{key}: {_scalar(value)}" for key, value in pairs))


def _probe(role: str, *service: str) -> tuple[str, ...]:
    """``python -m fakesvc.healthcheck ROLE [SERVICE]``: the probe of one role, reading only the environment."""
    return ("python", "-m", "fakesvc.healthcheck", role, *service)


def _graph_env(plan: Plan) -> list[tuple[str, str]]:
    return [] if plan.selector is None else [("FAKESVC_GRAPH", plan.selector)]


def _graph_flag(plan: Plan, indent: str) -> str:
    """The traffic run's ``--graph``: its Job has no ConfigMap environment, and what it sends to follows the graph."""
    return _lines(indent, [] if plan.selector is None else [f"- --graph={plan.selector}"])


def _url_env(plan: Plan) -> list[tuple[str, str]]:
    return [(f"{unit.prefix}_URL", f"http://{unit.name}:{unit.port}") for unit in plan.callees]


# --- compose.yaml ----------------------------------------------------------------------------------------------

_COMPOSE = _Text("""\
# docker compose up: the embedded sink, @services as separate containers, and a one-shot
# traffic run writing its truth and report to the traffic-results volume. Services reach each other by
# compose name, as on separate hosts; fault control between them needs the admin token.
#   FAKESVC_ADMIN_TOKEN=$(openssl rand -hex 16) docker compose up
# @backend
# Compose v1 (docker-compose 1.29, Debian's) and v2 both run it: no top-level name, no start_interval.

x-fakesvc: &fakesvc
  build: .
  image: ${FAKESVC_IMAGE:-fakesvc:local}
  restart: unless-stopped
  environment: &environment
    FAKESVC_ADMIN_TOKEN: ${FAKESVC_ADMIN_TOKEN:-change-me}
    FAKESVC_SEED: ${FAKESVC_SEED:-1}@graph
    PRODSENTINEL_URL: http://sink:8000@urls
  healthcheck: &healthcheck
    test: ["CMD", "python", "-m", "fakesvc.healthcheck"]
    interval: 10s
    timeout: 5s
    start_period: 15s
    retries: 3

services:
  sink:
    <<: *fakesvc
    command: ["python", "-m", "fakesvc.sink"]
    environment:
      <<: *environment
      FAKESVC_SINK_DB: /data/signals.db
    healthcheck:
      <<: *healthcheck
      test: ["CMD", "python", "-m", "fakesvc.healthcheck", "sink"]
    ports: ["127.0.0.1:${SINK_PORT:-8000}:8000"]
    volumes: ["sink-data:/data"]@units

  traffic:
    <<: *fakesvc
    restart: "no"
    command:
      - python
      - -m
      - fakesvc.traffic
      - --target=http://@edge:@port@graph_flag
      - --rate=${TRAFFIC_RATE:-5}
      - --duration=${TRAFFIC_DURATION:-60}
      - --seed=${FAKESVC_SEED:-1}
      - --truth=/data/truth.jsonl
      - --report=/data/report.json
    healthcheck:
      disable: true
    depends_on:@depends
    volumes: @traffic_volumes

volumes:
  sink-data:@volumes
  traffic-results:
""")

_COMPOSE_SERVICE = _Text("""

  @name:
    <<: *fakesvc
    command: @command@healthcheck
    ports: ["127.0.0.1:${@{prefix}_PORT:-@port}:@port"]
    volumes: @volumes""")

# A checkout service's probe names its role; any other reads the container's command (/proc/1/cmdline).
_COMPOSE_PROBE = _Text("""
    healthcheck:
      <<: *healthcheck
      test: @test""")

_CHECKOUT_BACKEND = (
    "With a running ProdSentinel instead of the sink: add -f compose.prodsentinel.yaml (docs/deploy.md)."
)
_GRAPH_BACKEND = "Written by python -m fakesvc.graph deploy (docs/deploy.md); ProdSentinel: set PRODSENTINEL_URL."


def compose(plan: Plan) -> str:
    """compose.yaml: the sink, the services callees first, the traffic run once they are all healthy."""
    graph = plan.graph
    return _COMPOSE.substitute(
        services="the three services" if plan.selector is None else f"the {graph.name} graph's services",
        backend=_CHECKOUT_BACKEND if plan.selector is None else _GRAPH_BACKEND,
        graph=_entries("    ", _graph_env(plan)),
        urls=_entries("    ", _url_env(plan)),
        units="".join(_compose_service(plan, unit) for unit in reversed(plan.units)),
        edge=plan.edge.name,
        port=plan.edge.port,
        depends=_lines("      ", (f"{unit.name}: {{condition: service_healthy}}" for unit in plan.units)),
        graph_flag=_graph_flag(plan, "      "),
        traffic_volumes=_flow(["traffic-results:/data", *_compose_graph_mount(plan)]),
        volumes=_lines("  ", (f"{unit.name}-outbox:" for unit in reversed(plan.units))),
    )


def _compose_service(plan: Plan, unit: Unit) -> str:
    probe = ("CMD", *_probe(unit.role or ""))
    return _COMPOSE_SERVICE.substitute(
        name=unit.name,
        command=_flow(unit.command),
        healthcheck=_COMPOSE_PROBE.substitute(test=_flow(probe)) if unit.role else "",
        prefix=unit.prefix,
        port=unit.port,
        volumes=_flow([f"{unit.name}-outbox:/data", *_compose_graph_mount(plan)]),
    )


def _compose_graph_mount(plan: Plan) -> list[str]:
    """The bind mount of the graph file's copy next to compose.yaml, read-only; none for a built-in graph."""
    if plan.graph_file is None:
        return []
    return [f"./{GRAPH_COPY_DIR}/{plan.graph_file.name}:{plan.selector}:ro"]


# --- deploy/k8s ------------------------------------------------------------------------------------------------

_KUSTOMIZATION = _Text("""\
# kubectl apply -k deploy/k8s   (or: kubectl kustomize deploy/k8s)
# One replica per service: chaos control and truth lookups reach one pod through each Service, so scored
# runs use one; more replicas are for load only. Steps for kind/minikube: docs/deploy.md.
apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
namespace: fakesvc
resources:
  - namespace.yaml
  - config.yaml@graph
  - sink.yaml@units
  - traffic.yaml
""")

_NAMESPACE = """\
apiVersion: v1
kind: Namespace
metadata:
  name: fakesvc
  labels:
    app.kubernetes.io/part-of: fakesvc
"""

_CONFIG = _Text("""\
# Settings every fakesvc pod reads (the same variables as the README's configuration table).
apiVersion: v1
kind: ConfigMap
metadata:
  name: fakesvc-config
  labels:
    app.kubernetes.io/part-of: fakesvc
data:
  FAKESVC_HOST: "0.0.0.0"
  FAKESVC_SEED: "1"@graph
  PRODSENTINEL_URL: http://sink:8000@urls
  FAKESVC_SPILL_DIR: /data/outbox
  FAKESVC_SINK_DB: /data/signals.db
---
# The admin token for fault control between pods. A placeholder: replace it before use, e.g.
#   kubectl -n fakesvc create secret generic fakesvc-admin \\
#     --from-literal=FAKESVC_ADMIN_TOKEN="$(openssl rand -hex 16)" --dry-run=client -o yaml | kubectl apply -f -
#   kubectl -n fakesvc rollout restart deployment && kubectl -n fakesvc rollout restart statefulset
# (again after every kubectl apply -k, which puts this placeholder back).
apiVersion: v1
kind: Secret
metadata:
  name: fakesvc-admin
  labels:
    app.kubernetes.io/part-of: fakesvc
type: Opaque
stringData:
  FAKESVC_ADMIN_TOKEN: change-me
""")

_GRAPH_CONFIG = _Text("""\
# The graph file (FAKESVC_GRAPH=@path), mounted at @dir in the service pods and the traffic Job.
apiVersion: v1
kind: ConfigMap
metadata:
  name: fakesvc-graph
  labels:
    app.kubernetes.io/part-of: fakesvc
""")

# Shared by the services, the sink and the traffic run: non-root, read-only, no privileges.
_POD_SECURITY = """\
      securityContext:
        runAsNonRoot: true
        runAsUser: 10001
        runAsGroup: 10001
        fsGroup: 10001
        seccompProfile: {type: RuntimeDefault}"""
_CONTAINER_SECURITY = """\
          securityContext:
            allowPrivilegeEscalation: false
            readOnlyRootFilesystem: true
            capabilities: {drop: [ALL]}"""
_RESOURCES = """\
          resources:
            requests: {cpu: 100m, memory: 128Mi}
            limits: {cpu: "1", memory: 512Mi}"""
_SERVICE_OBJECT = _Text("""\
---
apiVersion: v1
kind: Service
metadata:
  name: @name
  labels:
    app.kubernetes.io/name: @name
    app.kubernetes.io/part-of: fakesvc
spec:
  selector:
    app.kubernetes.io/name: @name
  ports:
    - {name: http, port: @port, targetPort: http}
""")

_DEPLOYMENT = _Text("""\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: @name
  labels:
    app.kubernetes.io/name: @name
    app.kubernetes.io/part-of: fakesvc
spec:
  replicas: 1  # scored runs: one (chaos rules and truth lookups reach one pod through the Service)
  selector:
    matchLabels:
      app.kubernetes.io/name: @name
  template:
    metadata:
      labels:
        app.kubernetes.io/name: @name
        app.kubernetes.io/part-of: fakesvc
    spec:
@pod_security
      containers:
        - name: @name
          image: fakesvc:local
          imagePullPolicy: IfNotPresent
          command: @command
          ports:
            - {name: http, containerPort: @port}
          envFrom:
            - configMapRef: {name: fakesvc-config}
            - secretRef: {name: fakesvc-admin}
          readinessProbe:
            httpGet: {path: /readyz, port: http}
            periodSeconds: 5
          livenessProbe:
            httpGet: {path: /healthz, port: http}
            periodSeconds: 10
            failureThreshold: 3
@resources
@security
          volumeMounts:
            - {name: outbox, mountPath: /data}@graph_mount
      volumes:
        # The pod's own outbox: SQLite's WAL needs a local filesystem, and it outlives container restarts.
        - name: outbox
          emptyDir: {}@graph_volume
""")

_SINK = _Text("""\
# The embedded sink: one pod keeping its SQLite database on a PersistentVolumeClaim.
apiVersion: apps/v1
kind: StatefulSet
metadata:
  name: sink
  labels:
    app.kubernetes.io/name: sink
    app.kubernetes.io/part-of: fakesvc
spec:
  serviceName: sink
  replicas: 1  # one SQLite database: the sink does not scale out
  selector:
    matchLabels:
      app.kubernetes.io/name: sink
  template:
    metadata:
      labels:
        app.kubernetes.io/name: sink
        app.kubernetes.io/part-of: fakesvc
    spec:
@pod_security
      containers:
        - name: sink
          image: fakesvc:local
          imagePullPolicy: IfNotPresent
          command: ["python", "-m", "fakesvc.sink"]
          ports:
            - {name: http, containerPort: 8000}
          envFrom:
            - configMapRef: {name: fakesvc-config}
            - secretRef: {name: fakesvc-admin}
          env:
            - {name: FAKESVC_SINK_HOST, value: "0.0.0.0"}
          readinessProbe:
            httpGet: {path: /ingest/health, port: http}
            periodSeconds: 5
          livenessProbe:
            httpGet: {path: /ingest/health, port: http}
            periodSeconds: 10
            failureThreshold: 3
@resources
@security
          volumeMounts:
            - {name: sink-data, mountPath: /data}
  volumeClaimTemplates:
    - metadata:
        name: sink-data
      spec:
        accessModes: [ReadWriteOnce]
        resources:
          requests: {storage: 1Gi}
""")

_TRAFFIC = _Text("""\
# One traffic run against the @edge; its truth and report stay on the traffic-results claim.
apiVersion: v1
kind: PersistentVolumeClaim
metadata:
  name: traffic-results
  labels:
    app.kubernetes.io/name: traffic
    app.kubernetes.io/part-of: fakesvc
spec:
  accessModes: [ReadWriteOnce]
  resources:
    requests: {storage: 1Gi}
---
apiVersion: batch/v1
kind: Job
metadata:
  name: traffic
  labels:
    app.kubernetes.io/name: traffic
    app.kubernetes.io/part-of: fakesvc
spec:
  backoffLimit: 6
  # A finished run that saw unexpected answers exits 1: that is its result, not a reason to run again
  # (a second run would overwrite the truth). Retries are for a pod that never got to run.
  podFailurePolicy:
    rules:
      - action: FailJob
        onExitCodes: {containerName: traffic, operator: In, values: [1]}
      - action: Ignore
        onPodConditions: [{type: DisruptionTarget}]
  template:
    metadata:
      labels:
        app.kubernetes.io/name: traffic
        app.kubernetes.io/part-of: fakesvc
    spec:
      restartPolicy: Never
@pod_security
      initContainers:
        # Wait for the @edge: the probe asks FAKESVC_HOST:@{prefix}_PORT/readyz, here @edge:@port.
        - name: @ready
          image: fakesvc:local
          imagePullPolicy: IfNotPresent
          command: @probe
          env:
            - {name: FAKESVC_HOST, value: @edge}@probe_env
          resources:
            requests: {cpu: 50m, memory: 64Mi}
            limits: {cpu: 500m, memory: 128Mi}
@security@probe_mounts
      containers:
        - name: traffic
          image: fakesvc:local
          imagePullPolicy: IfNotPresent
          command:
            - python
            - -m
            - fakesvc.traffic
            - --target=http://@edge:@port@graph_flag
            - --rate=5
            - --duration=60
            - --seed=1
            - --truth=/data/truth.jsonl
            - --report=/data/report.json
@resources
@security
          volumeMounts:
            - {name: results, mountPath: /data}@graph_mount
      volumes:
        - name: results
          persistentVolumeClaim: {claimName: traffic-results}@graph_volume
""")

_SHARED = {"pod_security": _POD_SECURITY, "security": _CONTAINER_SECURITY, "resources": _RESOURCES}
_GRAPH_MOUNT = f"- {{name: graph, mountPath: {GRAPH_DIR}, readOnly: true}}"
_GRAPH_VOLUME = ("- name: graph", "  configMap: {name: fakesvc-graph}")


def kubernetes(plan: Plan) -> dict[str, str]:
    """deploy/k8s: file name -> text, the kustomization first; the graph's ConfigMap when it is a file."""
    files = {
        "kustomization.yaml": _kustomization(plan),
        "namespace.yaml": _NAMESPACE,
        "config.yaml": _CONFIG.substitute(graph=_entries("  ", _graph_env(plan)), urls=_entries("  ", _url_env(plan))),
        "sink.yaml": _SINK.substitute(_SHARED) + _SERVICE_OBJECT.substitute(name="sink", port=_SINK_PORT),
    }
    if plan.graph_file is not None:
        files["graph.yaml"] = _graph_config(plan.graph_file)
    files.update({f"{unit.name}.yaml": _deployment(plan, unit) for unit in reversed(plan.units)})
    files["traffic.yaml"] = _traffic(plan)
    return files


def _kustomization(plan: Plan) -> str:
    return _KUSTOMIZATION.substitute(
        graph=_lines("  ", ["- graph.yaml"] if plan.graph_file else []),
        units=_lines("  ", (f"- {unit.name}.yaml" for unit in reversed(plan.units))),
    )


def _graph_config(graph_file: GraphFile) -> str:
    """The ConfigMap holding the graph file: its text as a ``|`` block where YAML allows one (dumped: any text)."""
    head = _GRAPH_CONFIG.substitute(path=f"{GRAPH_DIR}/{graph_file.name}", dir=GRAPH_DIR)
    data = {"data": {graph_file.name: graph_file.text}}
    return head + yaml.dump(data, Dumper=_BlockDumper, sort_keys=False, allow_unicode=True)


class _BlockDumper(yaml.SafeDumper):
    """``safe_dump`` writing multi-line strings as ``|`` blocks, so the graph in its ConfigMap reads like the file."""


def _block_string(dumper: yaml.SafeDumper, text: str) -> Any:
    return dumper.represent_scalar("tag:yaml.org,2002:str", text, style="|" if "\n" in text else None)


_BlockDumper.add_representer(str, _block_string)


def _deployment(plan: Plan, unit: Unit) -> str:
    return _DEPLOYMENT.substitute(
        _SHARED, name=unit.name, command=_flow(unit.command), port=unit.port, **_graph_volume(plan)
    ) + _SERVICE_OBJECT.substitute(name=unit.name, port=unit.port)


def _graph_volume(plan: Plan) -> dict[str, str]:
    """The ConfigMap volume and its read-only mount at GRAPH_DIR, for a pod that reads a graph file."""
    present = plan.graph_file is not None
    return {
        "graph_mount": _lines(" " * 12, [_GRAPH_MOUNT] if present else []),
        "graph_volume": _lines(" " * 8, _GRAPH_VOLUME if present else ()),
    }


def _traffic(plan: Plan) -> str:
    """The Job: an init container waiting for the edge, then one run against it."""
    edge = plan.edge
    env = [f"- {{name: {key}, value: {_scalar(value)}}}" for key, value in _graph_env(plan)]
    present = plan.graph_file is not None
    mounts = ("volumeMounts:", f"  {_GRAPH_MOUNT}") if present else ()
    return _TRAFFIC.substitute(
        _SHARED,
        edge=edge.name,
        port=edge.port,
        prefix=edge.prefix,
        ready=_ready(edge),
        probe=_flow(_probe(edge.role) if edge.role else _probe("service", edge.name)),
        probe_env=_lines(" " * 12, env),
        probe_mounts=_lines(" " * 10, mounts),
        graph_flag=_graph_flag(plan, " " * 12),
        **_graph_volume(plan),
    )


# --- writing ---------------------------------------------------------------------------------------------------


def render(source: str) -> dict[str, str]:
    """Every file of the deployment of ``source``: path relative to the output directory -> text."""
    found = plan(source)
    files = {COMPOSE_FILE: compose(found)}
    files.update({f"{K8S_DIR}/{name}": text for name, text in kubernetes(found).items()})
    if found.graph_file is not None:
        files[f"{GRAPH_COPY_DIR}/{found.graph_file.name}"] = found.graph_file.text
    return files


def write(files: Mapping[str, str], out: Path) -> list[Path]:
    """Write ``files`` under ``out`` exactly as given (no newline translation); the paths written."""
    written = []
    for relative, text in files.items():
        path = out / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8", newline="")
        written.append(path)
    return written


def occupied(out: Path) -> bool:
    """A directory with something in it already (``deploy`` needs ``--force`` there)."""
    return out.exists() and any(out.iterdir())
