"""Proto ⇄ domain for the ledger: customers, point amounts, entries, balances, holds."""

from __future__ import annotations

from loyalty.points.v1 import resources_pb2 as pb
from loyalty.type.v1 import customer_pb2
from services.points.domain.ledger import (
    MAX_POINTS,
    Balance,
    Entry,
    EntryType,
    Hold,
    HoldState,
    Scheduled,
)
from shared.proto_types import to_timestamp
from shared.validation import Violations

MAX_CUSTOMER_ID_LENGTH = 128

ENTRY_TYPES = {
    EntryType.EARN: pb.LEDGER_ENTRY_TYPE_EARN,
    EntryType.REDEEM: pb.LEDGER_ENTRY_TYPE_REDEEM,
    EntryType.HOLD: pb.LEDGER_ENTRY_TYPE_HOLD,
    EntryType.CAPTURE: pb.LEDGER_ENTRY_TYPE_CAPTURE,
    EntryType.RELEASE: pb.LEDGER_ENTRY_TYPE_RELEASE,
    EntryType.EXPIRE: pb.LEDGER_ENTRY_TYPE_EXPIRE,
    EntryType.ADJUST: pb.LEDGER_ENTRY_TYPE_ADJUST,
    EntryType.REVERSE: pb.LEDGER_ENTRY_TYPE_REVERSE,
    EntryType.ACTIVATE: pb.LEDGER_ENTRY_TYPE_ACTIVATE,
}
ENTRY_TYPES_BY_VALUE = {value: kind for kind, value in ENTRY_TYPES.items()}
_HOLD_STATES = {
    HoldState.ACTIVE: pb.HOLD_STATE_ACTIVE,
    HoldState.CAPTURED: pb.HOLD_STATE_CAPTURED,
    HoldState.RELEASED: pb.HOLD_STATE_RELEASED,
    HoldState.EXPIRED: pb.HOLD_STATE_EXPIRED,
}


def customer_from_proto(
    ref: customer_pb2.CustomerRef, violations: Violations, field: str = "customer"
) -> tuple[str, str]:
    """(program_id, customer_id), with a violation per missing or malformed part."""
    violations.require(ref.program_id, f"{field}.program_id")
    if violations.require(ref.customer_id, f"{field}.customer_id"):
        violations.check(
            len(ref.customer_id) <= MAX_CUSTOMER_ID_LENGTH and ref.customer_id.isprintable(),
            f"{field}.customer_id",
            f"must be 1 to {MAX_CUSTOMER_ID_LENGTH} printable characters",
            "INVALID_FORMAT",
        )
    return ref.program_id, ref.customer_id


def check_points(
    points: int, violations: Violations, field: str = "points", *, signed: bool = False
) -> None:
    """Points in requests: positive (or non-zero when ``signed``) and at most 10^12."""
    if signed:
        violations.check(points != 0, field, "must not be zero", "OUT_OF_RANGE")
    else:
        violations.check(points > 0, field, "must be positive", "OUT_OF_RANGE")
    violations.check(
        abs(points) <= MAX_POINTS, field, f"must be at most {MAX_POINTS}", "OUT_OF_RANGE"
    )


def _scheduled(value: Scheduled | None) -> pb.ScheduledPoints | None:
    if value is None:
        return None
    return pb.ScheduledPoints(at=to_timestamp(value.at), points=value.points)


def balance_to_proto(balance: Balance) -> pb.Balance:
    account = balance.account
    return pb.Balance(
        customer=customer_pb2.CustomerRef(
            program_id=account.program_id, customer_id=account.customer_id
        ),
        available=account.available,
        pending=account.pending,
        held=account.held,
        total=account.total,
        lifetime_earned=account.lifetime_earned,
        lifetime_spent=account.lifetime_spent,
        next_expiry=_scheduled(balance.next_expiry),
        next_activation=_scheduled(balance.next_activation),
    )


def entry_to_proto(entry: Entry) -> pb.LedgerEntry:
    message = pb.LedgerEntry(
        entry_id=entry.entry_id,
        customer=customer_pb2.CustomerRef(
            program_id=entry.program_id, customer_id=entry.customer_id
        ),
        type=ENTRY_TYPES[entry.type],
        points=entry.points,
        available_delta=entry.available_delta,
        pending_delta=entry.pending_delta,
        held_delta=entry.held_delta,
        balance_after=entry.balance_after,
        available_after=entry.available_after,
        reason=entry.reason,
        order_id=entry.order_id,
        refund_id=entry.refund_id,
        rule_id=entry.rule_id,
        event_type=entry.event_type,
        hold_id=entry.hold_id,
        reward_id=entry.reward_id,
        request_id=entry.request_id,
        created_at=to_timestamp(entry.created_at),
        occurred_at=to_timestamp(entry.occurred_at),
    )
    if entry.expires_at is not None:
        message.expires_at.CopyFrom(to_timestamp(entry.expires_at))
    if entry.available_at is not None:
        message.available_at.CopyFrom(to_timestamp(entry.available_at))
    return message


def hold_to_proto(hold: Hold) -> pb.Hold:
    message = pb.Hold(
        hold_id=hold.hold_id,
        customer=customer_pb2.CustomerRef(program_id=hold.program_id, customer_id=hold.customer_id),
        points=hold.points,
        captured_points=hold.captured_points,
        state=_HOLD_STATES[hold.state],
        order_id=hold.order_id,
        reason=hold.reason,
        created_at=to_timestamp(hold.created_at),
        expires_at=to_timestamp(hold.expires_at),
    )
    if hold.finished_at is not None:
        message.finished_at.CopyFrom(to_timestamp(hold.finished_at))
    return message


MAX_ORDER_ID_LENGTH = 128
MAX_REASON_LENGTH = 200


def check_order_id(order_id: str, violations: Violations, *, required: bool) -> None:
    """The merchant's order id: 1 to 128 printable characters (it is stored and keyed on)."""
    if not order_id:
        if required:
            violations.require(order_id, "order_id")
        return
    violations.check(
        len(order_id) <= MAX_ORDER_ID_LENGTH and order_id.isprintable(),
        "order_id",
        f"must be 1 to {MAX_ORDER_ID_LENGTH} printable characters",
        "INVALID_FORMAT",
    )


def check_reason(reason: str, violations: Violations, *, required: bool) -> None:
    """A reason shown in the history: at most 200 characters, required where it says so."""
    if required:
        violations.require(reason.strip(), "reason")
    violations.check(
        len(reason) <= MAX_REASON_LENGTH,
        "reason",
        f"must be at most {MAX_REASON_LENGTH} characters",
        "TOO_LONG",
    )
