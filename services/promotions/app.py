"""Wiring of the promotions service (issue: Promotions engine).

RPCs answer UNIMPLEMENTED until the engine is built.
"""

from pathlib import Path

from loyalty.promotions.v1 import promotions_service_pb2_grpc as grpc_api
from services.placeholder import placeholder_spec
from services.promotions.settings import PromotionsSettings
from shared.auth import ADMIN, POS, READ, SERVICE, ScopeMap

READER_ONLY = frozenset({"reader"})
READER_OR_SERVICE = frozenset({"reader", "service"})

SCOPES = ScopeMap(
    CreateCampaign=ADMIN,
    UpdateCampaign=ADMIN,
    GetCampaign=READ,
    ListCampaigns=READ,
    PauseCampaign=ADMIN,
    ResumeCampaign=ADMIN,
    GetPromotionSettings=READ,
    UpdatePromotionSettings=ADMIN,
    GenerateCodes=ADMIN,
    GetCodeGenerationJob=READER_ONLY,
    ListCodes=READER_ONLY,  # not pos: listing codes would help guessing them
    DisableCode=ADMIN,
    EnableCode=ADMIN,
    IssueVoucher=SERVICE,
    ListCustomerVouchers=READ,
    CreateReferralCode=POS,
    Evaluate=READ,
    ListQualifying=READ,
    Redeem=POS,
    RollbackRedemption=POS,
    ListRedemptions=READER_OR_SERVICE,
    ListAuditLog=ADMIN,
    WatchEvents=READER_OR_SERVICE,
)

SPEC = placeholder_spec(
    name="promotions",
    full_name="loyalty.promotions.v1.PromotionService",
    settings_cls=PromotionsSettings,
    servicer_cls=grpc_api.PromotionServiceServicer,
    add_to_server=grpc_api.add_PromotionServiceServicer_to_server,
    scopes=SCOPES,
    package_dir=Path(__file__).parent,
)
