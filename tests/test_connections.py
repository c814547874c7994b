"""Connections are bounded: idle and partial ones close, a hung handler ends with its caller, EMFILE is said once a second."""

from __future__ import annotations

import asyncio
import signal
import sys
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from yarl import URL

from fakesvc.config import service_config
from fakesvc.faults import parse_rules
from fakesvc.serving.in_flight import IN_FLIGHT
from fakesvc.serving.loop_errors import OUT_OF_RESOURCES, ResourceErrorLog
from fakesvc.settings import ConfigError
from tests.conftest import FAST, Chain, recording_telemetry, start_chain
from tests.processes import start_supervisor
from tests.telemetry_fixtures import eventually

BOUNDED = replace(FAST, idle_timeout_s=0.2, handler_cancellation=True)


@pytest.fixture
async def bounded() -> AsyncIterator[Chain]:
    started = await start_chain(recording_telemetry(), BOUNDED)
    yield started
    await started.running.stop()


@pytest.mark.parametrize(
    "sent",
    [
        b"",
        b"POST /checkout/slow HTTP/1.1\r\nHost: a\r\n",
        b"POST /checkout/done HTTP/1.1\r\nHost: a\r\n\r\n",
    ],
    ids=["idle", "partial-headers", "idle-after-a-request"],
)
async def test_an_idle_or_partial_connection_is_closed_after_the_idle_timeout(bounded: Chain, sent: bytes) -> None:
    url = URL(bounded.gateway)
    reader, writer = await asyncio.open_connection(url.host, url.port)
    try:
        writer.write(sent)
        await writer.drain()
        await asyncio.wait_for(reader.read(), 10)  # until the server closes it (aiohttp's default: an hour)
        assert reader.at_eof()
    finally:
        writer.close()


async def test_a_body_that_stops_midway_gets_a_408_and_the_connection_closes(bounded: Chain) -> None:
    url = URL(bounded.gateway)
    reader, writer = await asyncio.open_connection(url.host, url.port)
    try:
        writer.write(b"PUT /chaos HTTP/1.1\r\nHost: a\r\nContent-Length: 90\r\n\r\n{")
        await writer.drain()
        answer = await asyncio.wait_for(reader.read(), 10)
    finally:
        writer.close()
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 408 ") and b"application/json" in head
    assert b"request body not received within 0.2 s" in body
    assert bounded.chaos("api-gateway").rules == ()


async def test_a_hung_handler_ends_when_its_caller_gives_up(bounded: Chain) -> None:
    """Twenty hung requests, their callers gone: no handler task is left (memory would otherwise pile up)."""
    inventory = bounded.running.app("inventory-service")
    bounded.chaos("inventory-service").set_rules(parse_rules([{"kind": "hang", "hang_s": 3600}]))
    async with aiohttp.ClientSession() as session:
        calls = [
            asyncio.ensure_future(session.get(f"{bounded.urls['inventory-service']}/inventory/hung-{i}"))
            for i in range(20)
        ]

        async def all_hung() -> bool:
            return len(inventory[IN_FLIGHT]) == 20

        await eventually(all_hung, timeout_s=10, what="20 handlers hung")
        for call in calls:
            call.cancel()
        await asyncio.gather(*calls, return_exceptions=True)
    # the session is closed: the connections are gone

    async def none_left() -> bool:
        return len(inventory[IN_FLIGHT]) == 0

    await eventually(none_left, timeout_s=10, what="the hung handlers to end")


@pytest.mark.parametrize("raw", ["0", "-1", "nan", "inf", "-inf", "", "1e999", "½", "30s"])
def test_a_bad_idle_timeout_is_refused_with_one_line(raw: str) -> None:
    with pytest.raises(ConfigError, match="FAKESVC_IDLE_TIMEOUT_S"):
        service_config(environ={"FAKESVC_IDLE_TIMEOUT_S": raw})


class FakeLoop:
    """Just what the handler calls on a loop: the default handler, recorded."""

    def __init__(self) -> None:
        self.defaults: list[dict[str, Any]] = []

    def default_exception_handler(self, context: dict[str, Any]) -> None:
        self.defaults.append(context)


def emfile() -> dict[str, Any]:
    return {"message": OUT_OF_RESOURCES, "exception": OSError(24, "Too many open files")}


def test_out_of_descriptors_is_said_at_most_once_a_second() -> None:
    now = [100.0]
    lines: list[str] = []
    handler = ResourceErrorLog(clock=lambda: now[0], write=lines.append)
    loop: Any = FakeLoop()
    for _ in range(500):  # a flood of failed accepts within one second
        handler(loop, emfile())
        now[0] += 0.001
    assert len(lines) == 1 and "Too many open files" in lines[0] and "Traceback" not in lines[0]
    now[0] += 1.0
    handler(loop, emfile())
    assert len(lines) == 2 and "499 more since the last line" in lines[1]
    assert loop.defaults == []


def test_other_loop_errors_still_reach_the_handler_before() -> None:
    seen: list[dict[str, Any]] = []
    lines: list[str] = []
    other = {"message": "Task exception was never retrieved", "exception": RuntimeError("x")}
    ResourceErrorLog(lambda _loop, context: seen.append(context), write=lines.append)(FakeLoop(), other)  # type: ignore[arg-type]
    loop: Any = FakeLoop()
    ResourceErrorLog(write=lines.append)(loop, other)
    assert seen == [other] and loop.defaults == [other] and lines == []


# The supervisor with few descriptors (POSIX's resource module; the handler above is what Windows gets too).
FEW_DESCRIPTORS = """
import resource, runpy, sys
resource.setrlimit(resource.RLIMIT_NOFILE, (120, 120))
sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name="__main__")
"""


@pytest.mark.skipif(sys.platform == "win32", reason="sets RLIMIT_NOFILE")
async def test_out_of_descriptors_a_real_process_says_so_briefly_and_recovers(tmp_path: Path) -> None:
    """200 half-sent requests against 120 descriptors: a line a second at most, then checkouts again."""
    env = {
        "FAKESVC_SINK": "off",
        "FAKESVC_TELEMETRY": "",
        "OTEL_TRACES_EXPORTER": "none",
        "FAKESVC_IDLE_TIMEOUT_S": "1",
    }
    supervisor = await start_supervisor(tmp_path, python_args=("-c", FEW_DESCRIPTORS), **env)
    writers: list[asyncio.StreamWriter] = []
    try:
        await supervisor.read_until("api-gateway listening on")
        url = URL(supervisor.url("gateway"))
        loop = asyncio.get_running_loop()
        flooded_at = loop.time()
        for _ in range(200):
            _, writer = await asyncio.open_connection(url.host, url.port)  # the kernel's backlog takes them
            writer.write(b"POST /checkout/x HTTP/1.1\r\n")
            writers.append(writer)

        async def serving() -> bool:
            try:
                async with aiohttp.ClientSession() as session, session.post(f"{url}/checkout/after") as response:
                    return response.status == 200
            except aiohttp.ClientError:
                return False

        await eventually(serving, what="checkouts served again")  # once the idle timeout frees descriptors
        seconds = loop.time() - flooded_at
        status, rest = await supervisor.stop(signal.SIGTERM)
    finally:
        for writer in writers:
            writer.close()
        await supervisor.kill()
    said = [line for line in rest.splitlines() if "cannot accept connections" in line]
    assert 1 <= len(said) <= seconds + 2, rest[-2000:]
    assert status == 0 and "Traceback" not in rest
