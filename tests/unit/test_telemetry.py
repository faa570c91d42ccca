"""Tracing: real gRPC calls and SQL statements recorded as one trace; exporter selection.

The tracer provider is process-global, so the span-capturing tests share one in-memory
exporter (cleared per test). Start-up behaviour that depends on the environment is
checked in a fresh interpreter.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path

import grpc
import pytest
from grpc import aio
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import ConsoleSpanExporter, SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from shared.telemetry import (
    add_span_processor,
    client_interceptors,
    configure_tracing,
    current_span_id,
    current_trace_id,
    exporters_from_env,
    instrument_engine,
    server_interceptor,
)

CHECK = "/grpc.health.v1.Health/Check"
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def _exporter() -> Iterator[InMemorySpanExporter]:
    configure_tracing("telemetry-test")
    exporter = InMemorySpanExporter()
    processor = SimpleSpanProcessor(exporter)
    add_span_processor(processor)
    yield exporter
    processor.shutdown()  # processors cannot be removed; a shut-down one drops spans


@pytest.fixture
def exporter(_exporter: InMemorySpanExporter) -> InMemorySpanExporter:
    _exporter.clear()
    return _exporter


async def finished(exporter: InMemorySpanExporter, name: str, count: int) -> Sequence[ReadableSpan]:
    """Spans called ``name`` once ``count`` of them have ended (client spans end in a callback)."""
    for _ in range(100):
        spans = [s for s in exporter.get_finished_spans() if s.name == name]
        if len(spans) >= count:
            return spans
        await asyncio.sleep(0.01)
    return spans


@asynccontextmanager
async def health_server() -> AsyncIterator[int]:
    server = aio.server(interceptors=[server_interceptor()])
    health_pb2_grpc.add_HealthServicer_to_server(health.aio.HealthServicer(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        yield port
    finally:
        await server.stop(None)


async def check_health(port: int) -> int:
    async with aio.insecure_channel(
        f"127.0.0.1:{port}", interceptors=client_interceptors()
    ) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        response = await stub.Check(health_pb2.HealthCheckRequest(), timeout=5)
    return int(response.status)


@pytest.mark.asyncio
async def test_grpc_call_is_one_trace_from_caller_through_client_to_server(
    exporter: InMemorySpanExporter,
) -> None:
    tracer = trace.get_tracer("test")
    async with health_server() as port:
        with tracer.start_as_current_span("caller") as caller:
            status = await check_health(port)
    assert status == health_pb2.HealthCheckResponse.SERVING

    spans = await finished(exporter, CHECK, 2)
    [client] = [s for s in spans if s.kind == SpanKind.CLIENT]
    [server] = [s for s in spans if s.kind == SpanKind.SERVER]
    trace_id = caller.get_span_context().trace_id
    assert client.context is not None
    assert server.context is not None
    assert client.context.trace_id == server.context.trace_id == trace_id
    assert client.parent is not None
    assert client.parent.span_id == caller.get_span_context().span_id
    # The server's parent came over the wire in the traceparent metadata.
    assert server.parent is not None
    assert server.parent.is_remote
    assert server.parent.span_id == client.context.span_id
    assert server.attributes is not None
    assert server.attributes["rpc.grpc.status_code"] == grpc.StatusCode.OK.value[0]


@pytest.mark.asyncio
async def test_excluded_services_are_not_traced(
    exporter: InMemorySpanExporter, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OTEL_PYTHON_GRPC_EXCLUDED_SERVICES", "grpc.health.v1.Health")
    async with health_server() as port:
        await check_health(port)
    await asyncio.sleep(0.05)

    assert [s for s in exporter.get_finished_spans() if s.name == CHECK] == []


@pytest.mark.asyncio
async def test_sql_statement_is_a_child_span_once_per_engine(
    exporter: InMemorySpanExporter,
) -> None:
    engine = create_async_engine("sqlite+aiosqlite://")
    instrument_engine(engine)
    instrument_engine(engine)  # a repeat must not double the spans
    tracer = trace.get_tracer("test")
    try:
        with tracer.start_as_current_span("handler") as handler:
            async with engine.connect() as connection:
                assert (await connection.execute(text("SELECT 41 + 1"))).scalar_one() == 42
    finally:
        await engine.dispose()

    statements = [
        s
        for s in exporter.get_finished_spans()
        if s.attributes
        and "SELECT 41 + 1"
        in str(s.attributes.get("db.statement", s.attributes.get("db.query.text", "")))
    ]
    [statement] = statements
    assert statement.kind == SpanKind.CLIENT
    assert statement.parent is not None
    assert statement.parent.span_id == handler.get_span_context().span_id


def test_current_ids_follow_the_current_span(exporter: InMemorySpanExporter) -> None:
    assert current_trace_id() is None
    assert current_span_id() is None
    with trace.get_tracer("test").start_as_current_span("work") as span:
        context = span.get_span_context()
        assert current_trace_id() == f"{context.trace_id:032x}"
        assert current_span_id() == f"{context.span_id:016x}"


def test_configuring_again_returns_the_same_provider_without_new_exporters(
    exporter: InMemorySpanExporter,
    monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str],
) -> None:
    first = configure_tracing("telemetry-test")
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "console")

    again = configure_tracing("another-service")
    with trace.get_tracer("test").start_as_current_span("after-reconfigure"):
        pass
    again.force_flush()

    assert again is first is trace.get_tracer_provider()
    assert len(exporter.get_finished_spans()) == 1
    assert "after-reconfigure" not in capfd.readouterr().out


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({}, []),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4317"}, [OTLPSpanExporter]),
        ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://collector:4317"}, [OTLPSpanExporter]),
        ({"OTEL_TRACES_EXPORTER": "otlp"}, [OTLPSpanExporter]),
        ({"OTEL_TRACES_EXPORTER": "console"}, [ConsoleSpanExporter]),
        ({"OTEL_TRACES_EXPORTER": "otlp, console"}, [OTLPSpanExporter, ConsoleSpanExporter]),
        (
            {"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4317"},
            [],
        ),
        (
            {"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"},
            [OTLPSpanExporter],
        ),
    ],
)
def test_exporters_are_chosen_by_the_standard_variables(
    env: dict[str, str], expected: list[type], monkeypatch: pytest.MonkeyPatch
) -> None:
    _clear_otel_env(monkeypatch)
    for name, value in env.items():
        monkeypatch.setenv(name, value)

    exporters = exporters_from_env()
    try:
        assert [type(e) for e in exporters] == expected
    finally:
        for e in exporters:
            e.shutdown()


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"OTEL_TRACES_EXPORTER": "jaeger"}, "unsupported exporter 'jaeger'"),
        (
            {"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf"},
            "only 'grpc' is supported",
        ),
    ],
)
def test_unusable_exporter_settings_fail_at_start_up(
    env: dict[str, str], message: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    _clear_otel_env(monkeypatch)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ValueError, match=message):
        exporters_from_env()


_PROBE = """
import json
from opentelemetry import propagate, trace
from shared.telemetry import configure_tracing
provider = configure_tracing("points")
tracer = trace.get_tracer("probe")
with tracer.start_as_current_span("probe") as span:
    recording = span.is_recording()
    carrier = {}
    propagate.inject(carrier)
print(json.dumps({
    "resource": dict(provider.resource.attributes),
    "same": configure_tracing("other") is provider,
    "recording": recording,
    "headers": sorted(carrier),
}))
"""


def _probe(env: dict[str, str]) -> dict[str, object]:
    """What ``configure_tracing`` does in a fresh process with ``env`` added."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    result = subprocess.run(
        [sys.executable, "-c", _PROBE],
        env={**clean, **env, "PYTHONPATH": f"{REPO}{os.pathsep}{REPO / 'gen'}"},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    probed: dict[str, object] = json.loads(result.stdout)
    return probed


def test_service_name_resource_and_w3c_propagation_in_a_fresh_process() -> None:
    probed = _probe({"OTEL_RESOURCE_ATTRIBUTES": "deployment.environment=test"})

    resource = probed["resource"]
    assert isinstance(resource, dict)
    assert resource["service.name"] == "points"
    assert resource["deployment.environment"] == "test"
    assert probed["same"] is True
    assert probed["recording"] is True
    assert probed["headers"] == ["traceparent"]  # baggage is only sent when set


def test_otel_service_name_overrides_the_default_name() -> None:
    probed = _probe({"OTEL_SERVICE_NAME": "points-canary"})

    resource = probed["resource"]
    assert isinstance(resource, dict)
    assert resource["service.name"] == "points-canary"


def test_sdk_disabled_means_no_recording_spans() -> None:
    probed = _probe({"OTEL_SDK_DISABLED": "true", "OTEL_TRACES_EXPORTER": "console"})

    assert probed["recording"] is False
    assert probed["headers"] == []


def _clear_otel_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("OTEL_"):
            monkeypatch.delenv(name)
