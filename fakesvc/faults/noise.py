"""The ``noise`` fault: a harmless ERROR a service logs and shrugs off, the red herring of an incident.

Real services log errors that change nothing (a cache miss retried and served
from the database, a metrics push that failed); an analyser that blames the
first or loudest ERROR is fooled by them. A noise fault logs one such line and
the request carries on: it is recorded in the truth like every fault, but it is
never a root cause and never changes the answer.
"""

from __future__ import annotations

from typing import Any

KEY = "{key}"  # in a noise message: replaced by the request's order or item id
DEFAULT_MESSAGE = "Cache miss for {key}: cache read timed out (retried, served from DB)"
DEFAULT_EXCEPTION = "TimeoutError"


def log_noise(log: Any, message: str, exception: str, key: str) -> None:
    """Log the noise as the service's own ERROR (stdout and backend, like every log), then return."""
    log.error(message.replace(KEY, key), error_type=exception, retried=True)
