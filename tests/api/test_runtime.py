"""The shared runtime through real gRPC: health, reflection, overload, error mapping,
streaming, metrics and graceful draining — on a probe service with misbehaving handlers."""

from __future__ import annotations

import asyncio

import grpc
import pytest
from grpc import aio
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from loyalty.tiers.v1 import tiers_service_pb2 as api
from loyalty.tiers.v1 import tiers_service_pb2_grpc as grpc_api
from shared.metrics import render_metrics
from tests.support.probe import SECRET, probe_spec
from tests.support.servers import running_service
from tests.support.status import rich_error

SERVING = health_pb2.HealthCheckResponse.SERVING


@pytest.fixture
async def probe(sqlite_url, keys):
    spec, servicer = probe_spec()
    async with running_service(spec, sqlite_url, keys, max_concurrent_rpcs=2) as service:
        yield service, servicer
        servicer.release.set()


async def health_status(channel: aio.Channel, name: str = "") -> int:
    reply = await health_pb2_grpc.HealthStub(channel).Check(
        health_pb2.HealthCheckRequest(service=name), timeout=2
    )
    return reply.status


async def test_health_answers_without_a_key_for_the_server_and_each_name(probe):
    service, _ = probe
    for name in ("", "loyalty.tiers.v1.TierService", "liveness"):
        assert await health_status(service.channel, name) == SERVING


async def test_reflection_lists_the_service_without_a_key(probe):
    service, _ = probe
    stub = reflection_pb2_grpc.ServerReflectionStub(service.channel)
    request = reflection_pb2.ServerReflectionRequest(list_services="")
    replies = [reply async for reply in stub.ServerReflectionInfo(iter([request]))]
    names = {s.name for s in replies[0].list_services_response.service}
    assert {"loyalty.tiers.v1.TierService", "grpc.health.v1.Health"} <= names


async def test_calls_beyond_the_cap_are_refused_with_retry_advice_not_queued(probe):
    service, servicer = probe
    stub = grpc_api.TierServiceStub(service.channel)
    slow = [
        asyncio.ensure_future(
            stub.GetCustomerTier(api.GetCustomerTierRequest(), metadata=service.md())
        )
        for _ in range(2)
    ]
    while servicer.entered < 2:
        await asyncio.sleep(0.01)
    with pytest.raises(aio.AioRpcError) as refused:
        await stub.GetCustomerTier(api.GetCustomerTierRequest(), metadata=service.md())
    error = rich_error(refused.value)
    assert error.code == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert error.info.reason == "OVERLOADED"
    assert error.retry_delay_seconds == pytest.approx(0.5)
    # Probes still answer while saturated: a busy pod must not be restarted.
    assert await health_status(service.channel, "liveness") == SERVING
    servicer.release.set()
    assert all(isinstance(r, api.GetCustomerTierResponse) for r in await asyncio.gather(*slow))


async def test_unexpected_errors_are_internal_with_a_trace_id_and_no_detail(probe, caplog):
    service, _ = probe
    stub = grpc_api.TierServiceStub(service.channel)
    with pytest.raises(aio.AioRpcError) as failed:
        await stub.GetTierLadder(api.GetTierLadderRequest(), metadata=service.md())
    error = rich_error(failed.value)
    assert error.code == grpc.StatusCode.INTERNAL
    assert error.info.reason == "INTERNAL"
    assert SECRET not in error.message
    assert "RuntimeError" not in error.message
    assert error.info.metadata["trace_id"] in error.message
    # The detail is logged for operators.
    assert any("unhandled error" in r.getMessage() and r.exc_info for r in caplog.records)


async def test_domain_errors_carry_error_info_and_field_violations(probe):
    service, _ = probe
    stub = grpc_api.TierServiceStub(service.channel)
    with pytest.raises(aio.AioRpcError) as failed:
        await stub.AssignTier(api.AssignTierRequest(), metadata=service.md())
    error = rich_error(failed.value)
    assert error.code == grpc.StatusCode.INVALID_ARGUMENT
    assert error.info.domain == "probe.loyalty"
    assert error.violations["reason"].reason == "REQUIRED"


async def test_server_streams_deliver_items_then_the_mapped_error(probe):
    service, _ = probe
    stub = grpc_api.TierServiceStub(service.channel)
    received: list[api.WatchEventsResponse] = []

    async def consume() -> None:
        async for item in stub.WatchEvents(api.WatchEventsRequest(), metadata=service.md("reader")):
            received.append(item)

    with pytest.raises(aio.AioRpcError) as failed:
        await consume()
    assert len(received) == 3
    assert rich_error(failed.value).info.reason == "SEQUENCE_PRUNED"


async def test_streams_need_a_key_too(probe):
    service, _ = probe
    stub = grpc_api.TierServiceStub(service.channel)
    call = stub.WatchEvents(api.WatchEventsRequest())
    with pytest.raises(aio.AioRpcError) as failed:
        await call.read()
    assert failed.value.code() == grpc.StatusCode.UNAUTHENTICATED


async def test_metrics_count_calls_by_method_and_code(probe):
    service, _ = probe
    stub = grpc_api.TierServiceStub(service.channel)
    with pytest.raises(aio.AioRpcError):
        await stub.AssignTier(api.AssignTierRequest(), metadata=service.md())
    text = render_metrics().decode()
    assert (
        'loyalty_rpc_requests_total{code="INVALID_ARGUMENT",'
        'method="/loyalty.tiers.v1.TierService/AssignTier",service="probe"}'
    ) in text
    assert "loyalty_rpc_duration_seconds_bucket" in text


async def test_stop_drains_in_flight_calls_and_refuses_new_ones(sqlite_url, keys):
    spec, servicer = probe_spec()
    async with running_service(spec, sqlite_url, keys) as service:
        stub = grpc_api.TierServiceStub(service.channel)
        in_flight = asyncio.ensure_future(
            stub.GetCustomerTier(api.GetCustomerTierRequest(), metadata=service.md())
        )
        while servicer.entered < 1:
            await asyncio.sleep(0.01)
        stopping = asyncio.ensure_future(service.server.stop(grace=5.0))
        await asyncio.sleep(0.2)
        # Draining: new calls are refused (a retrying client goes to another replica)...
        with pytest.raises(aio.AioRpcError) as refused:
            await stub.GetCustomerTier(
                api.GetCustomerTierRequest(), metadata=service.md(), timeout=1
            )
        assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
        # ...and the call already running completes normally.
        servicer.release.set()
        assert isinstance(await in_flight, api.GetCustomerTierResponse)
        await stopping


async def test_rpcs_of_a_service_not_built_yet_are_unimplemented_not_faked(tmp_path, keys):
    from services.tiers.app import SPEC as TIERS

    url = f"sqlite+aiosqlite:///{tmp_path / 'tiers.db'}"
    async with running_service(TIERS, url, keys) as tiers:
        stub = grpc_api.TierServiceStub(tiers.channel)
        with pytest.raises(aio.AioRpcError) as failed:
            await stub.GetCustomerTier(api.GetCustomerTierRequest(), metadata=tiers.md("reader"))
    error = rich_error(failed.value)
    assert error.code == grpc.StatusCode.UNIMPLEMENTED
    assert error.info.reason == "NOT_IMPLEMENTED"
