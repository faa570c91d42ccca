"""SQL for earning rules and custom-event awards. Repositories never commit.

A rule's definition is stored as a JSON document with one explicit codec per kind, so the
stored shape is stable and readable (money as minor units, instants as ISO-8601 UTC,
durations as whole microseconds) rather than whatever a generic serializer produces.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Collection, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from services.points.domain.earning import AwardHistory
from services.points.domain.ledger import Entry
from services.points.domain.rules import (
    CustomEventRule,
    EarningRule,
    Limit,
    LimitPeriod,
    LineMultiplier,
    Money,
    MultiplierScope,
    OrderRule,
    RuleDefinition,
    RuleKind,
    RuleState,
    TierMultiplierRule,
    TimeWindowMultiplierRule,
)
from services.points.storage.rule_tables import earning_rules, event_awards
from shared.db import after_position

_MULTIPLIER_KINDS = (RuleKind.TIME_WINDOW_MULTIPLIER.value, RuleKind.TIER_MULTIPLIER.value)
_MICROSECOND = dt.timedelta(microseconds=1)


def _utc(value: dt.datetime) -> dt.datetime:
    # SQLite hands back naive datetimes; everything stored is UTC.
    return value if value.tzinfo is not None else value.replace(tzinfo=dt.UTC)


# ---------------------------------------------------------------------- definition codec


def _money_json(money: Money | None) -> dict[str, Any] | None:
    if money is None:
        return None
    return {"currency_code": money.currency_code, "amount_minor": money.amount_minor}


def _money(data: dict[str, Any]) -> Money:
    return Money(data["currency_code"], data["amount_minor"])


def _instant_json(instant: dt.datetime) -> str:
    return instant.astimezone(dt.UTC).isoformat()


def _definition_json(definition: RuleDefinition) -> dict[str, Any]:
    if isinstance(definition, OrderRule):
        return {
            "points_per_unit": definition.points_per_unit,
            "spend_unit": _money_json(definition.spend_unit),
            "minimum_order_amount": _money_json(definition.minimum_order_amount),
            "line_multipliers": [
                {"sku": m.sku, "category": m.category, "multiplier_bps": m.multiplier_bps}
                for m in definition.line_multipliers
            ],
            "excluded_skus": list(definition.excluded_skus),
            "excluded_categories": list(definition.excluded_categories),
        }
    if isinstance(definition, CustomEventRule):
        cap = definition.frequency_cap
        return {
            "event_type": definition.event_type,
            "points": definition.points,
            "frequency_cap": (
                None if cap is None else {"max_count": cap.max_count, "period": cap.period.value}
            ),
            "cooldown_us": definition.cooldown // _MICROSECOND,
        }
    if isinstance(definition, TimeWindowMultiplierRule):
        return {
            "starts_at": _instant_json(definition.starts_at),
            "ends_at": _instant_json(definition.ends_at),
            "multiplier_bps": definition.multiplier_bps,
            "scope": definition.scope.value,
            "event_types": list(definition.event_types),
        }
    return {"scope": definition.scope.value, "event_types": list(definition.event_types)}


def _definition(kind: RuleKind, data: dict[str, Any]) -> RuleDefinition:
    if kind is RuleKind.ORDER:
        minimum = data["minimum_order_amount"]
        return OrderRule(
            points_per_unit=data["points_per_unit"],
            spend_unit=_money(data["spend_unit"]),
            minimum_order_amount=None if minimum is None else _money(minimum),
            line_multipliers=tuple(LineMultiplier(**m) for m in data["line_multipliers"]),
            excluded_skus=tuple(data["excluded_skus"]),
            excluded_categories=tuple(data["excluded_categories"]),
        )
    if kind is RuleKind.CUSTOM_EVENT:
        cap = data["frequency_cap"]
        return CustomEventRule(
            event_type=data["event_type"],
            points=data["points"],
            frequency_cap=(
                None if cap is None else Limit(cap["max_count"], LimitPeriod(cap["period"]))
            ),
            cooldown=data["cooldown_us"] * _MICROSECOND,
        )
    if kind is RuleKind.TIME_WINDOW_MULTIPLIER:
        return TimeWindowMultiplierRule(
            starts_at=dt.datetime.fromisoformat(data["starts_at"]),
            ends_at=dt.datetime.fromisoformat(data["ends_at"]),
            multiplier_bps=data["multiplier_bps"],
            scope=MultiplierScope(data["scope"]),
            event_types=tuple(data["event_types"]),
        )
    return TierMultiplierRule(
        scope=MultiplierScope(data["scope"]), event_types=tuple(data["event_types"])
    )


# ---------------------------------------------------------------------------------- rules


def _rule_row(rule: EarningRule) -> dict[str, Any]:
    definition = rule.definition
    return {
        "rule_id": rule.rule_id,
        "program_id": rule.program_id,
        "display_name": rule.display_name,
        "description": rule.description,
        "kind": rule.kind.value,
        "state": rule.state.value,
        "revision": rule.revision,
        "event_type": definition.event_type if isinstance(definition, CustomEventRule) else "",
        "definition": _definition_json(definition),
        "created_at": rule.created_at,
        "updated_at": rule.updated_at,
        "archived_at": rule.archived_at,
    }


def _rule(row: Any) -> EarningRule:
    return EarningRule(
        rule_id=row.rule_id,
        program_id=row.program_id,
        display_name=row.display_name,
        description=row.description,
        definition=_definition(RuleKind(row.kind), row.definition),
        state=RuleState(row.state),
        revision=row.revision,
        created_at=_utc(row.created_at),
        updated_at=_utc(row.updated_at),
        archived_at=None if row.archived_at is None else _utc(row.archived_at),
    )


def _active() -> sa.ColumnElement[bool]:
    return earning_rules.c.state == RuleState.ACTIVE.value


class SqlEarningRuleRepository:
    def __init__(self, session: AsyncSession) -> None:
        self._session = session

    async def add(self, rule: EarningRule) -> bool:
        insert = sa.insert(earning_rules).values(_rule_row(rule))
        if rule.kind is not RuleKind.TIER_MULTIPLIER:
            await self._session.execute(insert)
            return True
        # Only this kind can hit the partial unique index; the savepoint keeps the
        # transaction usable so the caller can read the rule that won.
        try:
            async with self._session.begin_nested():
                await self._session.execute(insert)
        except IntegrityError:
            return False
        return True

    async def get(
        self, program_id: str, rule_id: str, *, for_update: bool = False
    ) -> EarningRule | None:
        query = sa.select(earning_rules).where(
            earning_rules.c.program_id == program_id, earning_rules.c.rule_id == rule_id
        )
        if for_update:
            query = query.with_for_update()
        row = (await self._session.execute(query)).first()
        return None if row is None else _rule(row)

    async def update(self, rule: EarningRule) -> None:
        row = _rule_row(rule)
        for fixed in ("rule_id", "program_id", "kind", "created_at"):
            del row[fixed]
        await self._session.execute(
            sa.update(earning_rules).where(earning_rules.c.rule_id == rule.rule_id).values(row)
        )

    async def _select(
        self, program_id: str, condition: sa.ColumnElement[bool]
    ) -> list[EarningRule]:
        query = sa.select(earning_rules).where(earning_rules.c.program_id == program_id, condition)
        return [_rule(row) for row in await self._session.execute(query)]

    async def for_orders(self, program_id: str) -> list[EarningRule]:
        return await self._select(
            program_id, sa.and_(_active(), earning_rules.c.kind != RuleKind.CUSTOM_EVENT.value)
        )

    async def for_event(self, program_id: str, event_type: str) -> list[EarningRule]:
        c = earning_rules.c
        return await self._select(
            program_id,
            sa.or_(
                sa.and_(c.kind == RuleKind.CUSTOM_EVENT.value, c.event_type == event_type),
                sa.and_(_active(), c.kind.in_(_MULTIPLIER_KINDS)),
            ),
        )

    async def active_tier_multiplier(self, program_id: str) -> EarningRule | None:
        rules = await self._select(
            program_id, sa.and_(_active(), earning_rules.c.kind == RuleKind.TIER_MULTIPLIER.value)
        )
        return rules[0] if rules else None

    async def page(
        self,
        program_id: str,
        *,
        after: tuple[dt.datetime, str] | None,
        limit: int,
        kinds: frozenset[RuleKind],
        include_archived: bool,
    ) -> list[EarningRule]:
        c = earning_rules.c
        query = (
            sa.select(earning_rules)
            .where(c.program_id == program_id)
            .order_by(c.created_at, c.rule_id)
            .limit(limit)
        )
        if after is not None:
            query = query.where(after_position(c.created_at, c.rule_id, after))
        if kinds:
            query = query.where(c.kind.in_([kind.value for kind in kinds]))
        if not include_archived:
            query = query.where(_active())
        return [_rule(row) for row in await self._session.execute(query)]


# --------------------------------------------------------------------------------- awards


class SqlEventAwardRepository:
    def __init__(self, session: AsyncSession) -> None:
        self._session = session

    async def add(self, award_entries: Sequence[Entry]) -> None:
        if not award_entries:
            return
        await self._session.execute(
            sa.insert(event_awards),
            [
                {
                    "entry_id": entry.entry_id,
                    "program_id": entry.program_id,
                    "customer_id": entry.customer_id,
                    "rule_id": entry.rule_id,
                    "occurred_at": entry.occurred_at,
                }
                for entry in award_entries
            ],
        )

    async def history(
        self,
        program_id: str,
        customer_id: str,
        rule_ids: Collection[str],
        *,
        since: dt.datetime | None,
        until: dt.datetime | None,
    ) -> AwardHistory:
        if not rule_ids:
            return AwardHistory()
        c = event_awards.c
        query = sa.select(c.rule_id, c.occurred_at).where(
            c.program_id == program_id,
            c.customer_id == customer_id,
            c.rule_id.in_(list(rule_ids)),
        )
        if since is not None:
            query = query.where(c.occurred_at >= since)
        if until is not None:
            query = query.where(c.occurred_at < until)
        awards: defaultdict[str, list[dt.datetime]] = defaultdict(list)
        for row in await self._session.execute(query):
            awards[row.rule_id].append(_utc(row.occurred_at))
        return AwardHistory(dict(awards))
