"""Ledger RPCs: spend, hold, capture, release, adjust, read. Mixed into PointsServicer."""

from __future__ import annotations

import datetime as dt
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeVar

from google.protobuf.message import Message

from loyalty.points.v1 import points_service_pb2 as api
from services.points.api.ledger_mapping import (
    ENTRY_TYPES_BY_VALUE,
    balance_to_proto,
    check_order_id,
    check_points,
    check_reason,
    customer_from_proto,
    entry_to_proto,
    hold_to_proto,
)
from services.points.application import ledger
from services.points.application.programs import program_not_found
from services.points.domain.ledger import customer_not_found
from shared import pagination
from shared.auth import get_principal
from shared.errors import NotFound
from shared.proto_types import from_timestamp
from shared.validation import Violations, enum_filter

if TYPE_CHECKING:
    from services.points.storage.uow import SqlPointsUnitOfWork
    from shared.clock import Clock
    from shared.idempotency import Idempotency
    from shared.ids import IdGenerator

M = TypeVar("M", bound=Message)
Context = Any

DEFAULT_HOLD_TTL = dt.timedelta(minutes=15)
MAX_HOLD_TTL = dt.timedelta(days=7)


class LedgerRpc:
    _uow: Callable[[], SqlPointsUnitOfWork]
    _idempotency: Idempotency
    _clock: Clock
    _ids: IdGenerator

    def _customer(self, request: Any, violations: Violations) -> tuple[str, str]:
        program_id, customer_id = customer_from_proto(request.customer, violations)
        if program_id:
            get_principal().require_program(program_id)
        return program_id, customer_id

    async def _mutate(
        self,
        request: Message,
        program_id: str,
        customer_id: str,
        method: str,
        response_type: type[M],
        operation: Callable[[SqlPointsUnitOfWork, ledger.Context], Awaitable[M]],
    ) -> M:
        """Run one ledger mutation exactly once per request_id, in one transaction."""
        ctx = ledger.Context(
            program_id,
            customer_id,
            self._clock.now(),
            self._ids,
            request.request_id,  # type: ignore[attr-defined]
        )

        async def run(uow: SqlPointsUnitOfWork) -> M:
            try:
                return await operation(uow, ctx)
            except NotFound as missing:
                # An unknown customer of an unknown program is a missing program.
                if (
                    missing.reason == "CUSTOMER_NOT_FOUND"
                    and await uow.programs.get(program_id) is None
                ):
                    raise program_not_found(program_id) from None
                raise

        return await self._idempotency.run(
            self._uow(),
            scope=program_id,
            request_id=request.request_id,  # type: ignore[attr-defined]
            method=method,
            request=request,
            response_type=response_type,
            operation=run,
        )

    async def Redeem(self, request: api.RedeemRequest, context: Context) -> api.RedeemResponse:
        violations = Violations()
        program_id, customer_id = self._customer(request, violations)
        check_points(request.points, violations)
        check_reason(request.reason, violations, required=True)
        check_order_id(request.order_id, violations, required=False)
        violations.raise_if_any()

        async def redeem(uow: SqlPointsUnitOfWork, ctx: ledger.Context) -> api.RedeemResponse:
            entry, balance = await ledger.redeem(
                uow, ctx, request.points, request.reason, request.order_id
            )
            return api.RedeemResponse(
                entry=entry_to_proto(entry), balance=balance_to_proto(balance)
            )

        return await self._mutate(
            request, program_id, customer_id, "Redeem", api.RedeemResponse, redeem
        )

    async def HoldPoints(
        self, request: api.HoldPointsRequest, context: Context
    ) -> api.HoldPointsResponse:
        violations = Violations()
        program_id, customer_id = self._customer(request, violations)
        check_points(request.points, violations)
        check_reason(request.reason, violations, required=False)
        check_order_id(request.order_id, violations, required=False)
        ttl = request.ttl.ToTimedelta() if request.HasField("ttl") else DEFAULT_HOLD_TTL
        violations.check(
            dt.timedelta(0) < ttl <= MAX_HOLD_TTL,
            "ttl",
            "must be more than 0 and at most 7 days",
            "OUT_OF_RANGE",
        )
        violations.raise_if_any()

        async def hold(uow: SqlPointsUnitOfWork, ctx: ledger.Context) -> api.HoldPointsResponse:
            held, entry, balance = await ledger.hold_points(
                uow, ctx, request.points, ttl, request.reason, request.order_id
            )
            return api.HoldPointsResponse(
                hold=hold_to_proto(held),
                entry=entry_to_proto(entry),
                balance=balance_to_proto(balance),
            )

        return await self._mutate(
            request, program_id, customer_id, "HoldPoints", api.HoldPointsResponse, hold
        )

    async def CaptureHold(
        self, request: api.CaptureHoldRequest, context: Context
    ) -> api.CaptureHoldResponse:
        violations = Violations()
        program_id, customer_id = self._customer(request, violations)
        violations.require(request.hold_id, "hold_id")
        points = request.points if request.HasField("points") else None
        if points is not None:
            check_points(points, violations)
        check_order_id(request.order_id, violations, required=False)
        violations.raise_if_any()

        async def capture(uow: SqlPointsUnitOfWork, ctx: ledger.Context) -> api.CaptureHoldResponse:
            hold, entries, balance = await ledger.capture_hold(
                uow, ctx, request.hold_id, points, request.order_id
            )
            return api.CaptureHoldResponse(
                hold=hold_to_proto(hold),
                entries=[entry_to_proto(e) for e in entries],
                balance=balance_to_proto(balance),
            )

        return await self._mutate(
            request, program_id, customer_id, "CaptureHold", api.CaptureHoldResponse, capture
        )

    async def ReleaseHold(
        self, request: api.ReleaseHoldRequest, context: Context
    ) -> api.ReleaseHoldResponse:
        violations = Violations()
        program_id, customer_id = self._customer(request, violations)
        violations.require(request.hold_id, "hold_id")
        check_reason(request.reason, violations, required=False)
        violations.raise_if_any()

        async def release(uow: SqlPointsUnitOfWork, ctx: ledger.Context) -> api.ReleaseHoldResponse:
            hold, entry, balance = await ledger.release_hold(
                uow, ctx, request.hold_id, request.reason
            )
            response = api.ReleaseHoldResponse(
                hold=hold_to_proto(hold), balance=balance_to_proto(balance)
            )
            if entry is not None:
                response.entry.CopyFrom(entry_to_proto(entry))
            return response

        return await self._mutate(
            request, program_id, customer_id, "ReleaseHold", api.ReleaseHoldResponse, release
        )

    async def Adjust(self, request: api.AdjustRequest, context: Context) -> api.AdjustResponse:
        violations = Violations()
        program_id, customer_id = self._customer(request, violations)
        check_points(request.points, violations, signed=True)
        check_reason(request.reason, violations, required=True)
        violations.raise_if_any()

        async def adjust(uow: SqlPointsUnitOfWork, ctx: ledger.Context) -> api.AdjustResponse:
            program = await uow.programs.get(program_id)
            if program is None:
                raise program_not_found(program_id)
            entry, balance = await ledger.adjust(uow, ctx, program, request.points, request.reason)
            return api.AdjustResponse(
                entry=entry_to_proto(entry), balance=balance_to_proto(balance)
            )

        return await self._mutate(
            request, program_id, customer_id, "Adjust", api.AdjustResponse, adjust
        )

    async def GetBalance(
        self, request: api.GetBalanceRequest, context: Context
    ) -> api.GetBalanceResponse:
        violations = Violations()
        program_id, customer_id = self._customer(request, violations)
        violations.raise_if_any()
        async with self._uow() as uow:
            try:
                balance = await ledger.balance(uow, program_id, customer_id)
            except NotFound:
                if await uow.programs.get(program_id) is None:
                    raise program_not_found(program_id) from None
                raise
        return api.GetBalanceResponse(balance=balance_to_proto(balance))

    async def ListTransactions(
        self, request: api.ListTransactionsRequest, context: Context
    ) -> api.ListTransactionsResponse:
        violations = Violations()
        program_id, customer_id = self._customer(request, violations)
        types = enum_filter(request.types, ENTRY_TYPES_BY_VALUE, violations, "types")
        violations.raise_if_any()
        after = from_timestamp(request.created_after) if request.HasField("created_after") else None
        until = (
            from_timestamp(request.created_before) if request.HasField("created_before") else None
        )
        filters = [
            customer_id,
            sorted(t.value for t in types),
            str(after),
            str(until),
            request.order_id,
        ]
        limit = pagination.page_size(request.page_size)
        token = pagination.decode_token(request.page_token, filters)
        before_sequence = int(token.after[0]) if token else None
        async with self._uow() as uow:
            entries = await uow.entries.history(
                program_id,
                customer_id,
                before_sequence=before_sequence,
                limit=limit + 1,
                types=types,
                created_after=after,
                created_before=until,
                order_id=request.order_id,
            )
            if (
                not entries
                and before_sequence is None
                and await uow.accounts.get(program_id, customer_id) is None
            ):
                if await uow.programs.get(program_id) is None:
                    raise program_not_found(program_id)
                raise customer_not_found(program_id, customer_id)
        response = api.ListTransactionsResponse(
            entries=[entry_to_proto(e) for e in entries[:limit]]
        )
        if len(entries) > limit:
            response.next_page_token = pagination.encode_token(
                [entries[limit - 1].sequence], filters
            )
        return response
