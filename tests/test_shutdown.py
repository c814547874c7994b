"""Shutdown from the edge inward, a service alone draining its requests, and the Windows way of stopping."""

from __future__ import annotations

import asyncio
import json
import re
import signal
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from tests.conftest import Chain
from tests.processes import REAL_LATENCY, spawn, start_supervisor

# What a Windows event loop does when asked for a signal handler; the rest of the process runs as usual.
AS_ON_WINDOWS = """
import asyncio.unix_events, runpy, sys

def not_implemented(*args, **kwargs):
    raise NotImplementedError

asyncio.unix_events._UnixSelectorEventLoop.add_signal_handler = not_implemented
asyncio.unix_events._UnixSelectorEventLoop.remove_signal_handler = not_implemented
sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name="__main__")
"""
# And a Ctrl-C that no handler of ours catches (one before they are installed, say): asyncio.run raises
# KeyboardInterrupt once it has cancelled and unwound the main task.
AS_ON_WINDOWS_UNHANDLED = AS_ON_WINDOWS.replace(
    "sys.argv = ",
    "import signal, fakesvc.serving.stop_signals\nfakesvc.serving.stop_signals.STOP_SIGNALS = (signal.SIGTERM,)\nsys.argv = ",
)


async def test_stop_lets_the_gateway_finish_before_payment_and_inventory_stop(chain: Chain) -> None:
    """A checkout held at payment when the stop begins still reaches inventory and answers 200."""
    async with aiohttp.ClientSession() as session:
        rules = {"rules": [{"kind": "latency", "latency_ms": 100}]}  # a tenth of the chain's 1 s grace
        async with session.put(f"{chain.urls['payment-service']}/chaos", json=rules) as response:
            assert response.status == 200
        checkout = asyncio.ensure_future(session.post(f"{chain.gateway}/checkout/held-at-payment"))
        await chain.wait_for_log(event="Checkout initiated")
        await chain.running.stop()
        response = await checkout
        assert response.status == 200, await response.text()


async def refusing_connections(url: str) -> None:
    """Until nothing accepts a new connection at ``url`` (the service has begun to stop)."""
    while True:
        try:
            async with aiohttp.ClientSession() as session, session.get(f"{url}/healthz"):
                pass
        except aiohttp.ClientConnectorError:
            return
        await asyncio.sleep(0.01)


async def test_a_service_alone_finishes_its_in_flight_requests_before_closing(aiohttp_server: Any) -> None:
    """``python -m fakesvc.payment``, SIGTERM while a payment waits on inventory: it still answers 200."""
    arrived, release = asyncio.Event(), asyncio.Event()

    async def stock(request: web.Request) -> web.Response:
        arrived.set()
        await release.wait()
        return web.json_response({"order_id": request.match_info["order_id"], "available": 3})

    inventory = web.Application()
    inventory.router.add_get("/inventory/{order_id}", stock)
    fake = await aiohttp_server(inventory)
    env = {
        "PAYMENT_PORT": "0",
        "INVENTORY_URL": str(fake.make_url("")).rstrip("/"),
        "FAKESVC_LATENCY_SCALE": "0",
        "FAKESVC_TELEMETRY": "",
        "OTEL_TRACES_EXPORTER": "none",
    }
    payment = await spawn(["-m", "fakesvc.payment"], env, stdout=False)
    try:
        await payment.read_until("payment-service listening on")
        async with aiohttp.ClientSession() as session:
            paying = asyncio.ensure_future(session.post(f"{payment.url('payment')}/pay/alone"))
            await asyncio.wait_for(arrived.wait(), 10)
            payment.process.send_signal(signal.SIGTERM)
            await refusing_connections(payment.url("payment"))
            # The stop has begun and waits for this payment: a grace cut short would drop it in this pause
            # (the pause only lets a broken grace show; the test passes however long the host takes).
            await asyncio.sleep(0.2)
            release.set()
            response = await paying
            assert response.status == 200, await response.text()
        status, rest = await payment.exited()
        assert status == 0 and "Traceback" not in rest
    finally:
        await payment.kill()


@pytest.mark.parametrize("code", [AS_ON_WINDOWS, AS_ON_WINDOWS_UNHANDLED], ids=["signal.signal", "KeyboardInterrupt"])
async def test_the_supervisor_starts_and_stops_the_windows_way(tmp_path: Path, code: str) -> None:
    """No loop signal handlers (as on Windows): Ctrl-C still stops it cleanly, summary printed, exit 0."""
    supervisor = await start_supervisor(tmp_path, python_args=("-c", code))
    try:
        await supervisor.read_until("api-gateway listening on")
        async with aiohttp.ClientSession() as session:
            async with session.post(f"{supervisor.url('gateway')}/checkout/windows") as response:
                assert response.status == 200
        status, rest = await supervisor.stop(signal.SIGINT)
    finally:
        await supervisor.kill()
    assert status == 0, rest
    assert "stopping: finishing in-flight requests" in rest
    assert "telemetry to" in rest  # the delivery summary
    assert "Traceback" not in rest and "KeyboardInterrupt" not in rest
    assert rest.index("stopping") < rest.index("telemetry to")  # services stopped, then the telemetry


async def test_the_traffic_generator_alone_stops_starting_checkouts_and_drains_on_sigint(tmp_path: Path) -> None:
    """``python -m fakesvc.traffic`` stopped mid-run: every checkout it started is answered and in the truth."""
    supervisor = await start_supervisor(tmp_path, **REAL_LATENCY)
    try:
        await supervisor.read_until("api-gateway listening on")
        truth = tmp_path / "truth.jsonl"
        args = ["--target", supervisor.url("gateway"), "--rate", "40", "--duration", "60", "--mix", "success=1"]
        traffic = await spawn(["-m", "fakesvc.traffic", *args, "--truth", str(truth), "--quiet"], REAL_LATENCY)
        try:
            await supervisor.wait_stdout('"Checkout initiated"', count=20, timeout=30)
            _, rest = await traffic.stop(signal.SIGINT)
        finally:
            await traffic.kill()
        summary = "".join(traffic.stdout_lines)
    finally:
        await supervisor.kill()
    assert "Traceback" not in rest, rest
    lines = [json.loads(line) for line in truth.read_text().splitlines()]
    sent = int(re.search(r"(\d+) sent", summary)[1])
    assert len(lines) == sent >= 20 and {line["status"] for line in lines} == {200}
