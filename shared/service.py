"""What a service is, as far as the shared runtime is concerned.

Each service declares one ``ServiceSpec`` in its app module; the CLI, the server
bootstrap, the migration runner and the test helpers all work from that declaration,
so wiring lives in one place per service.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from grpc import aio
from sqlalchemy.ext.asyncio import AsyncEngine

from shared.clock import Clock
from shared.ids import IdGenerator
from shared.settings import ServiceSettings


@dataclass(frozen=True)
class Runtime:
    """What the bootstrap hands a service when it mounts: settings, database, time, ids."""

    settings: ServiceSettings
    engine: AsyncEngine
    clock: Clock
    ids: IdGenerator


@dataclass
class Mounted:
    """A servicer ready to be added to a server, with its per-RPC scope requirements."""

    servicer: Any
    add_to_server: Callable[[Any, aio.Server], None]
    # Short RPC name ("GetBalance") -> scopes any of which allows the call. Missing
    # RPCs are admin-only (fail closed).
    scopes: Mapping[str, frozenset[str]]
    # Long-running tasks (outbox relays, leader-elected jobs) started with the server.
    background: Sequence[Callable[[], Coroutine[Any, Any, None]]] = field(default_factory=tuple)
    # Called on shutdown after the server stopped (close client channels, …).
    close: Callable[[], Awaitable[None]] | None = None


@dataclass(frozen=True)
class ServiceSpec:
    name: str  # "points": CLI argument, settings service_name, error domain suffix
    full_name: str  # "loyalty.points.v1.PointsService": health and reflection name
    settings_cls: type[ServiceSettings]
    metadata: sa.MetaData
    migrations_dir: Path
    mount: Callable[[Runtime], Awaitable[Mounted]]

    @property
    def error_domain(self) -> str:
        return f"{self.name}.loyalty"
