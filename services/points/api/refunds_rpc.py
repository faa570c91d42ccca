"""ReverseOrder. Mixed into PointsServicer, which sets the attributes.

Idempotent twice over, with the shared mechanism both times: by ``request_id`` (scope:
the program) and by refund (scope ``<program_id>/refunds``). A refund's key is the
SHA-256 of its order id and refund id: each may be 128 characters, more than one key
holds, and the digest keeps the pair apart from any other pair (both are printable, so
the NUL between them cannot occur inside either).
"""

from __future__ import annotations

import hashlib

from loyalty.points.v1 import points_service_pb2 as api
from services.points.api.ledger_mapping import balance_to_proto, entry_to_proto
from services.points.api.ledger_rpc import Context, LedgerRpc
from services.points.application import ledger, refunds
from services.points.domain.refunds import (
    AmountRefund,
    FullRefund,
    LineRefund,
    LinesRefund,
    RefundScope,
)
from services.points.domain.rules import MAX_AMOUNT_MINOR, Money
from services.points.storage.uow import SqlPointsUnitOfWork
from shared.idempotency import NaturalKey
from shared.validation import Violations

MAX_ID_LENGTH = 128
MAX_REFUND_REASON_LENGTH = 200


def refund_key(order_id: str, refund_id: str) -> str:
    return hashlib.sha256(f"{order_id}\0{refund_id}".encode()).hexdigest()


class RefundsRpc(LedgerRpc):
    async def ReverseOrder(
        self, request: api.ReverseOrderRequest, context: Context
    ) -> api.ReverseOrderResponse:
        violations = Violations()
        program_id, customer_id = self._customer(request, violations)
        _check_id(request.order_id, "order_id", violations)
        _check_id(request.refund_id, "refund_id", violations)
        scope = _scope_from_proto(request, violations)
        violations.check(
            len(request.reason) <= MAX_REFUND_REASON_LENGTH,
            "reason",
            f"must be at most {MAX_REFUND_REASON_LENGTH} characters",
            "TOO_LONG",
        )
        violations.raise_if_any()
        assert scope is not None, "a missing scope is a violation"
        refund = refunds.Refund(request.order_id, request.refund_id, scope, request.reason)
        ctx = ledger.Context(
            program_id, customer_id, self._clock.now(), self._ids, request.request_id
        )

        async def reverse(uow: SqlPointsUnitOfWork) -> api.ReverseOrderResponse:
            done = await refunds.reverse_order(uow, ctx, refund)
            return api.ReverseOrderResponse(
                points_clawed_back=done.clawback.taken,
                points_not_recovered=done.clawback.not_recovered,
                points_restored=done.restored,
                entries=[entry_to_proto(entry) for entry in done.entries],
                balance=balance_to_proto(done.balance),
                order_fully_refunded=done.order_fully_refunded,
            )

        # A refund happens once per (order, refund id), whatever request_id is sent.
        key = NaturalKey(
            f"{program_id}/refunds", refund_key(request.order_id, request.refund_id), "refund_id"
        )
        return await self._idempotency.run(
            self._uow(),
            scope=program_id,
            request_id=request.request_id,
            method="ReverseOrder",
            request=request,
            response_type=api.ReverseOrderResponse,
            operation=reverse,
            natural_keys=(key,),
        )


def _check_id(value: str, field: str, violations: Violations) -> None:
    if violations.require(value, field):
        violations.check(
            len(value) <= MAX_ID_LENGTH and value.isprintable(),
            field,
            f"must be 1 to {MAX_ID_LENGTH} printable characters",
            "INVALID_FORMAT",
        )


def _scope_from_proto(
    request: api.ReverseOrderRequest, violations: Violations
) -> RefundScope | None:
    which = request.WhichOneof("scope")
    if which == "full":
        return FullRefund()
    if which == "amount":
        amount = request.amount
        violations.check(
            0 < amount.amount_minor <= MAX_AMOUNT_MINOR,
            "amount.amount_minor",
            f"must be between 1 and {MAX_AMOUNT_MINOR}",
            "OUT_OF_RANGE",
        )
        return AmountRefund(Money(amount.currency_code, amount.amount_minor))
    if which == "lines":
        return LinesRefund(_lines_from_proto(request.lines, violations))
    violations.add("scope", "set one of full, amount, lines", "REQUIRED")
    return None


def _lines_from_proto(message: api.RefundLines, violations: Violations) -> tuple[LineRefund, ...]:
    violations.check(bool(message.lines), "lines.lines", "must name at least one line", "REQUIRED")
    seen: set[str] = set()
    for index, line in enumerate(message.lines):
        path = f"lines.lines[{index}]"
        if violations.require(line.line_id, f"{path}.line_id"):
            violations.check(
                line.line_id not in seen,
                f"{path}.line_id",
                "must appear at most once",
                "DUPLICATE",
            )
            seen.add(line.line_id)
        violations.check(
            1 <= line.quantity <= MAX_AMOUNT_MINOR,
            f"{path}.quantity",
            f"must be between 1 and {MAX_AMOUNT_MINOR}",
            "OUT_OF_RANGE",
        )
    return tuple(LineRefund(line.line_id, line.quantity) for line in message.lines)
