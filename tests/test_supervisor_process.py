"""``python supervisor.py`` as a user runs it: a subprocess on free ports, driven over HTTP, stopped by SIGTERM."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sqlite3
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Supervisor:
    def __init__(self, process: asyncio.subprocess.Process, ports: dict[str, int], db: Path) -> None:
        self.process = process
        self.ports = ports
        self.db = db
        self.stderr_lines: list[str] = []
        self.stdout_lines: list[str] = []
        self._stdout_reader = asyncio.ensure_future(self._read_stdout())

    async def _read_stdout(self) -> None:
        while line := await self.process.stdout.readline():
            self.stdout_lines.append(line.decode())

    async def wait_stdout(self, needle: str, timeout: float = 10) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not any(needle in line for line in self.stdout_lines):
            assert loop.time() < deadline, f"no stdout line with {needle!r}"
            await asyncio.sleep(0.01)

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.ports[name]}"

    async def read_until(self, needle: str, timeout: float = 30) -> None:
        async def scan() -> None:
            while True:
                line = await self.process.stderr.readline()
                if not line:
                    raise AssertionError("supervisor exited early:\n" + "".join(self.stderr_lines))
                self.stderr_lines.append(line.decode())
                if needle in self.stderr_lines[-1]:
                    return

        await asyncio.wait_for(scan(), timeout)


async def start_supervisor(tmp_path: Path, *args: str, **env: str) -> Supervisor:
    ports = {name: free_port() for name in ("gateway", "payment", "inventory", "sink")}
    db = tmp_path / "signals.db"
    environ = {
        **os.environ,
        "GATEWAY_PORT": str(ports["gateway"]),
        "PAYMENT_PORT": str(ports["payment"]),
        "INVENTORY_PORT": str(ports["inventory"]),
        "PRODSENTINEL_URL": f"http://127.0.0.1:{ports['sink']}",
        "FAKESVC_SINK": "on",
        "FAKESVC_SINK_DB": str(db),
        "FAKESVC_SPILL_DIR": str(tmp_path / "spill"),
        "FAKESVC_LATENCY_SCALE": "0",
        "FAKESVC_INVENTORY_TIMEOUT_S": "0.3",
        "FAKESVC_HANG_S": "0.6",
        "PYTHONUNBUFFERED": "1",
        **env,
    }
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        str(ROOT / "supervisor.py"),
        *args,
        cwd=tmp_path,
        env=environ,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    return Supervisor(process, ports, db)


@pytest.fixture
async def supervisor(tmp_path: Path) -> AsyncIterator[Supervisor]:
    sup = await start_supervisor(tmp_path)
    try:
        await sup.read_until("api-gateway listening on")
        yield sup
    finally:
        if sup.process.returncode is None:
            sup.process.kill()
            await sup.process.wait()


async def test_supervisor_serves_the_scenarios_and_stops_cleanly_on_sigterm(supervisor: Supervisor) -> None:
    assert any(
        f"inventory-service listening on http://127.0.0.1:{supervisor.ports['inventory']}" in line
        for line in supervisor.stderr_lines
    )
    expected = {"success": 200, "order-fail-pay": 500, "order-timeout": 500}
    trace_ids = {}
    async with aiohttp.ClientSession() as session:
        for order_id, status in expected.items():
            async with session.post(f"{supervisor.url('gateway')}/checkout/{order_id}") as response:
                assert response.status == status, order_id
                trace_ids[order_id] = (await response.json())["trace_id"]
        for name in ("gateway", "payment", "inventory"):
            async with session.get(f"{supervisor.url(name)}/readyz") as response:
                assert response.status == 200
    supervisor.process.send_signal(signal.SIGTERM)
    remaining = (await asyncio.wait_for(supervisor.process.stderr.read(), 30)).decode()
    assert await supervisor.process.wait() == 0
    assert "Traceback" not in remaining
    # Every signal reached the embedded sink's SQLite file, grouped by the checkout's trace.
    with sqlite3.connect(supervisor.db) as db:
        rows = db.execute("SELECT trace_id, service_name, signal_type FROM raw_signals").fetchall()
    for order_id, trace_id in trace_ids.items():
        services = {service for tid, service, _ in rows if tid == trace_id}
        kinds = {kind for tid, _, kind in rows if tid == trace_id}
        assert kinds == {"log", "trace", "metric"}, order_id
        expected_services = {"api-gateway", "payment-service"}
        if order_id != "order-fail-pay":
            expected_services.add("inventory-service")
        assert services == expected_services, order_id


async def test_sigterm_lets_an_in_flight_checkout_finish(supervisor: Supervisor) -> None:
    async with aiohttp.ClientSession() as session:
        checkout = asyncio.ensure_future(session.post(f"{supervisor.url('gateway')}/checkout/late-timeout"))
        await supervisor.wait_stdout('"Checkout initiated"')
        supervisor.process.send_signal(signal.SIGTERM)
        response = await checkout
        assert response.status == 500  # the timeout scenario's answer, not a cut connection
        assert (await response.json())["detail"].startswith("Checkout failed")
    await asyncio.wait_for(supervisor.process.stderr.read(), 30)
    assert await supervisor.process.wait() == 0
