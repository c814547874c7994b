"""The ``/chaos`` routes of services in other processes (containers, hosts), reached over HTTP.

The gateway's ``/chaos/services`` uses these when payment or inventory runs
elsewhere. Such a caller is not loopback, so the downstream service refuses a
change unless it carries the admin token: every change sent here carries it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import aiohttp

from fakesvc.faults.rules import Rule

TIMEOUT = aiohttp.ClientTimeout(total=5)


class RemoteError(RuntimeError):
    """A service in another process did not take or give its rules; the message says which and why."""


async def _call(session: aiohttp.ClientSession, method: str, service: str, base_url: str, **kwargs: Any) -> Any:
    """The JSON of a 200 answer from ``{base_url}/chaos``, else a :class:`RemoteError` with the service's reason."""
    try:
        async with session.request(method, f"{base_url}/chaos", timeout=TIMEOUT, **kwargs) as response:
            if response.status != 200:
                raise RemoteError(f"{service} answered {response.status}: {(await response.text())[:300]}")
            return await response.json()
    except (TimeoutError, aiohttp.ClientError, ValueError) as exc:
        raise RemoteError(f"{service} at {base_url}: {exc or type(exc).__name__}") from None


async def get_rules(session: aiohttp.ClientSession, service: str, base_url: str) -> Any:
    """``GET {base_url}/chaos``: the service's snapshot."""
    return await _call(session, "GET", service, base_url)


async def put_rules(
    session: aiohttp.ClientSession, service: str, base_url: str, rules: Sequence[Rule], admin_token: str | None
) -> Any:
    """``PUT {base_url}/chaos`` with ``rules`` (already validated here) and the admin token, if there is one."""
    headers = {"Authorization": f"Bearer {admin_token}"} if admin_token is not None else {}
    return await _call(session, "PUT", service, base_url, json={"rules": [r.to_json() for r in rules]}, headers=headers)
