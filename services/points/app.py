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
from services.points.storage.uow import SqlPointsUnitOfWork
from shared.clock import Clock
from shared.idempotency import Idempotency
from shared.ids import IdGenerator
from shared.leader import LeaderLease, run_while_leader
from shared.outbox import feed
from shared.service import Mounted, Runtime, ServiceSpec
from shared.uow import session_factory

# Background work runs on one replica at a time; a dead leader is replaced after the ttl.
LEADER_TTL = dt.timedelta(seconds=15)
DUE_WORK_INTERVAL_SECONDS = 1.0


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
    holder = f"{socket.gethostname()}:{os.getpid()}:{runtime.ids.new_id('proc')}"
    lease = LeaderLease(
        runtime.engine, tables.leases, "points-due-work", holder, LEADER_TTL, runtime.clock
    )

    async def due_work() -> None:
        await run_while_leader(
            lease,
            partial(drain_due_work, uow, runtime.clock, runtime.ids),
            interval=DUE_WORK_INTERVAL_SECONDS,
        )

    tiers = GrpcTierBenefits.connect(
        settings.tiers_target,
        api_key=settings.service_key.get_secret_value(),
        timeout_seconds=settings.client_timeout_seconds,
    )
    vouchers = GrpcVoucherIssuer.connect(
        settings.promotions_target,
        api_key=settings.service_key.get_secret_value(),
        timeout_seconds=settings.client_timeout_seconds,
    )

    async def close_clients() -> None:
        await tiers.close()
        await vouchers.close()

    # The generated base class is abstract for type checkers only; at run time its
    # methods answer UNIMPLEMENTED, which is what RPCs not built yet must do.
    servicer = PointsServicer(  # type: ignore[abstract]
        uow=uow,
        idempotency=Idempotency(tables.idempotency_keys, runtime.clock),
        clock=runtime.clock,
        ids=runtime.ids,
        tiers=tiers,
        events=partial(feed, runtime.engine, tables.outbox),
        vouchers=vouchers,
    )
    return Mounted(
        servicer=servicer,
        add_to_server=points_service_pb2_grpc.add_PointsServiceServicer_to_server,
        scopes=SCOPES,
        background=[due_work],
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
