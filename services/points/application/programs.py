"""Program use cases: one function per RPC, each inside the caller's unit of work."""

from __future__ import annotations

from dataclasses import dataclass

from services.points.domain.ports import PointsUnitOfWork
from services.points.domain.program import Program, validate_program
from shared.auth import Principal
from shared.clock import Clock
from shared.errors import NotFound
from shared.ids import IdGenerator
from shared.validation import Violations

# Fields UpdateProgram may change. The currency is fixed: balances and rules are
# denominated in it.
UPDATABLE_FIELDS = frozenset(
    {
        "display_name",
        "time_zone",
        "expiry_policy",
        "pending_period",
        "refund_policy",
        "rounding_mode",
    }
)


def program_not_found(program_id: str) -> NotFound:
    return NotFound(
        f"Program {program_id} does not exist.",
        reason="PROGRAM_NOT_FOUND",
        metadata={"program_id": program_id},
    )


async def create_program(
    uow: PointsUnitOfWork, draft: Program, *, clock: Clock, ids: IdGenerator
) -> Program:
    now = clock.now()
    program = Program(
        program_id=ids.new_id("prg"),
        name=draft.name.strip(),
        currency_code=draft.currency_code,
        time_zone=draft.time_zone,
        expiry=draft.expiry,
        pending_seconds=draft.pending_seconds,
        refund_policy=draft.refund_policy,
        rounding=draft.rounding,
        created_at=now,
        updated_at=now,
    )
    violations = Violations()
    validate_program(program, violations)
    violations.raise_if_any()
    await uow.programs.add(program)
    await uow.events.program_changed(program)
    return program


async def get_program(uow: PointsUnitOfWork, program_id: str, principal: Principal) -> Program:
    principal.require_program(program_id)
    program = await uow.programs.get(program_id)
    if program is None:
        raise program_not_found(program_id)
    return program


@dataclass(frozen=True)
class ProgramChanges:
    """The new values of the fields named in the update mask (others are ignored)."""

    fields: frozenset[str]
    values: Program


async def update_program(
    uow: PointsUnitOfWork, program_id: str, changes: ProgramChanges, *, clock: Clock
) -> Program:
    current = await uow.programs.get(program_id)
    if current is None:
        raise program_not_found(program_id)
    new = changes.values
    replacements: dict[str, object] = {}
    if "display_name" in changes.fields:
        replacements["name"] = new.name.strip()
    if "time_zone" in changes.fields:
        replacements["time_zone"] = new.time_zone
    if "expiry_policy" in changes.fields:
        replacements["expiry"] = new.expiry
    if "pending_period" in changes.fields:
        replacements["pending_seconds"] = new.pending_seconds
    if "refund_policy" in changes.fields:
        replacements["refund_policy"] = new.refund_policy
    if "rounding_mode" in changes.fields:
        replacements["rounding"] = new.rounding
    updated = current.updated(clock.now(), **replacements)
    violations = Violations()
    validate_program(updated, violations)
    violations.raise_if_any()
    await uow.programs.update(updated)
    await uow.events.program_changed(updated)
    return updated


async def list_programs(
    uow: PointsUnitOfWork, after_id: str | None, limit: int, principal: Principal
) -> tuple[list[Program], bool]:
    """One page of the programs the caller may see, and whether more follow."""
    visible: list[Program] = []
    cursor = after_id
    # A key limited to some programs filters in Python: such keys see few programs, so
    # the scan stays short, and the SQL stays the same for every caller.
    while len(visible) <= limit:
        batch = await uow.programs.list_after(cursor, limit + 1)
        visible.extend(p for p in batch if principal.allows_program(p.program_id))
        if len(batch) <= limit:
            break
        cursor = batch[-1].program_id
    return visible[:limit], len(visible) > limit
