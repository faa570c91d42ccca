"""Process settings from ``LOYALTY_*`` environment variables, validated at start-up.

Each service declares a subclass with the settings it needs; ``load_settings`` turns a
missing or malformed variable into a one-line message that names the variable, so an
operator can fix a Deployment without reading a traceback.
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar, Literal, TypeVar

from pydantic import Field, SecretStr, ValidationError, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

ENV_PREFIX = "LOYALTY_"

LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR"]


class SettingsError(SystemExit):
    """Raised (as an exit) when the environment does not describe a runnable process."""


class ServiceSettings(BaseSettings):
    """Settings every service has. Field ``foo_bar`` is read from ``LOYALTY_FOO_BAR``."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="ignore", frozen=True)

    # Name of the service in logs, traces and error domains; fixed per subclass.
    service_name: ClassVar[str] = ""
    default_grpc_port: ClassVar[int] = 0
    default_metrics_port: ClassVar[int] = 0

    database_url: SecretStr = Field(
        description="SQLAlchemy URL of this service's own database: "
        "postgresql+psycopg://user:pass@host/db or sqlite+aiosqlite:///path/file.db",
    )
    grpc_host: str = Field("[::]", description="Address the gRPC server binds to.")
    grpc_port: int | None = Field(
        None,
        ge=0,
        le=65535,
        description="gRPC port (unset = the service's default, 0 = any free port).",
    )
    metrics_port: int | None = Field(
        None, ge=0, le=65535, description="Prometheus /metrics port (unset = default, 0 = off)."
    )
    max_concurrent_rpcs: int = Field(
        256, ge=1, description="RPCs served at once; further calls get RESOURCE_EXHAUSTED."
    )
    shutdown_grace_seconds: float = Field(
        15.0, gt=0, description="On SIGTERM, how long in-flight calls may take to finish."
    )
    keepalive_time_seconds: int = Field(30, ge=1, description="HTTP/2 keepalive ping interval.")
    max_connection_age_seconds: int = Field(
        300, ge=1, description="Connections are recycled after this age so load rebalances."
    )
    max_connection_age_grace_seconds: int = Field(
        30, ge=1, description="Time a recycled connection has to finish its calls."
    )
    api_keys_file: Path | None = Field(
        None, description="JSON file of hashed API keys (see `loyalty keys`)."
    )
    api_keys: SecretStr | None = Field(
        None, description="The same JSON document inline (e.g. from a Kubernetes Secret)."
    )
    db_pool_size: int = Field(10, ge=1, description="Database connections per process.")
    log_level: LogLevel = Field("INFO", description="Minimum level of JSON log lines.")

    @model_validator(mode="after")
    def _one_key_source(self) -> ServiceSettings:
        if self.api_keys_file is None and self.api_keys is None:
            raise ValueError(
                f"set {ENV_PREFIX}API_KEYS_FILE or {ENV_PREFIX}API_KEYS: "
                "every RPC is authenticated, so the service needs its API keys"
            )
        if self.api_keys_file is not None and not self.api_keys_file.is_file():
            raise ValueError(f"{ENV_PREFIX}API_KEYS_FILE: no such file: {self.api_keys_file}")
        return self

    @property
    def effective_grpc_port(self) -> int:
        return self.default_grpc_port if self.grpc_port is None else self.grpc_port

    @property
    def effective_metrics_port(self) -> int:
        return self.default_metrics_port if self.metrics_port is None else self.metrics_port

    @classmethod
    def env_name(cls, field: str) -> str:
        return ENV_PREFIX + field.upper()

    @classmethod
    def required_env(cls) -> list[str]:
        """Variables without a default; a Deployment must provide each of them."""
        return [cls.env_name(n) for n, f in cls.model_fields.items() if f.is_required()]


class ClientSettings(ServiceSettings):
    """A service that calls others: it needs its own key for those calls."""

    service_key: SecretStr = Field(
        description="API key this service presents when it calls other services."
    )
    client_timeout_seconds: float = Field(
        5.0, gt=0, description="Default deadline of a call to another service."
    )


S = TypeVar("S", bound=ServiceSettings)


def load_settings(cls: type[S], **overrides: object) -> S:
    """Read ``cls`` from the environment; exit with a message naming each bad variable."""
    try:
        return cls(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        lines = []
        for error in exc.errors():
            location = [str(part) for part in error["loc"]]
            variable = ", ".join(cls.env_name(part) for part in location) or "settings"
            lines.append(f"  {variable}: {error['msg']}")
        raise SettingsError(
            f"{cls.service_name or 'loyalty'}: invalid configuration\n" + "\n".join(lines)
        ) from None
