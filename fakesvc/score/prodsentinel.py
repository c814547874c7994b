"""Predictions read from ProdSentinel's query API instead of a file (``--prodsentinel URL``).

- Incidents: ``GET /query/incidents?limit=200&offset=N`` until the offset
  reaches ``total``; an incident seen twice (a new one shifted the pages) is read once.
- Analyses: ``GET /query/incidents/{id}/analysis`` for the incidents of the
  truth's traces; not for a trace whose only incident is LOW (no prediction,
  whatever its analysis says). 404 means "not analysed".
- Detection: ProdSentinel opens an incident for every trace (LOW for healthy
  ones), so only severity medium, high or critical (any case) is an incident
  for the scorer; a LOW one is no prediction, even with an analysis.
- Ranking: the services the analysis's ``root_cause`` names, first mention first
  (:mod:`fakesvc.score.mentions`); a detection without analysis ranks nothing.
- Two incidents for one trace (ProdSentinel's ingest race): the one with the
  latest analysis counts; when neither is analysed, the most severe, then the latest.
- Errors: a 5xx or no answer is retried (4 attempts, exponential backoff);
  after that, or on any other unexpected answer, a :class:`ScoreError`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import aiohttp
from aiohttp_retry import RetryClient
from yarl import URL

from fakesvc.query_client import ATTEMPTS, open_client
from fakesvc.score.inputs import Checkout, Prediction, ScoreError, text, timestamp
from fakesvc.score.mentions import ranked_services
from fakesvc.score.metrics import share
from fakesvc.traffic.run import percentile

PAGE = 200  # ProdSentinel's largest page
CONCURRENCY = 8  # analyses fetched at once: ProdSentinel commits per request, so stay gentle
SEVERITY_RANK = {"low": 0, "medium": 1, "high": 2, "critical": 3}
DETECTED = 1  # medium and above
NEVER = datetime.min.replace(tzinfo=UTC)


@dataclass(frozen=True)
class Incident:
    id: str
    trace_id: str
    severity: int  # SEVERITY_RANK's value; an unknown severity word counts as low
    detected_at: datetime


@dataclass(frozen=True)
class Analysis:
    root_cause: str
    generated_at: datetime


@dataclass(frozen=True)
class Answer:
    """What ProdSentinel made of one trace: its incident and that incident's analysis (None: not analysed)."""

    incident: Incident
    analysis: Analysis | None

    @property
    def detected(self) -> bool:
        return self.incident.severity >= DETECTED

    def latest_first(self) -> tuple[datetime, int, datetime]:
        """The sort key that picks the incident that counts among several for one trace."""
        analysed_at = self.analysis.generated_at if self.analysis else NEVER
        return analysed_at, self.incident.severity, self.incident.detected_at


@dataclass(frozen=True)
class Answers:
    """ProdSentinel's answer per trace of the truth (one incident each, chosen), and what the listing saw."""

    by_trace: dict[str, Answer]
    listed: int  # incidents ProdSentinel listed, for any trace
    duplicated: int  # traces of the truth with more than one incident


class QueryApi:
    """GETs against ProdSentinel's query API, retried, each answer checked to be JSON."""

    def __init__(self, client: RetryClient, base: URL) -> None:
        self.client = client
        self.base = base

    async def get(self, url: URL, *, missing_ok: bool = False) -> Any:
        """The JSON answer of ``url``; None for a 404 when ``missing_ok``; anything else unexpected raises."""
        what = f"ProdSentinel GET {url.path_qs}"
        try:
            async with self.client.get(url) as response:
                if response.status == 404 and missing_ok:
                    return None
                if response.status != 200:
                    tried = f" after {ATTEMPTS} attempts" if response.status >= 500 else ""
                    body = (await response.text(errors="replace"))[:120]
                    raise ScoreError(f"{what}: answered {response.status}{tried}: {body!r}")
                try:
                    return await response.json(content_type=None)
                except ValueError:
                    raise ScoreError(f"{what}: the answer is not JSON") from None
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise ScoreError(
                f"{what}: no answer from {self.base} after {ATTEMPTS} attempts ({exc or type(exc).__name__})"
            ) from None

    async def incidents(self) -> list[Incident]:
        """Every incident, page by page until ``total``."""
        found: dict[str, Incident] = {}
        offset = 0
        while True:
            url = (self.base / "query" / "incidents").with_query(limit=PAGE, offset=offset)
            items, total = _page(await self.get(url), f"ProdSentinel GET {url.path_qs}")
            for index, item in enumerate(items):
                incident = _incident(item, f"ProdSentinel GET {url.path_qs}: items[{index}]")
                found.setdefault(incident.id, incident)
            offset += len(items)
            if not items or offset >= total:
                return list(found.values())

    async def analysis(self, incident: Incident) -> Analysis | None:
        url = self.base / "query" / "incidents" / incident.id / "analysis"
        answer = await self.get(url, missing_ok=True)
        return None if answer is None else _analysis(answer, f"ProdSentinel GET {url.path}")


def _page(answer: Any, where: str) -> tuple[list[Any], int]:
    """``items`` and ``total`` of a page of incidents."""
    if not isinstance(answer, dict):
        raise ScoreError(f"{where}: a page must be a JSON object, not {type(answer).__name__}")
    items, total = answer.get("items"), answer.get("total")
    if not isinstance(items, list) or isinstance(total, bool) or not isinstance(total, int) or total < 0:
        raise ScoreError(f"{where}: a page needs 'items' (a list) and 'total' (a whole number >= 0)")
    return items, total


def _incident(item: Any, where: str) -> Incident:
    if not isinstance(item, dict):
        raise ScoreError(f"{where}: an incident must be a JSON object")
    return Incident(
        id=text(item, "id", where),
        trace_id=text(item, "trace_id", where),
        severity=SEVERITY_RANK.get(text(item, "severity", where).lower(), 0),
        detected_at=timestamp(item, "detected_at", where),
    )


def _analysis(answer: Any, where: str) -> Analysis:
    if not isinstance(answer, dict) or not isinstance(answer.get("root_cause"), str):
        raise ScoreError(f"{where}: an analysis must be a JSON object with a 'root_cause' string")
    return Analysis(answer["root_cause"], timestamp(answer, "generated_at", where))


def _worth_reading(incidents: list[Incident]) -> bool:
    """A trace's analyses matter when it has a detection or two incidents compete; a lone LOW one predicts nothing."""
    return len(incidents) > 1 or incidents[0].severity >= DETECTED


async def read_answers(url: str, trace_ids: Iterable[str], *, backoff_s: float = 0.1) -> Answers:
    """ProdSentinel's answer for each of ``trace_ids`` it has an incident for."""
    wanted = set(trace_ids)
    async with open_client(backoff_s) as client:
        api = QueryApi(client, URL(url))
        listed = await api.incidents()
        by_trace: dict[str, list[Incident]] = {}
        for incident in listed:
            if incident.trace_id in wanted:
                by_trace.setdefault(incident.trace_id, []).append(incident)
        gate = asyncio.Semaphore(CONCURRENCY)

        async def answer(incident: Incident) -> Answer:
            if not _worth_reading(by_trace[incident.trace_id]):
                return Answer(incident, None)
            async with gate:
                return Answer(incident, await api.analysis(incident))

        try:
            async with asyncio.TaskGroup() as group:
                tasks = {trace: [group.create_task(answer(i)) for i in found] for trace, found in by_trace.items()}
        except* ScoreError as failed:  # the first bad answer is the one line to show; the others were cancelled
            raise failed.exceptions[0] from None
    return Answers(
        by_trace={trace: max((t.result() for t in found), key=Answer.latest_first) for trace, found in tasks.items()},
        listed=len(listed),
        duplicated=sum(len(found) > 1 for found in by_trace.values()),
    )


def predictions(answers: Answers, services: Sequence[str]) -> list[Prediction]:
    """A prediction for each detection: the ``services`` its analysis names (none when not analysed)."""
    return [
        Prediction(
            trace_id=trace_id,
            services=tuple(ranked_services(answer.analysis.root_cause, services)) if answer.analysis else (),
            where=f"ProdSentinel incident {answer.incident.id}",
        )
        for trace_id, answer in answers.by_trace.items()
        if answer.detected
    ]


def _lag(seconds: list[float]) -> dict[str, float | int | None]:
    ordered = sorted(seconds)
    return {"count": len(ordered), "median": percentile(ordered, 0.5), "p95": percentile(ordered, 0.95)}


def coverage(checkouts: list[Checkout], answers: Answers) -> dict[str, Any]:
    """What share of faulty checkouts got an incident, of those an analysis, and how long after the checkout.

    Detection lag: ``detected_at`` minus the checkout's start. Analysis lag:
    ``generated_at`` minus the checkout's end (ProdSentinel waits 60 s before analysing).
    """
    faulty = [checkout for checkout in checkouts if checkout.faulty]
    detected = [(c, answers.by_trace[c.trace_id]) for c in faulty if _detected(answers, c.trace_id)]
    analysed = [(c, answer) for c, answer in detected if answer.analysis is not None]
    detections = [answer for answer in answers.by_trace.values() if answer.detected]

    return {
        "incidents_listed": answers.listed,
        "traces_with_two_incidents": answers.duplicated,
        "faulty_with_incident": len(detected),
        "faulty_with_incident_share": share(len(detected), len(faulty)),
        "faulty_analysed": len(analysed),
        "faulty_analysed_share": share(len(analysed), len(detected)),
        "not_analysed": sum(answer.analysis is None for answer in detections),
        "detection_lag_s": _lag([(a.incident.detected_at - c.start).total_seconds() for c, a in detected if c.start]),
        "analysis_lag_s": _lag(
            [(a.analysis.generated_at - c.end).total_seconds() for c, a in analysed if c.end and a.analysis]
        ),
    }


def _detected(answers: Answers, trace_id: str) -> bool:
    answer = answers.by_trace.get(trace_id)
    return answer is not None and answer.detected
