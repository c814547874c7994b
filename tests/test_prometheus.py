"""``GET /metrics``: Prometheus text that parses, per service, and moves with traffic."""

from __future__ import annotations

from pathlib import Path

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import recording_telemetry, start_chain
from tests.telemetry_fixtures import checkouts, eventually, remote_telemetry, sink_on


async def scrape(url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of ``url``/metrics, keyed by name and sorted labels."""
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{url}/metrics") as response:
            assert response.status == 200 and response.content_type == "text/plain"
            text = await response.text()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def requests(samples: dict, route: str, status: str) -> float:
    """How many requests a route answered with ``status`` (its method is the route's)."""
    method = "GET" if route.startswith("/inventory") or route == "unmatched" else "POST"
    labels = (("http_request_method", method), ("http_response_status_code", status), ("http_route", route))
    return samples.get(("http_server_request_duration_seconds_count", labels), 0.0)


async def test_each_service_counts_its_own_requests_faults_and_the_telemetry(tmp_path: Path) -> None:
    sink = await sink_on(0, tmp_path / "s.db")
    telemetry = remote_telemetry(sink.url, tmp_path / "spill")
    await telemetry.start()
    chain = await start_chain(telemetry)
    try:
        before = {name: await scrape(url) for name, url in chain.urls.items()}
        statuses = [status for status, _ in await checkouts(chain.gateway, ["a-success", "b-success", "c-fail-pay"])]
        assert statuses == [200, 200, 500]

        async def delivered() -> bool:
            return telemetry.stats()["backlog"] == 0

        await eventually(delivered, what="backlog 0")
        after = {name: await scrape(url) for name, url in chain.urls.items()}
    finally:
        await chain.running.stop()
        await telemetry.close()
        await sink.stop()
    gateway, payment, inventory = after["api-gateway"], after["payment-service"], after["inventory-service"]
    assert (
        requests(gateway, "/checkout/{order_id}", "200")
        - requests(before["api-gateway"], "/checkout/{order_id}", "200")
        == 2
    )
    assert requests(gateway, "/checkout/{order_id}", "500") == 1
    assert requests(payment, "/pay/{order_id}", "500") == 1 and requests(payment, "/pay/{order_id}", "200") == 2
    assert requests(inventory, "/inventory/{item_id}", "200") == 2  # each service shows only its own requests
    assert requests(inventory, "/checkout/{order_id}", "200") == 0
    assert payment[("fakesvc_faults_injected_total", (("kind", "error"),))] == 1
    assert ("fakesvc_faults_injected_total", (("kind", "error"),)) not in gateway
    sent = gateway[("fakesvc_telemetry_sent_total", ())]
    assert (
        sent == gateway[("fakesvc_telemetry_queued_total", ())] > 0 and gateway[("fakesvc_telemetry_backlog", ())] == 0
    )
    assert gateway[("fakesvc_telemetry_backend_up", ())] == 1
    assert ("fakesvc_event_loop_lag_p99_seconds", ()) in gateway


async def test_an_unknown_path_is_counted_under_one_label_not_its_own(tmp_path: Path) -> None:
    chain = await start_chain(recording_telemetry())
    try:
        async with aiohttp.ClientSession() as session:
            for path in ("/nope", "/other/\u00e9", "/x" * 100):
                async with session.get(f"{chain.gateway}{path}") as response:
                    assert response.status == 404
        samples = await scrape(chain.gateway)
    finally:
        await chain.running.stop()
    assert requests(samples, "unmatched", "404") == 3
    assert not any("nope" in str(key) for key in samples)
