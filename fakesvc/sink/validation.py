"""ProdSentinel's strict validation (SPEC section 6), answered the way pydantic/FastAPI answer it.

A signal that passes here is exactly what the real backend accepts; one that
fails gets the same 422 ``{"detail": [{"type", "loc", "msg", "input"}]}``.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from fakesvc.telemetry.signals import LEVELS

COMMON = ("signal_id", "trace_id", "service_name", "timestamp", "signal_type")

# endpoint type -> its own fields: name -> (required, check)
_STRING = "string"
_NUMBER = "number"
_OBJECT = "object"
_OPTIONAL_STRING = "optional string"

FIELDS: dict[str, dict[str, tuple[bool, str]]] = {
    "log": {"level": (True, "level"), "message": (True, _STRING), "attributes": (False, _OBJECT)},
    "trace": {
        "span_id": (True, _STRING),
        "parent_span_id": (False, _OPTIONAL_STRING),
        "duration_ms": (True, _NUMBER),
        "status": (True, _STRING),
        "attributes": (False, _OBJECT),
    },
    "metric": {
        "metric_name": (True, _STRING),
        "value": (True, _NUMBER),
        "unit": (True, _STRING),
        "attributes": (False, _OBJECT),
    },
}

Problem = dict[str, Any]


def problem(kind: str, loc: list[Any], msg: str, value: Any) -> Problem:
    """One pydantic error: where (``["body", field]``, ``["query", name]``), what, and the input."""
    return {"type": kind, "loc": loc, "msg": msg, "input": value}


def _problem(kind: str, field: str | None, msg: str, value: Any) -> Problem:
    return problem(kind, ["body"] if field is None else ["body", field], msg, value)


def _check(field: str, check: str, value: Any) -> Problem | None:
    if check == "level":
        if value not in LEVELS:
            return _problem("enum", field, f"Input should be {', '.join(repr(v) for v in LEVELS)}", value)
    elif check == _STRING:
        if not isinstance(value, str):
            return _problem("string_type", field, "Input should be a valid string", value)
    elif check == _OPTIONAL_STRING:
        if value is not None and not isinstance(value, str):
            return _problem("string_type", field, "Input should be a valid string", value)
    elif check == _NUMBER:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return _problem("float_type", field, "Input should be a valid number", value)
    elif check == _OBJECT and not isinstance(value, dict):
        return _problem("dict_type", field, "Input should be a valid dictionary", value)
    return None


def parse_timestamp(value: Any) -> datetime | None:
    """ISO 8601 with ``Z``, an offset, or no zone; None if it is not one."""
    if not isinstance(value, str) or not value:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00") if value.endswith("Z") else value)
    except ValueError:
        return None


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


def epoch_us(moment: datetime) -> int:
    """Microseconds since 1970 (no zone means UTC): one order for ``Z``, offsets and naive times.

    Subtracting, not ``astimezone``, so year 1 or 9999 with an offset does not overflow.
    """
    aware = moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
    return (aware - _EPOCH) // _MICROSECOND


def validate(signal_type: str, body: Any) -> list[Problem]:
    """Every problem with ``body`` as a signal of ``signal_type``; empty when it is valid."""
    if not isinstance(body, dict):
        return [
            _problem(
                "model_attributes_type",
                None,
                "Input should be a valid dictionary or object to extract fields from",
                body,
            )
        ]
    own = FIELDS[signal_type]
    problems = [
        _problem("extra_forbidden", key, "Extra inputs are not permitted", body[key])
        for key in body
        if key not in COMMON and key not in own
    ]
    for key in ("signal_id", "trace_id", "service_name", "timestamp"):
        if key not in body:
            problems.append(_problem("missing", key, "Field required", body))
    if "signal_id" in body:
        try:
            uuid.UUID(str(body["signal_id"]))
            if not isinstance(body["signal_id"], str):
                raise ValueError
        except ValueError:
            problems.append(_problem("uuid_parsing", "signal_id", "Input should be a valid UUID", body["signal_id"]))
    for key in ("trace_id", "service_name"):
        if key in body and (not isinstance(body[key], str) or not body[key].strip()):
            problems.append(_problem("string_too_short", key, "String should have at least 1 character", body[key]))
    if "timestamp" in body and parse_timestamp(body["timestamp"]) is None:
        problems.append(
            _problem("datetime_from_date_parsing", "timestamp", "Input should be a valid datetime", body["timestamp"])
        )
    if "signal_type" in body and body["signal_type"] != signal_type:
        problems.append(
            _problem("literal_error", "signal_type", f"Input should be '{signal_type}'", body["signal_type"])
        )
    for key, (required, check) in own.items():
        if key not in body:
            if required:
                problems.append(_problem("missing", key, "Field required", body))
            continue
        problem = _check(key, check, body[key])
        if problem is not None:
            problems.append(problem)
    return problems
