"""The ledger's model: accounts with buckets, lots of earned points, entries, holds.

Invariants (checked by tests, kept by the application functions):

* per account, ``available + pending + held`` equals the sum of ``points`` over its entries;
* ``pending`` equals the remaining points of its pending lots, and the remaining points of
  its spendable lots equal ``max(0, available + held)`` — a negative available balance (only
  after a refund under ALLOW_NEGATIVE) is a debt that later credits pay off first;
* ``held`` never exceeds what the lots still hold, so expiry never takes points that back
  an active hold: they are spent by the capture or expire after the release.

Spending consumes lots soonest-expiring first (never-expiring last, oldest first on ties).
"""

from __future__ import annotations

import datetime as dt
import enum
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace

from shared.errors import FailedPrecondition, NotFound

MAX_POINTS = 10**12


class EntryType(enum.Enum):
    EARN = "earn"
    REDEEM = "redeem"
    HOLD = "hold"
    CAPTURE = "capture"
    RELEASE = "release"
    EXPIRE = "expire"
    ADJUST = "adjust"
    REVERSE = "reverse"
    ACTIVATE = "activate"


class HoldState(enum.Enum):
    ACTIVE = "active"
    CAPTURED = "captured"
    RELEASED = "released"
    EXPIRED = "expired"


@dataclass(frozen=True)
class Account:
    program_id: str
    customer_id: str
    available: int = 0
    pending: int = 0
    held: int = 0
    lifetime_earned: int = 0
    lifetime_spent: int = 0
    # Number of entries written so far: entries are numbered 1, 2, … per account.
    entry_count: int = 0

    @property
    def total(self) -> int:
        return self.available + self.pending + self.held


@dataclass(frozen=True)
class Delta:
    """A change to an account's buckets, applied atomically by the repository."""

    available: int = 0
    pending: int = 0
    held: int = 0
    earned: int = 0  # change of lifetime_earned
    spent: int = 0  # change of lifetime_spent
    entries: int = 1  # entries written with this change

    @property
    def points(self) -> int:
        return self.available + self.pending + self.held


@dataclass(frozen=True)
class Lot:
    """Points added together, spent and expired together."""

    lot_id: str
    program_id: str
    customer_id: str
    amount: int
    remaining: int
    earned_at: dt.datetime
    expires_at: dt.datetime | None
    # Set while the points are pending (not spendable before this instant).
    available_at: dt.datetime | None = None
    order_id: str = ""


@dataclass(frozen=True)
class Entry:
    entry_id: str
    program_id: str
    customer_id: str
    sequence: int  # position in the account's history, from 1
    type: EntryType
    available_delta: int
    pending_delta: int
    held_delta: int
    balance_after: int
    available_after: int
    created_at: dt.datetime
    occurred_at: dt.datetime
    reason: str = ""
    order_id: str = ""
    refund_id: str = ""
    rule_id: str = ""
    event_type: str = ""
    hold_id: str = ""
    reward_id: str = ""
    request_id: str = ""
    expires_at: dt.datetime | None = None
    available_at: dt.datetime | None = None

    @property
    def points(self) -> int:
        return self.available_delta + self.pending_delta + self.held_delta


@dataclass(frozen=True)
class Hold:
    hold_id: str
    program_id: str
    customer_id: str
    points: int
    state: HoldState
    created_at: dt.datetime
    expires_at: dt.datetime
    captured_points: int = 0
    order_id: str = ""
    reason: str = ""
    finished_at: dt.datetime | None = None


@dataclass(frozen=True)
class Scheduled:
    at: dt.datetime
    points: int


@dataclass(frozen=True)
class Balance:
    account: Account
    next_expiry: Scheduled | None = None
    next_activation: Scheduled | None = None


@dataclass(frozen=True)
class TierActivity:
    """What the tiers service must hear about: points earned (or taken back) and money
    spent (or refunded). ``source_id`` is unique per fact, so delivery is idempotent."""

    program_id: str
    customer_id: str
    source_id: str
    occurred_at: dt.datetime
    points: int
    spend_minor: int = 0
    currency_code: str = ""


@dataclass(frozen=True)
class Take:
    lot_id: str
    points: int


def consumption_order(lot: Lot) -> tuple[bool, dt.datetime, dt.datetime, str]:
    """Soonest expiry first; points that never expire last; oldest first on ties."""
    never = lot.expires_at is None
    return (never, lot.expires_at or lot.earned_at, lot.earned_at, lot.lot_id)


def allocate(lots: Iterable[Lot], points: int) -> list[Take]:
    """Which lots give how many points to cover ``points`` (as far as they can)."""
    takes: list[Take] = []
    left = points
    for lot in sorted(lots, key=consumption_order):
        if left <= 0:
            break
        take = min(lot.remaining, left)
        if take > 0:
            takes.append(Take(lot.lot_id, take))
            left -= take
    return takes


def expirable_points(due: Sequence[Lot], account: Account) -> int:
    """How many of the due lots' points may expire now.

    Everything due, except what must stay to back active holds, and never more than
    the available balance (a debt cannot expire).
    """
    due_points = sum(lot.remaining for lot in due)
    return max(0, min(due_points, account.available))


def before(after: Account, delta: Delta) -> Account:
    """The account as it was before ``delta`` was applied to give ``after``."""
    return replace(
        after,
        available=after.available - delta.available,
        pending=after.pending - delta.pending,
        held=after.held - delta.held,
        lifetime_earned=after.lifetime_earned - delta.earned,
        lifetime_spent=after.lifetime_spent - delta.spent,
        entry_count=after.entry_count - delta.entries,
    )


def spendable_backing(account: Account) -> int:
    """What the spendable lots must hold for ``account`` (a debt is backed by nothing)."""
    return max(0, account.available + account.held)


def summarize(account: Account, open_lots: Iterable[Lot]) -> Balance:
    """The balance with its next expiry and next activation, from the account's open lots."""
    expiring: dict[dt.datetime, int] = {}
    activating: dict[dt.datetime, int] = {}
    for lot in open_lots:
        if lot.remaining <= 0:
            continue
        if lot.available_at is not None:
            activating[lot.available_at] = activating.get(lot.available_at, 0) + lot.remaining
        elif lot.expires_at is not None:
            expiring[lot.expires_at] = expiring.get(lot.expires_at, 0) + lot.remaining
    next_expiry = None
    if expiring and account.available > 0:
        at = min(expiring)
        next_expiry = Scheduled(at, min(expiring[at], account.available))
    next_activation = None
    if activating:
        at = min(activating)
        next_activation = Scheduled(at, activating[at])
    return Balance(account, next_expiry, next_activation)


def customer_not_found(program_id: str, customer_id: str) -> NotFound:
    return NotFound(
        f"Customer {customer_id} has no points account in program {program_id}.",
        reason="CUSTOMER_NOT_FOUND",
        metadata={"program_id": program_id, "customer_id": customer_id},
    )


def insufficient_points(available: int, requested: int) -> FailedPrecondition:
    return FailedPrecondition(
        f"Not enough points: {available} available, {requested} requested.",
        reason="INSUFFICIENT_POINTS",
        metadata={"available": str(available), "requested": str(requested)},
    )
