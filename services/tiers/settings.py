"""Settings of the tiers service (it calls no other service)."""

from typing import ClassVar

from shared.settings import ServiceSettings


class TiersSettings(ServiceSettings):
    service_name: ClassVar[str] = "tiers"
    default_grpc_port: ClassVar[int] = 50053
    default_metrics_port: ClassVar[int] = 9463
