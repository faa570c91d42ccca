"""Settings of the gateway (calls every backend)."""

from typing import ClassVar

from pydantic import Field

from shared.settings import ClientSettings


class GatewaySettings(ClientSettings):
    service_name: ClassVar[str] = "gateway"
    default_grpc_port: ClassVar[int] = 50050
    default_metrics_port: ClassVar[int] = 9460

    points_target: str = Field(
        description="gRPC target of the points service, e.g. dns:///points:50051"
    )
    promotions_target: str = Field(
        description="gRPC target of the promotions service, e.g. dns:///promotions:50052"
    )
    tiers_target: str = Field(
        description="gRPC target of the tiers service, e.g. dns:///tiers:50053"
    )
