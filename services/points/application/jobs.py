"""Background work: release expired holds, activate pending points, expire points.

Each account is handled in its own transaction through the same use cases as the RPCs,
so every movement writes ledger entries and events like any other. All of it is
idempotent: a second pass (or a second leader overlapping briefly) finds nothing to do.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from typing import Any

from services.points.application import ledger
from services.points.domain.ports import PointsUnitOfWork
from shared.clock import Clock
from shared.ids import IdGenerator

log = logging.getLogger("loyalty.points.jobs")

UnitOfWorkFactory = Callable[[], AbstractAsyncContextManager[Any]]
BATCH = 200


async def _each(
    uow_factory: UnitOfWorkFactory,
    keys: list[tuple[str, str]],
    work: Callable[[PointsUnitOfWork, ledger.Context], Awaitable[object]],
    clock: Clock,
    ids: IdGenerator,
) -> int:
    done = 0
    for program_id, customer_id in keys:
        try:
            async with uow_factory() as uow:
                await work(uow, ledger.Context(program_id, customer_id, clock.now(), ids))
                await uow.commit()
            done += 1
        except Exception:  # one bad account must not stop the others
            log.exception("background work failed for an account", extra={"program_id": program_id})
    return done


async def run_due_work(uow_factory: UnitOfWorkFactory, clock: Clock, ids: IdGenerator) -> int:
    """One pass over everything due now; returns how many accounts were handled."""
    now = clock.now()
    async with uow_factory() as uow:
        holds = await uow.holds.expired_active(now, BATCH)
        activations = await uow.accounts.with_due_activation(now, BATCH)
        expiries = await uow.accounts.with_due_expiry(now, BATCH)
    done = 0
    for hold in holds:

        async def release(
            uow: PointsUnitOfWork, ctx: ledger.Context, hold_id: str = hold.hold_id
        ) -> object:
            return await ledger.release_hold(uow, ctx, hold_id, "", expired=True)

        done += await _each(uow_factory, [(hold.program_id, hold.customer_id)], release, clock, ids)
    # Activation before expiry: points whose pending period and lifetime both ended
    # become available, then expire, in order.
    done += await _each(uow_factory, activations, ledger.activate_due, clock, ids)
    done += await _each(uow_factory, expiries, ledger.expire_due, clock, ids)
    return done


async def drain_due_work(uow_factory: UnitOfWorkFactory, clock: Clock, ids: IdGenerator) -> None:
    """Repeat passes until nothing is due (each pass handles at most a batch per kind)."""
    while await run_due_work(uow_factory, clock, ids):
        pass
