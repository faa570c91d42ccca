"""A store's offline backlog, streamed after an outage (IngestBacklog), over real gRPC."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator, Iterable

import grpc
import pytest
from grpc import aio

from loyalty.points.v1 import points_service_pb2 as api
from loyalty.points.v1 import points_service_pb2_grpc as grpc_api
from loyalty.points.v1 import resources_pb2 as pb
from loyalty.type.v1 import cart_pb2, customer_pb2, money_pb2
from services.points.app import SPEC
from shared.db import create_engine
from shared.proto_types import to_timestamp
from tests.support.ledger_checks import assert_ledger_consistent
from tests.support.servers import running_service
from tests.support.status import rich_error

WHEN = dt.datetime.now(dt.UTC) - dt.timedelta(hours=3)  # while the till was offline


@pytest.fixture(scope="module")
async def points(pg_url, keys):
    async with running_service(SPEC, pg_url, keys) as service:
        yield service


@pytest.fixture(scope="module")
def stub(points):
    return grpc_api.PointsServiceStub(points.channel)


@pytest.fixture(scope="module")
async def program_id(stub, points) -> str:
    program = pb.Program(
        display_name="Offline",
        currency_code="EUR",
        refund_policy=pb.REFUND_POLICY_WITHIN_AVAILABLE,
        rounding_mode=pb.ROUNDING_MODE_DOWN,
    )
    created = await stub.CreateProgram(
        api.CreateProgramRequest(request_id="b-p", program=program), metadata=points.md()
    )
    program_id = created.program.program_id
    euro = money_pb2.Money(currency_code="EUR", amount_minor=100)
    rules = [
        pb.EarningRule(
            program_id=program_id,
            display_name="1 per euro",
            order_rule=pb.OrderRule(points_per_unit=1, spend_unit=euro),
        ),
        pb.EarningRule(
            program_id=program_id,
            display_name="Review",
            custom_event_rule=pb.CustomEventRule(event_type="review_submitted", points=5),
        ),
    ]
    for index, rule in enumerate(rules):
        await stub.CreateEarningRule(
            api.CreateEarningRuleRequest(request_id=f"b-r{index}", rule=rule), metadata=points.md()
        )
    return program_id


def order(program_id: str, order_id: str, amount_minor: int) -> api.EarnForOrderRequest:
    return api.EarnForOrderRequest(
        request_id=f"till-{order_id}",
        customer=customer_pb2.CustomerRef(program_id=program_id, customer_id="walk-in-7"),
        order_id=order_id,
        amount=money_pb2.Money(currency_code="EUR", amount_minor=amount_minor),
        cart=cart_pb2.Cart(currency_code="EUR"),
        occurred_at=to_timestamp(WHEN),
    )


def backlog(program_id: str, upload: str) -> list[api.IngestBacklogRequest]:
    event = api.RecordEventRequest(
        request_id="till-review-1",
        customer=customer_pb2.CustomerRef(program_id=program_id, customer_id="walk-in-7"),
        event_type="review_submitted",
        occurred_at=to_timestamp(WHEN),
    )
    bad = order(program_id, "o-bad", 500)
    bad.amount.currency_code = "USD"
    return [
        api.IngestBacklogRequest(
            request_id=upload, item_id="1", order=order(program_id, "o-1", 1_000)
        ),
        api.IngestBacklogRequest(
            request_id=upload, item_id="2", order=order(program_id, "o-2", 2_550)
        ),
        api.IngestBacklogRequest(request_id=upload, item_id="3", event=event),
        api.IngestBacklogRequest(request_id=upload, item_id="4", order=bad),
    ]


async def stream(
    items: Iterable[api.IngestBacklogRequest],
) -> AsyncIterator[api.IngestBacklogRequest]:
    for item in items:
        yield item


async def test_a_backlog_is_applied_item_by_item_and_bad_items_are_reported(
    stub, points, program_id, pg_url
):
    summary = await stub.IngestBacklog(
        stream(backlog(program_id, "upload-1")), metadata=points.md("pos")
    )
    assert (summary.accepted_count, summary.duplicate_count, summary.rejected_count) == (3, 0, 1)
    assert summary.points_earned == 10 + 25 + 5
    [rejection] = summary.rejections
    assert (rejection.index, rejection.item_id, rejection.key) == (3, "4", "o-bad")
    assert rejection.reason == "CURRENCY_MISMATCH"
    assert not rejection.retryable
    customer = customer_pb2.CustomerRef(program_id=program_id, customer_id="walk-in-7")
    balance = await stub.GetBalance(api.GetBalanceRequest(customer=customer), metadata=points.md())
    assert balance.balance.total == 40
    engine = create_engine(pg_url)
    try:
        await assert_ledger_consistent(engine)
    finally:
        await engine.dispose()


async def test_a_resent_upload_returns_its_summary_and_resent_items_are_duplicates(
    stub, points, program_id
):
    first = await stub.IngestBacklog(
        stream(backlog(program_id, "upload-2")), metadata=points.md("pos")
    )
    again = await stub.IngestBacklog(
        stream(backlog(program_id, "upload-2")), metadata=points.md("pos")
    )
    assert again == first
    # The same items under a new upload id: nothing applied twice.
    other = await stub.IngestBacklog(
        stream(backlog(program_id, "upload-3")), metadata=points.md("pos")
    )
    assert (other.accepted_count, other.duplicate_count, other.points_earned) == (0, 3, 0)


async def test_an_upload_id_cannot_change_mid_stream_or_be_reused(stub, points, program_id):
    items = backlog(program_id, "upload-4")
    items[1].request_id = "someone-else"
    with pytest.raises(aio.AioRpcError) as changed:
        await stub.IngestBacklog(stream(items), metadata=points.md("pos"))
    assert rich_error(changed.value).info.reason == "REQUEST_ID_CHANGED"
    await stub.IngestBacklog(stream(backlog(program_id, "upload-5")[:1]), metadata=points.md("pos"))
    with pytest.raises(aio.AioRpcError) as reused:
        await stub.IngestBacklog(
            stream(backlog(program_id, "upload-5")[:2]), metadata=points.md("pos")
        )
    assert rich_error(reused.value).info.reason == "REQUEST_ID_REUSED"


async def test_an_empty_upload_is_invalid_and_the_scope_is_pos(stub, points, program_id):
    with pytest.raises(aio.AioRpcError) as empty:
        await stub.IngestBacklog(stream([]), metadata=points.md("pos"))
    assert rich_error(empty.value).info.reason == "EMPTY_BACKLOG"
    with pytest.raises(aio.AioRpcError) as denied:
        await stub.IngestBacklog(stream(backlog(program_id, "u-6")), metadata=points.md("reader"))
    assert denied.value.code() == grpc.StatusCode.PERMISSION_DENIED
