"""The rewards catalog over real gRPC on PostgreSQL: creating, listing, redeeming, and the
races a busy catalog sees (the last units of stock, one customer's limit)."""

from __future__ import annotations

import asyncio
import itertools
from collections import Counter

import grpc
import pytest
from grpc import aio

import services.promotions.app
from loyalty.points.v1 import points_service_pb2 as api
from loyalty.points.v1 import points_service_pb2_grpc as grpc_api
from loyalty.points.v1 import resources_pb2 as pb
from loyalty.type.v1 import customer_pb2, money_pb2
from services.points.app import SPEC
from shared.db import create_engine
from tests.support.ledger_checks import assert_ledger_consistent
from tests.support.servers import running_service
from tests.support.status import rich_error

_ids = itertools.count()
_customers = itertools.count()


def rid(prefix: str = "r") -> str:
    return f"{prefix}-{next(_ids)}"


@pytest.fixture(scope="module")
async def promotions(tmp_path_factory, keys):
    """The real promotions service, which answers UNIMPLEMENTED until it is built."""
    database = tmp_path_factory.mktemp("promotions") / "promotions.db"
    async with running_service(
        services.promotions.app.SPEC, f"sqlite+aiosqlite:///{database}", keys
    ) as service:
        yield service


@pytest.fixture(scope="module")
async def points(pg_url, keys, promotions):
    async with running_service(
        SPEC,
        pg_url,
        keys,
        db_pool_size=20,
        max_concurrent_rpcs=512,
        promotions_target=f"127.0.0.1:{promotions.port}",
    ) as service:
        yield service


@pytest.fixture(scope="module")
def stub(points):
    return grpc_api.PointsServiceStub(points.channel)


@pytest.fixture(scope="module")
async def engine(pg_url):
    engine = create_engine(pg_url)
    yield engine
    await engine.dispose()


async def new_program(stub, points, currency: str = "EUR") -> str:
    program = pb.Program(
        display_name="Bean Club",
        currency_code=currency,
        refund_policy=pb.REFUND_POLICY_WITHIN_AVAILABLE,
        rounding_mode=pb.ROUNDING_MODE_DOWN,
    )
    reply = await stub.CreateProgram(
        api.CreateProgramRequest(request_id=rid(), program=program), metadata=points.md()
    )
    return reply.program.program_id


@pytest.fixture(scope="module")
async def program_id(stub, points) -> str:
    return await new_program(stub, points)


def a_customer(program_id: str) -> customer_pb2.CustomerRef:
    return customer_pb2.CustomerRef(program_id=program_id, customer_id=f"c-{next(_customers)}")


@pytest.fixture
def customer(program_id) -> customer_pb2.CustomerRef:
    return a_customer(program_id)


async def give(stub, points, customer, amount: int) -> None:
    request = api.AdjustRequest(
        request_id=rid(), customer=customer, points=amount, reason="welcome gift"
    )
    await stub.Adjust(request, metadata=points.md())


async def failure(call) -> aio.AioRpcError:
    with pytest.raises(aio.AioRpcError) as raised:
        await call
    return raised.value


def eur(minor: int) -> money_pb2.Money:
    return money_pb2.Money(currency_code="EUR", amount_minor=minor)


def mug(program_id: str, stock: int = 10, **fields) -> pb.Reward:
    return pb.Reward(
        program_id=program_id,
        display_name="Logo mug",
        points_cost=1_000,
        physical_item=pb.PhysicalItemReward(sku="MUG-LOGO-350", stock=stock),
        **fields,
    )


def voucher(program_id: str, **fields) -> pb.Reward:
    return pb.Reward(
        program_id=program_id,
        display_name="€5 off your next order",
        points_cost=500,
        voucher=pb.VoucherReward(campaign_id="cmp_5off"),
        **fields,
    )


def donation(program_id: str, **fields) -> pb.Reward:
    return pb.Reward(
        program_id=program_id,
        display_name="Give €5 to the Red Cross",
        points_cost=400,
        charity_donation=pb.CharityDonationReward(
            charity_id="red-cross-de", charity_name="German Red Cross", donation=eur(500)
        ),
        **fields,
    )


async def create(stub, points, reward: pb.Reward) -> pb.Reward:
    request = api.CreateRewardRequest(request_id=rid(), reward=reward)
    return (await stub.CreateReward(request, metadata=points.md())).reward


def redeem_request(customer, reward_id: str, **fields) -> api.RedeemRewardRequest:
    return api.RedeemRewardRequest(
        request_id=rid("rr"), customer=customer, reward_id=reward_id, **fields
    )


async def available(stub, points, customer) -> int:
    reply = await stub.GetBalance(api.GetBalanceRequest(customer=customer), metadata=points.md())
    return int(reply.balance.available)


async def stock_of(stub, points, program_id: str, reward_id: str) -> int:
    token = ""
    while True:
        page = await stub.ListRewards(
            api.ListRewardsRequest(program_id=program_id, page_token=token, page_size=500),
            metadata=points.md("reader"),
        )
        for reward in page.rewards:
            if reward.reward_id == reward_id:
                return int(reward.physical_item.stock)
        token = page.next_page_token
        assert token, f"{reward_id} is not in the catalog"


# ------------------------------------------------------------------------------ creating


async def test_a_created_reward_has_an_id_and_a_retry_replays_it(stub, points, program_id):
    request = api.CreateRewardRequest(
        request_id=rid(),
        reward=mug(
            program_id,
            points_plus_cash=pb.PointsPlusCash(points=400, cash=eur(299)),
            per_customer_limit=pb.Limit(max_count=2, period=pb.LIMIT_PERIOD_MONTH),
        ),
    )
    first = await stub.CreateReward(request, metadata=points.md())
    again = await stub.CreateReward(request, metadata=points.md())
    assert first == again
    assert first.reward.reward_id.startswith("rwd_")
    assert first.reward.HasField("created_at")
    assert first.reward.physical_item.stock == 10
    assert first.reward.per_customer_limit.period == pb.LIMIT_PERIOD_MONTH
    request.reward.display_name = "Another mug"
    error = rich_error(await failure(stub.CreateReward(request, metadata=points.md())))
    assert error.info.reason == "REQUEST_ID_REUSED"


async def test_bad_rewards_are_invalid_with_every_field_named(stub, points, program_id):
    reward = pb.Reward(
        program_id=program_id,
        points_cost=0,
        per_customer_limit=pb.Limit(max_count=1),
        points_plus_cash=pb.PointsPlusCash(points=5),
    )
    request = api.CreateRewardRequest(request_id=rid(), reward=reward)
    error = rich_error(await failure(stub.CreateReward(request, metadata=points.md())))
    assert error.code == grpc.StatusCode.INVALID_ARGUMENT
    assert {field: v.reason for field, v in error.violations.items()} == {
        "reward.kind": "REQUIRED",
        "reward.per_customer_limit.period": "REQUIRED",
    }
    reward.voucher.campaign_id = "cmp_1"
    request = api.CreateRewardRequest(request_id=rid(), reward=reward)
    error = rich_error(await failure(stub.CreateReward(request, metadata=points.md())))
    assert {field: v.reason for field, v in error.violations.items()} == {
        "reward.display_name": "REQUIRED",
        "reward.points_cost": "OUT_OF_RANGE",
        "reward.per_customer_limit.period": "REQUIRED",
        "reward.points_plus_cash.points": "OUT_OF_RANGE",
        "reward.points_plus_cash.cash": "REQUIRED",
    }


async def test_the_cash_price_must_be_in_the_programs_currency(stub, points, program_id):
    usd = money_pb2.Money(currency_code="USD", amount_minor=299)
    reward = mug(program_id, points_plus_cash=pb.PointsPlusCash(points=400, cash=usd))
    request = api.CreateRewardRequest(request_id=rid(), reward=reward)
    error = rich_error(await failure(stub.CreateReward(request, metadata=points.md())))
    assert error.code == grpc.StatusCode.INVALID_ARGUMENT
    assert error.info.reason == "CURRENCY_MISMATCH"
    assert error.info.metadata["program_currency"] == "EUR"
    assert "reward.points_plus_cash.cash.currency_code" in error.violations


async def test_creating_needs_an_admin_of_an_existing_program(stub, points, program_id):
    request = api.CreateRewardRequest(request_id=rid(), reward=mug(program_id))
    error = rich_error(await failure(stub.CreateReward(request, metadata=points.md("pos"))))
    assert error.code == grpc.StatusCode.PERMISSION_DENIED
    error = rich_error(await failure(stub.CreateReward(request, metadata=points.md("limited"))))
    assert error.info.reason == "PROGRAM_NOT_ALLOWED"
    request = api.CreateRewardRequest(request_id=rid(), reward=mug("prg_nope"))
    error = rich_error(await failure(stub.CreateReward(request, metadata=points.md())))
    assert (error.code, error.info.reason) == (grpc.StatusCode.NOT_FOUND, "PROGRAM_NOT_FOUND")


# ------------------------------------------------------------------------------- listing


async def test_the_catalog_pages_oldest_first_with_kind_and_stock_filters(stub, points):
    program_id = await new_program(stub, points)
    created = [
        await create(stub, points, mug(program_id, stock=0)),
        await create(stub, points, voucher(program_id)),
        await create(stub, points, mug(program_id, stock=3)),
        await create(stub, points, donation(program_id)),
    ]
    ids = [r.reward_id for r in created]

    async def listed(**filters) -> list[str]:
        seen: list[str] = []
        token = ""
        while True:
            request = api.ListRewardsRequest(
                program_id=program_id, page_size=1, page_token=token, **filters
            )
            page = await stub.ListRewards(request, metadata=points.md("reader"))
            seen.extend(r.reward_id for r in page.rewards)
            token = page.next_page_token
            if not token:
                return seen

    assert await listed() == ids
    assert await listed(kinds=[pb.REWARD_KIND_PHYSICAL_ITEM]) == [ids[0], ids[2]]
    assert await listed(in_stock_only=True) == ids[1:]
    assert await listed(
        kinds=[pb.REWARD_KIND_VOUCHER, pb.REWARD_KIND_CHARITY_DONATION], in_stock_only=True
    ) == [ids[1], ids[3]]
    first = await stub.ListRewards(
        api.ListRewardsRequest(program_id=program_id, page_size=2), metadata=points.md()
    )
    assert list(first.rewards) == created[:2]
    other_filters = api.ListRewardsRequest(
        program_id=program_id, page_token=first.next_page_token, in_stock_only=True
    )
    error = rich_error(await failure(stub.ListRewards(other_filters, metadata=points.md())))
    assert error.info.reason == "INVALID_PAGE_TOKEN"


async def test_listing_refuses_bad_filters_and_unknown_programs(stub, points, program_id):
    request = api.ListRewardsRequest(program_id=program_id, kinds=[99])  # type: ignore[list-item]
    error = rich_error(await failure(stub.ListRewards(request, metadata=points.md())))
    assert error.violations["kinds[0]"].reason == "INVALID_ENUM"
    request = api.ListRewardsRequest(program_id=program_id, page_size=-1)
    error = rich_error(await failure(stub.ListRewards(request, metadata=points.md())))
    assert error.violations["page_size"].reason == "OUT_OF_RANGE"
    request = api.ListRewardsRequest(program_id="prg_nope")
    error = rich_error(await failure(stub.ListRewards(request, metadata=points.md())))
    assert error.info.reason == "PROGRAM_NOT_FOUND"


# ----------------------------------------------------------------------------- redeeming


async def test_redeeming_an_item_spends_points_and_takes_one_unit(
    stub, points, program_id, customer, engine
):
    reward = await create(stub, points, mug(program_id, stock=4))
    await give(stub, points, customer, 1_500)
    request = redeem_request(customer, reward.reward_id, order_id="order-42")
    first = await stub.RedeemReward(request, metadata=points.md("pos"))
    again = await stub.RedeemReward(request, metadata=points.md("pos"))
    assert first == again
    assert first.entry.type == pb.LEDGER_ENTRY_TYPE_REDEEM
    assert (first.entry.points, first.entry.reward_id, first.entry.order_id) == (
        -1_000,
        reward.reward_id,
        "order-42",
    )
    redemption = first.redemption
    assert redemption.redemption_id.startswith("rdm_")
    assert (redemption.kind, redemption.payment_option) == (
        pb.REWARD_KIND_PHYSICAL_ITEM,
        pb.REWARD_PAYMENT_OPTION_POINTS_ONLY,
    )
    assert (redemption.points_spent, redemption.entry_id) == (1_000, first.entry.entry_id)
    assert first.cash_due == eur(0) == redemption.cash_due
    assert first.balance.available == 500
    assert await stock_of(stub, points, program_id, reward.reward_id) == 3
    await assert_ledger_consistent(engine)


async def test_points_plus_cash_tells_the_till_what_to_collect(stub, points, program_id, customer):
    offer = pb.PointsPlusCash(points=150, cash=eur(250))
    reward = await create(stub, points, donation(program_id, points_plus_cash=offer))
    await give(stub, points, customer, 200)
    request = redeem_request(
        customer, reward.reward_id, payment_option=pb.REWARD_PAYMENT_OPTION_POINTS_PLUS_CASH
    )
    reply = await stub.RedeemReward(request, metadata=points.md("pos"))
    assert (reply.redemption.points_spent, reply.cash_due) == (150, eur(250))
    assert reply.balance.available == 50


async def test_refusals_carry_the_contracts_reasons(stub, points, program_id, customer):
    item = await create(stub, points, mug(program_id, stock=0))
    charity = await create(stub, points, donation(program_id))
    await give(stub, points, customer, 300)

    async def reason(request, key: str = "pos") -> tuple[grpc.StatusCode, str, dict[str, str]]:
        error = rich_error(await failure(stub.RedeemReward(request, metadata=points.md(key))))
        return error.code, error.info.reason, dict(error.info.metadata)

    code, why, details = await reason(redeem_request(customer, "rwd_nope"))
    assert (code, why, details) == (
        grpc.StatusCode.NOT_FOUND,
        "REWARD_NOT_FOUND",
        {"reward_id": "rwd_nope"},
    )
    elsewhere = a_customer(await new_program(stub, points))
    assert (await reason(redeem_request(elsewhere, charity.reward_id)))[1] == "REWARD_NOT_FOUND"
    nowhere = customer_pb2.CustomerRef(program_id="prg_nope", customer_id="c")
    assert (await reason(redeem_request(nowhere, charity.reward_id)))[1] == "PROGRAM_NOT_FOUND"
    stranger = a_customer(program_id)
    assert (await reason(redeem_request(stranger, charity.reward_id)))[1] == "CUSTOMER_NOT_FOUND"
    code, why, details = await reason(redeem_request(customer, charity.reward_id))
    assert (code, why) == (grpc.StatusCode.FAILED_PRECONDITION, "INSUFFICIENT_POINTS")
    assert (details["available"], details["requested"]) == ("300", "400")
    assert (await reason(redeem_request(customer, item.reward_id)))[1] == "OUT_OF_STOCK"
    cash = redeem_request(
        customer, charity.reward_id, payment_option=pb.REWARD_PAYMENT_OPTION_POINTS_PLUS_CASH
    )
    assert (await reason(cash))[1] == "POINTS_PLUS_CASH_NOT_OFFERED"
    assert (await reason(redeem_request(customer, charity.reward_id), "reader"))[1] == (
        "MISSING_SCOPE"
    )
    assert await available(stub, points, customer) == 300


async def test_bad_redemptions_are_invalid_with_field_violations(stub, points, program_id):
    request = api.RedeemRewardRequest(
        request_id=rid(),
        customer=customer_pb2.CustomerRef(program_id=program_id),
        payment_option=7,  # type: ignore[arg-type]
        order_id="o" * 129,
    )
    error = rich_error(await failure(stub.RedeemReward(request, metadata=points.md())))
    assert error.code == grpc.StatusCode.INVALID_ARGUMENT
    assert {field: v.reason for field, v in error.violations.items()} == {
        "customer.customer_id": "REQUIRED",
        "reward_id": "REQUIRED",
        "payment_option": "INVALID_ENUM",
        "order_id": "INVALID_FORMAT",
    }
    request = api.RedeemRewardRequest(customer=a_customer(program_id), reward_id="rwd_1")
    error = rich_error(await failure(stub.RedeemReward(request, metadata=points.md())))
    assert error.violations["request_id"].reason == "REQUIRED"


async def test_a_voucher_the_promotions_service_cannot_issue_spends_nothing(
    stub, points, program_id, customer, engine
):
    reward = await create(
        stub,
        points,
        voucher(program_id, per_customer_limit=pb.Limit(max_count=1, period=pb.LIMIT_PERIOD_DAY)),
    )
    await give(stub, points, customer, 800)
    request = redeem_request(customer, reward.reward_id)
    for _ in range(2):  # a retry with the same request_id fails the same way
        error = rich_error(await failure(stub.RedeemReward(request, metadata=points.md("pos"))))
        assert (error.code, error.info.reason) == (
            grpc.StatusCode.UNAVAILABLE,
            "PROMOTIONS_UNAVAILABLE",
        )
        assert error.info.metadata["promotions_status"] == "UNIMPLEMENTED"
        assert "no points were spent" in error.message
    history = await stub.ListTransactions(
        api.ListTransactionsRequest(customer=customer), metadata=points.md()
    )
    assert [e.type for e in history.entries] == [pb.LEDGER_ENTRY_TYPE_ADJUST]
    assert history.entries[0].balance_after == 800
    assert await available(stub, points, customer) == 800
    await assert_ledger_consistent(engine)


# ---------------------------------------------------------------------------- concurrency


async def test_the_last_units_go_to_exactly_as_many_customers_as_there_are(
    stub, points, program_id, engine
):
    reward = await create(stub, points, mug(program_id, stock=5))
    customers = [a_customer(program_id) for _ in range(30)]
    for customer in customers:
        await give(stub, points, customer, 1_000)

    async def redeem(customer) -> str:
        request = redeem_request(customer, reward.reward_id)
        try:
            await stub.RedeemReward(request, metadata=points.md("pos"))
        except aio.AioRpcError as error:
            return rich_error(error).info.reason
        return "REDEEMED"

    outcomes = await asyncio.gather(*(redeem(c) for c in customers))
    assert Counter(outcomes) == {"REDEEMED": 5, "OUT_OF_STOCK": 25}
    assert await stock_of(stub, points, program_id, reward.reward_id) == 0
    balances = [await available(stub, points, c) for c in customers]
    assert sorted(balances) == [0] * 5 + [1_000] * 25
    await assert_ledger_consistent(engine)


async def test_one_customer_racing_never_exceeds_the_limit(
    stub, points, program_id, customer, engine
):
    limit = pb.Limit(max_count=3, period=pb.LIMIT_PERIOD_LIFETIME)
    reward = await create(stub, points, donation(program_id, per_customer_limit=limit))
    await give(stub, points, customer, 10_000)

    async def redeem() -> str:
        request = redeem_request(customer, reward.reward_id)
        try:
            await stub.RedeemReward(request, metadata=points.md("pos"))
        except aio.AioRpcError as error:
            info = rich_error(error).info
            return f"{info.reason} {info.metadata['max_count']} {info.metadata['period']}"
        return "REDEEMED"

    outcomes = await asyncio.gather(*(redeem() for _ in range(20)))
    assert Counter(outcomes) == {"REDEEMED": 3, "REDEMPTION_LIMIT_REACHED 3 LIFETIME": 17}
    assert await available(stub, points, customer) == 10_000 - 3 * 400
    await assert_ledger_consistent(engine)


async def test_concurrent_retries_of_one_redemption_redeem_once(
    stub, points, program_id, customer, engine
):
    reward = await create(stub, points, mug(program_id, stock=10))
    await give(stub, points, customer, 5_000)
    request = redeem_request(customer, reward.reward_id)
    replies = await asyncio.gather(
        *(stub.RedeemReward(request, metadata=points.md("pos")) for _ in range(10))
    )
    assert len({r.redemption.redemption_id for r in replies}) == 1
    assert await available(stub, points, customer) == 4_000
    assert await stock_of(stub, points, program_id, reward.reward_id) == 9
    await assert_ledger_consistent(engine)
