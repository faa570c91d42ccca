"""PointsService over gRPC: proto ⇄ domain mapping, one unit of work per call.

RPCs not implemented yet fall through to the generated base class, which the shared
interceptor answers with UNIMPLEMENTED — nothing fakes success.
"""

from __future__ import annotations

from collections.abc import Callable

from grpc import aio

from loyalty.points.v1 import points_service_pb2 as api
from loyalty.points.v1 import points_service_pb2_grpc
from services.points.api.mapping import program_from_proto, program_to_proto
from services.points.application import programs
from services.points.domain.program import validate_program
from services.points.storage.uow import SqlPointsUnitOfWork
from shared import pagination
from shared.auth import ADMIN, POS, READ, ScopeMap, get_principal
from shared.clock import Clock
from shared.errors import InvalidArgument
from shared.idempotency import Idempotency
from shared.ids import IdGenerator
from shared.validation import Violations

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

IMMUTABLE_PROGRAM_FIELDS = frozenset({"program_id", "currency_code", "created_at", "updated_at"})


def _update_mask_fields(
    paths: list[str], allowed: frozenset[str], immutable: frozenset[str]
) -> frozenset[str]:
    violations = Violations()
    if not paths:
        violations.add("update_mask", "must name at least one field", "INVALID_UPDATE_MASK")
    for index, path in enumerate(paths):
        field = f"update_mask.paths[{index}]"
        if path in immutable:
            violations.add(field, f"{path} cannot be changed", "FIELD_IMMUTABLE")
        elif path not in allowed:
            violations.add(
                field,
                f"unknown field {path!r}; allowed: {', '.join(sorted(allowed))}",
                "INVALID_UPDATE_MASK",
            )
    violations.raise_if_any()
    return frozenset(paths)


class PointsServicer(points_service_pb2_grpc.PointsServiceServicer):
    def __init__(
        self,
        uow: Callable[[], SqlPointsUnitOfWork],
        idempotency: Idempotency,
        clock: Clock,
        ids: IdGenerator,
    ) -> None:
        self._uow = uow
        self._idempotency = idempotency
        self._clock = clock
        self._ids = ids

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
        fields = _update_mask_fields(
            list(request.update_mask.paths), programs.UPDATABLE_FIELDS, IMMUTABLE_PROGRAM_FIELDS
        )
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
