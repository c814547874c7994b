"""The sink playing the real ProdSentinel's flaws: its incident race (``--trace-race``) and its ceiling (``--pace``).

The race is made to happen, not waited for: the incident lookups of two first
signals are held until both have looked, which is the overlap the real backend
leaves open between its lookup and its insert.
"""

from __future__ import annotations

import argparse
import asyncio
import json
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from fakesvc.backend import SINK_SETTINGS, start_backend
from fakesvc.settings import add_settings, resolve
from fakesvc.sink import SinkConfig, create_app
from fakesvc.sink.app import STATE
from fakesvc.sink.flaws import Pace
from fakesvc.sink.store import SignalStore
from fakesvc.telemetry.signals import log_signal
from tests.processes import spawn

INTERNAL_ERROR = {"detail": "Internal server error"}


def signal_of(trace_id: str) -> dict[str, Any]:
    return log_signal("payment-service", trace_id, "ERROR", "Payment failed", {})


async def racing_client(aiohttp_client: Any, tmp_path: Path, **config: Any) -> Any:
    """A sink on a file (its lookups on another connection than its writes, as the real one's).

    Each request on a connection of its own: the sink hangs up after its 500s, and
    a client reusing that connection would meet the reset, not the next answer.
    """
    app = create_app(SinkConfig(db_path=str(tmp_path / "sink.db"), **config))
    return await aiohttp_client(app, connector=aiohttp.TCPConnector(force_close=True))


def store_of(client: Any) -> SignalStore:
    return client.server.app[STATE].store


def hold_lookups(store: SignalStore, monkeypatch: pytest.MonkeyPatch, together: int) -> None:
    """Keep each incident lookup's answer until ``together`` lookups have been made: they overlap."""
    barrier = asyncio.Barrier(together)
    look = store.incidents

    async def held(trace_id: str) -> int:
        found = await look(trace_id)
        await barrier.wait()
        return found

    monkeypatch.setattr(store, "incidents", held)


async def post(client: Any, signal: dict[str, Any]) -> tuple[int, Any]:
    response = await client.post("/ingest/logs", json=signal)
    return response.status, await response.json()


async def poison(client: Any, monkeypatch: pytest.MonkeyPatch, trace_id: str) -> None:
    """Two first signals of ``trace_id`` at once: both are taken, and both open an incident."""
    hold_lookups(store_of(client), monkeypatch, together=2)
    answers = await asyncio.gather(post(client, signal_of(trace_id)), post(client, signal_of(trace_id)))
    assert [status for status, _ in answers] == [202, 202]
    monkeypatch.undo()


async def json_of(client: Any, path: str) -> Any:
    response = await client.get(path)
    assert response.status == 200
    return await response.json()


async def test_overlapping_first_signals_poison_their_trace_for_good(
    aiohttp_client: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = await racing_client(aiohttp_client, tmp_path, trace_race=True)
    await poison(client, monkeypatch, "t-race")
    assert await store_of(client).incidents("t-race") == 2
    for _ in range(3):
        assert await post(client, signal_of("t-race")) == (500, INTERNAL_ERROR)
    assert len(await json_of(client, "/query/traces/t-race")) == 2  # the refused are not stored
    stats = await json_of(client, "/stats")
    assert (stats["poisoned_traces"], stats["refused_poisoned"], stats["stored"]) == (1, 3, {"log": 2})
    assert await json_of(client, "/sink/poisoned") == {"trace_ids": ["t-race"]}
    assert await post(client, signal_of("t-other")) == (202, {"status": "accepted"})  # other traces are fine


async def test_first_signals_that_do_not_overlap_never_poison(aiohttp_client: Any, tmp_path: Path) -> None:
    client = await racing_client(aiohttp_client, tmp_path, trace_race=True)
    for _ in range(5):
        assert (await post(client, signal_of("t-calm")))[0] == 202
    assert await store_of(client).incidents("t-calm") == 1
    stats = await json_of(client, "/stats")
    assert (stats["poisoned_traces"], stats["refused_poisoned"], stats["stored"]) == (0, 0, {"log": 5})
    assert await json_of(client, "/sink/poisoned") == {"trace_ids": []}


async def test_without_trace_race_nothing_changes(
    aiohttp_client: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = await racing_client(aiohttp_client, tmp_path)
    store = store_of(client)
    look = store.incidents

    async def never(trace_id: str) -> int:
        raise AssertionError(f"looked up the incidents of {trace_id}")  # a 500 if it happened

    monkeypatch.setattr(store, "incidents", never)
    first = signal_of("t-free")
    answers = await asyncio.gather(*(post(client, signal) for signal in (first, signal_of("t-free"), first)))
    assert [status for status, _ in answers] == [202, 202, 202]  # the repeated id too, as before
    assert await look("t-free") == 0
    stats = await json_of(client, "/stats")
    assert (stats["poisoned_traces"], stats["refused_poisoned"], stats["duplicates"]) == (0, 0, 1)


async def read_answer(reader: asyncio.StreamReader) -> tuple[int, dict[str, str], Any]:
    """One HTTP/1.1 answer off a raw connection: status, headers (lower-cased names), JSON body."""
    head = (await reader.readuntil(b"\r\n\r\n")).decode()
    status_line, *lines = head.strip().split("\r\n")
    headers = {name.lower(): value.strip() for name, value in (line.split(":", 1) for line in lines)}
    body = await reader.readexactly(int(headers["content-length"]))
    return int(status_line.split()[1]), headers, json.loads(body)


def raw_post(signal: dict[str, Any]) -> bytes:
    body = json.dumps(signal).encode()
    head = f"POST /ingest/logs HTTP/1.1\r\nHost: sink\r\nContent-Type: application/json\r\nContent-Length: {len(body)}"
    return f"{head}\r\n\r\n".encode() + body


@pytest.mark.parametrize("refused", ["poisoned trace", "repeated signal_id"])
async def test_the_500_comes_without_connection_close_and_then_the_socket_is_closed(
    aiohttp_client: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, refused: str
) -> None:
    client = await racing_client(aiohttp_client, tmp_path, trace_race=True)
    await poison(client, monkeypatch, "t-race")
    first = signal_of("t-keep-alive")
    reader, writer = await asyncio.open_connection(client.host, client.port)
    try:
        writer.write(raw_post(first))
        status, headers, _ = await read_answer(reader)
        assert status == 202 and "connection" not in headers  # a keep-alive connection, reused below
        bad = signal_of("t-race") if refused == "poisoned trace" else first
        writer.write(raw_post(bad) + raw_post(signal_of("t-after")))  # the next request already sent, as a pool does
        status, headers, body = await read_answer(reader)
        assert (status, body) == (500, INTERNAL_ERROR)
        assert "connection" not in headers, headers
        assert await asyncio.wait_for(reader.read(), 10) == b""  # closed, the request behind it unanswered
    finally:
        writer.close()
    assert await json_of(client, "/query/traces/t-after") == []
    stats = await json_of(client, "/stats")
    assert (stats["refused_poisoned"], stats["duplicates"]) == ((1, 0) if refused == "poisoned trace" else (0, 1))


def test_the_pace_hands_out_one_slot_per_period_after_now_or_after_the_last() -> None:
    now = [100.0]
    pace = Pace(4, clock=lambda: now[0])
    assert [pace.next_slot() for _ in range(3)] == [100.25, 100.5, 100.75]  # a burst queues
    now[0] = 100.6
    assert pace.next_slot() == 101.0  # still behind the queue
    now[0] = 200.0
    assert pace.next_slot() == 200.25  # idle: a period after now


async def test_a_paced_sink_answers_every_request_one_slot_apart(
    aiohttp_client: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = await racing_client(aiohttp_client, tmp_path, pace=500.0)
    pace = client.server.app[STATE].pace
    slots: list[float] = []
    give = pace.next_slot

    def recorded() -> float:
        slots.append(give())
        return slots[-1]

    monkeypatch.setattr(pace, "next_slot", recorded)
    answers = await asyncio.gather(*(post(client, signal_of(f"t-{i}")) for i in range(20)))
    assert [status for status, _ in answers] == [202] * 20
    assert len(slots) == 20 and all(later - earlier >= 1 / 500 - 1e-9 for earlier, later in zip(slots, slots[1:]))
    assert (await json_of(client, "/stats"))["accepted_total"] == 20


async def test_a_paced_sinks_queue_is_the_race_window(
    aiohttp_client: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first of two first signals is let through and finished before the second's turn comes:
    the second looked up before waiting, so it opens an incident too (the real one under load)."""
    client = await racing_client(aiohttp_client, tmp_path, trace_race=True, pace=1000.0)
    turns: list[asyncio.Event] = []
    both_waiting = asyncio.Event()

    async def held_turn() -> None:
        turns.append(turn := asyncio.Event())
        if len(turns) == 2:
            both_waiting.set()
        await turn.wait()

    monkeypatch.setattr(client.server.app[STATE].pace, "wait_turn", held_turn)
    sends = {asyncio.create_task(post(client, signal_of("t-queued"))) for _ in range(2)}
    await both_waiting.wait()
    turns[0].set()
    done, waiting = await asyncio.wait(sends, return_when=asyncio.FIRST_COMPLETED)
    assert await store_of(client).incidents("t-queued") == 1  # the first is finished, the second still queued
    turns[1].set()
    assert [(await send)[0] for send in (*done, *waiting)] == [202, 202]
    assert await json_of(client, "/sink/poisoned") == {"trace_ids": ["t-queued"]}


def parsed(argv: list[str]) -> dict[str, Any]:
    """The supervisor's sink settings from these flags, as it reads them."""
    parser = argparse.ArgumentParser()
    add_settings(parser, SINK_SETTINGS)
    return resolve(SINK_SETTINGS, parser.parse_args(argv), environ={})


def test_the_supervisor_takes_the_switch_alone_and_the_pace() -> None:
    values = parsed(["--sink-trace-race", "--sink-pace", "340"])
    assert (values["sink_trace_race"], values["sink_pace"]) == (True, 340.0)
    assert (parsed([])["sink_trace_race"], parsed([])["sink_pace"]) == (False, None)
    assert parsed(["--sink-trace-race", "off"])["sink_trace_race"] is False


async def test_start_backend_builds_a_racing_paced_sink(tmp_path: Path) -> None:
    values = {**parsed(["--sink-trace-race", "--sink-pace", "340"]), "sink": "on", "sink_db": str(tmp_path / "s.db")}
    server = await start_backend({**values, "sink_port": 0}, "http://127.0.0.1:9", url_configured=False)
    assert server is not None
    try:
        config = server.runner.app[STATE].config
        assert (config.trace_race, config.pace) == (True, 340.0)
    finally:
        await server.stop()


@pytest.mark.parametrize(
    ("args", "env", "message"),
    [
        *[(["--pace", bad], {}, "fakesvc: --sink-pace: must be") for bad in ("0", "-1", "nan", "inf", "abc")],
        (["--trace-race", "maybe"], {}, "fakesvc: --sink-trace-race: must be on or off"),
        ([], {"FAKESVC_SINK_TRACE_RACE": "maybe"}, "fakesvc: FAKESVC_SINK_TRACE_RACE: must be on or off"),
        ([], {"FAKESVC_SINK_PACE": "0"}, "fakesvc: FAKESVC_SINK_PACE: must be"),
    ],
)
async def test_bad_values_exit_2_with_one_line(args: list[str], env: dict[str, str], message: str) -> None:
    process = await spawn(
        ["-m", "fakesvc.sink", *args], {"FAKESVC_SINK_PORT": "0", "FAKESVC_SINK_DB": ":memory:", **env}
    )
    status, stderr = await process.exited()
    assert status == 2 and stderr.strip().startswith(message) and len(stderr.strip().splitlines()) == 1, stderr
