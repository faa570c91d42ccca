"""What a client process sends: a picklable ``Workload`` and the call it turns into.

Client processes import this module and not the harness, so it stays light: grpc and
the generated stubs only.
"""

from __future__ import annotations

import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Literal

from google.protobuf.timestamp_pb2 import Timestamp
from grpc import aio

from loyalty.points.v1 import points_service_pb2 as api
from loyalty.points.v1 import points_service_pb2_grpc
from loyalty.type.v1 import customer_pb2, money_pb2

# The baseline server's methods. Requests and responses are raw bytes: no protobuf, no
# interceptor, no auth, so the baselines are the floor any handler stands on.
BASELINE_SERVICE = "bench.Baseline"
ECHO_METHOD = f"/{BASELINE_SERVICE}/Echo"
WRITE_METHOD = f"/{BASELINE_SERVICE}/Write"

# Far above any healthy latency; a call that still times out has an unknown outcome and
# shows up as DEADLINE_EXCEEDED in the errors.
CALL_TIMEOUT_SECONDS = 10.0

ORDER_CURRENCY = "USD"
ORDER_AMOUNT_MINOR = 2599  # $25.99: 25 points under a 1-point-per-dollar rule

Kind = Literal["echo", "write", "get_balance", "redeem", "earn_for_order"]

# One call; takes the request id, unique per call across the whole run.
Call = Callable[[str], Awaitable[object]]


@dataclass(frozen=True)
class Workload:
    kind: Kind
    target: str  # host:port
    api_key: str = ""
    program_id: str = ""
    customers: tuple[str, ...] = ()  # each call picks one at random
    id_prefix: str = ""  # keeps request ids unique across scenarios and client processes


def build_call(workload: Workload, channel: aio.Channel) -> Call:
    if workload.kind == "echo":
        return _raw(channel, ECHO_METHOD)
    if workload.kind == "write":
        return _raw(channel, WRITE_METHOD)
    return _points(workload, channel)


def _raw(channel: aio.Channel, method: str) -> Call:
    # No serializers: grpc passes bytes through untouched.
    send: aio.UnaryUnaryMultiCallable[bytes, bytes] = channel.unary_unary(method)

    async def call(request_id: str) -> object:
        return await send(request_id.encode(), timeout=CALL_TIMEOUT_SECONDS)

    return call


def _points(workload: Workload, channel: aio.Channel) -> Call:
    stub = points_service_pb2_grpc.PointsServiceStub(channel)
    metadata = (("authorization", f"Bearer {workload.api_key}"),)
    program_id, customers = workload.program_id, workload.customers

    def customer() -> customer_pb2.CustomerRef:
        return customer_pb2.CustomerRef(program_id=program_id, customer_id=random.choice(customers))

    async def get_balance(request_id: str) -> object:
        request = api.GetBalanceRequest(customer=customer())
        return await stub.GetBalance(request, metadata=metadata, timeout=CALL_TIMEOUT_SECONDS)

    async def redeem(request_id: str) -> object:
        request = api.RedeemRequest(
            request_id=request_id, customer=customer(), points=1, reason="bench"
        )
        return await stub.Redeem(request, metadata=metadata, timeout=CALL_TIMEOUT_SECONDS)

    async def earn_for_order(request_id: str) -> object:
        occurred_at = Timestamp()
        occurred_at.FromNanoseconds(time.time_ns())
        request = api.EarnForOrderRequest(
            request_id=request_id,
            customer=customer(),
            order_id=request_id,  # unique, so every call earns
            amount=money_pb2.Money(currency_code=ORDER_CURRENCY, amount_minor=ORDER_AMOUNT_MINOR),
            occurred_at=occurred_at,
        )
        return await stub.EarnForOrder(request, metadata=metadata, timeout=CALL_TIMEOUT_SECONDS)

    calls: dict[Kind, Call] = {
        "get_balance": get_balance,
        "redeem": redeem,
        "earn_for_order": earn_for_order,
    }
    return calls[workload.kind]
