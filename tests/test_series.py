"""Each service's series at the source: workload, errors and latency percentiles, sampled once an interval."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections import defaultdict
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import generate_latest

from fakesvc.faults import Chaos
from fakesvc.service.app import service_rng
from fakesvc.service.prometheus import ServiceMetrics
from fakesvc.service.series import ServedSeries, sample_every, series_trace_id
from fakesvc.settings import ConfigError
from fakesvc.telemetry.batcher import BatcherConfig
from fakesvc.telemetry.pipeline import Telemetry, TelemetryConfig, telemetry_config
from fakesvc.telemetry.signals import METRIC_KIND
from tests.processes import start_supervisor


def test_a_sample_is_the_rates_and_percentiles_of_what_was_served_then_counting_starts_again() -> None:
    series = ServedSeries()
    for elapsed, status in zip(range(1, 11), [200] * 7 + [503, 500, None], strict=True):
        series.served(status, float(elapsed))  # None: the connection was dropped, a failure too
    sample = series.sample(interval_s=0.5, at=1000.0)
    assert (sample.workload, sample.errors) == (20.0, 6.0)  # 10 and 3 in half a second
    assert sample.latency_ms == {50: 5.0, 90: 9.0, 99: 10.0}  # nearest rank: values that were served
    empty = series.sample(interval_s=0.5, at=1000.5)
    assert (empty.workload, empty.errors, empty.latency_ms) == (0.0, 0.0, {50: None, 90: None, 99: None})
    assert series.last is empty


async def test_the_samples_of_a_run_add_up_to_what_was_served_the_last_partial_interval_included() -> None:
    series = ServedSeries()
    samples = []
    sampler = asyncio.ensure_future(sample_every(series, 0.01, samples.append))
    for _ in range(25):
        series.served(200, 1.0)
        await asyncio.sleep(0.003)
    series.served(502, 2.0)  # served after the last tick: only the sample taken at cancel holds it
    sampler.cancel()
    await asyncio.gather(sampler, return_exceptions=True)
    assert sum(sample.workload * sample.interval_s for sample in samples) == 26
    assert sum(sample.errors * sample.interval_s for sample in samples) == 1


def test_a_sample_goes_out_as_metric_signals_named_as_rcaevals_columns() -> None:
    sent: list[tuple[str, dict[str, Any]]] = []
    telemetry = Telemetry(TelemetryConfig(frozenset({"metrics"}), frozenset({"none"}), BatcherConfig()))
    assert telemetry.batcher is not None
    telemetry.batcher.emit = lambda kind, signal: sent.append((kind, signal))  # type: ignore[method-assign]
    telemetry._emit_metric = telemetry.batcher.emit
    series = ServedSeries()
    series.served(200, 12.5)
    telemetry.series("cartservice", series.sample(1.0, 1_765_000_000.0))
    assert {kind for kind, _ in sent} == {METRIC_KIND}
    by_name = {signal["metric_name"]: signal for _, signal in sent}
    assert sorted(by_name) == ["error", "latency-50", "latency-90", "latency-99", "workload"]
    assert (by_name["workload"]["value"], by_name["error"]["value"], by_name["latency-90"]["value"]) == (1.0, 0.0, 12.5)
    # every signal a trace of its own: ProdSentinel races to open an incident for a trace whose first signals
    # arrive together, and refuses the rest of that trace; and two samples in one second (a late tick, the
    # last one at shutdown) never share one either
    assert {name: signal["trace_id"] for name, signal in by_name.items()} == {
        name: series_trace_id("cartservice", 1_765_000_000.0, name) for name in by_name
    }
    assert len({signal["trace_id"] for signal in by_name.values()}) == len(by_name)
    assert series_trace_id("cartservice", 1_765_000_000.0, "cpu") != series_trace_id(
        "cartservice", 1_765_000_000.5, "cpu"
    )
    assert {signal["service_name"] for signal in by_name.values()} == {"cartservice"}
    assert by_name["workload"]["timestamp"].startswith("2025-12-06T05:46:40")


def test_the_interval_is_a_setting() -> None:
    assert telemetry_config(None, {"FAKESVC_SERIES_INTERVAL_S": "0.25"}).series_interval_s == 0.25


@pytest.mark.parametrize("bad", ["0", "-1", "nan", "inf", "1e400", "abc", "", "\u0661", "[1]"])
def test_an_interval_that_is_not_a_positive_finite_number_is_refused_by_name(bad: str) -> None:
    with pytest.raises(ConfigError, match="FAKESVC_SERIES_INTERVAL_S"):
        telemetry_config(None, {"FAKESVC_SERIES_INTERVAL_S": bad})


async def test_a_supervisor_run_sends_each_services_series_to_the_backend(tmp_path: Path) -> None:
    """Every service's workload samples add up to the hops it served; nothing failed, so no error."""
    supervisor = await start_supervisor(
        tmp_path,
        "--rate",
        "20",
        "--count",
        "30",
        "--mix",
        "success=1",
        FAKESVC_SERIES_INTERVAL_S="0.2",
        FAKESVC_TELEMETRY="metrics",
        OTEL_TRACES_EXPORTER="none",
    )
    status, stderr = await supervisor.exited(90)
    assert status == 0, stderr[-3000:]
    with closing(sqlite3.connect(supervisor.db)) as db:
        payloads = [json.loads(row[0]) for row in db.execute("SELECT payload FROM raw_signals")]
    served: dict[str, float] = defaultdict(float)
    errors: dict[str, float] = defaultdict(float)
    for signal in payloads:
        if signal.get("attributes", {}).get("series"):
            interval = signal["attributes"]["interval_s"]
            if signal["metric_name"] == "workload":  # its probes and scrapes are counted too, and told apart
                served[signal["service_name"]] += signal["value"] * interval - signal["attributes"]["background"]
            if signal["metric_name"] == "error":
                errors[signal["service_name"]] += signal["value"] * interval
    assert {name: round(count) for name, count in served.items()} == {
        "api-gateway": 30,
        "payment-service": 30,
        "inventory-service": 30,
    }
    assert sum(errors.values()) == 0


def test_prometheus_shows_the_last_sample_as_gauges() -> None:
    series = ServedSeries()
    metrics = ServiceMetrics(Chaos("cartservice"), Telemetry(TelemetryConfig(frozenset(), frozenset({"none"}))), series)
    assert b"fakesvc_series_workload_per_second" not in generate_latest(metrics.registry)  # no sample yet
    for elapsed in (100.0, 200.0, 300.0, 400.0):
        series.served(200, elapsed)
    series.served(503, 500.0)
    series.sample(interval_s=1.0, at=1000.0).resources.update({"cpu": 0.25, "mem": 2.0**27})
    text = generate_latest(metrics.registry).decode()
    assert "fakesvc_series_cpu_cores 0.25" in text
    assert "fakesvc_series_mem_bytes 1.34217728e+08" in text
    assert "fakesvc_series_workload_per_second 5.0" in text
    assert "fakesvc_series_errors_per_second 1.0" in text
    assert 'fakesvc_series_latency_seconds{quantile="0.5"} 0.3' in text
    assert 'fakesvc_series_latency_seconds{quantile="0.99"} 0.5' in text


def test_each_service_draws_its_own_simulated_work_and_a_seed_repeats_it() -> None:
    """With one seed for the run, services drew the same sequence: the gateway's jitter was payment's."""
    draws = {name: [service_rng(7, name).uniform(0, 100) for _ in range(5)] for name in ("api-gateway", "payment")}
    assert draws["api-gateway"] != draws["payment"]
    assert [service_rng(7, "payment").uniform(0, 100) for _ in range(5)] == draws["payment"]
    assert service_rng(None, "payment").random() != service_rng(None, "payment").random()  # no seed: unseeded
