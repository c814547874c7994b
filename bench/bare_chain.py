"""The baseline: a bare aiohttp gateway -> payment -> inventory chain, no telemetry, no faults.

Three apps in one event loop sharing one ClientSession, the same routes and the
same answers as fakesvc at latency scale 0, and fakesvc's GC setting. ``python bench/bare_chain.py
GATEWAY PAYMENT INVENTORY`` serves on those ports until SIGTERM.
"""

from __future__ import annotations

import asyncio
import signal
import sys

import aiohttp
from aiohttp import web

from fakesvc.serving.gc_tuning import tune_gc

SESSION = web.AppKey("session", aiohttp.ClientSession)


def gateway_app(session: aiohttp.ClientSession, payment_url: str) -> web.Application:
    async def checkout(request: web.Request) -> web.Response:
        order_id = request.match_info["order_id"]
        async with session.post(f"{payment_url}/pay/{order_id}") as response:
            await response.read()
            if response.status != 200:
                return web.json_response({"detail": "Checkout failed"}, status=500)
        return web.json_response({"status": "SUCCESS", "order_id": order_id, "trace_id": "-"})

    app = web.Application()
    app.router.add_post("/checkout/{order_id}", checkout)
    return app


def payment_app(session: aiohttp.ClientSession, inventory_url: str) -> web.Application:
    async def pay(request: web.Request) -> web.Response:
        order_id = request.match_info["order_id"]
        async with session.get(f"{inventory_url}/inventory/{order_id}") as response:
            await response.read()
        return web.json_response({"order_id": order_id, "status": "AUTHORIZED", "latency_ms": 0})

    app = web.Application()
    app.router.add_post("/pay/{order_id}", pay)
    return app


def inventory_app() -> web.Application:
    async def check(request: web.Request) -> web.Response:
        return web.json_response({"item_id": request.match_info["item_id"], "available": True, "latency_ms": 0})

    app = web.Application()
    app.router.add_get("/inventory/{item_id}", check)
    return app


async def serve(gateway_port: int, payment_port: int, inventory_port: int) -> None:
    stop = asyncio.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        asyncio.get_running_loop().add_signal_handler(signum, stop.set)
    session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))
    apps = [
        (inventory_app(), inventory_port),
        (payment_app(session, f"http://127.0.0.1:{inventory_port}"), payment_port),
        (gateway_app(session, f"http://127.0.0.1:{payment_port}"), gateway_port),
    ]
    runners = []
    for app, port in apps:
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        runners.append(runner)
    print("bare chain listening", file=sys.stderr, flush=True)
    await stop.wait()
    for runner in runners:
        await runner.cleanup()
    await session.close()


if __name__ == "__main__":
    tune_gc()  # as fakesvc's entry points do: the ratios then measure the telemetry alone
    asyncio.run(serve(*(int(port) for port in sys.argv[1:4])))
