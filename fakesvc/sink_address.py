"""Where the embedded sink listens and stores: declared once, and light to import.

``supervisor.py`` and ``python -m fakesvc.sink`` read the same variables; the
container's health probe reads them too, without importing the sink's server.
"""

from __future__ import annotations

from dataclasses import replace

from fakesvc import settings
from fakesvc.settings import Setting

SINK_HOST = Setting("FAKESVC_SINK_HOST", "--sink-host", "127.0.0.1", settings.text, "where the embedded sink listens")
SINK_PORT = Setting(
    "FAKESVC_SINK_PORT",
    "--sink-port",
    8000,
    settings.port,
    "port of the embedded sink; signals go there while PRODSENTINEL_URL is unset",
)
SINK_DB = Setting(
    "FAKESVC_SINK_DB", "--sink-db", "fakesvc-signals.db", settings.text, "SQLite file of the embedded sink"
)
# ``python -m fakesvc.sink``'s wording, and the older short flags kept so existing scripts still run.
STANDALONE_ADDRESS: tuple[Setting, ...] = (
    replace(SINK_HOST, help="bind address", aliases=("--host",)),
    replace(SINK_PORT, help="port (0: any free one)", aliases=("--port",)),
    replace(SINK_DB, help="SQLite file (':memory:' for none)", aliases=("--db",)),
)
