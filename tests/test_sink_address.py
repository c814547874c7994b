"""The embedded sink's own address (FAKESVC_SINK_HOST/PORT): where it listens, and where signals go."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from tests.processes import ROOT, spawn
from tests.telemetry_fixtures import free_port

FAST = {
    "GATEWAY_PORT": "0",
    "PAYMENT_PORT": "0",
    "INVENTORY_PORT": "0",
    "FAKESVC_LATENCY_SCALE": "0",
}


async def test_the_supervisor_sends_to_its_sink_port_when_no_url_is_given(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("PRODSENTINEL_URL", raising=False)
    port, db = free_port(), tmp_path / "signals.db"
    env = {**FAST, "FAKESVC_SINK_PORT": str(port), "FAKESVC_SINK_DB": str(db), "FAKESVC_SPILL_DIR": str(tmp_path)}
    supervisor = await spawn([str(ROOT / "supervisor.py"), "--rate", "50", "--count", "3", "--mix", "success=1"], env)
    try:
        _, stderr = await supervisor.exited()
    finally:
        await supervisor.kill()
    assert f"embedded sink listening on http://127.0.0.1:{port}" in "".join(supervisor.stderr_lines) + stderr
    with sqlite3.connect(db) as stored:
        services = {row[0] for row in stored.execute("SELECT DISTINCT service_name FROM raw_signals")}
    stored.close()
    assert services == {"api-gateway", "payment-service", "inventory-service"}


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("NaN", "must be a port number"),
        ("", "must be a port number"),
        ("-1", "between 0 and 65535"),
        ("65536", "between 0 and 65535"),
        ("9" * 400, "between 0 and 65535"),
        ("0", "0 is for python -m fakesvc.sink"),
    ],
)
async def test_a_bad_sink_port_stops_the_supervisor_with_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, value: str, reason: str
) -> None:
    monkeypatch.delenv("PRODSENTINEL_URL", raising=False)
    supervisor = await spawn([str(ROOT / "supervisor.py")], {**FAST, "FAKESVC_SINK_PORT": value}, cwd=tmp_path)
    status, stderr = await supervisor.exited()
    lines = stderr.strip().splitlines()
    assert status == 2 and len(lines) == 1 and lines[0].startswith("fakesvc: FAKESVC_SINK_PORT: "), lines
    assert reason in lines[0]
    assert not list(tmp_path.iterdir())  # nothing started, nothing written


@pytest.mark.parametrize("flag", ["--sink-port", "--port"])  # --port: the older name scripts use
async def test_the_standalone_sink_takes_its_port_from_either_flag(flag: str) -> None:
    sink = await spawn(["-m", "fakesvc.sink", flag, "0", "--db", ":memory:"], {}, stdout=False)
    try:
        await sink.read_until("listening on")
        assert sink.url("sink").startswith("http://127.0.0.1:")
    finally:
        await sink.kill()
