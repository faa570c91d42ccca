"""Points programs over real gRPC on PostgreSQL: auth, validation, idempotency, paging."""

from __future__ import annotations

import asyncio
from typing import Any

import grpc
import pytest
from google.protobuf import field_mask_pb2
from grpc import aio
from grpc_health.v1 import health_pb2, health_pb2_grpc

from loyalty.points.v1 import points_service_pb2 as api
from loyalty.points.v1 import points_service_pb2_grpc as grpc_api
from loyalty.points.v1 import resources_pb2 as pb
from services.points.app import SPEC
from tests.support.servers import running_service
from tests.support.status import rich_error


def bean_club(**fields: Any) -> pb.Program:
    values: dict[str, Any] = {
        "display_name": "Bean Club",
        "currency_code": "USD",
        "time_zone": "America/New_York",
        "refund_policy": pb.REFUND_POLICY_WITHIN_AVAILABLE,
        "rounding_mode": pb.ROUNDING_MODE_DOWN,
    }
    values.update(fields)
    return pb.Program(**values)


@pytest.fixture(scope="module")
async def points(pg_url, keys):
    async with running_service(SPEC, pg_url, keys, health_check_interval=0.2) as service:
        yield service


@pytest.fixture(scope="module")
def stub(points) -> grpc_api.PointsServiceStub:
    return grpc_api.PointsServiceStub(points.channel)


async def create(stub, points, request_id: str, **fields) -> pb.Program:
    request = api.CreateProgramRequest(request_id=request_id, program=bean_club(**fields))
    return (await stub.CreateProgram(request, metadata=points.md())).program


async def failure(call) -> aio.AioRpcError:
    with pytest.raises(aio.AioRpcError) as raised:
        await call
    return raised.value


# -- authentication and authorization ---------------------------------------------------


async def test_a_call_without_a_key_is_unauthenticated(stub):
    error = rich_error(await failure(stub.ListPrograms(api.ListProgramsRequest())))
    assert error.code == grpc.StatusCode.UNAUTHENTICATED
    assert error.info.reason == "MISSING_CREDENTIALS"
    assert error.info.domain == "points.loyalty"


@pytest.mark.parametrize("header", ["Bearer lk_0000_nope", "Basic abc", "Bearer "])
async def test_a_bad_key_is_unauthenticated_and_says_nothing_more(stub, header):
    call = stub.ListPrograms(api.ListProgramsRequest(), metadata=(("authorization", header),))
    error = rich_error(await failure(call))
    assert error.code == grpc.StatusCode.UNAUTHENTICATED
    assert error.info.reason in {"INVALID_API_KEY", "MALFORMED_CREDENTIALS"}


async def test_a_revoked_key_is_refused(stub, points):
    call = stub.ListPrograms(api.ListProgramsRequest(), metadata=points.md("revoked"))
    assert rich_error(await failure(call)).info.reason == "INVALID_API_KEY"


async def test_a_key_without_the_scope_is_permission_denied(stub, points):
    request = api.CreateProgramRequest(request_id="r-scope", program=bean_club())
    error = rich_error(await failure(stub.CreateProgram(request, metadata=points.md("reader"))))
    assert error.code == grpc.StatusCode.PERMISSION_DENIED
    assert error.info.reason == "MISSING_SCOPE"
    assert "admin" in error.info.metadata["required"]


async def test_a_key_limited_to_other_programs_cannot_read_this_one(stub, points):
    program = await create(stub, points, "r-limited")
    call = stub.GetProgram(
        api.GetProgramRequest(program_id=program.program_id), metadata=points.md("limited")
    )
    error = rich_error(await failure(call))
    assert error.code == grpc.StatusCode.PERMISSION_DENIED
    assert error.info.reason == "PROGRAM_NOT_ALLOWED"
    listed = await stub.ListPrograms(api.ListProgramsRequest(), metadata=points.md("limited"))
    assert program.program_id not in {p.program_id for p in listed.programs}


# -- validation ---------------------------------------------------------------------------


async def test_malformed_programs_get_a_violation_per_bad_field(stub, points):
    program = bean_club(
        display_name="", currency_code="dollars", time_zone="Nowhere/City", rounding_mode=0
    )
    program.expiry_policy.after_days.days = 0
    request = api.CreateProgramRequest(request_id="r-bad", program=program)
    error = rich_error(await failure(stub.CreateProgram(request, metadata=points.md())))
    assert error.code == grpc.StatusCode.INVALID_ARGUMENT
    assert set(error.violations) == {
        "program.rounding_mode",
        "program.display_name",
        "program.currency_code",
        "program.time_zone",
        "program.expiry_policy.after_days.days",
    }
    assert error.violations["program.currency_code"].reason == "INVALID_CURRENCY"


async def test_a_mutation_without_request_id_is_invalid(stub, points):
    request = api.CreateProgramRequest(program=bean_club())
    error = rich_error(await failure(stub.CreateProgram(request, metadata=points.md())))
    assert error.violations["request_id"].reason == "REQUIRED"


async def test_unknown_program_is_not_found_with_its_id(stub, points):
    call = stub.GetProgram(api.GetProgramRequest(program_id="prg_missing"), metadata=points.md())
    error = rich_error(await failure(call))
    assert error.code == grpc.StatusCode.NOT_FOUND
    assert error.info.reason == "PROGRAM_NOT_FOUND"
    assert error.info.metadata["program_id"] == "prg_missing"


async def test_update_changes_only_masked_fields_and_refuses_immutable_ones(stub, points):
    program = await create(stub, points, "r-update")
    change = pb.Program(
        program_id=program.program_id, display_name="Bean Club Gold", currency_code="EUR"
    )
    change.pending_period.seconds = 14 * 86_400
    mask = field_mask_pb2.FieldMask(paths=["display_name", "pending_period"])
    request = api.UpdateProgramRequest(request_id="u1", program=change, update_mask=mask)
    updated = (await stub.UpdateProgram(request, metadata=points.md())).program
    assert updated.display_name == "Bean Club Gold"
    assert updated.pending_period.seconds == 14 * 86_400
    assert updated.currency_code == "USD"  # not in the mask: untouched
    assert updated.refund_policy == program.refund_policy

    mask = field_mask_pb2.FieldMask(paths=["currency_code", "colour"])
    request = api.UpdateProgramRequest(request_id="u2", program=change, update_mask=mask)
    error = rich_error(await failure(stub.UpdateProgram(request, metadata=points.md())))
    assert error.violations["update_mask.paths[0]"].reason == "FIELD_IMMUTABLE"
    assert error.violations["update_mask.paths[1]"].reason == "INVALID_UPDATE_MASK"


# -- idempotency --------------------------------------------------------------------------


async def test_a_retried_create_returns_the_original_program(stub, points):
    first = await create(stub, points, "r-retry")
    again = await create(stub, points, "r-retry")
    assert again == first


async def test_the_same_request_id_with_another_payload_is_refused(stub, points):
    await create(stub, points, "r-reuse")
    request = api.CreateProgramRequest(
        request_id="r-reuse", program=bean_club(display_name="Other")
    )
    error = rich_error(await failure(stub.CreateProgram(request, metadata=points.md())))
    assert error.code == grpc.StatusCode.INVALID_ARGUMENT
    assert error.info.reason == "REQUEST_ID_REUSED"
    assert "request_id" in error.violations


async def test_concurrent_duplicates_have_exactly_one_effect(stub, points):
    before = await stub.ListPrograms(api.ListProgramsRequest(page_size=500), metadata=points.md())
    results = await asyncio.gather(*(create(stub, points, "r-storm") for _ in range(25)))
    after = await stub.ListPrograms(api.ListProgramsRequest(page_size=500), metadata=points.md())
    assert len({r.program_id for r in results}) == 1
    assert len(after.programs) == len(before.programs) + 1


# -- pagination ---------------------------------------------------------------------------


async def test_listing_pages_through_every_program_once(stub, points):
    for index in range(7):
        await create(stub, points, f"r-page-{index}")
    seen: list[str] = []
    token = ""
    while True:
        page = await stub.ListPrograms(
            api.ListProgramsRequest(page_size=3, page_token=token), metadata=points.md("reader")
        )
        assert len(page.programs) <= 3
        seen.extend(p.program_id for p in page.programs)
        token = page.next_page_token
        if not token:
            break
    assert len(seen) == len(set(seen)) >= 7
    assert seen == sorted(seen)


async def test_a_forged_page_token_is_invalid(stub, points):
    call = stub.ListPrograms(api.ListProgramsRequest(page_token="garbage!"), metadata=points.md())
    error = rich_error(await failure(call))
    assert error.violations["page_token"].reason == "INVALID_PAGE_TOKEN"


# -- health follows the database ------------------------------------------------------------


async def test_health_reports_not_serving_while_the_database_is_down(points, pg_server_managed):
    health = health_pb2_grpc.HealthStub(points.channel)

    async def status(name: str) -> int:
        reply = await health.Check(health_pb2.HealthCheckRequest(service=name), timeout=2)
        return reply.status

    async def wait_for(name: str, wanted: int) -> None:
        for _ in range(100):
            if await status(name) == wanted:
                return
            await asyncio.sleep(0.1)
        raise AssertionError(f"health of {name!r} never became {wanted}")

    serving = health_pb2.HealthCheckResponse.SERVING
    pg_server_managed.stop("immediate")
    try:
        await wait_for("", health_pb2.HealthCheckResponse.NOT_SERVING)
        assert await status("liveness") == serving  # down database: out of rotation, not restarted
    finally:
        pg_server_managed.start()
    await wait_for("", serving)
