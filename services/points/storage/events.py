"""The points event sink: every change becomes an outbox row in the same transaction.

Payloads are encoded by functions the app wires in (the contract lives in the api
layer), so storage depends on no generated code.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession

from services.points.domain.ledger import Entry, TierActivity
from services.points.domain.program import Program
from shared.outbox import NewEvent, OutboxWriter

LEDGER_ENTRY_APPENDED = "ledger_entry_appended"
PROGRAM_CHANGED = "program_changed"
# Not part of WatchEvents: the relay's work for the tiers service.
TIER_ACTIVITY = "tier_activity"
# What WatchEvents streams: payloads that are PointsEvent messages.
PUBLIC_EVENT_TYPES = frozenset({LEDGER_ENTRY_APPENDED, PROGRAM_CHANGED})


@dataclass(frozen=True)
class EventEncoders:
    entry: Callable[[Entry], bytes]
    program: Callable[[Program], bytes]
    activity: Callable[[TierActivity], bytes]


class OutboxEventSink:
    def __init__(
        self, session: AsyncSession, writer: OutboxWriter, encoders: EventEncoders
    ) -> None:
        self._session = session
        self._writer = writer
        self._encoders = encoders

    async def entries_appended(self, entries: Sequence[Entry]) -> None:
        if not entries:
            return
        await self._writer.add_many(
            self._session,
            [
                NewEvent(
                    event_type=LEDGER_ENTRY_APPENDED,
                    program_id=entry.program_id,
                    customer_id=entry.customer_id,
                    payload=self._encoders.entry(entry),
                    occurred_at=entry.created_at,
                )
                for entry in entries
            ],
        )

    async def program_changed(self, program: Program) -> None:
        await self._writer.add(
            self._session,
            event_type=PROGRAM_CHANGED,
            program_id=program.program_id,
            customer_id=None,
            payload=self._encoders.program(program),
            occurred_at=program.updated_at,
        )

    async def tier_activity(self, activity: TierActivity) -> None:
        if activity.points == 0 and activity.spend_minor == 0:
            return  # nothing a tier could count
        await self._writer.add(
            self._session,
            event_type=TIER_ACTIVITY,
            program_id=activity.program_id,
            customer_id=activity.customer_id,
            payload=self._encoders.activity(activity),
            occurred_at=activity.occurred_at,
        )
