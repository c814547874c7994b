"""OTLP: the real exporter, sending to a real OTLP/HTTP receiver, carries the truth's trace ids end to end.

The receiver runs in the test's own loop (an aiohttp app on port 0 serving
``POST /v1/traces``) and decodes each ``ExportTraceServiceRequest`` with
``opentelemetry-proto``; the services are the real ``supervisor.py`` and the
traffic the real generator, writing its truth.
"""

from __future__ import annotations

import json
import logging
import re
import signal
import subprocess
import sys
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml
from aiohttp import web
from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span

from fakesvc import SERVICE_NAMES
from fakesvc.service.correlation import TRACE_ID_ATTRIBUTE
from fakesvc.settings import ConfigError
from fakesvc.telemetry.pipeline import Telemetry, TelemetryConfig, telemetry_config
from tests.processes import FAST_TIMEOUTS, ROOT, spawn, start_supervisor, start_traffic

GATEWAY, PAYMENT, INVENTORY = "api-gateway", "payment-service", "inventory-service"
# The services a checkout reaches: a declined payment never calls inventory.
REACHED = {"success": set(SERVICE_NAMES), "timeout": set(SERVICE_NAMES), "fail-pay": {GATEWAY, PAYMENT}}
OVERRIDE = ROOT / "compose.otel.yaml"
BASE = ROOT / "compose.yaml"
DOCKERFILE = ROOT / "Dockerfile"
SPAN_SENDERS = ("gateway", "payment", "inventory")  # compose.yaml's names of the three services
COLLECTOR_CONFIG = ROOT / "deploy" / "otel" / "collector.yaml"


@dataclass(frozen=True)
class ReceivedSpan:
    service: str
    trace_id: str
    span_id: str
    parent_span_id: str
    name: str
    kind: int
    attributes: dict[str, Any]


def _attributes(pairs: Any) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for pair in pairs:
        assert isinstance(pair, KeyValue)
        kind = pair.value.WhichOneof("value")
        values[pair.key] = getattr(pair.value, kind) if kind else None
    return values


class OtlpReceiver:
    """An OTLP/HTTP traces endpoint: every span the exporter sent, decoded."""

    def __init__(self) -> None:
        self.spans: list[ReceivedSpan] = []

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/v1/traces", self.traces)
        return app

    async def traces(self, request: web.Request) -> web.Response:
        if request.content_type != "application/x-protobuf":
            return web.json_response({"detail": "expected application/x-protobuf"}, status=415)
        try:
            export = ExportTraceServiceRequest.FromString(await request.read())
        except DecodeError as exc:
            return web.json_response({"detail": f"not an ExportTraceServiceRequest: {exc}"}, status=400)
        for resource_spans in export.resource_spans:
            service = _attributes(resource_spans.resource.attributes)["service.name"]
            for scope_spans in resource_spans.scope_spans:
                for span in scope_spans.spans:
                    self.spans.append(
                        ReceivedSpan(
                            service,
                            span.trace_id.hex(),
                            span.span_id.hex(),
                            span.parent_span_id.hex(),
                            span.name,
                            span.kind,
                            _attributes(span.attributes),
                        )
                    )
        body = ExportTraceServiceResponse().SerializeToString()
        return web.Response(body=body, content_type="application/x-protobuf")

    def traces_by_id(self) -> dict[str, list[ReceivedSpan]]:
        traces: dict[str, list[ReceivedSpan]] = defaultdict(list)
        for span in self.spans:
            traces[span.trace_id].append(span)
        return traces


async def test_every_truth_line_has_its_trace_in_otlp_after_sigterm(tmp_path: Path, aiohttp_server: Any) -> None:
    """Each checkout's spans reach the collector under the truth's trace id, from every service it reached.

    The batch processor is told to wait ten minutes between exports, so the
    spans can only arrive through the flush on SIGTERM: none is lost at exit.
    """
    receiver = OtlpReceiver()
    server = await aiohttp_server(receiver.app())
    otlp = {
        "OTEL_TRACES_EXPORTER": "otlp",
        "OTEL_EXPORTER_OTLP_ENDPOINT": str(server.make_url("/")),
        "OTEL_BSP_SCHEDULE_DELAY": "600000",
        "FAKESVC_TELEMETRY": "",
        **FAST_TIMEOUTS,
    }
    truth = tmp_path / "truth.jsonl"
    supervisor = await start_supervisor(tmp_path, **otlp)
    try:
        await supervisor.read_until("api-gateway listening")
        run = ("--rate", "40", "--count", "15", "--mix", "success=3,fail-pay=1,timeout=1", "--seed", "5")
        # the verdict replays the services' timeouts
        traffic = await start_traffic(supervisor.url("gateway"), *run, "--truth", str(truth), **FAST_TIMEOUTS)
        assert (await traffic.exited())[0] == 0, traffic.stdout_lines
        assert receiver.spans == []  # still queued in the services
        status, stderr = await supervisor.stop(signal.SIGTERM)
    finally:
        await supervisor.kill()
    assert status == 0 and "Traceback" not in stderr
    lines = [json.loads(line) for line in truth.read_text().splitlines()]
    assert len(lines) == 15 and {line["scenario"] for line in lines} == set(REACHED)
    traces = receiver.traces_by_id()
    assert set(traces) == {line["trace_id"] for line in lines}  # no trace of its own
    for line in lines:
        spans = traces[line["trace_id"]]
        assert {span.service for span in spans} == REACHED[line["scenario"]], line
        assert all(span.attributes[TRACE_ID_ATTRIBUTE] == line["trace_id"] for span in spans)
        # one trace: every span's parent is in it, but the gateway's server span, the generator's child
        ids = {span.span_id for span in spans}
        (root,) = [span for span in spans if span.parent_span_id not in ids]
        assert (root.service, root.kind, root.name) == (GATEWAY, Span.SPAN_KIND_SERVER, "POST /checkout/{order_id}")
        assert len(root.parent_span_id) == 16  # the traceparent's parent id


async def test_closing_flushes_the_spans_off_the_event_loop(
    aiohttp_server: Any, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The flush at close waits on the collector in threads: a collector in this very loop still answers it.

    Flushed on the loop's thread, the export would wait for a loop it blocks,
    time out, and drop the batch (with a warning from the exporter).
    """
    receiver = OtlpReceiver()
    server = await aiohttp_server(receiver.app())
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", str(server.make_url("/")))
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TIMEOUT", "5")
    monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", "600000")
    telemetry = Telemetry(TelemetryConfig(frozenset(), frozenset({"otlp"})))
    for service in SERVICE_NAMES:
        with telemetry.tracer_provider(service).get_tracer("test").start_as_current_span("checkout"):
            pass
    assert receiver.spans == []
    await telemetry.close()
    assert sorted(span.service for span in receiver.spans) == sorted(SERVICE_NAMES)
    assert not [record for record in caplog.records if record.levelno >= logging.WARNING], caplog.text


async def test_otlp_without_the_exporter_installed_is_one_line_and_exit_2(tmp_path: Path) -> None:
    """As when ``fakesvc[otlp]`` is not installed: the exporter's module cannot be imported."""
    hide_exporter = (
        "import runpy, sys; sys.modules['opentelemetry.exporter.otlp.proto.http.trace_exporter'] = None; "
        "sys.argv = sys.argv[1:]; runpy.run_path(sys.argv[0], run_name='__main__')"
    )
    environ = {"OTEL_TRACES_EXPORTER": "otlp", "FAKESVC_SINK": "off", "FAKESVC_SPILL_DIR": str(tmp_path)}
    process = await spawn(["-c", hide_exporter, str(ROOT / "supervisor.py")], environ, cwd=tmp_path)
    status, stderr = await process.exited()
    assert status == 2
    assert stderr == "fakesvc: OTEL_TRACES_EXPORTER: 'otlp' needs the OTLP exporter: pip install 'fakesvc[otlp]'\n"


BAD_VALUES = [
    ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc", "only http/protobuf is supported"),
    ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "http/json", "only http/protobuf is supported"),
    ("OTEL_EXPORTER_OTLP_ENDPOINT", "collector:4318", "must be an http:// or https:// URL"),
    ("OTEL_EXPORTER_OTLP_ENDPOINT", "ftp://collector", "must be an http:// or https:// URL"),
    ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://collector:99999/v1/traces", "Port out of range"),
    ("OTEL_EXPORTER_OTLP_TIMEOUT", "nan", "must be a finite number"),
    ("OTEL_EXPORTER_OTLP_TIMEOUT", "inf", "must be a finite number"),
    ("OTEL_EXPORTER_OTLP_TIMEOUT", "1e400", "must be a finite number"),
    ("OTEL_EXPORTER_OTLP_TIMEOUT", "-1", "must be a finite number"),
    ("OTEL_EXPORTER_OTLP_TIMEOUT", "0", "must be a number > 0"),
    ("OTEL_EXPORTER_OTLP_TRACES_TIMEOUT", "\u0661\u0660", "must be a number"),
    ("OTEL_EXPORTER_OTLP_COMPRESSION", "zip", "must be one of gzip, deflate, none"),
    ("OTEL_EXPORTER_OTLP_HEADERS", "api-key", "must be a comma list of name=value"),
    ("OTEL_EXPORTER_OTLP_TRACES_HEADERS", "a=1,=2", "must be a comma list of name=value"),
    ("OTEL_EXPORTER_OTLP_CERTIFICATE", "/no/such/ca.pem", "no such file"),
    ("OTEL_BSP_SCHEDULE_DELAY", "0", "must be a whole number > 0"),
    ("OTEL_BSP_MAX_QUEUE_SIZE", "1e3", "must be a whole number"),
    ("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "4096", "must be <= OTEL_BSP_MAX_QUEUE_SIZE (2048)"),
]


@pytest.mark.parametrize(("variable", "value", "reason"), BAD_VALUES)
def test_a_bad_otlp_variable_stops_the_start_naming_it(variable: str, value: str, reason: str) -> None:
    """The exporter itself would fall back to a default, or fail at every export, without a word at start."""
    with pytest.raises(ConfigError, match=f"^{variable}: ") as caught:
        telemetry_config(environ={"OTEL_TRACES_EXPORTER": "otlp", variable: value})
    assert reason in str(caught.value)


def test_good_otlp_variables_pass_and_empty_ones_count_as_unset() -> None:
    good = {
        "OTEL_TRACES_EXPORTER": "prodsentinel,otlp",
        "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
        "OTEL_EXPORTER_OTLP_ENDPOINT": "http://otel-collector:4318",
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "https://[::1]:4318/v1/traces",
        "OTEL_EXPORTER_OTLP_TIMEOUT": "2.5",
        "OTEL_EXPORTER_OTLP_COMPRESSION": "gzip",
        "OTEL_EXPORTER_OTLP_HEADERS": "api-key=s%C3%A9cret, x-tenant=fakesvc",
        "OTEL_EXPORTER_OTLP_CERTIFICATE": "",
        "OTEL_BSP_MAX_QUEUE_SIZE": "8192",
        "OTEL_BSP_MAX_EXPORT_BATCH_SIZE": "4096",
    }
    assert telemetry_config(environ=good).trace_exporters == {"prodsentinel", "otlp"}


def test_otlp_variables_are_not_read_when_otlp_is_off() -> None:
    environ = {"OTEL_TRACES_EXPORTER": "prodsentinel", "OTEL_EXPORTER_OTLP_TIMEOUT": "nan"}
    assert telemetry_config(environ=environ).trace_exporters == {"prodsentinel"}


def _yaml(path: Path) -> dict[str, Any]:
    document = yaml.safe_load(path.read_text())
    assert isinstance(document, dict)
    return document


def test_the_compose_override_is_a_valid_compose_file() -> None:
    checker = [sys.executable, "-m", "check_jsonschema", "--builtin-schema", "vendor.compose-spec", str(OVERRIDE)]
    result = subprocess.run(checker, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_override_sends_the_services_spans_to_the_collector_and_on_to_jaeger() -> None:
    services = _yaml(OVERRIDE)["services"]
    collector = _yaml(COLLECTOR_CONFIG)
    assert {name for name, service in services.items() if "image" not in service} == set(SPAN_SENDERS)
    receiver_port = collector["receivers"]["otlp"]["protocols"]["http"]["endpoint"].rsplit(":", 1)[1]
    for name in SPAN_SENDERS:
        environment = {key: str(value) for key, value in services[name]["environment"].items()}
        assert "otlp" in telemetry_config(environ=environment).trace_exporters  # and our start check passes
        endpoint = urlsplit(environment["OTEL_EXPORTER_OTLP_ENDPOINT"])
        assert endpoint.hostname == "otel-collector" and str(endpoint.port) == receiver_port
    # the collector runs on the file this repository ships
    (mount,) = services["otel-collector"]["volumes"]
    source, target, _ = mount.split(":")
    assert (ROOT / source).resolve() == COLLECTOR_CONFIG
    assert services["otel-collector"]["command"] == [f"--config={target}"]
    # every component the pipeline names exists, and it exports to Jaeger's OTLP/gRPC receiver
    pipeline = collector["service"]["pipelines"]["traces"]
    assert set(pipeline["receivers"]) <= set(collector["receivers"])
    assert set(pipeline["exporters"]) <= set(collector["exporters"])
    jaeger = urlsplit("//" + collector["exporters"]["otlp_grpc/jaeger"]["endpoint"])
    assert jaeger.hostname == "jaeger" and "otlp_grpc/jaeger" in pipeline["exporters"]
    assert f"--set=receivers.otlp.protocols.grpc.endpoint=0.0.0.0:{jaeger.port}" in services["jaeger"]["command"]


@pytest.mark.skipif(not BASE.exists() or not DOCKERFILE.exists(), reason="compose.yaml and the image come with deploy")
def test_the_override_extends_the_base_stack_whose_image_has_the_exporter() -> None:
    """The override adds to compose.yaml's services (not new ones without an image), whose image has fakesvc[otlp]."""
    assert set(SPAN_SENDERS) <= set(_yaml(BASE)["services"])
    assert re.search(r"pip install [^\n]*\[[^\]]*\botlp\b", DOCKERFILE.read_text()), "the image lacks fakesvc[otlp]"
