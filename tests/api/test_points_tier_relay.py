"""Qualifying activity reaches the tiers service through the outbox relay, exactly as
written and despite failures. The tiers service is not built yet, so a minimal stand-in
implements RecordActivity per its contract and records what it receives."""

from __future__ import annotations

import asyncio
import datetime as dt
from typing import Any

import grpc
import pytest

from loyalty.points.v1 import points_service_pb2 as api
from loyalty.points.v1 import points_service_pb2_grpc as grpc_api
from loyalty.points.v1 import resources_pb2 as pb
from loyalty.tiers.v1 import tiers_service_pb2 as tiers_api
from loyalty.tiers.v1 import tiers_service_pb2_grpc as tiers_grpc
from loyalty.type.v1 import cart_pb2, customer_pb2, money_pb2
from services.points.app import SPEC
from services.tiers.app import SCOPES as TIER_SCOPES
from services.tiers.app import SPEC as TIERS_SPEC
from shared.proto_types import to_timestamp
from shared.service import Mounted, Runtime, ServiceSpec
from tests.support.servers import running_service


class RecordingTiers(tiers_grpc.TierServiceServicer):
    def __init__(self) -> None:
        self.failures_left = 0
        self.received: dict[str, tiers_api.RecordActivityRequest] = {}  # by source_id
        self.calls = 0

    async def RecordActivity(self, request: Any, context: Any) -> tiers_api.RecordActivityResponse:
        self.calls += 1
        if self.failures_left:
            self.failures_left -= 1
            await context.abort(grpc.StatusCode.UNAVAILABLE, "restarting")
        self.received.setdefault(request.source_id, request)  # idempotent by source_id
        return tiers_api.RecordActivityResponse()


@pytest.fixture(scope="module")
async def tiers(tmp_path_factory, keys):
    servicer = RecordingTiers()  # type: ignore[abstract]  # other RPCs: UNIMPLEMENTED

    async def mount(runtime: Runtime) -> Mounted:
        return Mounted(servicer, tiers_grpc.add_TierServiceServicer_to_server, TIER_SCOPES)

    spec = ServiceSpec(
        "tiers",
        TIERS_SPEC.full_name,
        TIERS_SPEC.settings_cls,
        TIERS_SPEC.metadata,
        TIERS_SPEC.migrations_dir,
        mount,
    )
    url = f"sqlite+aiosqlite:///{tmp_path_factory.mktemp('tiers') / 't.db'}"
    async with running_service(spec, url, keys) as service:
        yield service, servicer


@pytest.fixture(scope="module")
async def points(pg_url, keys, tiers):
    service, _ = tiers
    async with running_service(
        SPEC, pg_url, keys, tiers_target=f"127.0.0.1:{service.port}"
    ) as running:
        yield running


async def setup_program(stub, points) -> str:
    program = pb.Program(
        display_name="Relay",
        currency_code="EUR",
        refund_policy=pb.REFUND_POLICY_WITHIN_AVAILABLE,
        rounding_mode=pb.ROUNDING_MODE_DOWN,
    )
    created = await stub.CreateProgram(
        api.CreateProgramRequest(request_id="relay-p", program=program), metadata=points.md()
    )
    program_id = created.program.program_id
    rule = pb.EarningRule(
        program_id=program_id,
        display_name="1 per euro",
        order_rule=pb.OrderRule(
            points_per_unit=1, spend_unit=money_pb2.Money(currency_code="EUR", amount_minor=100)
        ),
    )
    await stub.CreateEarningRule(
        api.CreateEarningRuleRequest(request_id="relay-r", rule=rule), metadata=points.md()
    )
    return program_id


async def until(condition, within: float = 15.0) -> None:
    deadline = asyncio.get_running_loop().time() + within
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "not delivered in time"
        await asyncio.sleep(0.1)


async def test_orders_and_refunds_reach_tiers_once_even_through_failures(points, tiers):
    _, recorder = tiers
    recorder.failures_left = 3  # tiers is restarting: the relay must retry, not skip
    stub = grpc_api.PointsServiceStub(points.channel)
    program_id = await setup_program(stub, points)
    customer = customer_pb2.CustomerRef(program_id=program_id, customer_id="ann")
    occurred = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=1)
    earn = api.EarnForOrderRequest(
        request_id="relay-e",
        customer=customer,
        order_id="o-1",
        amount=money_pb2.Money(currency_code="EUR", amount_minor=12_000),
        cart=cart_pb2.Cart(currency_code="EUR"),
        occurred_at=to_timestamp(occurred),
    )
    await stub.EarnForOrder(earn, metadata=points.md("pos"))
    await stub.EarnForOrder(earn, metadata=points.md("pos"))  # a retry adds nothing
    refund = api.ReverseOrderRequest(
        request_id="relay-f",
        customer=customer,
        order_id="o-1",
        refund_id="rf-1",
        amount=money_pb2.Money(currency_code="EUR", amount_minor=3_000),
        reason="returned",
    )
    await stub.ReverseOrder(refund, metadata=points.md("pos"))

    await until(lambda: len(recorder.received) == 2)
    order = recorder.received["order:o-1"]
    assert (order.points, order.spend.amount_minor, order.spend.currency_code) == (
        120,
        12_000,
        "EUR",
    )
    assert order.customer.customer_id == "ann"
    assert order.request_id.startswith(
        "evt_"
    )  # the outbox event id: redelivery is the same request
    [refunded] = [r for source, r in recorder.received.items() if source.startswith("refund:")]
    assert (refunded.points, refunded.spend.amount_minor) == (-30, -3_000)
    assert recorder.calls >= 2 + 3  # the failed attempts were retried
