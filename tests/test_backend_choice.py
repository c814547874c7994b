"""FAKESVC_SINK: when the supervisor starts the embedded sink, and when it sends elsewhere."""

from __future__ import annotations

from pathlib import Path

from fakesvc.backend import start_backend
from tests.telemetry_fixtures import free_port, sink_on


async def test_off_never_starts_a_sink(tmp_path: Path) -> None:
    assert (
        await start_backend("off", f"http://127.0.0.1:{free_port()}", str(tmp_path / "a.db"), url_configured=False)
        is None
    )


async def test_auto_with_a_configured_url_sends_there(tmp_path: Path) -> None:
    assert (
        await start_backend("auto", f"http://127.0.0.1:{free_port()}", str(tmp_path / "a.db"), url_configured=True)
        is None
    )


async def test_auto_starts_the_sink_where_nothing_answers(tmp_path: Path) -> None:
    port = free_port()
    sink = await start_backend("auto", f"http://localhost:{port}", str(tmp_path / "a.db"), url_configured=False)
    assert sink is not None and sink.url == f"http://127.0.0.1:{port}"
    await sink.stop()


async def test_auto_leaves_an_existing_backend_alone(tmp_path: Path) -> None:
    port = free_port()
    existing = await sink_on(port, tmp_path / "existing.db")
    try:
        assert await start_backend("auto", existing.url, str(tmp_path / "b.db"), url_configured=False) is None
    finally:
        await existing.stop()


async def test_on_starts_it_at_the_url_even_when_configured(tmp_path: Path) -> None:
    port = free_port()
    sink = await start_backend("on", f"http://127.0.0.1:{port}", str(tmp_path / "c.db"), url_configured=True)
    assert sink is not None and sink.url.endswith(f":{port}")
    await sink.stop()
