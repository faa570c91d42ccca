"""Voucher codes for voucher rewards, from loyalty.promotions.v1 ``PromotionService/IssueVoucher``.

``VoucherIssuer`` is the seam the rewards use case depends on; ``GrpcVoucherIssuer`` is
its implementation over the suite's channel (deadline, retries on UNAVAILABLE, service
key). Issuing is idempotent on the caller's ``request_id``: the same id returns the same
code, which is what lets a retried redemption reuse the code of a crashed attempt.

Failures become the contract's RedeemReward errors: a refusal about the campaign or the
customer is FAILED_PRECONDITION ``VOUCHER_NOT_ISSUED`` (metadata ``promotions_reason``);
anything else — down, overloaded, not built yet (UNIMPLEMENTED), timed out, our key
refused — is UNAVAILABLE ``PROMOTIONS_UNAVAILABLE``, to be retried with the same id.
"""

from __future__ import annotations

import grpc
from google.rpc import error_details_pb2, status_pb2
from grpc import aio

from loyalty.promotions.v1 import promotions_service_pb2 as promotions_api
from loyalty.promotions.v1 import promotions_service_pb2_grpc as promotions_grpc
from loyalty.type.v1 import customer_pb2
from shared.errors import DomainError, FailedPrecondition, Unavailable
from shared.grpc.clients import create_channel
from shared.grpc.status import STATUS_DETAILS_KEY

# Answers that are the promotions service's verdict on this voucher: retrying the same
# call cannot change them.
_REFUSALS = frozenset(
    {
        grpc.StatusCode.NOT_FOUND,
        grpc.StatusCode.FAILED_PRECONDITION,
        grpc.StatusCode.INVALID_ARGUMENT,
        grpc.StatusCode.ALREADY_EXISTS,
        grpc.StatusCode.OUT_OF_RANGE,
    }
)


class GrpcVoucherIssuer:
    def __init__(self, channel: aio.Channel) -> None:
        self._channel = channel
        self._stub = promotions_grpc.PromotionServiceStub(channel)

    @classmethod
    def connect(cls, target: str, *, api_key: str, timeout_seconds: float) -> GrpcVoucherIssuer:
        return cls(create_channel(target, api_key=api_key, timeout_seconds=timeout_seconds))

    async def issue(
        self,
        *,
        request_id: str,
        campaign_id: str,
        program_id: str,
        customer_id: str,
        source_reference: str,
    ) -> str:
        request = promotions_api.IssueVoucherRequest(
            request_id=request_id,
            campaign_id=campaign_id,
            customer=customer_pb2.CustomerRef(program_id=program_id, customer_id=customer_id),
            source_reference=source_reference,
        )
        try:
            response = await self._stub.IssueVoucher(request)
        except aio.AioRpcError as error:
            raise voucher_error(error) from None
        return response.code.code

    async def close(self) -> None:
        await self._channel.close()


def voucher_error(error: aio.AioRpcError) -> DomainError:
    """The RedeemReward error for a failed IssueVoucher call."""
    code = error.code()
    if code in _REFUSALS:
        reason = _error_reason(error) or code.name
        return FailedPrecondition(
            f"The promotions service refused to issue the voucher ({reason}).",
            reason="VOUCHER_NOT_ISSUED",
            metadata={"promotions_reason": reason},
        )
    return Unavailable(
        "The voucher cannot be issued right now because the promotions service is "
        "unavailable; no points were spent. Retry the same request.",
        reason="PROMOTIONS_UNAVAILABLE",
        metadata={"promotions_status": code.name},
    )


def _error_reason(error: aio.AioRpcError) -> str:
    """``ErrorInfo.reason`` of the rich status, or "" when the answer carries none."""
    payload = next(
        (value for key, value in error.trailing_metadata() or () if key == STATUS_DETAILS_KEY),
        None,
    )
    if not isinstance(payload, bytes):
        return ""
    for detail in status_pb2.Status.FromString(payload).details:
        info = error_details_pb2.ErrorInfo()
        if detail.Unpack(info):
            return str(info.reason)
    return ""
