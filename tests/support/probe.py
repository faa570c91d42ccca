"""A service built on the tiers contract whose handlers misbehave on purpose, to test the
shared runtime (overload cap, error mapping, streaming, draining) through real gRPC."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from loyalty.tiers.v1 import tiers_service_pb2 as api
from loyalty.tiers.v1 import tiers_service_pb2_grpc as grpc_api
from services.tiers.app import SCOPES, SPEC
from shared.errors import FailedPrecondition, InvalidArgument
from shared.service import Mounted, Runtime, ServiceSpec

SECRET = "db-password-hunter2"


class ProbeServicer(grpc_api.TierServiceServicer):
    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.entered = 0

    async def GetCustomerTier(self, request: Any, context: Any) -> api.GetCustomerTierResponse:
        """Blocks until released: holds a slot of the concurrency cap."""
        self.entered += 1
        await self.release.wait()
        return api.GetCustomerTierResponse()

    async def GetTierLadder(self, request: Any, context: Any) -> api.GetTierLadderResponse:
        raise RuntimeError(f"connection to postgres://app:{SECRET}@db failed")

    async def AssignTier(self, request: Any, context: Any) -> api.AssignTierResponse:
        raise InvalidArgument.for_field("reason", "is required", "REQUIRED")

    async def WatchEvents(
        self, request: Any, context: Any
    ) -> AsyncIterator[api.WatchEventsResponse]:
        for _ in range(3):
            yield api.WatchEventsResponse()
        raise FailedPrecondition("feed ended", reason="SEQUENCE_PRUNED")


def probe_spec() -> tuple[ServiceSpec, ProbeServicer]:
    servicer = ProbeServicer()  # type: ignore[abstract]  # unlisted RPCs: UNIMPLEMENTED

    async def mount(runtime: Runtime) -> Mounted:
        return Mounted(servicer, grpc_api.add_TierServiceServicer_to_server, SCOPES)

    return (
        ServiceSpec(
            name="probe",
            full_name=SPEC.full_name,
            settings_cls=SPEC.settings_cls,
            metadata=SPEC.metadata,
            migrations_dir=SPEC.migrations_dir,
            mount=mount,
        ),
        servicer,
    )
