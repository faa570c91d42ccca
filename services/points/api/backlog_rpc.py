"""IngestBacklog: a store's offline backlog of orders and events, streamed after an outage.

Each item goes through the same handler as its own call (EarnForOrder or RecordEvent):
same validation, same access checks, same idempotency, its own transaction, applied as
it arrives. One bad item never fails the upload; it is reported in the summary. The
upload itself is idempotent by its request_id: the summary is stored at the end, keyed
on a digest of every item, so re-sending a completed upload returns the original
summary, and re-sending its items under another id counts them as duplicates.
"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from google.protobuf import wrappers_pb2

from loyalty.points.v1 import points_service_pb2 as api
from services.points.api.earning_rpc import EarningRpc
from shared.errors import DomainError, ErrorKind, InvalidArgument
from shared.idempotency import last_run_replayed, validate_request_id

if TYPE_CHECKING:
    from services.points.storage.uow import SqlPointsUnitOfWork

MAX_ITEMS = 10_000
RETRYABLE = frozenset({ErrorKind.UNAVAILABLE, ErrorKind.ABORTED, ErrorKind.RESOURCE_EXHAUSTED})


class BacklogRpc(EarningRpc):
    """Mixed into PointsServicer; each item goes through ``EarningRpc``'s handlers."""

    async def IngestBacklog(
        self, request_iterator: AsyncIterator[api.IngestBacklogRequest], context: Any
    ) -> api.IngestBacklogResponse:
        upload_id: str | None = None
        digest = hashlib.sha256()
        summary = api.IngestBacklogResponse()
        index = -1
        async for message in request_iterator:
            index += 1
            if upload_id is None:
                validate_request_id(message.request_id)
                upload_id = message.request_id
            elif message.request_id and message.request_id != upload_id:
                raise InvalidArgument.for_field(
                    "request_id",
                    "must be the same in every message of one upload",
                    "REQUEST_ID_CHANGED",
                )
            item = api.IngestBacklogRequest()
            item.CopyFrom(message)
            item.ClearField("request_id")
            digest.update(item.SerializeToString(deterministic=True))
            if index >= MAX_ITEMS:
                _reject(
                    summary,
                    index,
                    message,
                    "",
                    "BACKLOG_TOO_LARGE",
                    f"an upload holds at most {MAX_ITEMS} items; send the rest in another",
                )
                continue
            await self._ingest(summary, index, message, context)
        if upload_id is None:
            raise InvalidArgument.for_field("item", "send at least one item", "EMPTY_BACKLOG")

        async def completed(uow: SqlPointsUnitOfWork) -> api.IngestBacklogResponse:
            return summary

        return await self._idempotency.run(
            self._uow(),
            scope="backlog",
            request_id=upload_id,
            method="IngestBacklog",
            request=wrappers_pb2.BytesValue(value=digest.digest()),
            response_type=api.IngestBacklogResponse,
            operation=completed,
        )

    async def _ingest(
        self,
        summary: api.IngestBacklogResponse,
        index: int,
        message: api.IngestBacklogRequest,
        context: Any,
    ) -> None:
        which = message.WhichOneof("item")
        key = message.order.order_id if which == "order" else message.event.request_id
        try:
            if which == "order":
                points = (await self.EarnForOrder(message.order, context)).points
            elif which == "event":
                points = (await self.RecordEvent(message.event, context)).points
            else:
                _reject(summary, index, message, "item", "EMPTY_ITEM", "set order or event")
                return
        except DomainError as error:
            field = (
                error.violations[0].field
                if isinstance(error, InvalidArgument) and error.violations
                else ""
            )
            _reject(
                summary,
                index,
                message,
                field,
                error.reason,
                error.message,
                key=key,
                retryable=error.kind in RETRYABLE,
            )
            return
        if last_run_replayed():
            summary.duplicate_count += 1
        else:
            summary.accepted_count += 1
            summary.points_earned += points


def _reject(
    summary: api.IngestBacklogResponse,
    index: int,
    message: api.IngestBacklogRequest,
    field: str,
    reason: str,
    text: str,
    *,
    key: str = "",
    retryable: bool = False,
) -> None:
    summary.rejected_count += 1
    summary.rejections.add(
        index=index,
        item_id=message.item_id,
        key=key,
        reason=reason,
        message=text,
        field=field,
        retryable=retryable,
    )
