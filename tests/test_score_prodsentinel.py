"""``python -m fakesvc.score --prodsentinel URL``: against an in-test ProdSentinel query API with its real shapes.

The fake serves ``GET /query/incidents`` (newest first, ``limit`` 1-200 else
422, ``offset``; items are ProdSentinel's ``IncidentRead``) and ``GET
/query/incidents/{id}/analysis`` (``AnalysisResultRead``, 404 when none).
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from fakesvc.score.__main__ import main
from fakesvc.score.inputs import ScoreError, read_truth
from fakesvc.score.prodsentinel import PAGE, read_answers
from tests.telemetry_fixtures import free_port

PAY, INV, GW = "payment-service", "inventory-service", "api-gateway"
T0 = datetime(2026, 11, 26, 10, 0, tzinfo=UTC)
HEALTHY_TRACES = 300  # LOW incidents, never analysed: with the others, more than two pages
OTHER_RUN = 150  # incidents of traces not in the truth: listed, ignored


def at(seconds: float, style: str = "z") -> str:
    """``T0 + seconds`` as ProdSentinel may write it: with Z, with +00:00, or naive (pydantic on a naive column)."""
    moment = T0 + timedelta(seconds=seconds)
    if style == "naive":
        return moment.replace(tzinfo=None).isoformat()
    return moment.isoformat().replace("+00:00", "Z") if style == "z" else moment.isoformat()


@dataclass
class Case:
    """One checkout of the truth and what ProdSentinel made of it: (severity, detected s, analysis text, at s)."""

    trace_id: str
    causes: list[str]
    incidents: list[tuple[str, float, str | None, float]] = field(default_factory=list)


# Checkouts start at T0 and end at T0 + 1 s. Expected by hand:
# faulty f1-f8; right at 1: f1, f5 (its newer analysis), f7; at 2: + f2; detected: f1 f2 f3 f5 f7 f8 (+ h1).
CASES = [
    Case("f1", [PAY], [("high", 0.5, "Payment failed in payment-service; inventory fine", 61)]),
    Case("f2", [INV], [("High", 1.0, "The API gateway answered 500 after the inventory service timed out", 62)]),
    Case("f3", [INV], [("MEDIUM", 2.0, None, 0)]),  # detected, not analysed (404)
    Case("f4", [PAY], [("low", 0.1, "payment-service failed", 50)]),  # LOW: no detection, analysis or not
    Case("f5", [PAY], [("critical", 0.2, "inventory-service", 65), ("high", 4.0, "payment first, then gateway", 71)]),
    Case("f6", [INV]),  # no incident at all
    Case("f7", [PAY], [("low", 0.1, None, 0), ("high", 3.0, "payment", 64)]),  # the race: a LOW twin listed first
    Case("f8", [INV], [("low", 0.1, None, 0), ("medium", 0.4, None, 0)]),  # twins, neither analysed: the MEDIUM one
    Case("h1", [], [("critical", 0.3, "gateway errors", 66)]),  # a false alarm
]


def incident(number: int, trace_id: str, severity: str, detected_s: float) -> dict[str, Any]:
    return {
        "id": str(uuid.UUID(int=number)),
        "trace_id": trace_id,
        "status": "open",
        "severity": severity,
        "detected_at": at(detected_s, ("z", "naive", "offset")[number % 3]),
        "resolved_at": None,
        "affected_services": [GW, PAY],
        "error_count": 3.0,
    }


def analysis(incident_id: str, root_cause: str, generated_s: float) -> dict[str, Any]:
    return {
        "id": str(uuid.uuid4()),
        "incident_id": incident_id,
        "root_cause": root_cause,
        "confidence_score": 80.0,
        "evidence_signals": [str(uuid.uuid4())],
        "ai_explanation": {"full_report": root_cause},
        "generated_at": at(generated_s, "naive"),
    }


class FakeProdSentinel:
    """The two query routes over lists, with answers to play before the real ones (``fail_next``)."""

    def __init__(self) -> None:
        self.incidents: list[dict[str, Any]] = []
        self.analyses: dict[str, dict[str, Any]] = {}
        self.pages: list[tuple[int, int]] = []
        self.analysis_gets = 0
        self.fail_next: list[Callable[[], web.Response]] = []
        self.insert_after_first_page: dict[str, Any] | None = None
        for case in CASES:
            for severity, detected_s, root_cause, generated_s in case.incidents:
                self.add(case.trace_id, severity, detected_s, root_cause, generated_s)
        for number in range(HEALTHY_TRACES):
            self.add(f"h-{number}", "low", 0.1, None, 0)
        for number in range(OTHER_RUN):
            self.add(f"elsewhere-{number}", "high", 0.1, "payment", 60)

    def add(self, trace_id: str, severity: str, detected_s: float, root_cause: str | None, generated_s: float) -> None:
        item = incident(len(self.incidents) + 1, trace_id, severity, detected_s)
        self.incidents.append(item)
        if root_cause is not None:
            self.analyses[item["id"]] = analysis(item["id"], root_cause, generated_s)

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self.failures])
        app.router.add_get("/query/incidents", self.list_incidents)
        app.router.add_get("/query/incidents/{incident_id}/analysis", self.get_analysis)
        return app

    @web.middleware
    async def failures(self, request: web.Request, handler: Callable[[web.Request], Any]) -> web.StreamResponse:
        if self.fail_next:
            return self.fail_next.pop(0)()
        return await handler(request)

    async def list_incidents(self, request: web.Request) -> web.Response:
        limit, offset = int(request.query.get("limit", "50")), int(request.query.get("offset", "0"))
        if not 1 <= limit <= PAGE or offset < 0:
            return web.json_response({"detail": [{"msg": "out of range"}]}, status=422)
        self.pages.append((limit, offset))
        page = self.incidents[offset : offset + limit]
        if self.insert_after_first_page is not None and offset == 0:  # a new incident shifts the next pages
            self.incidents.insert(0, self.insert_after_first_page)
            self.insert_after_first_page = None
        return web.json_response({"items": page, "total": len(self.incidents), "limit": limit, "offset": offset})

    async def get_analysis(self, request: web.Request) -> web.Response:
        self.analysis_gets += 1
        found = self.analyses.get(request.match_info["incident_id"])
        if found is None:
            return web.json_response({"detail": "Analysis not found for this incident"}, status=404)
        return web.json_response(found)


@pytest.fixture
def truth(tmp_path: Path) -> Path:
    """The cases plus the healthy traces, as truth lines (run r1)."""
    lines = [(case.trace_id, case.causes) for case in CASES] + [(f"h-{n}", []) for n in range(HEALTHY_TRACES)]
    records = [
        {
            "run_id": "r1",
            "trace_id": trace_id,
            "scenario": "mix",
            "faults": [{"service": cause, "kind": "error"} for cause in causes],
            "root_cause_services": causes,
            "start": at(0, "offset"),
            "end": at(1, "offset"),
        }
        for trace_id, causes in lines
    ]
    path = tmp_path / "truth.jsonl"
    path.write_text("".join(json.dumps(record) + "\n" for record in records))
    return path


@pytest.fixture
async def fake(aiohttp_server: Callable[..., Any]) -> tuple[FakeProdSentinel, TestServer]:
    sentinel = FakeProdSentinel()
    return sentinel, await aiohttp_server(sentinel.app())


def url(server: TestServer) -> str:
    return str(server.make_url(""))


async def run_main(*argv: str) -> int:
    """The CLI in a thread: it runs its own event loop, while this one serves the fake."""
    return await asyncio.to_thread(main, list(argv))


async def test_scores_and_coverage_from_paginated_incidents_and_analyses(
    fake: tuple[FakeProdSentinel, TestServer], truth: Path, tmp_path: Path
) -> None:
    sentinel, server = fake
    sentinel.insert_after_first_page = incident(9999, "late-newcomer", "high", 0.0)
    out = tmp_path / "score.json"
    assert await run_main("--truth", str(truth), "--prodsentinel", url(server), "--out", str(out)) == 0
    report = json.loads(out.read_text())
    assert (report["faulty"], report["healthy"], report["detected"]) == (8, HEALTHY_TRACES + 1, 7)
    assert (report["ac@1"], report["ac@3"]) == (round(3 / 8, 4), 0.5)
    assert report["avg@3"] == round((3 + 4 + 4) / 24, 4)
    assert (report["detection_precision"], report["detection_recall"]) == (round(6 / 7, 4), 0.75)
    assert report["prodsentinel"] == {
        # those there when the listing began, each once: the newcomer shifted the last of page 1 onto page 2
        "incidents_listed": len(sentinel.incidents) - 1,
        "traces_with_two_incidents": 3,
        "faulty_with_incident": 6,
        "faulty_with_incident_share": 0.75,
        "faulty_analysed": 4,
        "faulty_analysed_share": round(4 / 6, 4),
        "not_analysed": 2,  # f3, f8
        # detected_at - start: f8 0.4, f1 0.5, f2 1.0, f3 2.0, f7 3.0, f5 4.0 (the incident that counts)
        "detection_lag_s": {"count": 6, "median": 2.0, "p95": 4.0},
        # generated_at - end: f1 60, f2 61, f7 63, f5 70
        "analysis_lag_s": {"count": 4, "median": 63.0, "p95": 70.0},
    }
    total = len(sentinel.incidents)
    assert sentinel.pages == [(PAGE, offset) for offset in range(0, total, PAGE)] and total > 2 * PAGE
    # the cases' incidents but f4's lone LOW one; none of the healthy traces' lone LOW ones, nor elsewhere-*
    assert sentinel.analysis_gets == sum(len(case.incidents) for case in CASES) - 1


async def test_the_table_says_what_prodsentinel_covered(
    fake: tuple[FakeProdSentinel, TestServer], truth: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert await run_main("--truth", str(truth), "--prodsentinel", url(fake[1])) == 0
    out = capsys.readouterr().out
    assert "faulty checkouts with an incident (medium+): 6 (0.750), of those analysed: 4 (0.667)" in out
    assert "incidents not analysed: 2" in out
    assert "analysis after the checkout's end: median 63.0 s, p95 70.0 s (of 4)" in out


async def test_a_5xx_or_a_reset_is_retried(fake: tuple[FakeProdSentinel, TestServer], truth: Path) -> None:
    sentinel, server = fake
    sentinel.fail_next = [lambda: web.Response(status=503), lambda: web.Response(status=500)]
    answers = await read_answers(url(server), ["f1"], backoff_s=0.001)
    assert answers.by_trace["f1"].analysis is not None and not sentinel.fail_next


def garbage(status: int = 200, body: str = "<html>oops</html>") -> Callable[[], web.Response]:
    return lambda: web.Response(status=status, text=body, content_type="application/json")


def json_answer(value: Any) -> Callable[[], web.Response]:
    return lambda: web.json_response(value)


PAGE_OK = {"total": 1, "limit": 200, "offset": 0}
GOOD_INCIDENT = incident(1, "f1", "high", 0)
BAD_ANSWERS = {
    "always 500": ([garbage(500, '{"detail": "Internal server error"}')] * 4, "answered 500 after 4 attempts"),
    "not JSON": ([garbage()], "GET /query/incidents?limit=200&offset=0: the answer is not JSON"),
    "a 401": ([garbage(401, "{}")], "answered 401: '{}'"),
    "a list": ([json_answer([])], "a page must be a JSON object, not list"),
    "no total": ([json_answer({"items": []})], "a page needs 'items' (a list) and 'total'"),
    "total NaN-ish": ([json_answer({"items": [], "total": True})], "'total' (a whole number >= 0)"),
    "items not a list": ([json_answer({**PAGE_OK, "items": {}})], "a page needs 'items' (a list)"),
    "item not an object": ([json_answer({**PAGE_OK, "items": ["x"]})], "items[0]: an incident must be a JSON object"),
    "no trace id": (
        [json_answer({**PAGE_OK, "items": [{**GOOD_INCIDENT, "trace_id": None}]})],
        "items[0]: 'trace_id' must be a non-empty string",
    ),
    "bad detected_at": (
        [json_answer({**PAGE_OK, "items": [{**GOOD_INCIDENT, "detected_at": "yesterday"}]})],
        "'detected_at' is not an ISO 8601 time",
    ),
    "severity a number": (
        [json_answer({**PAGE_OK, "items": [{**GOOD_INCIDENT, "severity": 3}]})],
        "'severity' must be a non-empty string",
    ),
    "analysis without root cause": (
        [json_answer({**PAGE_OK, "items": [GOOD_INCIDENT]}), json_answer({"generated_at": at(0)})],
        f"GET /query/incidents/{GOOD_INCIDENT['id']}/analysis: an analysis must be a JSON object with a 'root_cause'",
    ),
    "analysis with a bad time": (
        [json_answer({**PAGE_OK, "items": [GOOD_INCIDENT]}), json_answer({"root_cause": "x", "generated_at": 1})],
        "'generated_at' must be a non-empty string",
    ),
}


@pytest.mark.parametrize("bad", list(BAD_ANSWERS))
async def test_a_bad_answer_is_one_line_and_exit_2(
    fake: tuple[FakeProdSentinel, TestServer], truth: Path, bad: str, capsys: pytest.CaptureFixture[str]
) -> None:
    sentinel, server = fake
    sentinel.fail_next, expected = list(BAD_ANSWERS[bad][0]), BAD_ANSWERS[bad][1]
    with pytest.raises(SystemExit) as stopped:
        await run_main("--truth", str(truth), "--prodsentinel", url(server))
    err = capsys.readouterr().err
    assert stopped.value.code == 2 and expected in err, err
    assert err.startswith("fakesvc: ProdSentinel GET /query/incidents") and len(err.splitlines()) == 1, err


async def test_nothing_listening_is_one_line_after_the_retries(truth: Path) -> None:
    with pytest.raises(ScoreError, match=r"no answer from http://127.0.0.1:\d+ after 4 attempts"):
        await read_answers(f"http://127.0.0.1:{free_port()}", ["f1"], backoff_s=0.001)


async def test_each_trace_gets_the_incident_with_the_latest_analysis(
    fake: tuple[FakeProdSentinel, TestServer], truth: Path
) -> None:
    sentinel, server = fake
    checkouts = read_truth([truth]).checkouts
    answers = await read_answers(url(server), (checkout.trace_id for checkout in checkouts), backoff_s=0.001)
    f5 = answers.by_trace["f5"]
    assert f5.incident.severity == 2 and f5.analysis is not None and f5.analysis.root_cause.startswith("payment")
    assert answers.by_trace["f3"].analysis is None and "f6" not in answers.by_trace
    assert answers.by_trace["f7"].incident.severity == 2 and answers.by_trace["f7"].analysis is not None
    assert answers.by_trace["f8"].incident.severity == 1
    assert answers.duplicated == 3 and "elsewhere-0" not in answers.by_trace
