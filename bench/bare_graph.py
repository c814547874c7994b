"""The ceiling of a graph: bare aiohttp services of its shape, no telemetry, no faults, no sleeps.

``bare_chain.py``'s idea for any graph file: every service an app in one event
loop sharing one ClientSession, each route making the same calls as its script
(``parallel`` blocks concurrently, ``span`` bodies inline; sleeps, logs and
scenario steps left out, as at latency scale 0) and answering a small JSON body.
The scripts are turned into plain coroutines once, at start, so a request pays
for nothing but its HTTP. ``python bench/bare_graph.py GRAPH PORT...`` (a port per
service, in the graph's order) serves until SIGTERM.
"""

from __future__ import annotations

import asyncio
import signal
import sys
from collections.abc import Awaitable, Callable, Mapping, Sequence
from urllib.parse import quote

import aiohttp
from aiohttp import web

from fakesvc.graph.load import load_graph
from fakesvc.graph.model import Call, Parallel, Route, Span, Step
from fakesvc.serving.gc_tuning import tune_gc

Work = Callable[[str], Awaitable[bool]]  # the quoted key -> whether every call answered 2xx


def compile_steps(
    steps: Sequence[Step], key: str, session: aiohttp.ClientSession, urls: Mapping[str, str]
) -> list[Work]:
    """The calls of ``steps`` as coroutines taking the request's quoted key; other steps cost nothing here."""
    works: list[Work] = []
    for step in steps:
        if isinstance(step, Call):
            works.append(_call(step, key, session, urls[step.service]))
        elif isinstance(step, Parallel):
            works.append(_parallel(compile_steps(step.steps, key, session, urls)))
        elif isinstance(step, Span):
            works.extend(compile_steps(step.steps, key, session, urls))
    return works


def _call(call: Call, key: str, session: aiohttp.ClientSession, base_url: str) -> Work:
    head, _, tail = call.path.partition(f"{{{key}}}")
    method, head = call.method, base_url + head

    async def work(quoted: str) -> bool:
        async with session.request(method, head + quoted + tail) as response:
            await response.read()
            return response.status < 400

    return work


def _parallel(branches: list[Work]) -> Work:
    async def work(quoted: str) -> bool:
        return all(await asyncio.gather(*(branch(quoted) for branch in branches)))

    return work


def handler(route: Route, works: list[Work]) -> Callable[[web.Request], Awaitable[web.Response]]:
    name = route.key

    async def handle(request: web.Request) -> web.Response:
        key = request.match_info[name]
        quoted = quote(key, safe="")
        for work in works:
            if not await work(quoted):
                return web.json_response({"detail": "failed"}, status=500)
        return web.json_response({name: key, "status": "OK"})

    return handle


async def serve(graph_name: str, ports: Sequence[int]) -> None:
    graph = load_graph(graph_name)
    stop = asyncio.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        asyncio.get_running_loop().add_signal_handler(signum, stop.set)
    session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))
    urls = {name: f"http://127.0.0.1:{port}" for name, port in zip(graph.names, ports, strict=True)}
    runners = []
    for service, port in zip(graph.services, ports, strict=True):
        app = web.Application()
        for route in service.routes:
            works = compile_steps(route.script, route.key, session, urls)
            app.router.add_route(route.method, route.path, handler(route, works))
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        runners.append(runner)
    print("bare graph listening", file=sys.stderr, flush=True)
    await stop.wait()
    for runner in reversed(runners):
        await runner.cleanup()
    await session.close()


if __name__ == "__main__":
    tune_gc()  # as fakesvc's entry points do: the ratio then measures the engine and its telemetry alone
    asyncio.run(serve(sys.argv[1], [int(port) for port in sys.argv[2:]]))
