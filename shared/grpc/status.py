"""Domain errors → gRPC status with a ``google.rpc.Status`` rich payload (AIP-193).

Exactly one ``ErrorInfo`` per status, plus ``BadRequest`` field violations for bad
input and ``RetryInfo`` when the client should wait. Clients read them with
``grpc_status.rpc_status.from_call``.
"""

from __future__ import annotations

import grpc
from google.protobuf import any_pb2, duration_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2

from shared.errors import DomainError, ErrorKind, InvalidArgument, ResourceExhausted

_CODES: dict[ErrorKind, grpc.StatusCode] = {kind: grpc.StatusCode[kind.value] for kind in ErrorKind}

STATUS_DETAILS_KEY = "grpc-status-details-bin"


def _pack(message: object) -> any_pb2.Any:
    packed = any_pb2.Any()
    packed.Pack(message)  # type: ignore[arg-type]
    return packed


def rich_status(
    code: grpc.StatusCode,
    message: str,
    *,
    reason: str,
    domain: str,
    metadata: dict[str, str] | None = None,
    error: DomainError | None = None,
) -> status_pb2.Status:
    """Build the ``google.rpc.Status`` for one failure."""
    status = status_pb2.Status(code=getattr(code_pb2, code.name), message=message)
    info = error_details_pb2.ErrorInfo(reason=reason, domain=domain, metadata=metadata or {})
    status.details.append(_pack(info))
    if isinstance(error, InvalidArgument) and error.violations:
        bad_request = error_details_pb2.BadRequest(
            field_violations=[
                error_details_pb2.BadRequest.FieldViolation(
                    field=v.field, description=v.description, reason=v.reason
                )
                for v in error.violations
            ]
        )
        status.details.append(_pack(bad_request))
    if isinstance(error, ResourceExhausted) and error.retry_after_seconds is not None:
        seconds = error.retry_after_seconds
        delay = duration_pb2.Duration(seconds=int(seconds), nanos=int((seconds % 1) * 1e9))
        status.details.append(_pack(error_details_pb2.RetryInfo(retry_delay=delay)))
    return status


def status_for(error: DomainError, domain: str) -> tuple[grpc.StatusCode, status_pb2.Status]:
    code = _CODES[error.kind]
    return code, rich_status(
        code,
        error.message,
        reason=error.reason,
        domain=domain,
        metadata=error.metadata,
        error=error,
    )


def trailing_metadata(status: status_pb2.Status) -> tuple[tuple[str, bytes], ...]:
    return ((STATUS_DETAILS_KEY, status.SerializeToString()),)
