"""Rewards catalog RPCs. Mixed into PointsServicer, which sets the attributes.

RedeemReward is a ledger mutation (it spends points) and runs through ``_mutate`` like
Redeem: one transaction, exactly once per request_id. Why the voucher call sits inside
that transaction, and what that costs, is explained in ``application.rewards``.
"""

from __future__ import annotations

from loyalty.points.v1 import points_service_pb2 as api
from services.points.api.ledger_mapping import balance_to_proto, check_order_id, entry_to_proto
from services.points.api.ledger_rpc import Context, LedgerRpc
from services.points.api.reward_mapping import (
    kinds_from_proto,
    money_to_proto,
    payment_option_from_proto,
    redemption_to_proto,
    reward_from_proto,
    reward_to_proto,
)
from services.points.application import ledger, rewards
from services.points.domain.ports import VoucherIssuer
from services.points.domain.rewards import validate_reward
from services.points.storage.uow import SqlPointsUnitOfWork
from shared import pagination
from shared.auth import get_principal
from shared.validation import Violations


class RewardsRpc(LedgerRpc):
    _vouchers: VoucherIssuer

    async def CreateReward(
        self, request: api.CreateRewardRequest, context: Context
    ) -> api.CreateRewardResponse:
        program_id = request.reward.program_id
        if program_id:  # a missing one is reported with the other bad fields
            get_principal().require_program(program_id)
        violations = Violations()
        draft = reward_from_proto(request.reward, violations)
        if draft is not None:
            validate_reward(draft, violations)  # every problem in one answer, before any I/O
        violations.raise_if_any()
        assert draft is not None

        async def create(uow: SqlPointsUnitOfWork) -> api.CreateRewardResponse:
            reward = await rewards.create_reward(uow, draft, clock=self._clock, ids=self._ids)
            return api.CreateRewardResponse(reward=reward_to_proto(reward))

        return await self._idempotency.run(
            self._uow(),
            scope=program_id,
            request_id=request.request_id,
            method="CreateReward",
            request=request,
            response_type=api.CreateRewardResponse,
            operation=create,
        )

    async def ListRewards(
        self, request: api.ListRewardsRequest, context: Context
    ) -> api.ListRewardsResponse:
        program_id = request.program_id
        violations = Violations()
        violations.require(program_id, "program_id")
        kinds = kinds_from_proto(request.kinds, violations)
        violations.raise_if_any()
        get_principal().require_program(program_id)
        filters = [program_id, sorted(kind.value for kind in kinds), request.in_stock_only]
        limit = pagination.page_size(request.page_size)
        after = pagination.time_and_id(pagination.decode_token(request.page_token, filters))
        reward_filter = rewards.RewardFilter(kinds, request.in_stock_only)
        async with self._uow() as uow:
            page, more = await rewards.list_rewards(uow, program_id, reward_filter, after, limit)
        response = api.ListRewardsResponse(rewards=[reward_to_proto(r) for r in page])
        if more:
            last = page[-1]
            response.next_page_token = pagination.time_and_id_token(
                last.created_at, last.reward_id, filters
            )
        return response

    async def RedeemReward(
        self, request: api.RedeemRewardRequest, context: Context
    ) -> api.RedeemRewardResponse:
        violations = Violations()
        program_id, customer_id = self._customer(request, violations)
        violations.require(request.reward_id, "reward_id")
        option = payment_option_from_proto(request.payment_option, violations)
        check_order_id(request.order_id, violations, required=False)
        violations.raise_if_any()

        async def redeem(uow: SqlPointsUnitOfWork, ctx: ledger.Context) -> api.RedeemRewardResponse:
            done = await rewards.redeem_reward(
                uow, ctx, request.reward_id, option, request.order_id, self._vouchers
            )
            return api.RedeemRewardResponse(
                redemption=redemption_to_proto(done.redemption),
                entry=entry_to_proto(done.entry),
                cash_due=money_to_proto(done.redemption.cash_due),
                balance=balance_to_proto(done.balance),
            )

        return await self._mutate(
            request, program_id, customer_id, "RedeemReward", api.RedeemRewardResponse, redeem
        )
