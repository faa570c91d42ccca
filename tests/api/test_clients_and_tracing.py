"""The service-to-service client and tracing, against a real points service."""

from __future__ import annotations

import asyncio

import grpc
import pytest
from grpc import aio
from opentelemetry.trace import SpanKind

from loyalty.points.v1 import points_service_pb2 as api
from loyalty.points.v1 import points_service_pb2_grpc as grpc_api
from loyalty.tiers.v1 import tiers_service_pb2 as tiers_api
from loyalty.tiers.v1 import tiers_service_pb2_grpc as tiers_grpc
from services.points.app import SPEC
from shared.grpc.clients import create_channel, service_config
from tests.support.probe import probe_spec
from tests.support.servers import running_service


@pytest.fixture(scope="module")
async def points(sqlite_url, keys):
    async with running_service(SPEC, sqlite_url, keys) as service:
        yield service


async def test_the_client_sends_its_own_key(points, keys):
    channel = create_channel(f"dns:///127.0.0.1:{points.port}", api_key=keys.by_name["reader"])
    try:
        reply = await grpc_api.PointsServiceStub(channel).ListPrograms(api.ListProgramsRequest())
        assert reply.next_page_token == ""
    finally:
        await channel.close()


async def test_the_client_applies_a_default_deadline(tmp_path, keys):
    spec, servicer = probe_spec()
    async with running_service(spec, f"sqlite+aiosqlite:///{tmp_path / 'p.db'}", keys) as probe:
        channel = create_channel(
            f"127.0.0.1:{probe.port}", api_key=keys.by_name["admin"], timeout_seconds=0.3
        )
        try:
            started = asyncio.get_running_loop().time()
            with pytest.raises(aio.AioRpcError) as failed:
                await tiers_grpc.TierServiceStub(channel).GetCustomerTier(
                    tiers_api.GetCustomerTierRequest()
                )
            assert failed.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
            assert asyncio.get_running_loop().time() - started < 2
        finally:
            servicer.release.set()
            await channel.close()


def test_the_service_config_retries_only_unavailable_and_balances_round_robin():
    import json

    config = json.loads(service_config(2.5))
    assert config["loadBalancingConfig"] == [{"round_robin": {}}]
    policy = config["methodConfig"][0]
    assert policy["timeout"] == "2.500s"
    assert policy["retryPolicy"]["retryableStatusCodes"] == ["UNAVAILABLE"]


async def test_one_trace_spans_client_server_and_sql(points, keys, spans):
    channel = create_channel(f"127.0.0.1:{points.port}", api_key=keys.by_name["reader"])
    try:
        with pytest.raises(aio.AioRpcError):
            await grpc_api.PointsServiceStub(channel).GetProgram(
                api.GetProgramRequest(program_id="prg_unknown")
            )
    finally:
        await channel.close()
    # The server ends its span just after sending the status: wait for it to arrive.
    for _ in range(100):
        finished = spans.get_finished_spans()
        kinds = {s.kind for s in finished if "GetProgram" in s.name}
        if {SpanKind.CLIENT, SpanKind.SERVER} <= kinds:
            break
        await asyncio.sleep(0.02)
    client = next(s for s in finished if s.kind == SpanKind.CLIENT and "GetProgram" in s.name)
    server = next(s for s in finished if s.kind == SpanKind.SERVER and "GetProgram" in s.name)
    trace_id = client.context.trace_id
    assert server.context.trace_id == trace_id
    assert server.parent is not None
    assert server.parent.span_id == client.context.span_id
    sql = [
        s for s in finished if s.context.trace_id == trace_id and s.attributes.get("db.statement")
    ]
    assert sql, "the SELECT ran inside the call's trace"
    assert any("programs" in str(s.attributes["db.statement"]) for s in sql)
