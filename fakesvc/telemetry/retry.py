"""What to do with a signal after an attempt: OTLP/HTTP's retry rules, plus ProdSentinel's 500.

- 2xx: delivered.
- 4xx but 408 and 429: permanent; dead-lettered at once with the answer (``rejected_<status>``).
- No answer, 408, 429, 502, 503, 504: transient (OTLP/HTTP retries 429, 502, 503, 504 and honours
  ``Retry-After``), retried with backoff for up to ``max_age_s`` from the signal's *first attempt*,
  then dead-lettered (``expired``). A signal that waited in the outbox was never offered: waiting
  does not age it, and none expires before its second failed attempt.
- A plain 500 (or another 5xx that is not 502/503/504): on ProdSentinel, the answer to a
  ``signal_id`` it already stored, or to every signal of a trace whose incident it duplicated,
  forever. Either way retrying does not help, so it gets ``ATTEMPTS_ON_500`` attempts spread over
  ``retry_500_s``, then is dead-lettered (``http_500``). If an earlier attempt may have been
  stored, the 500 proves neither way: the signal ends ``uncertain``, not dead.
"""

from __future__ import annotations

import email.utils
import random
import time
from dataclasses import dataclass, field

from aiohttp_retry import ExponentialRetry

TRANSIENT = frozenset({408, 429, 502, 503, 504})
UNAVAILABLE = frozenset({502, 503, 504})  # the backend, or a proxy before it, may be down: ask its health
MAX_RETRY_AFTER_S = 60.0
ATTEMPTS_ON_500 = 3
UNCERTAIN = "uncertain"


def is_permanent(status: int) -> bool:
    """4xx but 408 and 429 will never succeed; retrying them only loads the backend."""
    return 400 <= status < 500 and status not in (408, 429)


def is_server_error(status: int | None) -> bool:
    """A 5xx that says something about this signal, not about the backend's availability."""
    return status is not None and status >= 500 and status not in UNAVAILABLE


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
    retry_500_s: float = 5.0
    backoff_base_s: float = 0.05
    backoff_max_s: float = 30.0
    schedule: ExponentialRetry = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.schedule = ExponentialRetry(start_timeout=self.backoff_base_s, max_timeout=self.backoff_max_s)

    def dead_reason(
        self,
        status: int | None,
        *,
        first_try_at: float,
        attempts: int,
        first_500_at: float | None,
        answers_500: int,
        maybe_seen: bool,
        now: float,
    ) -> str | None:
        """Why a failed signal must stop being retried (a dead-letter reason, or ``UNCERTAIN``), or None.

        ``attempts`` counts the failed ones, this one included.
        """
        if status is not None and is_permanent(status):
            return f"rejected_{status}"
        if is_server_error(status) and first_500_at is not None:
            if answers_500 >= ATTEMPTS_ON_500 or now - first_500_at >= self.retry_500_s:
                return UNCERTAIN if maybe_seen else f"http_{status}"
        if attempts >= 2 and now - first_try_at >= self.max_age_s:
            return "expired"
        return None

    def delay_s(self, attempts: int, status: int | None, retry_after: float | None) -> float:
        """How long to wait before attempt ``attempts + 1``: the server's word, else backoff with jitter.

        Retries of a 500 are spread over its window, so a 500 that clears within seconds is survived.
        """
        if retry_after is not None:
            return retry_after
        if is_server_error(status):
            return self.retry_500_s / (ATTEMPTS_ON_500 - 1) * random.uniform(0.5, 1.0)
        return self.schedule.get_timeout(max(0, attempts - 1)) * random.uniform(0.5, 1.0)
