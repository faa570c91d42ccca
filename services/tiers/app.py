"""Wiring of the tiers service (issue: Tier service). RPCs answer UNIMPLEMENTED for now."""

from pathlib import Path

from loyalty.tiers.v1 import tiers_service_pb2_grpc as grpc_api
from services.placeholder import placeholder_spec
from services.tiers.settings import TiersSettings
from shared.auth import ADMIN, POS, READ, SERVICE, ScopeMap

SCOPES = ScopeMap(
    SetTierLadder=ADMIN,
    GetTierLadder=READ,
    RecordActivity=SERVICE,
    PurchaseMembership=POS,
    CancelMembership=POS,
    AssignTier=ADMIN,
    GetCustomerTier=READ,
    ListTierHistory=READ,
    WatchEvents=frozenset({"reader", "service"}),
)

SPEC = placeholder_spec(
    name="tiers",
    full_name="loyalty.tiers.v1.TierService",
    settings_cls=TiersSettings,
    servicer_cls=grpc_api.TierServiceServicer,
    add_to_server=grpc_api.add_TierServiceServicer_to_server,
    scopes=SCOPES,
    package_dir=Path(__file__).parent,
)
