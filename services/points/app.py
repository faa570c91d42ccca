"""Wiring of the points service: the one place that knows every part."""

from __future__ import annotations

import datetime as dt
import os
import socket
from collections.abc import Callable
from functools import partial
from pathlib import Path

from sqlalchemy.ext.asyncio import AsyncEngine

from loyalty.points.v1 import points_service_pb2_grpc
from services.points.api.events import ENCODERS
from services.points.api.servicer import SCOPES, PointsServicer
from services.points.application.jobs import drain_due_work
from services.points.clients.promotions import GrpcVoucherIssuer
from services.points.clients.tiers import GrpcTierBenefits
from services.points.settings import PointsSettings
from services.points.storage import tables
from services.points.storage.events import PUBLIC_EVENT_TYPES, TIER_ACTIVITY
from services.points.storage.uow import SqlPointsUnitOfWork
from shared.clock import Clock
from shared.idempotency import Idempotency
from shared.ids import IdGenerator
from shared.leader import LeaderLease, run_while_leader
from shared.outbox import OutboxRelay, feed, prune
from shared.service import Mounted, Runtime, ServiceSpec
from shared.uow import session_factory

# A dead leader is replaced after about the ttl.
LEADER_TTL = dt.timedelta(seconds=15)
BACKGROUND_INTERVAL = 1.0  # seconds between passes of due work


def unit_of_work_factory(
    engine: AsyncEngine, clock: Clock, ids: IdGenerator
) -> Callable[[], SqlPointsUnitOfWork]:
    """How every part of the service (and the tests) opens a unit of work."""
    return partial(
        SqlPointsUnitOfWork, session_factory(engine), clock=clock, ids=ids, encoders=ENCODERS
    )


async def mount(runtime: Runtime) -> Mounted:
    settings = runtime.settings
    assert isinstance(settings, PointsSettings), "mounted with the points settings class"
    uow = unit_of_work_factory(runtime.engine, runtime.clock, runtime.ids)
    key = settings.service_key.get_secret_value()
    timeout = settings.client_timeout_seconds
    tiers = GrpcTierBenefits.connect(settings.tiers_target, api_key=key, timeout_seconds=timeout)
    vouchers = GrpcVoucherIssuer.connect(
        settings.promotions_target, api_key=key, timeout_seconds=timeout
    )

    async def close_clients() -> None:
        await tiers.close()
        await vouchers.close()

    # Background work and the relay each run on one replica at a time.
    holder = f"{socket.gethostname()}:{os.getpid()}:{runtime.ids.new_id('proc')}"

    def lease(name: str) -> LeaderLease:
        return LeaderLease(runtime.engine, tables.leases, name, holder, LEADER_TTL, runtime.clock)

    relay = OutboxRelay(
        runtime.engine,
        tables.outbox,
        service="points",
        deliver=tiers.deliver_activity,
        clock=runtime.clock,
        event_types={TIER_ACTIVITY},
    )

    async def tier_relay() -> None:
        await run_while_leader(lease("points-tier-relay"), relay.run, interval=BACKGROUND_INTERVAL)

    retention = dt.timedelta(days=settings.event_retention_days)

    async def due_pass() -> None:
        await drain_due_work(uow, runtime.clock, runtime.ids)
        # Undelivered events are never pruned: the relay still owes them to tiers.
        await prune(runtime.engine, tables.outbox, before=runtime.clock.now() - retention)

    async def due_work() -> None:
        await run_while_leader(lease("points-due-work"), due_pass, interval=BACKGROUND_INTERVAL)

    servicer = PointsServicer(
        uow=uow,
        idempotency=Idempotency(tables.idempotency_keys, runtime.clock),
        clock=runtime.clock,
        ids=runtime.ids,
        tiers=tiers,
        events=partial(feed, runtime.engine, tables.outbox, event_types=PUBLIC_EVENT_TYPES),
        vouchers=vouchers,
    )
    return Mounted(
        servicer=servicer,
        add_to_server=points_service_pb2_grpc.add_PointsServiceServicer_to_server,
        scopes=SCOPES,
        background=[due_work, tier_relay],
        close=close_clients,
    )


SPEC = ServiceSpec(
    name="points",
    full_name="loyalty.points.v1.PointsService",
    settings_cls=PointsSettings,
    metadata=tables.metadata,
    migrations_dir=Path(__file__).parent / "storage" / "migrations",
    mount=mount,
)
