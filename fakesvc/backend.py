"""Where the telemetry goes: a configured ProdSentinel, or the embedded sink started for it.

``FAKESVC_SINK`` decides (SPEC section 10): ``on`` starts the sink at
``PRODSENTINEL_URL``'s host and port, ``off`` never does, ``auto`` starts it
when ``PRODSENTINEL_URL`` is unset and nothing answers there.
"""

from __future__ import annotations

import asyncio

from yarl import URL

from fakesvc import settings
from fakesvc.settings import ConfigError, Setting
from fakesvc.sink import SinkConfig, SinkServer, start_sink

SINK_SETTINGS: tuple[Setting, ...] = (
    Setting("FAKESVC_SINK", "--sink", "auto", settings.choice("auto", "on", "off"), "start the embedded sink"),
    Setting("FAKESVC_SINK_DB", "--sink-db", "fakesvc-signals.db", settings.text, "SQLite file of the embedded sink"),
)


async def _answers(url: URL, timeout_s: float = 0.5) -> bool:
    """Whether something accepts TCP connections at ``url``'s host and port."""
    try:
        _reader, writer = await asyncio.wait_for(asyncio.open_connection(url.host, url.port), timeout=timeout_s)
    except (TimeoutError, OSError):
        return False
    writer.close()
    await writer.wait_closed()
    return True


async def start_backend(
    mode: str, backend_url: str, db_path: str, *, url_configured: bool, admin_token: str | None = None
) -> SinkServer | None:
    """Start the embedded sink when ``mode`` says so; return it, or None when signals go elsewhere.

    ``admin_token`` guards the sink's fault routes as it guards the services' ``/chaos``.
    """
    url = URL(backend_url)
    if mode == "off":
        return None
    if mode == "auto" and (url_configured or await _answers(url)):
        return None
    host = "127.0.0.1" if url.host in ("localhost", None) else url.host
    port = url.port or 8000
    try:
        return await start_sink(SinkConfig(host=host, port=port, db_path=db_path, admin_token=admin_token))
    except OSError as exc:
        raise ConfigError(f"FAKESVC_SINK: cannot start the embedded sink on {host}:{port} ({exc.strerror})") from None
