"""What the points domain needs from storage, as protocols (storage implements them)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Collection, Sequence
from typing import Protocol

from services.points.domain.earning import AwardHistory, TierBenefits
from services.points.domain.ledger import (
    Account,
    Delta,
    Entry,
    EntryType,
    Hold,
    HoldState,
    Lot,
    Take,
    TierActivity,
)
from services.points.domain.program import Program
from services.points.domain.refunds import OrderRecord, RefundRecord
from services.points.domain.rewards import Redemption, Reward, RewardKind
from services.points.domain.rules import EarningRule, RuleKind


class ProgramRepository(Protocol):
    async def add(self, program: Program) -> None: ...

    async def get(self, program_id: str) -> Program | None: ...

    async def update(self, program: Program) -> None: ...

    async def list_after(self, after_id: str | None, limit: int) -> list[Program]:
        """Programs ordered by id, strictly after ``after_id``; at most ``limit``."""
        ...


class AccountRepository(Protocol):
    async def get(self, program_id: str, customer_id: str) -> Account | None: ...

    async def apply(
        self,
        program_id: str,
        customer_id: str,
        delta: Delta,
        now: dt.datetime,
        *,
        min_available: int | None = None,
    ) -> Account | None:
        """Atomically apply ``delta`` if the account exists and has ``min_available``."""
        ...

    async def credit(
        self, program_id: str, customer_id: str, delta: Delta, now: dt.datetime
    ) -> Account:
        """Atomically apply ``delta``, creating the account on first use."""
        ...

    async def with_due_expiry(self, now: dt.datetime, limit: int) -> list[tuple[str, str]]:
        """Accounts with available points in lots whose expiry has passed."""
        ...

    async def with_due_activation(self, now: dt.datetime, limit: int) -> list[tuple[str, str]]:
        """Accounts with pending lots whose pending period has ended."""
        ...


class LotRepository(Protocol):
    async def add(self, new_lots: Sequence[Lot]) -> None: ...

    async def open_lots(self, program_id: str, customer_id: str) -> list[Lot]:
        """Lots with points remaining, pending or spendable."""
        ...

    async def take(self, takes: Sequence[Take]) -> None: ...

    async def activate(self, lot_id: str, remaining: int) -> None: ...


class EntryRepository(Protocol):
    async def add(self, new_entries: Sequence[Entry]) -> None: ...

    async def history(
        self,
        program_id: str,
        customer_id: str,
        *,
        before_sequence: int | None,
        limit: int,
        types: frozenset[EntryType] = frozenset(),
        created_after: dt.datetime | None = None,
        created_before: dt.datetime | None = None,
        order_id: str = "",
    ) -> list[Entry]: ...


class HoldRepository(Protocol):
    async def add(self, hold: Hold) -> None: ...

    async def get(self, program_id: str, customer_id: str, hold_id: str) -> Hold | None: ...

    async def finish(
        self,
        hold: Hold,
        state: HoldState,
        now: dt.datetime,
        *,
        captured: int = 0,
        active_until_after: dt.datetime | None = None,
    ) -> Hold | None: ...

    async def expired_active(self, now: dt.datetime, limit: int) -> list[Hold]: ...


class EventSink(Protocol):
    """Publishes what changed, in the same transaction as the change (the outbox)."""

    async def entries_appended(self, entries: Sequence[Entry]) -> None: ...

    async def program_changed(self, program: Program) -> None: ...

    async def tier_activity(self, activity: TierActivity) -> None:
        """Queue qualifying activity for the tiers service (delivered by the relay)."""
        ...


class PointsUnitOfWork(Protocol):
    @property
    def programs(self) -> ProgramRepository: ...

    @property
    def events(self) -> EventSink: ...

    @property
    def accounts(self) -> AccountRepository: ...

    @property
    def lots(self) -> LotRepository: ...

    @property
    def entries(self) -> EntryRepository: ...

    @property
    def holds(self) -> HoldRepository: ...

    @property
    def rules(self) -> EarningRuleRepository: ...

    @property
    def awards(self) -> EventAwardRepository: ...

    @property
    def rewards(self) -> RewardRepository: ...

    @property
    def redemptions(self) -> RedemptionRepository: ...

    @property
    def orders(self) -> OrderRepository: ...

    async def commit(self) -> None: ...


class EarningRuleRepository(Protocol):
    async def add(self, rule: EarningRule) -> bool:
        """Insert ``rule``; False, inserting nothing, when it is a tier multiplier rule and
        the program already has an active one (however concurrent the two creations)."""
        ...

    async def get(
        self, program_id: str, rule_id: str, *, for_update: bool = False
    ) -> EarningRule | None:
        """``for_update`` locks the rule until commit, for read-modify-write."""
        ...

    async def update(self, rule: EarningRule) -> None: ...

    async def for_orders(self, program_id: str) -> list[EarningRule]:
        """The active order and multiplier rules: everything an order may earn from."""
        ...

    async def for_event(self, program_id: str, event_type: str) -> list[EarningRule]:
        """Custom-event rules for ``event_type`` (archived ones too, so a response can say
        why they no longer fire) and the active multiplier rules."""
        ...

    async def active_tier_multiplier(self, program_id: str) -> EarningRule | None: ...

    async def page(
        self,
        program_id: str,
        *,
        after: tuple[dt.datetime, str] | None,
        limit: int,
        kinds: frozenset[RuleKind],
        include_archived: bool,
    ) -> list[EarningRule]:
        """Oldest first by (created_at, rule_id), strictly after ``after``; empty ``kinds``
        means every kind."""
        ...


class EventAwardRepository(Protocol):
    async def add(self, award_entries: Sequence[Entry]) -> None:
        """Record EARN entries paying custom-event rules as awards of their rule."""
        ...

    async def history(
        self,
        program_id: str,
        customer_id: str,
        rule_ids: Collection[str],
        *,
        since: dt.datetime | None,
        until: dt.datetime | None,
    ) -> AwardHistory:
        """The customer's awards of ``rule_ids`` that occurred in [since, until); None
        leaves that side open."""
        ...


class TierBenefitsSource(Protocol):
    """The customer's tier multipliers, from the tiers service."""

    async def benefits(self, program_id: str, customer_id: str) -> TierBenefits | None:
        """None when the customer has no tier. Raises ``Unavailable`` (reason
        ``TIERS_UNAVAILABLE``) when the tiers service cannot answer."""
        ...


class RewardRepository(Protocol):
    async def add(self, reward: Reward) -> None: ...

    async def get(self, program_id: str, reward_id: str) -> Reward | None: ...

    async def page(
        self,
        program_id: str,
        *,
        after: tuple[dt.datetime, str] | None,
        limit: int,
        kinds: frozenset[RewardKind],
        in_stock_only: bool,
    ) -> list[Reward]:
        """Oldest first by (created_at, reward_id), strictly after ``after``; empty ``kinds``
        means every kind; ``in_stock_only`` leaves out physical items with no units left."""
        ...

    async def take_stock(self, program_id: str, reward_id: str) -> int | None:
        """Atomically take one unit of a physical item; the units left, or None (taking
        nothing) when none was left."""
        ...


class RedemptionRepository(Protocol):
    async def add(self, redemption: Redemption) -> None: ...

    async def count_towards_limit(
        self, program_id: str, customer_id: str, reward_id: str, period: str, max_count: int
    ) -> bool:
        """Atomically count one redemption in ``period`` unless ``max_count`` are already
        counted; False, counting nothing, when the limit is reached."""
        ...

    async def request_answered(self, program_id: str, request_id: str) -> bool:
        """Whether a call in this program already committed under ``request_id``."""
        ...


class OrderRepository(Protocol):
    """Orders as they earned, spent and were refunded. Callers hold the account row lock."""

    async def get(self, program_id: str, customer_id: str, order_id: str) -> OrderRecord | None: ...

    async def record_earned(self, order: OrderRecord, now: dt.datetime) -> None:
        """Record the order's facts and what it earned; points spent on it are kept."""
        ...

    async def record_spent(
        self, program_id: str, customer_id: str, order_id: str, points: int, now: dt.datetime
    ) -> None:
        """Add ``points`` spent on the order, recording the order when it is new."""
        ...

    async def has_refund(
        self, program_id: str, customer_id: str, order_id: str, refund_id: str
    ) -> bool: ...

    async def record_refund(
        self, order: OrderRecord, refund: RefundRecord, now: dt.datetime
    ) -> None:
        """Store ``order``'s refund state (after ``refund``) and the refund's audit row."""
        ...


class VoucherIssuer(Protocol):
    async def issue(
        self,
        *,
        request_id: str,
        campaign_id: str,
        program_id: str,
        customer_id: str,
        source_reference: str,
    ) -> str:
        """The unique code issued from ``campaign_id`` to the customer; the same
        ``request_id`` (with the same arguments) always gives the same code. Raises
        ``FailedPrecondition`` ``VOUCHER_NOT_ISSUED`` or ``Unavailable``
        ``PROMOTIONS_UNAVAILABLE``."""
        ...
