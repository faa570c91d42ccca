"""Earning-rule and earning RPCs. Mixed into PointsServicer, which sets the attributes.

EarnForOrder is idempotent twice over, with the shared mechanism both times: by
``request_id`` (scope: the program) as every mutation, and by order (scope
``<program_id>/orders``, key: the order id). The order keys get a scope of their own
because request ids are free-form: a key such as ``order:10042`` in the program's scope
could be a client's request id, and prefixing would push a 128-character order id past
the 128-character key.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

from google.protobuf.message import Message

from loyalty.points.v1 import points_service_pb2 as api
from loyalty.points.v1 import resources_pb2 as pb
from services.points.api.ledger_mapping import (
    balance_to_proto,
    check_order_id,
    customer_from_proto,
    entry_to_proto,
)
from services.points.api.rule_mapping import (
    KIND_FIELDS,
    contribution_to_proto,
    definition_from_proto,
    event_from_proto,
    kinds_from_proto,
    order_from_proto,
    rule_from_proto,
    rule_to_proto,
    skip_reason_to_proto,
    skip_to_proto,
)
from services.points.application import earning, ledger
from services.points.domain.earning import Earning
from services.points.domain.ledger import Balance, Entry
from services.points.domain.ports import TierBenefitsSource
from services.points.domain.rules import RuleKind, validate_event_type, validate_rule
from services.points.storage.uow import SqlPointsUnitOfWork
from shared import pagination
from shared.auth import get_principal
from shared.clock import Clock
from shared.idempotency import Idempotency, NaturalKey
from shared.ids import IdGenerator
from shared.proto_types import to_timestamp
from shared.validation import Violations, check_update_mask

M = TypeVar("M", bound=Message)
Context = Any

UPDATABLE_RULE_FIELDS = frozenset({"display_name", "description"}) | KIND_FIELDS
IMMUTABLE_RULE_FIELDS = frozenset(
    {"rule_id", "program_id", "state", "revision", "created_at", "updated_at", "archived_at"}
)


class EarningRpc:
    _uow: Callable[[], SqlPointsUnitOfWork]
    _idempotency: Idempotency
    _clock: Clock
    _ids: IdGenerator
    _tiers: TierBenefitsSource

    async def _run(
        self,
        request: Message,
        program_id: str,
        method: str,
        response_type: type[M],
        operation: Callable[[SqlPointsUnitOfWork], Awaitable[M]],
        natural_keys: Sequence[NaturalKey] = (),
    ) -> M:
        """Run one mutation exactly once per (program, request_id), in one transaction."""
        return await self._idempotency.run(
            self._uow(),
            scope=program_id,
            request_id=request.request_id,  # type: ignore[attr-defined]
            method=method,
            request=request,
            response_type=response_type,
            operation=operation,
            natural_keys=natural_keys,
        )

    # -- rules ---------------------------------------------------------------------------

    async def CreateEarningRule(
        self, request: api.CreateEarningRuleRequest, context: Context
    ) -> api.CreateEarningRuleResponse:
        program_id = request.rule.program_id
        _require_program_access(program_id)
        violations = Violations()
        draft = rule_from_proto(request.rule, violations)
        if draft is not None:
            validate_rule(draft, violations)  # every problem in one answer, before any I/O
        violations.raise_if_any()
        assert draft is not None  # a missing kind is a violation

        async def create(uow: SqlPointsUnitOfWork) -> api.CreateEarningRuleResponse:
            rule = await earning.create_rule(uow, draft, clock=self._clock, ids=self._ids)
            return api.CreateEarningRuleResponse(rule=rule_to_proto(rule))

        return await self._run(
            request, program_id, "CreateEarningRule", api.CreateEarningRuleResponse, create
        )

    async def UpdateEarningRule(
        self, request: api.UpdateEarningRuleRequest, context: Context
    ) -> api.UpdateEarningRuleResponse:
        program_id, rule_id = request.rule.program_id, request.rule.rule_id
        violations = Violations()
        violations.require(program_id, "rule.program_id")
        violations.require(rule_id, "rule.rule_id")
        violations.raise_if_any()
        get_principal().require_program(program_id)
        fields = _rule_update_fields(list(request.update_mask.paths))
        changes = _rule_changes(request.rule, fields, violations)
        violations.raise_if_any()

        async def update(uow: SqlPointsUnitOfWork) -> api.UpdateEarningRuleResponse:
            rule = await earning.update_rule(uow, program_id, rule_id, changes, clock=self._clock)
            return api.UpdateEarningRuleResponse(rule=rule_to_proto(rule))

        return await self._run(
            request, program_id, "UpdateEarningRule", api.UpdateEarningRuleResponse, update
        )

    async def ListEarningRules(
        self, request: api.ListEarningRulesRequest, context: Context
    ) -> api.ListEarningRulesResponse:
        program_id = request.program_id
        violations = Violations()
        violations.require(program_id, "program_id")
        kinds = kinds_from_proto(request.kinds, violations)
        if request.event_type:
            validate_event_type(request.event_type, "event_type", violations)
        violations.raise_if_any()
        get_principal().require_program(program_id)
        rule_filter = earning.RuleFilter(kinds, request.include_archived, request.event_type)
        filters = [
            program_id,
            sorted(kind.value for kind in kinds),
            request.include_archived,
            request.event_type,
        ]
        limit = pagination.page_size(request.page_size)
        after = pagination.time_and_id(pagination.decode_token(request.page_token, filters))
        async with self._uow() as uow:
            rules, more = await earning.list_rules(uow, program_id, rule_filter, after, limit)
        response = api.ListEarningRulesResponse(rules=[rule_to_proto(rule) for rule in rules])
        if more:
            last = rules[-1]
            response.next_page_token = pagination.time_and_id_token(
                last.created_at, last.rule_id, filters
            )
        return response

    async def ArchiveEarningRule(
        self, request: api.ArchiveEarningRuleRequest, context: Context
    ) -> api.ArchiveEarningRuleResponse:
        program_id, rule_id = request.program_id, request.rule_id
        violations = Violations()
        violations.require(program_id, "program_id")
        violations.require(rule_id, "rule_id")
        violations.raise_if_any()
        get_principal().require_program(program_id)

        async def archive(uow: SqlPointsUnitOfWork) -> api.ArchiveEarningRuleResponse:
            rule = await earning.archive_rule(uow, program_id, rule_id, clock=self._clock)
            return api.ArchiveEarningRuleResponse(rule=rule_to_proto(rule))

        return await self._run(
            request, program_id, "ArchiveEarningRule", api.ArchiveEarningRuleResponse, archive
        )

    # -- earning -------------------------------------------------------------------------

    async def EarnForOrder(
        self, request: api.EarnForOrderRequest, context: Context
    ) -> api.EarnForOrderResponse:
        violations = Violations()
        program_id, customer_id = _customer(request.customer, violations)
        check_order_id(request.order_id, violations, required=True)  # also an idempotency key
        order = order_from_proto(request, customer_id, violations)
        violations.raise_if_any()
        ctx = ledger.Context(
            program_id, customer_id, self._clock.now(), self._ids, request.request_id
        )

        async def earn(uow: SqlPointsUnitOfWork) -> api.EarnForOrderResponse:
            result, entries, balance = await earning.earn_for_order(uow, ctx, order, self._tiers)
            response = api.EarnForOrderResponse(**_earning_fields(result, entries, balance))
            if result.available_at is not None:
                response.available_at.CopyFrom(to_timestamp(result.available_at))
            return response

        # An order earns once per program, whatever request_id the till sends. Its own
        # scope keeps order ids apart from request ids (both are free-form text).
        order_key = NaturalKey(f"{program_id}/orders", request.order_id, "order_id")
        return await self._run(
            request, program_id, "EarnForOrder", api.EarnForOrderResponse, earn, (order_key,)
        )

    async def RecordEvent(
        self, request: api.RecordEventRequest, context: Context
    ) -> api.RecordEventResponse:
        violations = Violations()
        program_id, customer_id = _customer(request.customer, violations)
        event = event_from_proto(request, customer_id, violations)
        violations.raise_if_any()
        ctx = ledger.Context(
            program_id, customer_id, self._clock.now(), self._ids, request.request_id
        )

        async def record(uow: SqlPointsUnitOfWork) -> api.RecordEventResponse:
            result, entries, balance = await earning.record_event(uow, ctx, event, self._tiers)
            return api.RecordEventResponse(**_earning_fields(result, entries, balance))

        return await self._run(request, program_id, "RecordEvent", api.RecordEventResponse, record)


# ------------------------------------------------------------------------------- helpers


def _require_program_access(program_id: str) -> None:
    # A missing program id is reported with the other bad fields.
    if program_id:
        get_principal().require_program(program_id)


def _customer(ref: Any, violations: Violations) -> tuple[str, str]:
    program_id, customer_id = customer_from_proto(ref, violations)
    _require_program_access(program_id)
    return program_id, customer_id


def _rule_update_fields(paths: Sequence[str]) -> frozenset[str]:
    violations = Violations()
    check_update_mask(
        paths, violations, allowed=UPDATABLE_RULE_FIELDS, immutable=IMMUTABLE_RULE_FIELDS
    )
    if len(KIND_FIELDS.intersection(paths)) > 1:
        violations.add("update_mask", "a rule has one kind; name only its field", "FIELD_IMMUTABLE")
    if violations:
        violations.raise_if_any(reason=violations.items[0].reason)
    return frozenset(paths)


def _rule_changes(
    message: pb.EarningRule, fields: frozenset[str], violations: Violations
) -> earning.RuleChanges:
    kind = next((RuleKind(path) for path in fields if path in KIND_FIELDS), None)
    return earning.RuleChanges(
        display_name=message.display_name if "display_name" in fields else None,
        description=message.description if "description" in fields else None,
        definition=None if kind is None else definition_from_proto(message, kind, violations),
    )


def _earning_fields(result: Earning, entries: Sequence[Entry], balance: Balance) -> dict[str, Any]:
    """The fields EarnForOrderResponse and RecordEventResponse share."""
    return {
        "points": result.points,
        "contributions": [contribution_to_proto(c) for c in result.contributions],
        "skipped_rules": [skip_to_proto(s) for s in result.skipped_rules],
        "no_points_reason": skip_reason_to_proto(result.no_points_reason),
        "explanation": result.explanation,
        "entries": [entry_to_proto(e) for e in entries],
        "balance": balance_to_proto(balance),
    }
