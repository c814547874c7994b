"""The faults header: bounded and ASCII on the way out, forgiving of anything on the way in."""

from __future__ import annotations

import json

import pytest

from fakesvc.faults.report import DETAIL_CHARS, HEADER_BUDGET_BYTES, TRIMMED_HEADER, decode_faults, encode_faults
from fakesvc.traffic.truth import judge


def record(detail: str = "latency 0 ms (rule 0)") -> dict:
    return {"service": "inventory-service", "kind": "latency", "detail": detail, "status": None, "delay_ms": 0.0}


def test_a_small_list_is_sent_whole_and_unicode_travels_as_ascii() -> None:
    value, trimmed = encode_faults([record("caf\u00e9 \u2603 \U0001f600")])
    assert not trimmed and value.isascii()
    assert json.loads(value) == [record("caf\u00e9 \u2603 \U0001f600")]


@pytest.mark.parametrize(
    "faults",
    [[record()] * 300, [record("x" * 8192)], [record("\u2603" * 5000)] * 10],
    ids=["300 records", "an 8 KB detail", "unicode that triples in size"],
)
def test_a_large_list_is_trimmed_within_the_budget(faults: list[dict]) -> None:
    value, trimmed = encode_faults(faults)
    assert trimmed and len(value.encode()) <= HEADER_BUDGET_BYTES
    kept = json.loads(value)
    assert kept and all(len(r["detail"]) <= DETAIL_CHARS for r in kept)


@pytest.mark.parametrize(
    "raw",
    ["not json", "{}", '"a string"', "[1, [2], null]", "[" * 30000, "NaN", '[{"kind": "drop"}'],
)
def test_a_malformed_header_reads_as_no_faults(raw: str) -> None:
    assert decode_faults({"x-fakesvc-faults": raw}) == ([], False)


def test_the_trimmed_mark_is_read() -> None:
    assert decode_faults({"x-fakesvc-faults": "[]", TRIMMED_HEADER: "/chaos/injected/t"}) == ([], True)


@pytest.mark.parametrize("delay", [float("nan"), float("inf"), -5, "900", True, None, 1e309])
def test_a_record_with_a_nonsense_delay_or_status_adds_nothing_and_never_crashes_the_verdict(delay: object) -> None:
    latency = {"service": "inventory-service", "kind": "latency", "detail": "", "status": None, "delay_ms": delay}
    assert judge([latency]) == (200, "inventory-service", ("inventory-service",))
    error = {"service": "payment-service", "kind": "error", "detail": "", "status": delay, "delay_ms": None}
    assert judge([error]) == (500, "payment-service", ("payment-service",))
