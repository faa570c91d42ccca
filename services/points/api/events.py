"""The points events on the wire: outbox payloads and WatchEvents messages."""

from __future__ import annotations

from loyalty.points.v1 import events_pb2 as pb
from loyalty.tiers.v1 import tiers_service_pb2 as tiers_api
from loyalty.type.v1 import customer_pb2
from services.points.api.ledger_mapping import entry_to_proto
from services.points.api.mapping import program_to_proto
from services.points.domain.ledger import Entry, TierActivity
from services.points.domain.program import Program
from services.points.storage.events import EventEncoders
from shared.outbox import OutboxRecord
from shared.proto_types import to_timestamp


def encode_entry(entry: Entry) -> bytes:
    event = pb.PointsEvent(
        program_id=entry.program_id,
        ledger_entry_appended=pb.LedgerEntryAppended(entry=entry_to_proto(entry)),
    )
    return event.SerializeToString()


def encode_program(program: Program) -> bytes:
    event = pb.PointsEvent(
        program_id=program.program_id,
        program_changed=pb.ProgramChanged(program=program_to_proto(program)),
    )
    return event.SerializeToString()


def encode_activity(activity: TierActivity) -> bytes:
    """The tiers RecordActivity request itself; the relay adds the outbox event id as
    its request_id, so a redelivery is the same request."""
    request = tiers_api.RecordActivityRequest(
        customer=customer_pb2.CustomerRef(
            program_id=activity.program_id, customer_id=activity.customer_id
        ),
        points=activity.points,
        occurred_at=to_timestamp(activity.occurred_at),
        source_id=activity.source_id,
    )
    if activity.spend_minor:
        request.spend.currency_code = activity.currency_code
        request.spend.amount_minor = activity.spend_minor
    return request.SerializeToString()


ENCODERS = EventEncoders(entry=encode_entry, program=encode_program, activity=encode_activity)


def event_from_record(record: OutboxRecord) -> pb.PointsEvent:
    """The stored payload completed with what the outbox assigned: sequence, id, time."""
    event = pb.PointsEvent.FromString(record.payload)
    event.sequence = record.sequence
    event.event_id = record.event_id
    event.occurred_at.CopyFrom(to_timestamp(record.occurred_at))
    return event
