"""Processes and measurements the benchmarks share: free ports, subprocess lifecycles, CPU time, load."""

from __future__ import annotations

import asyncio
import io
import os
import signal
import socket
import statistics
import subprocess
import sys
import tarfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run from a checkout without an install
    sys.path.insert(0, str(ROOT))
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
# The telemetry settings the cost figures compare (the overhead section's "full" and "logs only").
FULL_TELEMETRY = {"FAKESVC_TELEMETRY": "logs,metrics", "OTEL_TRACES_EXPORTER": "prodsentinel"}
LOGS_ONLY = {"FAKESVC_TELEMETRY": "logs", "OTEL_TRACES_EXPORTER": "none"}
WARMUP_REQUESTS = 300  # lazy imports, pools and caches are paid before the CPU is counted


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


@dataclass
class Server:
    """A benchmarked process, started with ``argv`` and ready once ``ready_text`` is on stderr."""

    process: asyncio.subprocess.Process

    @classmethod
    async def start(cls, argv: Sequence[str], env: dict[str, str], ready_text: str, ready_count: int = 1) -> Server:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            *argv,
            cwd=ROOT,
            env={**os.environ, **env},
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
        )
        assert process.stderr is not None, "stderr is a pipe"
        seen = 0
        while seen < ready_count:
            line = await asyncio.wait_for(process.stderr.readline(), 60)
            if not line:
                raise RuntimeError(f"{argv} exited before it was ready")
            seen += ready_text in line.decode()
        asyncio.ensure_future(_drain(process.stderr))
        return cls(process)

    @property
    def pid(self) -> int:
        return self.process.pid

    async def stop(self) -> None:
        if self.process.returncode is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(self.process.wait(), 60)
            except TimeoutError:
                self.process.kill()
                await self.process.wait()


async def start_sink(workdir: Path) -> tuple[Server, str]:
    """The embedded sink in its own process, storing under ``workdir``; and its URL."""
    port = free_port()
    db = workdir / f"sink-{port}.db"
    sink = await Server.start(["-m", "fakesvc.sink", "--port", str(port), "--db", str(db)], {}, "listening")
    return sink, f"http://127.0.0.1:{port}"


async def start_supervisor(workdir: Path, sink_url: str, root: Path = ROOT, **env: str) -> tuple[Server, str]:
    """``supervisor.py`` (of the tree at ``root``) on free ports sending to ``sink_url``; and the gateway's URL."""
    ports = [free_port() for _ in range(3)]
    environ = {
        "GATEWAY_PORT": str(ports[0]),
        "PAYMENT_PORT": str(ports[1]),
        "INVENTORY_PORT": str(ports[2]),
        "FAKESVC_SINK": "off",
        "PRODSENTINEL_URL": sink_url,
        "FAKESVC_SPILL_DIR": str(workdir / "spill"),
        "PYTHONPATH": str(root),  # the tree's own fakesvc, not the one installed in the venv
        **env,
    }
    supervisor = await Server.start([str(root / "supervisor.py")], environ, "listening on", ready_count=3)
    return supervisor, f"http://127.0.0.1:{ports[0]}"


def graph_ports(graph: str) -> dict[str, int]:
    """A free port for each service of ``graph`` (a built-in name or a file of this tree), in the graph's order."""
    from fakesvc.graph.load import load_graph

    return {name: free_port() for name in load_graph(graph).names}


def graph_env(workdir: Path, sink_url: str, graph: str, ports: dict[str, int], root: Path = ROOT) -> dict[str, str]:
    """The environment of ``supervisor.py --graph GRAPH`` of the tree at ``root``: each service on its port of
    ``ports``, sending to ``sink_url``, its outbox under ``workdir``."""
    from fakesvc.graph.load import load_graph

    prefixes = {service.name: service.code_prefix for service in load_graph(graph).services}
    return {
        **{f"{prefixes[name]}_PORT": str(port) for name, port in ports.items()},
        "FAKESVC_GRAPH": graph,
        "FAKESVC_SINK": "off",
        "PRODSENTINEL_URL": sink_url,
        "FAKESVC_SPILL_DIR": str(workdir / "spill"),
        "PYTHONPATH": str(root),  # the tree's own fakesvc, not the one installed in the venv
    }


async def start_graph(workdir: Path, sink_url: str, graph: str, ports: dict[str, int], **env: str) -> Server:
    """``supervisor.py --graph GRAPH`` of this tree (see :func:`graph_env`), ready when every service is."""
    return await start_tree_graph(ROOT, graph_env(workdir, sink_url, graph, ports) | env, len(ports))


async def start_tree_graph(root: Path, env: dict[str, str], services: int) -> Server:
    """``supervisor.py`` of the tree at ``root`` with ``env`` (:func:`graph_env`'s), ready when its services are."""
    return await Server.start([str(root / "supervisor.py")], env, "listening on", ready_count=services)


async def start_traffic(target: str, rate: float, duration_s: float, *options: str) -> asyncio.subprocess.Process:
    """``python -m fakesvc.traffic`` with this interpreter (the one fakesvc is installed in), quiet."""
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "fakesvc.traffic",
        "--target",
        target,
        "--rate",
        str(rate),
        "--duration",
        str(duration_s),
        "--quiet",
        *options,
        cwd=ROOT,
        stdout=asyncio.subprocess.DEVNULL,
    )


async def _drain(stream: asyncio.StreamReader) -> None:
    while await stream.read(65536):
        pass


async def closed_loop(
    url_for: Callable[[int], str],
    count: int,
    concurrency: int,
    method_for: Callable[[int], str] | None = None,
) -> dict[str, Any]:
    """Send ``count`` requests (POSTs unless ``method_for`` says) with ``concurrency`` workers; return wall time and status counts."""
    statuses: dict[int, int] = {}
    next_index = iter(range(count))
    latencies: list[float] = []

    async def worker(session: aiohttp.ClientSession) -> None:
        for index in next_index:
            started = time.perf_counter()
            method = "POST" if method_for is None else method_for(index)
            async with session.request(method, url_for(index)) as response:
                await response.read()
                statuses[response.status] = statuses.get(response.status, 0) + 1
            latencies.append(time.perf_counter() - started)

    started = time.perf_counter()
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:
        await asyncio.gather(*(worker(session) for _ in range(concurrency)))
    latencies.sort()
    return {
        "wall_s": time.perf_counter() - started,
        "ok": statuses.get(200, 0),
        "statuses": statuses,
        "p50_ms": latencies[len(latencies) // 2] * 1000,
        "p99_ms": latencies[int(len(latencies) * 0.99)] * 1000,
    }


async def wait_delivered(gateway: str, timeout_s: float = 120) -> dict[str, Any]:
    """Poll the process's batcher until nothing is left to send."""
    deadline = time.monotonic() + timeout_s
    async with aiohttp.ClientSession() as session:
        while time.monotonic() < deadline:
            async with session.get(f"{gateway}/telemetry") as response:
                stats = await response.json()
            if not stats.get("remote") or stats.get("backlog", 0) == 0:
                return stats
            await asyncio.sleep(0.05)
    raise RuntimeError(f"telemetry not delivered in {timeout_s} s: {stats}")


Request = Callable[[str, int], tuple[str, str]]  # (tag, index) -> (method, path) of one request of a load


def checkout_request(tag: str, index: int) -> tuple[str, str]:
    return "POST", f"/checkout/{tag}-{index}"


async def cpu_per_load(
    server: Server,
    edge: str,
    count: int,
    request: Request = checkout_request,
    *,
    concurrency: int = 32,
    telemetry: bool = True,
    warmup: int = WARMUP_REQUESTS,
) -> dict[str, Any]:
    """CPU of ``server`` for ``count`` requests to ``edge``, after ``warmup`` ones, until delivered.

    With ``telemetry`` the CPU is counted until the process's batcher has sent
    everything (its ``/telemetry``); every request must answer 200.
    """

    async def load(tag: str, n: int) -> dict[str, Any]:
        return await closed_loop(
            lambda i: edge + request(tag, i)[1], n, concurrency, method_for=lambda i: request(tag, i)[0]
        )

    async def delivered() -> dict[str, Any]:
        return await wait_delivered(edge) if telemetry else {}

    await load("warmup", warmup)
    before = await delivered()
    cpu_before = cpu_seconds(server.pid)
    run = await load("bench", count)
    after = await delivered()
    cpu = cpu_seconds(server.pid) - cpu_before
    if run["ok"] != count:
        raise RuntimeError(f"only {run['ok']} of {count} requests succeeded: {run['statuses']}")
    return {
        "cpu_s": cpu,
        "per_cpu_s": count / cpu,
        "signals_per_request": (after.get("queued", 0) - before.get("queued", 0)) / count,
        "wall_s": run["wall_s"],
        "p99_ms": run["p99_ms"],
    }


async def checkout_cost(root: Path, workdir: Path, sink_url: str, env: dict[str, str], count: int) -> dict[str, Any]:
    """:func:`cpu_per_load` of ``supervisor.py`` of the tree at ``root``, at latency scale 0, with ``env``'s telemetry."""
    server, gateway = await start_supervisor(workdir, sink_url, root=root, FAKESVC_LATENCY_SCALE="0", **env)
    try:
        return await cpu_per_load(server, gateway, count)
    finally:
        await server.stop()


def checkout_tree(rev: str, into: Path) -> Path:
    """The files of ``rev`` under ``into`` (no git metadata)."""
    archive = subprocess.run(["git", "archive", rev], cwd=ROOT, check=True, capture_output=True).stdout
    into.mkdir(parents=True)
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(into, filter="data")
    return into


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")
