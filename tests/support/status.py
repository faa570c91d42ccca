"""Read the rich error model (google.rpc.Status) off a failed call, as a client would."""

from __future__ import annotations

from dataclasses import dataclass

import grpc
from google.rpc import error_details_pb2, status_pb2
from grpc import aio


@dataclass
class RichError:
    code: grpc.StatusCode
    message: str
    info: error_details_pb2.ErrorInfo
    violations: dict[str, error_details_pb2.BadRequest.FieldViolation]
    retry_delay_seconds: float | None
    detail_count: int


def rich_error(error: aio.AioRpcError) -> RichError:
    payload = next(
        (v for k, v in error.trailing_metadata() or () if k == "grpc-status-details-bin"), None
    )
    assert payload is not None, f"no rich status on {error.code()}: {error.details()}"
    status = status_pb2.Status.FromString(payload)
    assert status.code == error.code().value[0]
    infos, violations, delay = [], {}, None
    for detail in status.details:
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            infos.append(info)
        elif detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad = error_details_pb2.BadRequest()
            detail.Unpack(bad)
            violations = {v.field: v for v in bad.field_violations}
        elif detail.Is(error_details_pb2.RetryInfo.DESCRIPTOR):
            retry = error_details_pb2.RetryInfo()
            detail.Unpack(retry)
            delay = retry.retry_delay.seconds + retry.retry_delay.nanos / 1e9
    assert len(infos) == 1, "exactly one ErrorInfo per status"
    return RichError(
        error.code(), error.details() or "", infos[0], violations, delay, len(status.details)
    )
