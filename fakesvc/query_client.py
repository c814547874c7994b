"""One retrying HTTP client for a ProdSentinel-compatible query API (the embedded sink or the real one).

The reference analyser and the scorer's ProdSentinel adapter read the same
API the same way: a timeout per request, transport errors, 408/429 and 5xx
answers retried on aiohttp-retry's exponential schedule (``start_s``, then
twice as long each time), so a backend restarting is waited for and a dead
one is not.
"""

from __future__ import annotations

import aiohttp
from aiohttp_retry import ExponentialRetry, RetryClient

ATTEMPTS = 4  # with the default start, 0.2 + 0.4 + 0.8 s of backoff
REQUEST_TIMEOUT_S = 30.0


def open_client(start_s: float = 0.2) -> RetryClient:
    """A session for every request of a run (close it with ``async with``), retrying as above."""
    retry = ExponentialRetry(
        attempts=ATTEMPTS,
        start_timeout=start_s,
        max_timeout=2.0,
        statuses={408, 429},  # 5xx are retried by aiohttp-retry's default
        exceptions={aiohttp.ClientError, TimeoutError},
    )
    session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_S))
    return RetryClient(client_session=session, retry_options=retry)
