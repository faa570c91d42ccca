"""OpenTelemetry tracing: provider set-up, gRPC interceptors, SQL spans, current ids.

Only the shared server/client bootstrap imports this; domain code stays unaware of it.
The exporter is chosen by the standard ``OTEL_*`` variables (see ``exporters_from_env``),
the sampler by ``OTEL_TRACES_SAMPLER``, batching by ``OTEL_BSP_*``, and
``OTEL_PYTHON_GRPC_EXCLUDED_SERVICES`` (e.g. ``grpc.health.v1.Health``) keeps probe calls
out of traces.

The tracer provider is process-global and OpenTelemetry refuses to replace it, so
``configure_tracing`` configures it once; later calls (several in-process servers in
tests) return the same provider, still named after the first service. Tests capture
spans by attaching their own processor::

    exporter = InMemorySpanExporter()
    configure_tracing("test")
    add_span_processor(SimpleSpanProcessor(exporter))
    ...
    exporter.get_finished_spans()  # clear() between tests: processors cannot be removed
"""

from __future__ import annotations

import os
import threading
import weakref
from collections.abc import Callable
from functools import cache
from typing import Any

import grpc  # type: ignore[import-untyped, unused-ignore]  # no stubs for grpcio
from opentelemetry import metrics, trace
from opentelemetry.baggage.propagation import W3CBaggagePropagator
from opentelemetry.environment_variables import OTEL_PROPAGATORS, OTEL_TRACES_EXPORTER
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.instrumentation import grpc as grpc_instrumentation
from opentelemetry.instrumentation.grpc.filters import any_of, negate, service_name
from opentelemetry.instrumentation.sqlalchemy import version as sqla_instrumentation
from opentelemetry.instrumentation.sqlalchemy.engine import EngineTracer
from opentelemetry.propagate import set_global_textmap
from opentelemetry.propagators.composite import CompositePropagator
from opentelemetry.sdk.environment_variables import (
    OTEL_EXPORTER_OTLP_ENDPOINT,
    OTEL_EXPORTER_OTLP_PROTOCOL,
    OTEL_EXPORTER_OTLP_TRACES_ENDPOINT,
    OTEL_EXPORTER_OTLP_TRACES_PROTOCOL,
    OTEL_SDK_DISABLED,
)
from opentelemetry.sdk.resources import SERVICE_NAME, OTELResourceDetector, Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider, export
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from sqlalchemy import Engine
from sqlalchemy.ext.asyncio import AsyncEngine

__all__ = [
    "add_span_processor",
    "client_interceptors",
    "configure_tracing",
    "current_span_id",
    "current_trace_id",
    "exporters_from_env",
    "instrument_engine",
    "server_interceptor",
]

_EXCLUDED_SERVICES = "OTEL_PYTHON_GRPC_EXCLUDED_SERVICES"
_SQLA_SCOPE = "opentelemetry.instrumentation.sqlalchemy"

_lock = threading.Lock()
_instrumented_engines: weakref.WeakSet[Engine] = weakref.WeakSet()


def configure_tracing(service_name: str) -> TracerProvider:
    """Install the global SDK tracer provider once and return it.

    ``OTEL_SERVICE_NAME`` and ``OTEL_RESOURCE_ATTRIBUTES`` override ``service_name``.
    With ``OTEL_SDK_DISABLED=true`` the provider hands out no-op tracers and exports
    nothing. An SDK provider installed earlier (by us or by ``opentelemetry-instrument``)
    is returned unchanged.
    """
    with _lock:
        current = trace.get_tracer_provider()
        if isinstance(current, TracerProvider):
            return current
        resource = Resource.create({SERVICE_NAME: service_name}).merge(
            OTELResourceDetector().detect()
        )
        provider = TracerProvider(resource=resource)
        if not _sdk_disabled():
            for exporter in exporters_from_env():
                provider.add_span_processor(export.BatchSpanProcessor(exporter))
        trace.set_tracer_provider(provider)
        if not os.environ.get(OTEL_PROPAGATORS):
            set_global_textmap(
                CompositePropagator([TraceContextTextMapPropagator(), W3CBaggagePropagator()])
            )
        return provider


def exporters_from_env() -> list[export.SpanExporter]:
    """The span exporters the environment asks for (what ``configure_tracing`` uses).

    ``OTEL_TRACES_EXPORTER`` is a comma list of ``otlp``, ``console`` or ``none``; when
    unset, an ``OTEL_EXPORTER_OTLP_[TRACES_]ENDPOINT`` implies ``otlp`` and otherwise
    nothing is exported. A typo raises instead of silently dropping every trace.
    """
    exporters: list[export.SpanExporter] = []
    for name in _exporter_names():
        if name == "none":
            return []
        if name == "otlp":
            _require_grpc_protocol()
            exporters.append(OTLPSpanExporter())
        elif name == "console":
            exporters.append(export.ConsoleSpanExporter())
        else:
            raise ValueError(
                f"{OTEL_TRACES_EXPORTER}: unsupported exporter {name!r} "
                "(expected otlp, console or none)"
            )
    return exporters


def add_span_processor(processor: SpanProcessor) -> None:
    """Attach ``processor`` (e.g. an in-memory exporter in tests) to the global provider."""
    provider = trace.get_tracer_provider()
    if isinstance(provider, TracerProvider):
        provider.add_span_processor(processor)
        return
    raise RuntimeError("call configure_tracing() before add_span_processor()")


def server_interceptor() -> grpc.aio.ServerInterceptor:
    """The OpenTelemetry interceptor for ``grpc.aio.server(interceptors=...)``.

    Put it first so the server span covers auth and error mapping, and so later
    interceptors log with the call's trace id.
    """
    make = grpc_instrumentation.aio_server_interceptor
    interceptor: grpc.aio.ServerInterceptor = make(filter_=_call_filter())  # type: ignore[no-untyped-call]
    return interceptor


def client_interceptors() -> list[grpc.aio.ClientInterceptor]:
    """The OpenTelemetry interceptors (one per call shape) for ``grpc.aio`` channels."""
    make = grpc_instrumentation.aio_client_interceptors
    return list(make(filter_=_call_filter()))  # type: ignore[no-untyped-call]


def instrument_engine(engine: AsyncEngine) -> None:
    """Make every SQL statement run on ``engine`` a client span; repeat calls are no-ops.

    Listens on this engine only, unlike ``SQLAlchemyInstrumentor().instrument()``, which
    patches ``create_engine`` globally and can take just one engine per process.
    """
    sync_engine = engine.sync_engine
    with _lock:
        if sync_engine in _instrumented_engines:
            return
        tracer = trace.get_tracer(_SQLA_SCOPE, sqla_instrumentation.__version__)
        EngineTracer(tracer, sync_engine, _connections_usage())  # type: ignore[no-untyped-call]
        _instrumented_engines.add(sync_engine)


def current_trace_id() -> str | None:
    """The 32-hex trace id of the current span, or None when there is no valid span."""
    context = trace.get_current_span().get_span_context()
    return trace.format_trace_id(context.trace_id) if context.is_valid else None


def current_span_id() -> str | None:
    """The 16-hex id of the current span, or None when there is no valid span."""
    context = trace.get_current_span().get_span_context()
    return trace.format_span_id(context.span_id) if context.is_valid else None


def _sdk_disabled() -> bool:
    return os.environ.get(OTEL_SDK_DISABLED, "").strip().lower() == "true"


def _exporter_names() -> list[str]:
    configured = os.environ.get(OTEL_TRACES_EXPORTER, "")
    names = [name.strip().lower() for name in configured.split(",") if name.strip()]
    if names:
        return names
    if os.environ.get(OTEL_EXPORTER_OTLP_ENDPOINT) or os.environ.get(
        OTEL_EXPORTER_OTLP_TRACES_ENDPOINT
    ):
        return ["otlp"]
    return []


def _require_grpc_protocol() -> None:
    # Only the gRPC OTLP exporter is installed; speaking gRPC to an http/protobuf
    # collector port would fail on every export, so refuse at start-up instead.
    for variable in (OTEL_EXPORTER_OTLP_TRACES_PROTOCOL, OTEL_EXPORTER_OTLP_PROTOCOL):
        protocol = os.environ.get(variable, "").strip()
        if protocol:
            if protocol != "grpc":
                raise ValueError(f"{variable}: only 'grpc' is supported, got {protocol!r}")
            return


def _call_filter() -> Callable[[Any], bool] | None:
    """Trace a call unless its service is in ``OTEL_PYTHON_GRPC_EXCLUDED_SERVICES``."""
    excluded = [s.strip() for s in os.environ.get(_EXCLUDED_SERVICES, "").split(",") if s.strip()]
    if not excluded:
        return None
    traced: Callable[[Any], bool] = negate(any_of(*(service_name(s) for s in excluded)))
    return traced


@cache
def _connections_usage() -> metrics.UpDownCounter:
    # EngineTracer reports pool usage through OTel metrics; without a global
    # MeterProvider this is a no-op instrument, which is what we want (Prometheus
    # is our metrics path).
    meter = metrics.get_meter(_SQLA_SCOPE, sqla_instrumentation.__version__)
    return meter.create_up_down_counter(
        "db.client.connections.usage",
        unit="connections",
        description="Connections in the state described by the state attribute.",
    )
