"""Proto ⇄ domain for the points service. Field paths in errors are the proto's."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from loyalty.points.v1 import resources_pb2 as pb
from services.points.domain.program import ExpiryKind, ExpiryPolicy, Program, RefundPolicy, Rounding
from shared.proto_types import EPOCH, to_timestamp
from shared.validation import Violations

_REFUND_POLICIES = {
    pb.REFUND_POLICY_PENDING_ONLY: RefundPolicy.PENDING_ONLY,
    pb.REFUND_POLICY_WITHIN_AVAILABLE: RefundPolicy.WITHIN_AVAILABLE,
    pb.REFUND_POLICY_ALLOW_NEGATIVE: RefundPolicy.ALLOW_NEGATIVE,
}
_ROUNDING = {
    pb.ROUNDING_MODE_DOWN: Rounding.DOWN,
    pb.ROUNDING_MODE_UP: Rounding.UP,
    pb.ROUNDING_MODE_HALF_UP: Rounding.HALF_UP,
    pb.ROUNDING_MODE_HALF_EVEN: Rounding.HALF_EVEN,
}
_UNITS = {
    pb.CALENDAR_UNIT_MONTH: ExpiryKind.END_OF_MONTH,
    pb.CALENDAR_UNIT_YEAR: ExpiryKind.END_OF_YEAR,
}
_REFUND_POLICY_VALUES = {domain: value for value, domain in _REFUND_POLICIES.items()}
_ROUNDING_VALUES = {domain: value for value, domain in _ROUNDING.items()}
_UNIT_VALUES = {domain: value for value, domain in _UNITS.items()}


def _enum_value(
    table: Mapping[Any, object], value: int, field: str, violations: Violations
) -> None:
    # Unset and unknown (newer client) values are both refused: never guess a policy.
    if value not in table:
        violations.add(field, "is required: choose one of the documented values", "REQUIRED")


def program_from_proto(
    message: pb.Program, violations: Violations, prefix: str = "program"
) -> Program:
    """A draft domain program; bad enum or shape problems go into ``violations``."""
    _enum_value(_REFUND_POLICIES, message.refund_policy, f"{prefix}.refund_policy", violations)
    _enum_value(_ROUNDING, message.rounding_mode, f"{prefix}.rounding_mode", violations)
    expiry = ExpiryPolicy()
    which = (
        message.expiry_policy.WhichOneof("policy") if message.HasField("expiry_policy") else None
    )
    if which == "after_days":
        expiry = ExpiryPolicy(ExpiryKind.DAYS_AFTER_EARNING, message.expiry_policy.after_days.days)
    elif which == "end_of_period":
        period = message.expiry_policy.end_of_period
        _enum_value(_UNITS, period.unit, f"{prefix}.expiry_policy.end_of_period.unit", violations)
        expiry = ExpiryPolicy(_UNITS.get(period.unit, ExpiryKind.END_OF_MONTH), period.periods)
    pending = message.pending_period
    violations.check(
        pending.nanos == 0,
        f"{prefix}.pending_period",
        "must be whole seconds",
        "INVALID_FORMAT",
    )
    return Program(
        program_id=message.program_id,
        name=message.display_name,
        currency_code=message.currency_code,
        time_zone=message.time_zone or "UTC",
        expiry=expiry,
        pending_seconds=pending.seconds,
        refund_policy=_REFUND_POLICIES.get(message.refund_policy, RefundPolicy.WITHIN_AVAILABLE),
        rounding=_ROUNDING.get(message.rounding_mode, Rounding.DOWN),
        # Output-only fields: the application sets them.
        created_at=EPOCH,
        updated_at=EPOCH,
    )


def program_to_proto(program: Program) -> pb.Program:
    message = pb.Program(
        program_id=program.program_id,
        display_name=program.name,
        currency_code=program.currency_code,
        time_zone=program.time_zone,
        refund_policy=_REFUND_POLICY_VALUES[program.refund_policy],
        rounding_mode=_ROUNDING_VALUES[program.rounding],
        created_at=to_timestamp(program.created_at),
        updated_at=to_timestamp(program.updated_at),
    )
    message.pending_period.seconds = program.pending_seconds
    kind = program.expiry.kind
    if kind is ExpiryKind.NEVER:
        message.expiry_policy.never.SetInParent()
    elif kind is ExpiryKind.DAYS_AFTER_EARNING:
        message.expiry_policy.after_days.days = program.expiry.count
    else:
        message.expiry_policy.end_of_period.unit = _UNIT_VALUES[kind]
        message.expiry_policy.end_of_period.periods = program.expiry.count
    return message
