"""The scenarios: what each measures and the state it needs first.

Every points scenario gets a program and customers of its own, so no scenario measures
the leftovers of another. A scenario's ``prepare`` returns the ``Workload`` the client
processes send and, where the end state can be checked, a ``verify``.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Literal

from grpc import aio

from bench.calls import ORDER_CURRENCY, Kind, Workload
from bench.report import BASELINE_ECHO, BASELINE_SQL, BASELINE_SQLALCHEMY, BalanceCheck
from loyalty.points.v1 import points_service_pb2 as api
from loyalty.points.v1 import points_service_pb2_grpc
from loyalty.points.v1 import resources_pb2 as pb
from loyalty.type.v1 import customer_pb2, money_pb2

CUSTOMERS = 1000  # "many accounts": enough that two calls rarely touch the same one
CUSTOMER_POINTS = 1_000_000  # no customer runs dry on 1-point redeems
HOT_CUSTOMER = "hot"
HOT_POINTS = 10_000_000  # over 100,000 redeems/s for a minute before it runs dry
SETUP_CONCURRENCY = 32
SETUP_TIMEOUT_SECONDS = 30.0

# Each server runs in its own process, one after the other; the first three are
# ``bench.baseline`` kinds.
ServerName = Literal["echo", "sql", "sqlalchemy", "points"]


class PointsAdmin:
    """Admin calls that set a scenario up and check its end state."""

    def __init__(self, channel: aio.Channel, admin_key: str, id_prefix: str) -> None:
        self._stub = points_service_pb2_grpc.PointsServiceStub(channel)
        self._metadata = (("authorization", f"Bearer {admin_key}"),)
        self._ids = (f"{id_prefix}-setup-{n}" for n in itertools.count())

    async def create_program(self, name: str) -> str:
        program = pb.Program(
            display_name=name,
            currency_code=ORDER_CURRENCY,
            refund_policy=pb.REFUND_POLICY_WITHIN_AVAILABLE,
            rounding_mode=pb.ROUNDING_MODE_DOWN,
            # A typical program: points expire, so redeems pick lots by expiry.
            expiry_policy=pb.ExpiryPolicy(after_days=pb.ExpiryAfterDays(days=365)),
        )
        request = api.CreateProgramRequest(request_id=next(self._ids), program=program)
        reply = await self._stub.CreateProgram(
            request, metadata=self._metadata, timeout=SETUP_TIMEOUT_SECONDS
        )
        return reply.program.program_id

    async def create_order_rule(self, program_id: str) -> None:
        """1 point per whole dollar spent."""
        rule = pb.EarningRule(
            program_id=program_id,
            display_name="1 point per $1",
            order_rule=pb.OrderRule(
                points_per_unit=1,
                spend_unit=money_pb2.Money(currency_code=ORDER_CURRENCY, amount_minor=100),
            ),
        )
        request = api.CreateEarningRuleRequest(request_id=next(self._ids), rule=rule)
        await self._stub.CreateEarningRule(
            request, metadata=self._metadata, timeout=SETUP_TIMEOUT_SECONDS
        )

    async def credit(self, program_id: str, customers: Sequence[str], points: int) -> None:
        """Give each customer ``points`` (which also creates them)."""
        slots = asyncio.Semaphore(SETUP_CONCURRENCY)

        async def adjust(customer_id: str) -> None:
            request = api.AdjustRequest(
                request_id=next(self._ids),
                customer=customer_pb2.CustomerRef(program_id=program_id, customer_id=customer_id),
                points=points,
                reason="bench opening balance",
            )
            async with slots:
                await self._stub.Adjust(
                    request, metadata=self._metadata, timeout=SETUP_TIMEOUT_SECONDS
                )

        await asyncio.gather(*(adjust(customer_id) for customer_id in customers))

    async def available(self, program_id: str, customer_id: str) -> int:
        request = api.GetBalanceRequest(
            customer=customer_pb2.CustomerRef(program_id=program_id, customer_id=customer_id)
        )
        reply = await self._stub.GetBalance(
            request, metadata=self._metadata, timeout=SETUP_TIMEOUT_SECONDS
        )
        return reply.balance.available


@dataclass(frozen=True)
class Setup:
    """What a scenario's ``prepare`` may use."""

    target: str  # host:port of the server under test
    pos_key: str  # the key the load is sent with (a till's scope)
    id_prefix: str  # unique to this scenario in this run
    points: PointsAdmin


@dataclass(frozen=True)
class Prepared:
    workload: Workload
    # Called after the load with the number of successful calls of the whole run.
    verify: Callable[[int], Awaitable[BalanceCheck]] | None = None


@dataclass(frozen=True)
class Scenario:
    name: str
    server: ServerName
    prepare: Callable[[Setup], Awaitable[Prepared]]


def _baseline(kind: Kind) -> Callable[[Setup], Awaitable[Prepared]]:
    async def prepare(setup: Setup) -> Prepared:
        return Prepared(Workload(kind, setup.target, id_prefix=setup.id_prefix))

    return prepare


def _workload(setup: Setup, kind: Kind, program_id: str, customers: Sequence[str]) -> Workload:
    return Workload(
        kind,
        setup.target,
        api_key=setup.pos_key,
        program_id=program_id,
        customers=tuple(customers),
        id_prefix=setup.id_prefix,
    )


async def _credited_customers(setup: Setup, name: str) -> tuple[str, list[str]]:
    program_id = await setup.points.create_program(name)
    customers = [f"c-{n}" for n in range(CUSTOMERS)]
    await setup.points.credit(program_id, customers, CUSTOMER_POINTS)
    return program_id, customers


async def _get_balance(setup: Setup) -> Prepared:
    program_id, customers = await _credited_customers(setup, "Bench GetBalance")
    return Prepared(_workload(setup, "get_balance", program_id, customers))


async def _redeem_many(setup: Setup) -> Prepared:
    program_id, customers = await _credited_customers(setup, "Bench Redeem many")
    return Prepared(_workload(setup, "redeem", program_id, customers))


async def _redeem_hot(setup: Setup) -> Prepared:
    program_id = await setup.points.create_program("Bench Redeem hot")
    await setup.points.credit(program_id, [HOT_CUSTOMER], HOT_POINTS)

    async def verify(redeemed: int) -> BalanceCheck:
        final = await setup.points.available(program_id, HOT_CUSTOMER)
        return BalanceCheck(initial=HOT_POINTS, redeemed=redeemed, final=final)

    return Prepared(_workload(setup, "redeem", program_id, [HOT_CUSTOMER]), verify)


async def _earn_for_order(setup: Setup) -> Prepared:
    program_id, customers = await _credited_customers(setup, "Bench EarnForOrder")
    await setup.points.create_order_rule(program_id)
    return Prepared(_workload(setup, "earn_for_order", program_id, customers))


# In the order they run. Baselines first: every ratio needs them.
SCENARIOS: tuple[Scenario, ...] = (
    Scenario(BASELINE_ECHO, "echo", _baseline("echo")),
    Scenario(BASELINE_SQL, "sql", _baseline("write")),
    Scenario(BASELINE_SQLALCHEMY, "sqlalchemy", _baseline("write")),
    Scenario("points.GetBalance", "points", _get_balance),
    Scenario("points.Redeem.hot", "points", _redeem_hot),
    Scenario("points.Redeem.many", "points", _redeem_many),
    Scenario("points.EarnForOrder", "points", _earn_for_order),
)
