"""How a service tells its caller what it injected: a bounded header, and the whole list on request.

Every answer of a hop that saw faults carries them in ``x-fakesvc-faults`` (a
JSON list of fault records). The header is bounded: aiohttp refuses a header
field over 8,190 bytes, so 300 rules or an 8 KB message would otherwise turn
every answer into a dropped connection. When records had to be shortened or
left out, ``x-fakesvc-faults-trimmed`` says so, and the caller fetches the
whole list from ``GET /chaos/injected/{trace_id}``, which a service answers
with its own faults and those of the services behind it.

These are for people and for the Locust file's truth; the built-in
generator's truth does not depend on them: it is assembled from each hop's
record after the checkout (:mod:`fakesvc.service.records`), and no service
asks anything of another inside a request.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

import aiohttp
import structlog
from opentelemetry.instrumentation.utils import suppress_http_instrumentation
from yarl import URL

FAULTS_HEADER = "x-fakesvc-faults"
TRIMMED_HEADER = "x-fakesvc-faults-trimmed"
# Well under aiohttp's 8,190-byte field limit, leaving room for the rest of the answer's headers.
HEADER_BUDGET_BYTES = 4096
DETAIL_CHARS = 200
LOOKUP_TIMEOUT_S = 1.0

_log = structlog.get_logger("fakesvc.faults.report")


def _shortened(record: dict[str, Any]) -> dict[str, Any]:
    detail = record.get("detail")
    if isinstance(detail, str) and len(detail) > DETAIL_CHARS:
        return {**record, "detail": detail[: DETAIL_CHARS - 1] + "\u2026"}
    return record


def encode_faults(faults: list[dict[str, Any]]) -> tuple[str, bool]:
    """The header value for ``faults`` within the budget, and whether anything was shortened or left out.

    ASCII only (``\\u`` escapes), so no proxy or client chokes on a rule's unicode message.
    """
    parts: list[str] = []
    size = 2  # the brackets
    trimmed = False
    for record in faults:
        short = _shortened(record)
        trimmed = trimmed or short is not record
        part = json.dumps(short, separators=(",", ":"))
        if size + len(part) + 1 > HEADER_BUDGET_BYTES:
            return "[" + ",".join(parts) + "]", True
        parts.append(part)
        size += len(part) + 1
    return "[" + ",".join(parts) + "]", trimmed


def decode_faults(headers: Mapping[str, str]) -> tuple[list[dict[str, Any]], bool]:
    """The fault records an answer carries, and whether the sender trimmed them."""
    raw = headers.get(FAULTS_HEADER)
    records: list[dict[str, Any]] = []
    if raw:
        try:
            value = json.loads(raw)
        except (ValueError, RecursionError):  # not JSON, or nested deeper than the parser goes
            value = []
        if isinstance(value, list):
            records = [record for record in value if isinstance(record, dict)]
    return records, TRIMMED_HEADER in headers


def injected_path(trace_id: str) -> str:
    """The path of ``GET /chaos/injected/{trace_id}``, already percent-encoded.

    A trace id of "." or ".." is valid: sent as is (a client would normalise it
    away) and with its dots encoded, so no server or proxy on the way reads it
    as a path step.
    """
    return f"/chaos/injected/{quote(trace_id, safe='').replace('.', '%2E')}"


def injected_faults(payload: Any) -> list[dict[str, Any]] | None:
    """The fault records of a ``/chaos/injected`` answer; None when it holds no fault list."""
    faults = payload.get("faults") if isinstance(payload, dict) else None
    if isinstance(faults, list):
        return [record for record in faults if isinstance(record, dict)]
    return None


async def fetch_injected(session: aiohttp.ClientSession, base_url: str, trace_id: str) -> list[dict[str, Any]] | None:
    """Ask the service at ``base_url`` what it and the services behind it injected into a trace.

    None when it does not answer: the caller then knows only what it saw itself.
    """
    url = URL(f"{base_url}{injected_path(trace_id)}", encoded=True)
    try:
        with suppress_http_instrumentation():  # the harness's own call: no span in the checkout's trace
            async with session.get(url, timeout=aiohttp.ClientTimeout(total=LOOKUP_TIMEOUT_S)) as response:
                payload = await response.json() if response.status == 200 else None
        faults = injected_faults(payload)
        if faults is not None:
            return faults
        error = f"HTTP {response.status} without a fault list"
    except (TimeoutError, aiohttp.ClientError, ValueError) as exc:
        error = f"{type(exc).__name__}: {exc}"
    _log.warning("Fault lookup failed", url=str(url), error=error, harness=True)
    return None
