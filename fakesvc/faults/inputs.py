"""The body of a fault-control request, read and checked before anything changes.

``PUT /chaos``, ``PUT /chaos/services`` and the sink's ``PUT /sink/faults``
share these, so a bad body gets the same answer everywhere: a 400 that names
the key. A number that is not finite never gets past :func:`number`: a NaN
or an infinity in a delay would corrupt the event loop's timers.
"""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

# Bounds shared by the services' rules and the sink's faults (the README lists them).
MAX_DELAY_MS = 600_000.0  # an added latency
MAX_WINDOW_S = 7 * 24 * 3600.0  # a schedule's start or length, an outage window


class InputError(ValueError):
    """A control input that cannot be used; the message says where (``rules[1].latency_ms``)."""


async def read_json(request: web.Request) -> Any:
    """The request's body as JSON; :class:`InputError` when it is not JSON or nests too deeply.

    A body over the application's ``client_max_size`` is aiohttp's 413 before
    anything is parsed. ``NaN`` and ``Infinity`` parse (as Python's json does)
    and are refused by :func:`number`, which can name their key.
    """
    raw = await request.read()
    try:
        return json.loads(raw)
    except RecursionError:
        raise InputError("body: JSON nested too deeply") from None
    except ValueError:  # not JSON, or not UTF-8
        raise InputError("body: must be JSON") from None


def number(where: str, value: Any, *, low: float, high: float) -> float:
    """``value`` as a float when it is a JSON number from ``low`` to ``high``."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InputError(f"{where}: must be a number")
    if not low <= value <= high:  # also refuses NaN (every comparison is false) and the infinities
        raise InputError(f"{where}: must be a finite number between {low:g} and {high:g}")
    return float(value)


def whole_number(where: str, value: Any, *, low: int, high: int) -> int:
    """``value`` when it is a JSON integer (not a bool) from ``low`` to ``high``."""
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise InputError(f"{where}: must be a whole number between {low} and {high}")
    return value


def text(where: str, value: Any, *, max_chars: int) -> str:
    """``value`` when it is a non-empty string of at most ``max_chars`` characters."""
    if not isinstance(value, str) or not value or len(value) > max_chars:
        raise InputError(f"{where}: must be a non-empty string of at most {max_chars} characters")
    return value
