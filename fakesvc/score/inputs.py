"""The scorer's inputs: truth lines and predictions, read whole, checked, and joined per checkout.

Anything the scorer cannot score raises :class:`ScoreError` with one line
naming the file and line, so the CLI can stop with exit 2 and nothing is
scored on a guess.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from fakesvc.truth import MadeOn, made_on

NOISE = "noise"  # a fault kind that logs but is never a root cause
STDIN = "-"


class ScoreError(Exception):
    """An input that cannot be scored; the message is the one line the user sees."""


@dataclass(frozen=True)
class Checkout:
    """One scorable truth line: which services caused it (none: healthy) and the root cause's fault kind."""

    run_id: str | None
    trace_id: str
    scenario: str
    root_causes: tuple[str, ...]
    kind: str | None  # None for a healthy checkout
    start: datetime | None
    end: datetime | None

    @property
    def faulty(self) -> bool:
        return bool(self.root_causes)


@dataclass(frozen=True)
class Prediction:
    """An analyser's answer for one checkout: an incident, its ranked suspects, maybe the fault kind."""

    trace_id: str
    services: tuple[str, ...]
    kind: str | None = None
    run_id: str | None = None
    where: str = ""  # file:line, for messages


# Truth lines whose outcome no injected fault explains: left out of the scores by default.
UNEXPLAINED = ("harness", "incomplete")


@dataclass(frozen=True)
class Truth:
    checkouts: list[Checkout]
    interrupted: int  # lines of checkouts cut short by a stop: not scored
    left_out: dict[str, int]  # cause -> lines not scored (harness-caused, incomplete)
    left_out_traces: frozenset[str]  # their trace ids: a prediction for one is neither scored nor "unmatched"
    made_on: MadeOn | None = None  # the graph the lines name (None: none names one)


@dataclass(frozen=True)
class Joined:
    """Each checkout's prediction (None: no incident), and the predictions that match no checkout."""

    checkouts: list[Checkout]
    predictions: list[Prediction | None]
    unmatched: int


def parse_time(value: str) -> datetime:
    """An ISO 8601 time; one without a zone is taken as UTC (ProdSentinel's and fakesvc's clocks are UTC)."""
    parsed = datetime.fromisoformat(value)
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


# the stdlib's parser, strict about NaN and Infinity: the same answer whether orjson is installed or not
_DECODER = json.JSONDecoder(parse_constant=_no_constant)


def _objects(lines: Iterable[str], name: str) -> Iterator[tuple[str, dict[str, Any]]]:
    """``(file:line, object)`` for each non-blank line; a line that is not a JSON object stops everything."""
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        where = f"{name}:{number}"
        try:
            value = _DECODER.decode(line)
        except ValueError as exc:
            raise ScoreError(f"{where}: not JSON ({exc})") from None
        if not isinstance(value, dict):
            raise ScoreError(f"{where}: a line must be a JSON object, not {type(value).__name__}")
        yield where, value


def optional_text(record: dict[str, Any], key: str, where: str) -> str | None:
    """``record[key]`` as a non-empty string, or None when it is absent or null."""
    value = record.get(key)
    return None if value is None else text(record, key, where)


def text(record: dict[str, Any], key: str, where: str) -> str:
    """``record[key]``, which must be a non-empty string."""
    value = record.get(key)
    if not isinstance(value, str) or not value:
        raise ScoreError(f"{where}: {key!r} must be a non-empty string, not {value!r:.60}")
    return value


def texts(record: dict[str, Any], key: str, where: str) -> tuple[str, ...]:
    """``record[key]``, which must be a list of strings."""
    value = record.get(key)
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise ScoreError(f"{where}: {key!r} must be a list of strings, not {value!r:.60}")
    return tuple(value)


def timestamp(record: dict[str, Any], key: str, where: str) -> datetime:
    """``record[key]``, which must be an ISO 8601 time."""
    value = text(record, key, where)
    try:
        return parse_time(value)
    except ValueError:
        raise ScoreError(f"{where}: {key!r} is not an ISO 8601 time: {value!r:.60}") from None


def optional_timestamp(record: dict[str, Any], key: str, where: str) -> datetime | None:
    return None if record.get(key) is None else timestamp(record, key, where)


def _root_causes(record: dict[str, Any], where: str) -> tuple[str, ...]:
    """``root_cause_services`` when the line has it, else ``[root_cause_service]`` or ``[]``."""
    if "root_cause_services" in record:
        return texts(record, "root_cause_services", where)
    single = optional_text(record, "root_cause_service", where)
    return (single,) if single else ()


def _fault_kind(faults: list[dict[str, Any]], service: str) -> str:
    """The kind of ``service``'s first fault record that is not noise (``unknown`` when it has none)."""
    for fault in faults:
        kind = fault.get("kind")
        if fault.get("service") == service and isinstance(kind, str) and kind != NOISE:
            return kind
    return "unknown"


def _checkout(record: dict[str, Any], where: str) -> Checkout:
    faults = record.get("faults", [])
    if not isinstance(faults, list) or not all(isinstance(fault, dict) for fault in faults):
        raise ScoreError(f"{where}: 'faults' must be a list of objects")
    root_causes = _root_causes(record, where)
    return Checkout(
        run_id=optional_text(record, "run_id", where),
        trace_id=text(record, "trace_id", where),
        scenario=text(record, "scenario", where),
        root_causes=root_causes,
        kind=_fault_kind(faults, root_causes[0]) if root_causes else None,
        start=optional_timestamp(record, "start", where),
        end=optional_timestamp(record, "end", where),
    )


def _lines(source: str) -> list[str]:
    """The lines of a file, or of stdin for ``-``, as text."""
    try:
        data = sys.stdin.buffer.read() if source == STDIN else Path(source).read_bytes()
    except OSError as exc:
        raise ScoreError(f"{source}: {exc.strerror or exc}") from None
    try:
        return data.decode("utf-8").split("\n")  # only \n ends a JSON line: U+2028 may sit raw in a string
    except UnicodeDecodeError:
        raise ScoreError(f"{_name(source)}: not UTF-8 text") from None


def _name(source: str) -> str:
    return "<stdin>" if source == STDIN else source


def read_truth(paths: Sequence[Path], *, include_harness: bool = False) -> Truth:
    """Every scorable checkout of ``paths``; interrupted ones counted; a (run, trace) seen twice is an error.

    A line whose ``cause`` is ``harness`` or ``incomplete`` (no injected fault
    explains its outcome) is left out and counted; with ``include_harness`` a
    harness-caused line is scored as healthy (for an analyser that must not
    flag what the harness broke). A truth file older than ``cause`` is scored whole.
    """
    checkouts: list[Checkout] = []
    seen: dict[tuple[str | None, str], str] = {}
    interrupted = 0
    left_out = dict.fromkeys(UNEXPLAINED, 0)
    left_out_traces: set[str] = set()
    records: list[dict[str, Any]] = []  # every line, for the graph they name
    for path in paths:
        for where, record in _objects(_lines(str(path)), str(path)):
            records.append(record)
            if record.get("interrupted") is True:
                interrupted += 1
                continue
            cause = record.get("cause")
            if cause == "harness" and include_harness:
                record = {**record, "root_cause_services": [], "root_cause_service": None}
            elif cause in UNEXPLAINED:
                left_out[cause] += 1
                left_out_traces.add(text(record, "trace_id", where))
                continue
            checkout = _checkout(record, where)
            key = (checkout.run_id, checkout.trace_id)
            if key in seen:
                raise ScoreError(
                    f"{where}: trace id {checkout.trace_id!r} of run {checkout.run_id} is already at {seen[key]} "
                    "(the same truth given twice?)"
                )
            seen[key] = where
            checkouts.append(checkout)
    if not checkouts:
        skipped = ", ".join(f"{count} {cause}" for cause, count in left_out.items() if count)
        raise ScoreError(
            f"{', '.join(map(str, paths))}: no checkout to score ({interrupted} interrupted"
            + (f", {skipped} left out" if skipped else "")
            + ")"
        )
    try:
        graph = made_on(records)
    except ValueError as exc:
        raise ScoreError(f"{', '.join(map(str, paths))}: {exc}") from None
    return Truth(checkouts, interrupted, left_out, frozenset(left_out_traces), graph)


def _prediction(record: dict[str, Any], where: str) -> Prediction:
    return Prediction(
        trace_id=text(record, "trace_id", where),
        services=texts(record, "services", where),
        kind=optional_text(record, "kind", where),
        run_id=optional_text(record, "run_id", where),
        where=where,
    )


def read_predictions(source: str) -> list[Prediction]:
    """One prediction per non-blank line of a file, or of stdin for ``-``; other keys are ignored."""
    return [_prediction(record, where) for where, record in _objects(_lines(source), _name(source))]


def _runs(checkouts: list[Checkout], indexes: list[int]) -> str:
    return ", ".join(str(checkouts[i].run_id) for i in indexes)


def join(checkouts: list[Checkout], predictions: Iterable[Prediction]) -> Joined:
    """Match predictions to checkouts on trace id, and on run id when both carry one.

    A prediction that could be two checkouts (one trace id in two runs, no
    run id to choose) and two predictions for one checkout are errors: either
    would make the score depend on a guess.
    """
    by_trace: dict[str, list[int]] = {}
    for index, checkout in enumerate(checkouts):
        by_trace.setdefault(checkout.trace_id, []).append(index)
    matched: dict[int, Prediction] = {}
    unmatched = 0
    for prediction in predictions:
        candidates = by_trace.get(prediction.trace_id, [])
        if prediction.run_id is not None:
            candidates = [i for i in candidates if checkouts[i].run_id in (prediction.run_id, None)]
        if not candidates:
            unmatched += 1
            continue
        if len(candidates) > 1:
            raise ScoreError(
                f"{prediction.where}: trace id {prediction.trace_id!r} is in {len(candidates)} truth runs "
                f"({_runs(checkouts, candidates)}) and the prediction names no run_id to choose one"
            )
        index = candidates[0]
        if index in matched:
            raise ScoreError(
                f"{prediction.where}: a second prediction for trace id {prediction.trace_id!r} "
                f"(the first is at {matched[index].where}): one line per checkout"
            )
        matched[index] = prediction
    return Joined(checkouts, [matched.get(i) for i in range(len(checkouts))], unmatched)
