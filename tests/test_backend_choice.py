"""FAKESVC_SINK: when the supervisor starts the embedded sink, and when it sends elsewhere."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fakesvc.backend import start_backend, with_backend
from fakesvc.telemetry.batcher import BatcherConfig
from fakesvc.telemetry.pipeline import TelemetryConfig
from tests.telemetry_fixtures import free_port, sink_on


def sink(mode: str, db: Path, port: int = 8000) -> dict[str, Any]:
    return {"sink": mode, "sink_db": str(db), "sink_host": "127.0.0.1", "sink_port": port}


async def test_off_never_starts_a_sink(tmp_path: Path) -> None:
    assert (
        await start_backend(sink("off", tmp_path / "a.db"), f"http://127.0.0.1:{free_port()}", url_configured=False)
        is None
    )


async def test_auto_with_a_configured_url_sends_there(tmp_path: Path) -> None:
    assert (
        await start_backend(sink("auto", tmp_path / "a.db"), f"http://127.0.0.1:{free_port()}", url_configured=True)
        is None
    )


async def test_auto_starts_the_sink_where_nothing_answers(tmp_path: Path) -> None:
    port = free_port()
    server = await start_backend(
        sink("auto", tmp_path / "a.db", port), f"http://127.0.0.1:{port}", url_configured=False
    )
    assert server is not None and server.url == f"http://127.0.0.1:{port}"
    await server.stop()


async def test_auto_leaves_an_existing_backend_alone(tmp_path: Path) -> None:
    port = free_port()
    existing = await sink_on(port, tmp_path / "existing.db")
    try:
        assert await start_backend(sink("auto", tmp_path / "b.db", port), existing.url, url_configured=False) is None
    finally:
        await existing.stop()


async def test_on_starts_it_at_the_url_even_when_configured(tmp_path: Path) -> None:
    port = free_port()
    server = await start_backend(sink("on", tmp_path / "c.db"), f"http://localhost:{port}", url_configured=True)
    assert server is not None and server.url == f"http://127.0.0.1:{port}"
    await server.stop()


def test_signals_go_to_the_sink_address_only_while_no_url_is_given(tmp_path: Path) -> None:
    config = TelemetryConfig(batcher=BatcherConfig(prodsentinel_url="http://backend.example:9000"))
    everywhere = {**sink("auto", tmp_path / "a.db", 8123), "sink_host": "0.0.0.0"}
    sent_to = with_backend(config, everywhere, url_configured=False).batcher
    assert sent_to is not None and sent_to.prodsentinel_url == "http://127.0.0.1:8123"  # bound everywhere: loopback
    assert with_backend(config, everywhere, url_configured=True) is config
