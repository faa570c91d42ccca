"""The customer's tier benefits from loyalty.tiers.v1 ``TierService/GetCustomerTier``.

Implements ``TierBenefitsSource`` (``services.points.domain.ports``). Earning asks only
when a tier multiplier rule applies, and then cannot proceed without an answer: any
failure to get one is ``UNAVAILABLE TIERS_UNAVAILABLE``, which the caller retries with the
same ids (nothing was written). The channel's service config already retries UNAVAILABLE
and bounds each call with the client deadline.
"""

from __future__ import annotations

from collections.abc import Sequence

import grpc
from grpc import aio

from loyalty.tiers.v1 import tiers_service_pb2 as tiers_api
from loyalty.tiers.v1 import tiers_service_pb2_grpc as tiers_grpc
from loyalty.type.v1 import customer_pb2
from services.points.domain.earning import TierBenefits
from shared.errors import Unavailable
from shared.grpc.clients import create_channel
from shared.outbox import OutboxRecord


class GrpcTierBenefits:
    def __init__(self, channel: aio.Channel) -> None:
        self._channel = channel
        self._stub = tiers_grpc.TierServiceStub(channel)

    @classmethod
    def connect(cls, target: str, *, api_key: str, timeout_seconds: float) -> GrpcTierBenefits:
        return cls(create_channel(target, api_key=api_key, timeout_seconds=timeout_seconds))

    async def benefits(self, program_id: str, customer_id: str) -> TierBenefits | None:
        request = tiers_api.GetCustomerTierRequest(
            customer=customer_pb2.CustomerRef(program_id=program_id, customer_id=customer_id)
        )
        try:
            response = await self._stub.GetCustomerTier(request)
        except aio.AioRpcError as error:
            # Tiers knows a program only once a ladder is set: no ladder, no tier, 1x.
            if error.code() is grpc.StatusCode.NOT_FOUND:
                return None
            raise Unavailable(
                "Tier multipliers cannot be applied right now because the tiers service "
                "is unavailable; retry the same request.",
                reason="TIERS_UNAVAILABLE",
                metadata={"tiers_status": error.code().name},
            ) from None
        if not response.customer_tier.HasField("tier"):
            return None
        tier = response.customer_tier.tier
        return TierBenefits(
            tier_name=tier.display_name,
            earning_multiplier_bps=tier.benefits.earning_multiplier_bps,
            event_multiplier_bps=dict(tier.benefits.event_multiplier_bps),
        )

    async def deliver_activity(self, records: Sequence[OutboxRecord]) -> None:
        """The outbox relay's delivery: each record's payload is a RecordActivityRequest.

        The event id becomes the request id, so a redelivery (after a crash between the
        call and the relay's bookkeeping) is the same request and tiers replays it. A
        program without a tier ladder has nothing to count: delivered. Any other failure
        raises, and the relay retries the same batch with backoff — nothing is skipped.
        """
        for record in records:
            request = tiers_api.RecordActivityRequest.FromString(record.payload)
            request.request_id = record.event_id
            try:
                await self._stub.RecordActivity(request)
            except aio.AioRpcError as error:
                if error.code() is not grpc.StatusCode.NOT_FOUND:
                    raise

    async def close(self) -> None:
        await self._channel.close()
