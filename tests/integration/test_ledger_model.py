"""Random operation sequences against the real ledger (SQLite) and a tiny in-memory model.

The model is written independently of the implementation: a list of lots, two counters and
a dict of holds. After every operation both must agree on success or refusal and on the
balance; at the end the stored ledger must satisfy its invariants.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.points.app import unit_of_work_factory
from services.points.application import ledger
from services.points.domain.program import ExpiryKind, ExpiryPolicy, Program, RefundPolicy, Rounding
from services.points.storage.tables import metadata
from shared.clock import ManualClock
from shared.db import create_engine
from shared.errors import DomainError
from shared.ids import SequentialIds
from tests.support.ledger_checks import assert_ledger_consistent

START = dt.datetime(2027, 3, 1, tzinfo=dt.UTC)
LIFETIME = dt.timedelta(days=3)  # short against time steps, so expiry order matters often
PROGRAM = Program(
    program_id="prg_model",
    name="Model",
    currency_code="EUR",
    time_zone="UTC",
    expiry=ExpiryPolicy(ExpiryKind.DAYS_AFTER_EARNING, 3),
    pending_seconds=0,
    refund_policy=RefundPolicy.WITHIN_AVAILABLE,
    rounding=Rounding.DOWN,
    created_at=START,
    updated_at=START,
)


@dataclass
class ModelLot:
    expires_at: dt.datetime
    remaining: int
    seq: int


@dataclass
class ModelHold:
    points: int
    expires_at: dt.datetime
    active: bool = True
    captured: bool = False


@dataclass
class Model:
    now: dt.datetime = START
    available: int = 0
    held: int = 0
    lots: list[ModelLot] = field(default_factory=list)
    holds: dict[int, ModelHold] = field(default_factory=dict)

    @staticmethod
    def _consume(points: int, lots: list[ModelLot]) -> None:
        for lot in sorted(lots, key=lambda lot: (lot.expires_at, lot.seq)):
            take = min(lot.remaining, points)
            lot.remaining -= take
            points -= take

    def credit(self, points: int) -> bool:
        self.lots.append(ModelLot(self.now + LIFETIME, points, len(self.lots)))
        self.available += points
        return True

    def redeem(self, points: int) -> bool:
        if self.available < points:
            return False
        self.available -= points
        self._consume(points, self.lots)
        return True

    def hold(self, points: int, key: int) -> bool:
        if self.available < points:
            return False
        self.available -= points
        self.held += points
        self.holds[key] = ModelHold(points, self.now + dt.timedelta(days=1))
        return True

    def capture(self, key: int, part: int) -> bool:
        hold = self.holds[key]
        if not hold.active or self.now >= hold.expires_at or part > hold.points:
            return False
        hold.active, hold.captured = False, True
        self.held -= hold.points
        self.available += hold.points - part
        self._consume(part, self.lots)
        return True

    def release(self, key: int) -> bool:
        hold = self.holds[key]
        if hold.captured:  # a captured hold has nothing left to release
            return False
        if hold.active:
            hold.active = False
            self.held -= hold.points
            self.available += hold.points
        return True

    def expire(self) -> None:
        due = [lot for lot in self.lots if lot.expires_at <= self.now and lot.remaining > 0]
        points = max(0, min(sum(lot.remaining for lot in due), self.available))
        self._consume(points, due)
        self.available -= points


points = st.integers(min_value=1, max_value=120)
operations = st.lists(
    st.one_of(
        st.tuples(st.just("credit"), points),
        st.tuples(st.just("redeem"), points),
        st.tuples(st.just("hold"), points),
        st.tuples(st.just("capture"), st.integers(0, 5), st.integers(1, 120)),
        st.tuples(st.just("release"), st.integers(0, 5)),
        st.tuples(st.just("advance"), st.integers(1, 2)),
    ),
    min_size=6,
    max_size=30,
)


async def _run(operations: list[tuple[Any, ...]], url: str) -> None:
    engine = create_engine(url)
    async with engine.begin() as connection:
        await connection.run_sync(metadata.drop_all)
        await connection.run_sync(metadata.create_all)
    model, ids = Model(), SequentialIds()
    hold_ids: dict[int, str] = {}
    sessions = unit_of_work_factory(engine, ManualClock(START), ids)

    async def real(operation: Callable[..., Awaitable[object]]) -> bool:
        ctx = ledger.Context(PROGRAM.program_id, "c", model.now, ids)
        try:
            async with sessions() as uow:
                await operation(uow, ctx)
                await uow.commit()
            return True
        except DomainError:
            return False

    try:
        for op in operations:
            kind = op[0]
            if kind == "credit":
                assert await real(
                    lambda u, c, n=op[1]: ledger.adjust(u, c, PROGRAM, n, "credit")
                ) == model.credit(op[1])
            elif kind == "redeem":
                assert await real(
                    lambda u, c, n=op[1]: ledger.redeem(u, c, n, "spend")
                ) == model.redeem(op[1])
            elif kind == "hold":
                key = len(hold_ids)

                async def hold(u: Any, c: ledger.Context, n: int = op[1], key: int = key) -> None:
                    held, _, _ = await ledger.hold_points(u, c, n, dt.timedelta(days=1), "hold")
                    hold_ids[key] = held.hold_id

                assert await real(hold) == model.hold(op[1], key)
            elif kind in ("capture", "release") and op[1] in hold_ids:
                hold_id = hold_ids[op[1]]
                if kind == "capture":
                    ok = await real(
                        lambda u, c, h=hold_id, n=op[2]: ledger.capture_hold(u, c, h, n)
                    )
                    assert ok == model.capture(op[1], op[2])
                else:
                    assert await real(
                        lambda u, c, h=hold_id: ledger.release_hold(u, c, h, "")
                    ) == model.release(op[1])
            elif kind == "advance":
                model.now += dt.timedelta(days=op[1])
                for key, hold_id in hold_ids.items():
                    if model.holds[key].active and model.holds[key].expires_at <= model.now:
                        await real(
                            lambda u, c, h=hold_id: ledger.release_hold(u, c, h, "", expired=True)
                        )
                        model.release(key)
                await real(ledger.expire_due)
                model.expire()
            async with sessions() as uow:
                account = await uow.accounts.get(PROGRAM.program_id, "c")
            if account is not None:
                assert (account.available, account.held) == (model.available, model.held), op
        await assert_ledger_consistent(engine)
    finally:
        await engine.dispose()


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(operations=operations)
def test_random_operations_match_the_model(operations, tmp_path):
    asyncio.run(_run(operations, f"sqlite+aiosqlite:///{tmp_path / 'model.db'}"))
