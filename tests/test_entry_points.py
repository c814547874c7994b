"""The single-service entry points: three ``python -m fakesvc.<service>`` processes form the flow; bad settings stop with one line."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

import aiohttp
import pytest

from tests.processes import FAST_TIMEOUTS, ROOT, Process, spawn


async def test_three_processes_form_the_same_flow(tmp_path: Path) -> None:
    """Each on port 0; each caller is pointed at the URL its downstream announced."""
    env = {
        "FAKESVC_LATENCY_SCALE": "0",
        **FAST_TIMEOUTS,
        "FAKESVC_TELEMETRY": "",
        "OTEL_TRACES_EXPORTER": "none",
        "FAKESVC_SPILL_DIR": str(tmp_path / "spill"),
        "FAKESVC_SERIES_INTERVAL_S": "0.1",
    }
    processes: list[Process] = []
    try:
        for name, port, downstream in (
            ("inventory", "INVENTORY_PORT", {}),
            ("payment", "PAYMENT_PORT", {"INVENTORY_URL": "inventory"}),
            ("gateway", "GATEWAY_PORT", {"PAYMENT_URL": "payment"}),
        ):
            urls = {key: processes[-1].url(service) for key, service in downstream.items()}
            process = await spawn(["-m", f"fakesvc.{name}"], {**env, port: "0", **urls}, stdout=False)
            processes.append(process)
            await process.read_until("listening on")
        inventory, gateway = processes[0].url("inventory"), processes[2].url("gateway")
        async with aiohttp.ClientSession() as session:
            for order_id, status in (("success", 200), ("order-fail-pay", 500), ("order-timeout", 500)):
                async with session.post(
                    f"{gateway}/checkout/{order_id}", headers={"x-request-id": f"t-{order_id}"}
                ) as response:
                    assert response.status == status
                    assert response.headers["x-request-id"] == f"t-{order_id}"
            # What each process's hop did is read back through the edge after the checkout, even from
            # the hop that never answered: its record says the fault it injected.
            rules = {"rules": [{"kind": "drop"}]}
            async with session.put(f"{inventory}/chaos", json=rules) as response:
                assert response.status == 200
            async with session.post(f"{gateway}/checkout/after-rule", headers={"x-request-id": "t-rule"}) as response:
                assert response.status == 500
            async with session.post(f"{gateway}/chaos/records", json={"read": ["t-rule"]}) as response:
                gathered = await response.json()
            records = {record["service"]: record for record in gathered["records"]["t-rule"]}
            assert sorted(records) == ["api-gateway", "inventory-service", "payment-service"]
            assert len(gathered["processes"]) == 3, "each process said its loop lag"
            assert records["inventory-service"]["outcome"] == "dropped"
            assert [
                {key: fault[key] for key in ("service", "kind", "detail", "status", "delay_ms", "hop")}
                for fault in records["inventory-service"]["faults"]
            ] == [
                {
                    "service": "inventory-service",
                    "kind": "drop",
                    "detail": "connection dropped (rule 0)",
                    "status": None,
                    "delay_ms": None,
                    "hop": "0.0.0",  # the gateway's call 0 (payment), then payment's call 0
                }
            ]
            payment_call = records["payment-service"]["calls"][0]
            assert (payment_call["hop"], payment_call["outcome"]) == ("0.0.0", "connection")
            # a service alone in its process exports that process's real CPU and RSS beside the model's
            assert await _gauge(session, inventory, "fakesvc_series_process_mem_bytes") > 10 * 2**20
            assert await _gauge(session, inventory, "fakesvc_series_process_cpu_cores") >= 0
            assert await _gauge(session, inventory, "fakesvc_series_mem_bytes") > 0
        for process in reversed(processes):  # from the edge inward, as the supervisor stops them
            status, _ = await process.stop(signal.SIGTERM)
            assert status == 0
    finally:
        for process in processes:
            await process.kill()


async def _gauge(session: aiohttp.ClientSession, url: str, name: str) -> float:
    """A gauge of ``/metrics``, once the service has sampled its series (polled: the first sample is due soon)."""
    for _ in range(500):
        async with session.get(f"{url}/metrics") as response:
            for line in (await response.text()).splitlines():
                if line.startswith(f"{name} "):
                    return float(line.split()[1])
        await asyncio.sleep(0.02)
    raise AssertionError(f"{url}/metrics never showed {name}")


@pytest.mark.parametrize(
    ("argv", "env", "message"),
    [
        (["--latency-scale", "fast"], {}, "fakesvc: --latency-scale: must be a number (got 'fast')"),
        (
            [],
            {"GATEWAY_PORT": "70000"},
            "fakesvc: GATEWAY_PORT: must be a port number between 0 and 65535 (got '70000')",
        ),
        ([], {"OTEL_TRACES_EXPORTER": "zipkin"}, "fakesvc: OTEL_TRACES_EXPORTER: unknown item 'zipkin'"),
        (
            [],
            {"FAKESVC_INVENTORY_TIMEOUT_S": "0"},
            "fakesvc: FAKESVC_INVENTORY_TIMEOUT_S: must be a number > 0 (got '0')",
        ),
    ],
)
async def test_a_bad_setting_stops_the_supervisor_with_one_clear_line(
    argv: list[str], env: dict[str, str], message: str
) -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        str(ROOT / "supervisor.py"),
        *argv,
        cwd=ROOT,
        env={**os.environ, **env},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    stdout, stderr = await asyncio.wait_for(process.communicate(), 30)
    assert process.returncode == 2
    lines = stderr.decode().strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(message), lines
    assert stdout == b""


async def test_a_port_in_use_stops_the_supervisor_with_one_clear_line(tmp_path: Path) -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = {
            **os.environ,
            "GATEWAY_PORT": str(port),
            "PAYMENT_PORT": "0",
            "INVENTORY_PORT": "0",
            "FAKESVC_SINK": "off",
            "FAKESVC_TELEMETRY": "",
            "OTEL_TRACES_EXPORTER": "none",
        }
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            str(ROOT / "supervisor.py"),
            cwd=tmp_path,
            env=env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        _, stderr = await asyncio.wait_for(process.communicate(), 30)
    assert process.returncode == 2
    assert f"fakesvc: api-gateway: cannot listen on 127.0.0.1:{port}" in stderr.decode()
    assert "Traceback" not in stderr.decode()
