"""The parameters of ProdSentinel's ``GET /query/signals``, checked the way FastAPI checks them.

A tool written against the real query API gets the same answers here: the same
defaults and bounds, and the same 422 ``{"detail": [...]}`` naming the
parameter when one is wrong.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from fakesvc.sink.validation import Problem, epoch_us, parse_timestamp, problem

DEFAULT_LIMIT = 100
MAX_LIMIT = 1000
MAX_OFFSET = 2**63 - 1  # SQLite's largest integer; FastAPI sets no bound, the database does
FILTERS = ("trace_id", "service_name", "signal_type")
_WHOLE = re.compile(r"[+-]?[0-9]{1,30}")  # ASCII digits only: int() also takes "1_0" and "١"


@dataclass(frozen=True)
class SignalQuery:
    """What ``GET /query/signals`` asked for; times in microseconds since 1970, UTC."""

    filters: dict[str, str]
    start_us: int | None = None
    end_us: int | None = None
    limit: int = DEFAULT_LIMIT
    offset: int = 0


def _whole(name: str, raw: str, low: int, high: int, problems: list[Problem]) -> int:
    loc = ["query", name]
    if not _WHOLE.fullmatch(raw.strip()):
        msg = "Input should be a valid integer, unable to parse string as an integer"
        problems.append(problem("int_parsing", loc, msg, raw))
        return low
    value = int(raw)
    if value < low:
        problems.append(
            {
                **problem("greater_than_equal", loc, f"Input should be greater than or equal to {low}", raw),
                "ctx": {"ge": low},
            }
        )
    elif value > high:
        problems.append(
            {
                **problem("less_than_equal", loc, f"Input should be less than or equal to {high}", raw),
                "ctx": {"le": high},
            }
        )
    return value


def _moment(name: str, raw: str, problems: list[Problem]) -> int:
    moment = parse_timestamp(raw)
    if moment is None:
        problems.append(problem("datetime_parsing", ["query", name], "Input should be a valid datetime", raw))
        return 0
    return epoch_us(moment)


def parse_signal_query(params: Mapping[str, str]) -> SignalQuery | list[Problem]:
    """The query, or every problem with its parameters (FastAPI reports them all at once)."""
    problems: list[Problem] = []
    values: dict[str, Any] = {"filters": {name: params[name] for name in FILTERS if name in params}}
    for name in ("start_time", "end_time"):
        if name in params:
            values[f"{name.split('_')[0]}_us"] = _moment(name, params[name], problems)
    if "limit" in params:
        values["limit"] = _whole("limit", params["limit"], 1, MAX_LIMIT, problems)
    if "offset" in params:
        values["offset"] = _whole("offset", params["offset"], 0, MAX_OFFSET, problems)
    return problems or SignalQuery(**values)
