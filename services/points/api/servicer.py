"""PointsService over gRPC: proto ⇄ domain mapping, one unit of work per call.

RPCs not implemented yet fall through to the generated base class, which the shared
interceptor answers with UNIMPLEMENTED — nothing fakes success.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

from grpc import aio

from loyalty.points.v1 import points_service_pb2 as api
from loyalty.points.v1 import points_service_pb2_grpc
from services.points.api.backlog_rpc import BacklogRpc
from services.points.api.earning_rpc import EarningRpc
from services.points.api.events import event_from_record
from services.points.api.ledger_rpc import LedgerRpc
from services.points.api.mapping import program_from_proto, program_to_proto
from services.points.api.refunds_rpc import RefundsRpc
from services.points.api.rewards_rpc import RewardsRpc
from services.points.application import programs
from services.points.domain.ports import TierBenefitsSource, VoucherIssuer
from services.points.domain.program import validate_program
from services.points.storage.uow import SqlPointsUnitOfWork
from shared import pagination
from shared.auth import ADMIN, ALL_PROGRAMS, POS, READ, ScopeMap, get_principal
from shared.clock import Clock
from shared.errors import InvalidArgument
from shared.idempotency import Idempotency
from shared.ids import IdGenerator
from shared.outbox import OutboxRecord
from shared.validation import Violations, check_update_mask

Context = aio.ServicerContext[object, object]

# Who may call what; anything missing is admin-only. Kept next to the handlers it guards.
SCOPES = ScopeMap(
    CreateProgram=ADMIN,
    GetProgram=READ,
    UpdateProgram=ADMIN,
    ListPrograms=READ,
    CreateEarningRule=ADMIN,
    UpdateEarningRule=ADMIN,
    ListEarningRules=READ,
    ArchiveEarningRule=ADMIN,
    EarnForOrder=POS,
    RecordEvent=POS,
    Redeem=POS,
    HoldPoints=POS,
    CaptureHold=POS,
    ReleaseHold=POS,
    Adjust=ADMIN,
    ReverseOrder=POS,
    GetBalance=READ,
    ListTransactions=READ,
    CreateReward=ADMIN,
    ListRewards=READ,
    RedeemReward=POS,
    WatchEvents=frozenset({"reader", "service"}),
    IngestBacklog=POS,
)

# (after_sequence, program_ids or None for all) -> the outbox feed, oldest first, forever.
EventFeed = Callable[..., AsyncIterator[OutboxRecord]]

IMMUTABLE_PROGRAM_FIELDS = frozenset({"program_id", "currency_code", "created_at", "updated_at"})


# RefundsRpc and RewardsRpc extend LedgerRpc (they reuse its helpers), so they come first.
class PointsServicer(
    BacklogRpc,
    EarningRpc,
    RefundsRpc,
    RewardsRpc,
    LedgerRpc,
    points_service_pb2_grpc.PointsServiceServicer,
):
    def __init__(
        self,
        uow: Callable[[], SqlPointsUnitOfWork],
        idempotency: Idempotency,
        clock: Clock,
        ids: IdGenerator,
        tiers: TierBenefitsSource,
        events: EventFeed,
        vouchers: VoucherIssuer,
    ) -> None:
        self._uow = uow
        self._idempotency = idempotency
        self._clock = clock
        self._ids = ids
        self._tiers = tiers
        self._events = events
        self._vouchers = vouchers

    # -- programs ----------------------------------------------------------------------

    async def CreateProgram(
        self, request: api.CreateProgramRequest, context: Context
    ) -> api.CreateProgramResponse:
        violations = Violations()
        draft = program_from_proto(request.program, violations)
        validate_program(draft, violations)  # report shape and rule problems in one answer
        violations.raise_if_any()

        async def create(uow: SqlPointsUnitOfWork) -> api.CreateProgramResponse:
            program = await programs.create_program(uow, draft, clock=self._clock, ids=self._ids)
            return api.CreateProgramResponse(program=program_to_proto(program))

        return await self._idempotency.run(
            self._uow(),
            scope="",
            request_id=request.request_id,
            method="CreateProgram",
            request=request,
            response_type=api.CreateProgramResponse,
            operation=create,
        )

    async def GetProgram(
        self, request: api.GetProgramRequest, context: Context
    ) -> api.GetProgramResponse:
        if not request.program_id:
            raise InvalidArgument.for_field("program_id", "is required", "REQUIRED")
        async with self._uow() as uow:
            program = await programs.get_program(uow, request.program_id, get_principal())
        return api.GetProgramResponse(program=program_to_proto(program))

    async def UpdateProgram(
        self, request: api.UpdateProgramRequest, context: Context
    ) -> api.UpdateProgramResponse:
        program_id = request.program.program_id
        if not program_id:
            raise InvalidArgument.for_field("program.program_id", "is required", "REQUIRED")
        get_principal().require_program(program_id)
        mask_violations = Violations()
        fields = check_update_mask(
            request.update_mask.paths,
            mask_violations,
            allowed=programs.UPDATABLE_FIELDS,
            immutable=IMMUTABLE_PROGRAM_FIELDS,
        )
        mask_violations.raise_if_any()
        violations = Violations()
        values = program_from_proto(request.program, violations)
        # Enum fields outside the mask may be unset: only named fields must be valid.
        relevant = [v for v in violations.items if v.field.split(".")[1] in fields]
        if relevant:
            raise InvalidArgument(
                f"{relevant[0].field}: {relevant[0].description}", violations=relevant
            )
        changes = programs.ProgramChanges(fields, values)

        async def update(uow: SqlPointsUnitOfWork) -> api.UpdateProgramResponse:
            program = await programs.update_program(uow, program_id, changes, clock=self._clock)
            return api.UpdateProgramResponse(program=program_to_proto(program))

        return await self._idempotency.run(
            self._uow(),
            scope=program_id,
            request_id=request.request_id,
            method="UpdateProgram",
            request=request,
            response_type=api.UpdateProgramResponse,
            operation=update,
        )

    async def ListPrograms(
        self, request: api.ListProgramsRequest, context: Context
    ) -> api.ListProgramsResponse:
        limit = pagination.page_size(request.page_size)
        token = pagination.decode_token(request.page_token, filters={})
        after = str(token.after[0]) if token else None
        async with self._uow() as uow:
            page, more = await programs.list_programs(uow, after, limit, get_principal())
        response = api.ListProgramsResponse(programs=[program_to_proto(p) for p in page])
        if more:
            response.next_page_token = pagination.encode_token([page[-1].program_id], filters={})
        return response

    # -- events ------------------------------------------------------------------------

    async def WatchEvents(
        self, request: api.WatchEventsRequest, context: Context
    ) -> AsyncIterator[api.WatchEventsResponse]:
        if request.after_sequence < 0:
            raise InvalidArgument.for_field(
                "after_sequence", "must not be negative", "OUT_OF_RANGE"
            )
        principal = get_principal()
        program_ids: set[str] | None
        if request.program_id:
            principal.require_program(request.program_id)
            program_ids = {request.program_id}
        else:
            program_ids = None if principal.programs is ALL_PROGRAMS else set(principal.programs)
        async for record in self._events(
            after_sequence=request.after_sequence, program_ids=program_ids
        ):
            yield api.WatchEventsResponse(event=event_from_record(record))
