"""One leader among a service's replicas, elected through the service's own database.

A lease is a row ``(name, holder, expires_at)``. ``try_acquire`` is one atomic conditional
upsert — insert the row, or take it over if it has expired or is already ours — so of
several replicas racing for a free lease exactly one wins, on PostgreSQL (the upsert locks
the row and re-checks the condition) as on SQLite (one writer at a time). The holder
renews it well before it expires; a replica that dies blocks the others for at most the
ttl.

Jobs run under a lease must be idempotent anyway: a leader that pauses (GC, a stopped VM,
a network partition) for longer than the ttl can still be finishing a job when its
successor starts one. Expiry is judged by each replica's own clock, so the ttl must be
far larger than the clock skew between replicas (NTP keeps it to milliseconds).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections.abc import Awaitable, Callable

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncEngine

from shared.clock import Clock
from shared.db import is_postgres

log = logging.getLogger("loyalty.leader")


def leases_table(metadata: sa.MetaData) -> sa.Table:
    """The lease table each service adds to its own schema."""
    return sa.Table(
        "leases",
        metadata,
        sa.Column("name", sa.String(100), primary_key=True),
        sa.Column("holder", sa.String(200), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
    )


class LeaderLease:
    """The lease ``name`` as seen by one replica, ``holder_id`` (unique per process)."""

    def __init__(
        self,
        engine: AsyncEngine,
        table: sa.Table,
        name: str,
        holder_id: str,
        ttl: dt.timedelta,
        clock: Clock,
    ) -> None:
        if ttl <= dt.timedelta(0):
            raise ValueError("a lease needs a positive ttl")
        self._engine = engine
        self._table = table
        self.name = name
        self.holder_id = holder_id
        self.ttl = ttl
        self._clock = clock

    async def try_acquire(self) -> bool:
        """Take the lease if it is free or expired, renew it if ours; True if we hold it."""
        table = self._table
        now = self._clock.now()
        insert = postgresql.insert if is_postgres(self._engine) else sqlite.insert
        claim = insert(table).values(
            name=self.name, holder=self.holder_id, expires_at=now + self.ttl
        )
        statement = claim.on_conflict_do_update(
            index_elements=[table.c.name],
            set_={"holder": claim.excluded.holder, "expires_at": claim.excluded.expires_at},
            where=sa.or_(table.c.holder == self.holder_id, table.c.expires_at <= now),
        ).returning(table.c.holder)
        async with self._engine.begin() as connection:
            # A row comes back only if we inserted or updated it.
            return (await connection.execute(statement)).first() is not None

    async def release(self) -> None:
        """Give the lease up now (if we hold it), so a successor need not wait for the ttl."""
        table = self._table
        async with self._engine.begin() as connection:
            await connection.execute(
                sa.delete(table).where(table.c.name == self.name, table.c.holder == self.holder_id)
            )


class _LeadershipLost(Exception):
    pass


async def run_while_leader(
    lease: LeaderLease, job: Callable[[], Awaitable[None]], *, interval: float
) -> None:
    """Run ``job`` every ``interval`` seconds while this replica holds ``lease``; forever.

    Followers try to take the lease every ttl/3 and the leader renews it as often, so a
    dead leader is replaced within about 4/3 of the ttl. A renewal that is refused, fails,
    or has not answered after ttl/3 (while the lease is still valid) makes the leader step
    down at once: the running job is cancelled, and it goes back to trying. A job may also
    run forever (e.g. ``OutboxRelay.run``); a job that raises is logged and run again after
    ``interval``. Cancelling this releases the lease.
    """
    period = lease.ttl.total_seconds() / 3
    try:
        while True:
            if not await _hold(lease, period):
                await asyncio.sleep(period)
                continue
            log.info("became leader of %s as %s", lease.name, lease.holder_id)
            try:
                async with asyncio.TaskGroup() as group:
                    group.create_task(_keep(lease, period))
                    group.create_task(_repeat(job, interval))
            except* _LeadershipLost:
                log.warning("lost the lease %s; stepping down", lease.name)
    finally:
        await _release(lease, period)


async def _hold(lease: LeaderLease, within: float) -> bool:
    """``try_acquire``, answering False on any error or after ``within`` seconds."""
    try:
        async with asyncio.timeout(within):
            return await lease.try_acquire()
    except Exception:
        log.warning("could not take or renew the lease %s", lease.name, exc_info=True)
        return False


async def _keep(lease: LeaderLease, period: float) -> None:
    while True:
        await asyncio.sleep(period)
        if not await _hold(lease, period):
            raise _LeadershipLost


async def _repeat(job: Callable[[], Awaitable[None]], interval: float) -> None:
    while True:
        try:
            await job()
        except Exception:
            log.exception("leader job failed; running it again in %.1f s", interval)
        await asyncio.sleep(interval)


async def _release(lease: LeaderLease, within: float) -> None:
    # Best effort, bounded: shutdown must not hang on an unreachable database, and an
    # unreleased lease only makes the successor wait for the ttl.
    try:
        async with asyncio.timeout(within):
            await lease.release()
    except Exception:
        log.warning("could not release the lease %s", lease.name, exc_info=True)
