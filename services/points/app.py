"""Wiring of the points service: the one place that knows every part."""

from __future__ import annotations

from functools import partial
from pathlib import Path

from loyalty.points.v1 import points_service_pb2_grpc
from services.points.api.servicer import SCOPES, PointsServicer
from services.points.settings import PointsSettings
from services.points.storage import tables
from services.points.storage.uow import SqlPointsUnitOfWork
from shared.idempotency import Idempotency
from shared.service import Mounted, Runtime, ServiceSpec
from shared.uow import session_factory


async def mount(runtime: Runtime) -> Mounted:
    sessions = session_factory(runtime.engine)
    # The generated base class is abstract for type checkers only; at run time its
    # methods answer UNIMPLEMENTED, which is what RPCs not built yet must do.
    servicer = PointsServicer(  # type: ignore[abstract]
        uow=partial(SqlPointsUnitOfWork, sessions),
        idempotency=Idempotency(tables.idempotency_keys, runtime.clock),
        clock=runtime.clock,
        ids=runtime.ids,
    )
    return Mounted(
        servicer=servicer,
        add_to_server=points_service_pb2_grpc.add_PointsServiceServicer_to_server,
        scopes=SCOPES,
    )


SPEC = ServiceSpec(
    name="points",
    full_name="loyalty.points.v1.PointsService",
    settings_cls=PointsSettings,
    metadata=tables.metadata,
    migrations_dir=Path(__file__).parent / "storage" / "migrations",
    mount=mount,
)
