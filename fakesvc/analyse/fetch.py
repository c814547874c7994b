"""Reading a trace's signals from a ProdSentinel-compatible query API (the embedded sink or the real one).

``GET {base}/query/traces/{trace_id}`` answers a JSON list of ``SignalRead``
items (read through :func:`fakesvc.query_client.open_client`, which retries);
anything else is a :class:`BackendError` with one line saying what came back.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote

import aiohttp
from aiohttp_retry import RetryClient

from fakesvc.query_client import ATTEMPTS

MAX_ANSWER_BYTES = 64 * 1024 * 1024  # a trace is a few dozen signals; this bounds a runaway answer
MAX_QUOTED = 120  # of a bad answer, what the error line shows


class BackendError(Exception):
    """The backend cannot be read: unreachable, or answering something that is not a trace's signals."""


def _quoted(body: bytes) -> str:
    text = body[:MAX_QUOTED].decode("utf-8", "replace")
    return repr(text + ("..." if len(body) > MAX_QUOTED else ""))


async def fetch_trace(client: RetryClient, base_url: str, trace_id: str) -> list[dict[str, Any]]:
    """The trace's stored signals, oldest first; :class:`BackendError` when they cannot be had."""
    url = f"{base_url}/query/traces/{quote(trace_id, safe='')}"
    try:
        async with client.get(url) as response:
            status = response.status
            body = await response.content.read(MAX_ANSWER_BYTES + 1)
    except (aiohttp.ClientError, TimeoutError) as exc:
        reason = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        raise BackendError(f"{base_url} cannot be reached after {ATTEMPTS} attempts ({reason})") from None
    if status != 200:
        raise BackendError(f"GET {url} answered {status}: {_quoted(body)}")
    if len(body) > MAX_ANSWER_BYTES:
        raise BackendError(f"GET {url} answered more than {MAX_ANSWER_BYTES} bytes")
    try:
        items = json.loads(body)
    except ValueError:
        raise BackendError(f"GET {url} answered something that is not JSON: {_quoted(body)}") from None
    if not isinstance(items, list) or not all(isinstance(item, dict) for item in items):
        raise BackendError(f"GET {url} answered JSON that is not a list of signals: {_quoted(body)}")
    return items


async def backend_name(client: RetryClient, base_url: str) -> str:
    """``base_url``, with the SQLite file behind it when it is the embedded sink (its ``/stats`` says)."""
    try:
        async with client.get(f"{base_url}/stats") as response:
            stats = await response.json() if response.status == 200 else None
    except (aiohttp.ClientError, TimeoutError, ValueError):
        stats = None
    db = stats.get("db") if isinstance(stats, dict) else None
    return f"{base_url} (SQLite {db})" if isinstance(db, str) else base_url
