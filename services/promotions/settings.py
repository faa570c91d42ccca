"""Settings of the promotions service (calls tiers for tier conditions)."""

from typing import ClassVar

from pydantic import Field

from shared.settings import ClientSettings


class PromotionsSettings(ClientSettings):
    service_name: ClassVar[str] = "promotions"
    default_grpc_port: ClassVar[int] = 50052
    default_metrics_port: ClassVar[int] = 9462

    tiers_target: str = Field(
        description="gRPC target of the tiers service, e.g. dns:///tiers:50053"
    )
