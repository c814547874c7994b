"""Where the telemetry goes: a configured ProdSentinel, or the embedded sink started for it.

``FAKESVC_SINK`` decides (SPEC section 10): ``on`` starts the sink, ``off``
never does, ``auto`` starts it when ``PRODSENTINEL_URL`` is unset and nothing
answers at the sink's address. The sink listens at ``FAKESVC_SINK_HOST`` and
``FAKESVC_SINK_PORT``, which are also where signals go while
``PRODSENTINEL_URL`` is unset; with the URL set (and ``on``), at the URL's.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from yarl import URL

from fakesvc import settings
from fakesvc.settings import ConfigError, Setting
from fakesvc.sink import SinkConfig, SinkServer, start_sink
from fakesvc.sink.flaws import PACE, TRACE_RACE
from fakesvc.sink_address import SINK_DB, SINK_HOST, SINK_PORT
from fakesvc.telemetry.pipeline import TelemetryConfig

SINK_SETTINGS: tuple[Setting, ...] = (
    Setting("FAKESVC_SINK", "--sink", "auto", settings.choice("auto", "on", "off"), "start the embedded sink"),
    SINK_DB,
    SINK_HOST,
    SINK_PORT,
    TRACE_RACE,
    PACE,
)
_ANY_ADDRESS = {"", "0.0.0.0", "::"}  # a sink bound to every address is reached on loopback


def sink_url(sink: Mapping[str, Any]) -> str:
    """The sink's address from its settings: where the batcher sends while PRODSENTINEL_URL is unset."""
    if sink["sink_port"] == 0:
        raise ConfigError("FAKESVC_SINK_PORT: 0 is for python -m fakesvc.sink; the services must know the port")
    host = "127.0.0.1" if sink["sink_host"] in _ANY_ADDRESS else sink["sink_host"]
    return str(URL.build(scheme="http", host=host, port=sink["sink_port"]))


def with_backend(config: TelemetryConfig, sink: Mapping[str, Any], *, url_configured: bool) -> TelemetryConfig:
    """``config`` sending to the sink's address unless PRODSENTINEL_URL was given."""
    if url_configured or config.batcher is None:
        return config
    return replace(config, batcher=replace(config.batcher, prodsentinel_url=sink_url(sink)))


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
    sink: Mapping[str, Any], backend_url: str, *, url_configured: bool, admin_token: str | None = None
) -> SinkServer | None:
    """Start the embedded sink when ``sink["sink"]`` says so; return it, or None when signals go elsewhere.

    ``sink`` holds the values of :data:`SINK_SETTINGS` (one left out has its
    default). ``admin_token`` guards the sink's fault routes as it guards the
    services' ``/chaos``.
    """
    mode, url = sink["sink"], URL(backend_url)
    if mode == "off":
        return None
    if mode == "auto" and (url_configured or await _answers(url)):
        return None
    if url_configured:  # "on" with a URL: the sink takes the URL's place
        host, port = "127.0.0.1" if url.host in ("localhost", None) else url.host, url.port or 8000
    else:
        host, port = sink["sink_host"], sink["sink_port"]
    trace_race, pace = (sink.get(setting.dest, setting.default) for setting in (TRACE_RACE, PACE))
    config = SinkConfig(host, port, sink["sink_db"], admin_token=admin_token, trace_race=trace_race, pace=pace)
    try:
        return await start_sink(config)
    except OSError as exc:
        raise ConfigError(f"FAKESVC_SINK: cannot start the embedded sink on {host}:{port} ({exc.strerror})") from None
