"""What to do with a signal after an attempt: OTLP's retry rules, plus ProdSentinel's repeated-id 500.

- 2xx: delivered.
- 4xx but 408 and 429: permanent; dead-lettered at once with the answer (``rejected``).
- A plain 500 (or another 5xx that is not 502/503/504): ProdSentinel's answer to a
  ``signal_id`` it already stored, so retried only for ``retry_500_s``, then
  dead-lettered with the answer (``http_500``).
- No answer, 408, 429, 502, 503, 504: transient, retried with backoff for up to
  ``max_age_s`` from the signal's emission, then dead-lettered (``expired``).
"""

from __future__ import annotations

import email.utils
import random
import time
from dataclasses import dataclass, field

from aiohttp_retry import ExponentialRetry

TRANSIENT = frozenset({408, 429, 502, 503, 504})
UNAVAILABLE = frozenset({502, 503, 504})  # the backend itself is down: stop sending, probe
MAX_RETRY_AFTER_S = 60.0


def is_permanent(status: int) -> bool:
    """4xx but 408 and 429 will never succeed; retrying them only loads the backend."""
    return 400 <= status < 500 and status not in (408, 429)


def backend_unavailable(status: int | None) -> bool:
    """No answer at all, or a gateway/unavailable status: the backend, not this signal, is the problem."""
    return status is None or status in UNAVAILABLE


def retry_after_s(value: str | None) -> float | None:
    """``Retry-After`` as seconds (a number or an HTTP date), capped; None when absent or unreadable."""
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            seconds = email.utils.parsedate_to_datetime(value).timestamp() - time.time()
        except (TypeError, ValueError):
            return None
    if seconds != seconds:  # NaN
        return None
    return min(max(0.0, seconds), MAX_RETRY_AFTER_S)


@dataclass
class RetryPolicy:
    """The windows and the backoff schedule (aiohttp-retry's exponential one, capped, with jitter)."""

    max_age_s: float = 600.0
    retry_500_s: float = 60.0
    backoff_base_s: float = 0.05
    backoff_max_s: float = 30.0
    schedule: ExponentialRetry = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.schedule = ExponentialRetry(start_timeout=self.backoff_base_s, max_timeout=self.backoff_max_s)

    def dead_reason(self, status: int | None, first_at: float, first_500_at: float | None, now: float) -> str | None:
        """Why a failed signal must stop being retried, or None to retry it."""
        if status is not None and is_permanent(status):
            return "rejected"
        if status is not None and status >= 500 and status not in UNAVAILABLE:
            if first_500_at is not None and now - first_500_at >= self.retry_500_s:
                return f"http_{status}"
        if now - first_at >= self.max_age_s:
            return "expired"
        return None

    def delay_s(self, attempts: int, retry_after: float | None) -> float:
        """How long to wait before attempt ``attempts + 1``: the server's word, else backoff with jitter."""
        if retry_after is not None:
            return retry_after
        return self.schedule.get_timeout(max(0, attempts - 1)) * random.uniform(0.5, 1.0)
