"""Wiring of the gateway (issue: Gateway). RPCs answer UNIMPLEMENTED for now."""

from pathlib import Path

from loyalty.gateway.v1 import gateway_service_pb2_grpc as grpc_api
from services.gateway.settings import GatewaySettings
from services.placeholder import placeholder_spec
from shared.auth import ScopeMap

TILL = frozenset({"pos"})
TILL_OR_READER = frozenset({"pos", "reader"})

SCOPES = ScopeMap(
    GetWallet=TILL_OR_READER,
    EvaluateCart=TILL_OR_READER,
    CompleteOrder=TILL,
    RefundOrder=TILL,
    RedeemReward=TILL,
    RecordCustomerEvent=TILL,
)

SPEC = placeholder_spec(
    name="gateway",
    full_name="loyalty.gateway.v1.GatewayService",
    settings_cls=GatewaySettings,
    servicer_cls=grpc_api.GatewayServiceServicer,
    add_to_server=grpc_api.add_GatewayServiceServicer_to_server,
    scopes=SCOPES,
    package_dir=Path(__file__).parent,
)
