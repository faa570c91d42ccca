"""Transactional outbox: events written with the change they describe, then relayed and streamed.

* ``OutboxWriter`` inserts events in the caller's transaction, so an event exists exactly
  when its change committed.
* ``OutboxRelay`` delivers them, in sequence order and at least once, to another service
  (which deduplicates on ``event_id``) and marks them delivered.
* ``feed`` streams them to ``WatchEvents`` callers, resuming after a sequence number.

Sequence order versus commit order
----------------------------------
On PostgreSQL a sequence number is taken at INSERT but the row becomes visible at COMMIT:
a reader can see 11 while 10 is still in flight, and a reader that moved its cursor past
11 would skip 10 forever. Readers therefore only pass a *horizon* (``_Horizon``) below
which every writer has finished:

1. The writer's INSERT gets the transaction an id (``pg_current_xact_id()``) before it
   takes its sequence number (``OutboxWriter``).
2. A reader notes the newest visible sequence N together with the ids of the transactions
   then in flight (``pg_current_snapshot()``, one statement, one snapshot). Whoever holds a
   number below N took it before N's writer committed, so its id was assigned before the
   snapshot: it has finished, or it is in that in-flight set.
3. Once none of that set is still in flight (a later poll), every number up to N is final:
   readers may go up to N.

Writers never wait for one another (an advisory lock held from INSERT to COMMIT would
serialize every event-producing transaction of the service and can deadlock with the row
locks taken after it). The price is latency: a new event reaches readers a poll or two
later, and a long-running writing transaction of the same server holds readers back until
it ends. The argument needs the sequence to hand out numbers in the order they are asked
for, which BIGSERIAL's default ``CACHE 1`` does; never raise it. SQLite has a single
writer at a time (every transaction is ``BEGIN IMMEDIATE``), so commit order is sequence
order and the horizon is simply the newest row.

One relay per table
-------------------
The relay runs only on the replica holding a leader lease (``shared.leader``:
``run_while_leader(lease, relay.run, interval=...)``), not ``FOR UPDATE SKIP LOCKED``
workers on every replica: sharing would deliver concurrent batches out of order, the
volume of one service fits one relay, and the lease works the same on SQLite. A relay
that briefly overlaps with its successor only causes duplicate deliveries, which the
receivers absorb.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime as dt
import logging
import random
from collections.abc import AsyncIterator, Awaitable, Callable, Collection, Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from prometheus_client import Gauge
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession

from shared.clock import Clock
from shared.db import is_postgres
from shared.errors import FailedPrecondition
from shared.ids import IdGenerator
from shared.metrics import REGISTRY

log = logging.getLogger("loyalty.outbox")

OUTBOX_LAG = Gauge(
    "loyalty_outbox_lag_seconds",
    "Age of the oldest outbox event the relay has not delivered yet (0 when none); "
    "reported by the replica that runs the relay.",
    ("service",),
    registry=REGISTRY,
)

EVENT_ID_PREFIX = "evt"


def outbox_table(metadata: sa.MetaData) -> sa.Table:
    """The outbox table each service adds to its own schema."""
    table = sa.Table(
        "outbox",
        metadata,
        # BIGSERIAL on PostgreSQL; on SQLite the rowid, with AUTOINCREMENT so that a number
        # is never handed out twice, even after the newest rows were deleted.
        sa.Column(
            "sequence",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            primary_key=True,
            autoincrement=True,
        ),
        sa.Column("event_id", sa.String(64), nullable=False, unique=True),
        sa.Column("event_type", sa.String(100), nullable=False),
        sa.Column("program_id", sa.String(64), nullable=False),
        sa.Column("customer_id", sa.String(128), nullable=True),
        sa.Column("payload", sa.LargeBinary, nullable=False),  # a serialized protobuf
        sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        # Set once the relay has dealt with the event (delivered it, or had nothing to do).
        sa.Column("delivered_at", sa.DateTime(timezone=True), nullable=True),
        sqlite_autoincrement=True,
    )
    # The relay's work queue; stays small because the relay marks every event it passes.
    undelivered = table.c.delivered_at.is_(None)
    sa.Index(
        "ix_outbox_undelivered",
        table.c.sequence,
        postgresql_where=undelivered,
        sqlite_where=undelivered,
    )
    return table


@dataclass(frozen=True, slots=True)
class NewEvent:
    """An event to write; the writer adds its id, sequence and ``created_at``."""

    event_type: str
    program_id: str
    customer_id: str | None
    payload: bytes
    occurred_at: dt.datetime


@dataclass(frozen=True, slots=True)
class OutboxRecord:
    """A committed event, as the relay and the feed hand it out."""

    sequence: int
    event_id: str
    event_type: str
    program_id: str
    customer_id: str | None
    payload: bytes
    occurred_at: dt.datetime
    created_at: dt.datetime


class OutboxWriter:
    """Adds events to the caller's transaction; never commits (like a repository)."""

    def __init__(self, table: sa.Table, clock: Clock, ids: IdGenerator) -> None:
        self._table = table
        self._clock = clock
        self._ids = ids

    async def add(
        self,
        session: AsyncSession,
        *,
        event_type: str,
        program_id: str,
        customer_id: str | None,
        payload: bytes,
        occurred_at: dt.datetime,
    ) -> str:
        """Insert one event; returns its ``event_id``."""
        event = NewEvent(event_type, program_id, customer_id, payload, occurred_at)
        (event_id,) = await self.add_many(session, [event])
        return event_id

    async def add_many(self, session: AsyncSession, events: Sequence[NewEvent]) -> list[str]:
        """Insert several events with one statement; returns their ids, in order.

        Sequence numbers follow the order of ``events``.
        """
        if not events:
            return []
        now = self._clock.now()
        rows: list[dict[str, Any]] = [
            {
                "event_id": self._ids.new_id(EVENT_ID_PREFIX),
                "event_type": event.event_type,
                "program_id": event.program_id,
                "customer_id": event.customer_id,
                "payload": event.payload,
                "occurred_at": event.occurred_at,
                "created_at": now,
            }
            for event in events
        ]
        if session.get_bind().dialect.name == "postgresql":
            await session.execute(_insert_after_transaction_id(self._table, rows))
        else:
            await session.execute(sa.insert(self._table).values(rows))
        return [row["event_id"] for row in rows]


def _insert_after_transaction_id(table: sa.Table, rows: list[dict[str, Any]]) -> sa.Insert:
    """``INSERT … SELECT`` that assigns the transaction id before any sequence number.

    The horizon argument (module doc) needs the writer in the in-flight set of any snapshot
    taken after it took its number. A plain INSERT takes the number (column default) just
    before heap insertion assigns the id; here the id comes from a subquery the executor
    must read before it can project a row and call ``nextval``. Referencing its column in
    WHERE keeps the planner from discarding it.
    """
    names = list(rows[0])
    source = sa.values(
        *(sa.column(name, table.c[name].type) for name in names), name="new_events"
    ).data([tuple(row[name] for name in names) for row in rows])
    writer = sa.select(sa.func.pg_current_xact_id().label("xid")).offset(0).subquery("writer")
    # Joined to that single row, the VALUES rows keep their order, and so get their
    # numbers in the caller's order.
    select = (
        sa.select(*source.c)
        .select_from(source.join(writer, sa.true()))
        .where(writer.c.xid.is_not(None))
    )
    return sa.insert(table).from_select(names, select)


class _Horizon:
    """The highest sequence number below which every writer has finished (module doc)."""

    def __init__(self) -> None:
        self.safe = 0
        # (newest sequence seen, transactions in flight then) until those have all ended
        self._waiting: tuple[int, frozenset[int]] | None = None

    def advance(self, newest: int | None, in_flight: frozenset[int]) -> int:
        if self._waiting is not None and not self._waiting[1] & in_flight:
            self.safe = max(self.safe, self._waiting[0])
            self._waiting = None
        if self._waiting is None and newest is not None and newest > self.safe:
            if in_flight:
                self._waiting = (newest, in_flight)
            else:
                self.safe = newest
        return self.safe


async def _observe(
    connection: AsyncConnection, table: sa.Table, *extra: sa.ColumnElement[Any]
) -> tuple[int | None, frozenset[int], sa.Row[Any]]:
    """The newest sequence, the transactions in flight and ``extra``, from one snapshot."""
    columns: list[sa.ColumnElement[Any]] = [sa.func.max(table.c.sequence).label("newest"), *extra]
    postgres = is_postgres(connection)
    if postgres:
        columns.append(sa.cast(sa.func.pg_current_snapshot(), sa.Text).label("snapshot"))
    row = (await connection.execute(sa.select(*columns))).one()
    in_flight: frozenset[int] = frozenset()
    if postgres:
        # Text form "xmin:xmax:xip,xip,…"; the list is empty when nothing is in flight.
        in_flight = frozenset(int(xid) for xid in row.snapshot.split(":")[2].split(",") if xid)
    return row.newest, in_flight, row


def _columns(table: sa.Table) -> list[sa.Column[Any]]:
    return [table.c[field.name] for field in dataclasses.fields(OutboxRecord)]


def _record(row: sa.Row[Any]) -> OutboxRecord:
    return OutboxRecord(
        sequence=row.sequence,
        event_id=row.event_id,
        event_type=row.event_type,
        program_id=row.program_id,
        customer_id=row.customer_id,
        payload=row.payload,
        occurred_at=_utc(row.occurred_at),
        created_at=_utc(row.created_at),
    )


def _utc(value: dt.datetime) -> dt.datetime:
    # SQLite hands back naive datetimes; everything stored is UTC.
    return value if value.tzinfo is not None else value.replace(tzinfo=dt.UTC)


@dataclass(frozen=True, slots=True)
class Backoff:
    """Delays between retries: doubling from ``initial`` up to ``maximum`` seconds."""

    initial: float = 0.5
    maximum: float = 30.0

    def delay(self, failures: int) -> float:
        """Seconds to wait after the ``failures``-th failure in a row (1, 2, …)."""
        step = min(self.maximum, self.initial * 2.0 ** min(failures - 1, 32))
        # "Equal jitter": relays that failed together spread out, yet none retries
        # sooner than half a step.
        return step / 2 + random.uniform(0, step / 2)


Deliver = Callable[[list[OutboxRecord]], Awaitable[None]]


class OutboxRelay:
    """Delivers outbox events in sequence order, at least once, until cancelled.

    ``deliver`` gets each batch of events whose type is in ``event_types`` (None: all)
    and makes the idempotent call to the receiver; when it returns, the batch is marked
    delivered. If it raises, the same batch is retried with exponential backoff, for as
    long as it takes: an event is never skipped. A crash between delivery and marking
    delivers the batch again. Events of other types are marked without a call, which
    keeps the undelivered index small and lets ``prune`` reclaim them: a service that
    writes events nobody is sent still runs a relay, with ``event_types=()``.

    Run it on one replica only: ``run_while_leader(lease, relay.run, interval=1)``.
    """

    def __init__(
        self,
        engine: AsyncEngine,
        table: sa.Table,
        *,
        service: str,
        deliver: Deliver,
        clock: Clock,
        event_types: Collection[str] | None = None,
        batch_size: int = 100,
        poll_interval: float = 0.5,
        backoff: Backoff | None = None,
    ) -> None:
        self._engine = engine
        self._table = table
        self._service = service
        self._deliver = deliver
        self._clock = clock
        self._event_types = None if event_types is None else frozenset(event_types)
        self._batch_size = batch_size
        self._poll_interval = poll_interval
        self._backoff = backoff or Backoff()
        self._horizon = _Horizon()
        self._wake = asyncio.Event()
        self.lag_seconds = 0.0

    def notify(self) -> None:
        """Look for events now rather than at the next poll: call after a commit that wrote some."""
        self._wake.set()

    async def run(self) -> None:
        """Relay forever: drain, then wait for ``notify()`` or the poll interval."""
        failures = 0
        try:
            while True:
                self._wake.clear()
                try:
                    handled = await self.run_once()
                except Exception:
                    failures += 1
                    delay = self._backoff.delay(failures)
                    log.warning(
                        "outbox relay of %s failed (%d in a row); retrying in %.2f s",
                        self._service,
                        failures,
                        delay,
                        exc_info=True,
                    )
                    await asyncio.sleep(delay)
                    continue
                failures = 0
                if handled < self._batch_size:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._wake.wait(), self._poll_interval)
        finally:
            # Only the replica relaying has a lag to report; a stale value left behind by
            # a former leader would keep the alert firing.
            with contextlib.suppress(KeyError):
                OUTBOX_LAG.remove(self._service)

    async def run_once(self) -> int:
        """Deliver and mark the next batch; returns how many events it handled.

        Raises what ``deliver`` or the database raised; nothing is marked then.
        """
        table = self._table
        oldest_undelivered = (
            sa.select(table.c.created_at)
            .where(table.c.delivered_at.is_(None))
            .order_by(table.c.sequence)
            .limit(1)
            .scalar_subquery()
            .label("oldest_undelivered")
        )
        async with self._engine.connect() as connection:
            newest, in_flight, state = await _observe(connection, table, oldest_undelivered)
            safe = self._horizon.advance(newest, in_flight)
            query = (
                sa.select(*_columns(table))
                .where(table.c.delivered_at.is_(None), table.c.sequence <= safe)
                .order_by(table.c.sequence)
                .limit(self._batch_size)
            )
            batch = [_record(row) for row in await connection.execute(query)]
        self._report_lag(state.oldest_undelivered)
        if not batch:
            return 0
        selected = [
            record
            for record in batch
            if self._event_types is None or record.event_type in self._event_types
        ]
        if selected:
            await self._deliver(selected)
        async with self._engine.begin() as connection:
            await connection.execute(
                sa.update(table)
                .where(table.c.sequence.in_([record.sequence for record in batch]))
                .values(delivered_at=self._clock.now())
            )
        return len(batch)

    def _report_lag(self, oldest_undelivered: dt.datetime | None) -> None:
        lag = 0.0
        if oldest_undelivered is not None:
            lag = max(0.0, (self._clock.now() - _utc(oldest_undelivered)).total_seconds())
        self.lag_seconds = lag
        OUTBOX_LAG.labels(self._service).set(lag)


async def feed(
    engine: AsyncEngine,
    table: sa.Table,
    *,
    after_sequence: int,
    event_types: Collection[str] | None = None,
    program_ids: Collection[str] | None = None,
    poll_interval: float = 0.5,
    stop: asyncio.Event | None = None,
    batch_size: int = 500,
) -> AsyncIterator[OutboxRecord]:
    """Events with a sequence above ``after_sequence``, in order: stored ones, then new ones.

    Runs until cancelled or until ``stop`` is set. ``event_types`` and ``program_ids``
    filter (None: all; empty: nothing). ``after_sequence`` 0 starts at the oldest event
    kept. Raises ``FailedPrecondition`` ``SEQUENCE_PRUNED`` (metadata ``oldest_sequence``)
    when events after the position may have been pruned, at the start or while catching
    up. No database connection is held while the consumer handles an event.
    """
    stop = stop or asyncio.Event()
    horizon = _Horizon()
    # Highest sequence passed: yielded, or skipped by the filters.
    position = after_sequence
    filters: list[sa.ColumnElement[bool]] = []
    if event_types is not None:
        filters.append(table.c.event_type.in_(list(event_types)))
    if program_ids is not None:
        filters.append(table.c.program_id.in_(list(program_ids)))
    oldest_kept = sa.func.min(table.c.sequence).label("oldest")
    while not stop.is_set():
        async with engine.connect() as connection:
            if is_postgres(connection):
                # The pruning check and the rows read must see the same moment.
                await connection.execution_options(isolation_level="REPEATABLE READ")
            newest, in_flight, state = await _observe(connection, table, oldest_kept)
            safe = horizon.advance(newest, in_flight)
            _check_not_pruned(position, state.oldest)
            query = (
                sa.select(*_columns(table))
                .where(table.c.sequence > position, table.c.sequence <= safe, *filters)
                .order_by(table.c.sequence)
                .limit(batch_size)
            )
            records = [_record(row) for row in await connection.execute(query)]
        for record in records:
            yield record
        if len(records) == batch_size:
            position = records[-1].sequence
            continue
        position = max(position, safe)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), poll_interval)


def _check_not_pruned(position: int, oldest: int | None) -> None:
    # Pruning removes a prefix of the log and keeps the newest event, so every number
    # from the oldest kept one up still exists (or never did). A reader at ``position``
    # lost nothing iff the next number after it is still within the kept range. It errs
    # on the safe side when the numbers just below the oldest kept event were never
    # committed (rolled-back writers leave gaps).
    if position > 0 and oldest is not None and position + 1 < oldest:
        raise FailedPrecondition(
            "Events after the requested position are no longer kept; "
            "start again from the oldest kept event.",
            reason="SEQUENCE_PRUNED",
            metadata={"oldest_sequence": str(oldest)},
        )


async def prune(
    engine: AsyncEngine, table: sa.Table, *, before: dt.datetime, batch_size: int = 1000
) -> int:
    """Delete delivered events created before ``before``; returns how many were deleted.

    Only a prefix of the log goes — up to the first event that must stay (undelivered, or
    created since ``before``) — and the newest event always stays, so the oldest kept
    event is a true boundary for ``SEQUENCE_PRUNED``. Deletes ``batch_size`` numbers per
    transaction, so that writers (SQLite) and readers' horizons (PostgreSQL) never wait
    long. Run it as a leader job.
    """
    stays = sa.or_(table.c.delivered_at.is_(None), table.c.created_at >= before)
    first_staying = (
        sa.select(table.c.sequence)
        .where(stays)
        .order_by(table.c.sequence)
        .limit(1)
        .scalar_subquery()
    )
    async with engine.connect() as connection:
        oldest, newest, staying = (
            await connection.execute(
                sa.select(
                    sa.func.min(table.c.sequence), sa.func.max(table.c.sequence), first_staying
                )
            )
        ).one()
    if newest is None:
        return 0
    end = newest if staying is None else min(staying, newest)
    deleted = 0
    for low in range(oldest, end, batch_size):
        async with engine.begin() as connection:
            result = await connection.execute(
                sa.delete(table).where(
                    table.c.sequence < min(low + batch_size, end),
                    # Re-checked: a row committed since the scan may belong below ``end``.
                    table.c.delivered_at.is_not(None),
                    table.c.created_at < before,
                )
            )
            deleted += result.rowcount
    return deleted
