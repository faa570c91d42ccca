"""Domain exceptions: what went wrong, in terms a client can act on.

Domain code raises these and knows nothing of gRPC; the shared interceptor
(``shared.grpc.errors``) turns each into a status code plus a ``google.rpc.Status``
carrying one ``ErrorInfo`` (reason, domain, metadata) and, for bad input, ``BadRequest``
field violations. The message must be fit to show a cashier: no ids of internals, no
secrets, no ``repr()``.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass


class ErrorKind(enum.Enum):
    """The gRPC status family of an error, named without importing grpc."""

    INVALID_ARGUMENT = "INVALID_ARGUMENT"
    NOT_FOUND = "NOT_FOUND"
    ALREADY_EXISTS = "ALREADY_EXISTS"
    FAILED_PRECONDITION = "FAILED_PRECONDITION"
    ABORTED = "ABORTED"
    UNAVAILABLE = "UNAVAILABLE"
    RESOURCE_EXHAUSTED = "RESOURCE_EXHAUSTED"
    UNAUTHENTICATED = "UNAUTHENTICATED"
    PERMISSION_DENIED = "PERMISSION_DENIED"
    DEADLINE_EXCEEDED = "DEADLINE_EXCEEDED"


@dataclass(frozen=True, slots=True)
class FieldViolation:
    """One bad field: ``field`` is a dotted path into the request (``lines[2].quantity``)."""

    field: str
    description: str
    reason: str = ""


class DomainError(Exception):
    """Base of every error a client is meant to see.

    ``reason`` is UPPER_SNAKE_CASE and stable (clients switch on it); ``metadata`` carries
    the facts a client needs to act (e.g. ``{"available": "120"}``), all as strings.
    """

    kind: ErrorKind = ErrorKind.FAILED_PRECONDITION
    default_reason: str = "FAILED_PRECONDITION"

    def __init__(
        self,
        message: str,
        *,
        reason: str | None = None,
        metadata: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.reason = reason or self.default_reason
        self.metadata: dict[str, str] = dict(metadata or {})


class InvalidArgument(DomainError):
    """The request is malformed; ``violations`` says which fields and why."""

    kind = ErrorKind.INVALID_ARGUMENT
    default_reason = "INVALID_ARGUMENT"

    def __init__(
        self,
        message: str,
        *,
        violations: list[FieldViolation] | None = None,
        reason: str | None = None,
        metadata: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message, reason=reason, metadata=metadata)
        self.violations: list[FieldViolation] = list(violations or [])

    @classmethod
    def for_field(cls, field: str, description: str, reason: str = "") -> InvalidArgument:
        """The common case: one field is wrong."""
        return cls(
            f"{field}: {description}",
            violations=[FieldViolation(field, description, reason)],
            reason=reason or None,
        )


class NotFound(DomainError):
    kind = ErrorKind.NOT_FOUND
    default_reason = "NOT_FOUND"


class AlreadyExists(DomainError):
    kind = ErrorKind.ALREADY_EXISTS
    default_reason = "ALREADY_EXISTS"


class FailedPrecondition(DomainError):
    """A business rule refuses the request (e.g. ``INSUFFICIENT_POINTS``)."""

    kind = ErrorKind.FAILED_PRECONDITION
    default_reason = "FAILED_PRECONDITION"


class Aborted(DomainError):
    """A conflict with a concurrent request; retrying the same call may succeed."""

    kind = ErrorKind.ABORTED
    default_reason = "ABORTED"


class Unavailable(DomainError):
    """A dependency (database, another service) cannot be reached right now."""

    kind = ErrorKind.UNAVAILABLE
    default_reason = "UNAVAILABLE"


class ResourceExhausted(DomainError):
    """Rate limit or overload; ``retry_after_seconds`` tells the client when to retry."""

    kind = ErrorKind.RESOURCE_EXHAUSTED
    default_reason = "RESOURCE_EXHAUSTED"

    def __init__(
        self,
        message: str,
        *,
        retry_after_seconds: float | None = None,
        reason: str | None = None,
        metadata: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message, reason=reason, metadata=metadata)
        self.retry_after_seconds = retry_after_seconds


class Unauthenticated(DomainError):
    kind = ErrorKind.UNAUTHENTICATED
    default_reason = "UNAUTHENTICATED"


class PermissionDenied(DomainError):
    kind = ErrorKind.PERMISSION_DENIED
    default_reason = "PERMISSION_DENIED"
