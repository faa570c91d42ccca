"""The points events on the wire: outbox payloads and WatchEvents messages."""

from __future__ import annotations

from loyalty.points.v1 import events_pb2 as pb
from services.points.api.ledger_mapping import entry_to_proto
from services.points.api.mapping import program_to_proto
from services.points.domain.ledger import Entry
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


ENCODERS = EventEncoders(entry=encode_entry, program=encode_program)


def event_from_record(record: OutboxRecord) -> pb.PointsEvent:
    """The stored payload completed with what the outbox assigned: sequence, id, time."""
    event = pb.PointsEvent.FromString(record.payload)
    event.sequence = record.sequence
    event.event_id = record.event_id
    event.occurred_at.CopyFrom(to_timestamp(record.occurred_at))
    return event
