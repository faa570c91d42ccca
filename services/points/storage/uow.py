"""The points unit of work: one transaction, its repositories."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.points.storage.events import EventEncoders, OutboxEventSink
from services.points.storage.ledger_repositories import (
    SqlAccountRepository,
    SqlEntryRepository,
    SqlHoldRepository,
    SqlLotRepository,
)
from services.points.storage.order_repositories import SqlOrderRepository
from services.points.storage.repositories import SqlProgramRepository
from services.points.storage.reward_repositories import (
    SqlRedemptionRepository,
    SqlRewardRepository,
)
from services.points.storage.rule_repositories import (
    SqlEarningRuleRepository,
    SqlEventAwardRepository,
)
from services.points.storage.tables import outbox
from shared.clock import Clock
from shared.ids import IdGenerator
from shared.outbox import OutboxWriter
from shared.uow import UnitOfWork


class SqlPointsUnitOfWork(UnitOfWork):
    programs: SqlProgramRepository
    accounts: SqlAccountRepository
    lots: SqlLotRepository
    entries: SqlEntryRepository
    holds: SqlHoldRepository
    rules: SqlEarningRuleRepository
    awards: SqlEventAwardRepository
    rewards: SqlRewardRepository
    redemptions: SqlRedemptionRepository
    orders: SqlOrderRepository
    events: OutboxEventSink

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        *,
        clock: Clock,
        ids: IdGenerator,
        encoders: EventEncoders,
    ) -> None:
        super().__init__(sessions)
        self._writer = OutboxWriter(outbox, clock, ids)
        self._encoders = encoders

    def _open(self) -> None:
        self.events = OutboxEventSink(self.session, self._writer, self._encoders)
        self.programs = SqlProgramRepository(self.session)
        self.accounts = SqlAccountRepository(self.session)
        self.lots = SqlLotRepository(self.session)
        self.entries = SqlEntryRepository(self.session)
        self.holds = SqlHoldRepository(self.session)
        self.rules = SqlEarningRuleRepository(self.session)
        self.awards = SqlEventAwardRepository(self.session)
        self.rewards = SqlRewardRepository(self.session)
        self.redemptions = SqlRedemptionRepository(self.session)
        self.orders = SqlOrderRepository(self.session)
