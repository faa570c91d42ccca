"""Settings of the points service (calls tiers and promotions)."""

from typing import ClassVar

from pydantic import Field

from shared.settings import ClientSettings


class PointsSettings(ClientSettings):
    service_name: ClassVar[str] = "points"
    default_grpc_port: ClassVar[int] = 50051
    default_metrics_port: ClassVar[int] = 9461

    tiers_target: str = Field(
        description="gRPC target of the tiers service, e.g. dns:///tiers:50053"
    )
    promotions_target: str = Field(
        description="gRPC target of the promotions service, e.g. dns:///promotions:50052"
    )
    event_retention_days: int = Field(
        7,
        ge=1,
        description="How long delivered events stay readable by WatchEvents before pruning.",
    )
