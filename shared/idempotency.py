"""Exactly-once mutations keyed by ``request_id`` (AIP-155).

The stored outcome is written in the *same transaction* as the effect, after it:

1. run the operation (its writes are not committed yet);
2. ``INSERT`` the key with the request fingerprint and the serialized response;
   a concurrent duplicate blocks on the unique index until the first commits;
3. if the key already existed, roll back our effect and replay the stored response
   (or refuse with ``REQUEST_ID_REUSED`` when the payload differs).

A crash before commit leaves neither effect nor key, so the retry runs afresh; after
commit the retry replays. The fast path costs one extra INSERT in the transaction that
was going to commit anyway. Failed requests are not stored: they had no effect, so a
retry may run again (and succeed once the customer has the points).
"""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable, Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from typing import TypeVar

import sqlalchemy as sa
from google.protobuf.message import Message
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from shared.clock import Clock
from shared.errors import DomainError, FieldViolation, InvalidArgument
from shared.uow import UnitOfWork

M = TypeVar("M", bound=Message)
U = TypeVar("U", bound=UnitOfWork)

MAX_REQUEST_ID_LENGTH = 128

# Whether the last ``Idempotency.run`` in this task replayed a stored outcome: callers
# that apply many items (a backlog upload) count duplicates with it.
_replayed: ContextVar[bool] = ContextVar("idempotency_replayed", default=False)


def last_run_replayed() -> bool:
    return _replayed.get()


def idempotency_table(metadata: sa.MetaData) -> sa.Table:
    """The key table each service adds to its own schema."""
    return sa.Table(
        "idempotency_keys",
        metadata,
        # Scope keeps merchants' ids apart: usually the program id ("" for global calls).
        sa.Column("scope", sa.String(64), primary_key=True),
        sa.Column("request_id", sa.String(MAX_REQUEST_ID_LENGTH), primary_key=True),
        sa.Column("method", sa.String(100), nullable=False),
        sa.Column("fingerprint", sa.LargeBinary(32), nullable=False),
        sa.Column("response", sa.LargeBinary, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )


def fingerprint(request: Message) -> bytes:
    """SHA-256 of the request without its ``request_id``, serialized deterministically."""
    copy = type(request)()
    copy.CopyFrom(request)
    if "request_id" in copy.DESCRIPTOR.fields_by_name:
        copy.ClearField("request_id")
    return hashlib.sha256(copy.SerializeToString(deterministic=True)).digest()


def validate_request_id(request_id: str, field: str = "request_id") -> None:
    if not request_id:
        raise InvalidArgument.for_field(field, "is required for this mutating call", "REQUIRED")
    if len(request_id) > MAX_REQUEST_ID_LENGTH or not request_id.isprintable():
        raise InvalidArgument.for_field(
            field, f"must be 1 to {MAX_REQUEST_ID_LENGTH} printable characters", "INVALID_FORMAT"
        )


@dataclass(frozen=True)
class NaturalKey:
    """A second identity of a request, e.g. an order id: one effect per order, whatever
    request_id the client sends. ``field`` names it in a REQUEST_ID_REUSED violation."""

    scope: str
    key: str
    field: str


class Idempotency:
    """Runs operations exactly once per (scope, request_id) within one service."""

    def __init__(self, table: sa.Table, clock: Clock) -> None:
        self._table = table
        self._clock = clock

    async def run(
        self,
        uow: U,
        *,
        scope: str,
        request_id: str,
        method: str,
        request: Message,
        response_type: type[M],
        operation: Callable[[U], Awaitable[M]],
        natural_keys: Sequence[NaturalKey] = (),
    ) -> M:
        """Run ``operation`` inside ``uow`` (not yet entered) once; commit; return the response.

        Every key (the request id and any ``natural_keys``) is recorded with the response in
        the same transaction; a request that finds any of them taken replays that outcome.
        """
        validate_request_id(request_id)
        _replayed.set(False)
        digest = fingerprint(request)
        keys = [NaturalKey(scope, request_id, "request_id"), *natural_keys]
        async with uow:
            try:
                response = await operation(uow)
            except DomainError:
                # A concurrent twin may have won the race and caused our failure
                # (e.g. it spent the points first): its outcome is ours.
                await uow.rollback()
                for key in keys:
                    stored = await self._stored(uow.session, key.scope, key.key)
                    if stored is not None:
                        return self._replay(stored, method, digest, response_type, key.field)
                raise
            for key in keys:
                if not await self._record(
                    uow.session, key.scope, key.key, method, digest, response
                ):
                    await uow.rollback()
                    stored = await self._stored(uow.session, key.scope, key.key)
                    if stored is None:  # pragma: no cover - keys never vanish within retention
                        raise RuntimeError("idempotency key vanished between conflict and read")
                    return self._replay(stored, method, digest, response_type, key.field)
            await uow.commit()
            return response

    async def _record(
        self,
        session: AsyncSession,
        scope: str,
        request_id: str,
        method: str,
        digest: bytes,
        response: Message,
    ) -> bool:
        """Insert the key; False when it already exists (after the owner committed)."""
        values = {
            "scope": scope,
            "request_id": request_id,
            "method": method,
            "fingerprint": digest,
            "response": response.SerializeToString(),
            "created_at": self._clock.now(),
        }
        dialect = session.bind.dialect.name if session.bind is not None else ""
        insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
        # RETURNING says whether *we* inserted; rowcount is not reliable across drivers
        # (async psycopg reports -1 here).
        statement = (
            insert(self._table)
            .values(values)
            .on_conflict_do_nothing()
            .returning(self._table.c.request_id)
        )
        result = await session.execute(statement)
        return result.first() is not None

    async def _stored(
        self, session: AsyncSession, scope: str, request_id: str
    ) -> tuple[str, bytes, bytes] | None:
        t = self._table
        query = sa.select(t.c.method, t.c.fingerprint, t.c.response).where(
            t.c.scope == scope, t.c.request_id == request_id
        )
        row = (await session.execute(query)).first()
        return None if row is None else (row.method, row.fingerprint, row.response)

    @staticmethod
    def _replay(
        stored: tuple[str, bytes, bytes],
        method: str,
        digest: bytes,
        response_type: type[M],
        field: str = "request_id",
    ) -> M:
        stored_method, stored_digest, payload = stored
        _replayed.set(True)
        if stored_method != method or stored_digest != digest:
            raise InvalidArgument(
                f"{field} was already used for a different request",
                reason="REQUEST_ID_REUSED",
                violations=[
                    FieldViolation(
                        field, "was already used for a different request", "REQUEST_ID_REUSED"
                    )
                ],
                metadata={"original_method": stored_method.rsplit("/", 1)[-1]},
            )
        return response_type.FromString(payload)
