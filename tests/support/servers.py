"""Real services in-process on port 0, reached over real channels."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from grpc import aio

from shared import auth, migrations
from shared.clock import Clock
from shared.grpc.server import ServiceServer
from shared.ids import IdGenerator
from shared.service import ServiceSpec

SCOPED_KEYS = ("admin", "pos", "reader", "service")


@dataclass(frozen=True)
class TestKeys:
    """Clear keys by name plus the store the servers verify them against."""

    by_name: dict[str, str]
    store: auth.KeyStore

    def metadata(self, name: str) -> tuple[tuple[str, str], ...]:
        return (("authorization", f"Bearer {self.by_name[name]}"),)


def make_keys(limited_programs: Sequence[str] = ("prg_allowed",)) -> TestKeys:
    """One key per scope, plus ``limited``: admin but only for ``limited_programs``."""
    clear: dict[str, str] = {}
    records = []
    for scope in SCOPED_KEYS:
        clear[scope], record = auth.generate_key(f"test-{scope}", [scope])
        records.append(record)
    clear["limited"], record = auth.generate_key("test-limited", ["admin"], limited_programs)
    records.append(record)
    clear["revoked"], record = auth.generate_key("test-revoked", ["admin"])
    store = auth.KeyStore(records).with_key(record)
    store = store.with_revoked(record.id, record.created_at)
    return TestKeys(clear, store)


@dataclass
class RunningService:
    server: ServiceServer
    channel: aio.Channel
    keys: TestKeys

    @property
    def port(self) -> int:
        return self.server.port

    def md(self, key: str = "admin") -> tuple[tuple[str, str], ...]:
        return self.keys.metadata(key)


@asynccontextmanager
async def running_service(
    spec: ServiceSpec,
    database_url: str,
    keys: TestKeys,
    *,
    clock: Clock | None = None,
    ids: IdGenerator | None = None,
    health_check_interval: float = 5.0,
    **settings: Any,
) -> AsyncIterator[RunningService]:
    """Migrate, start ``spec`` on 127.0.0.1:0, yield it with a channel, stop it."""
    await migrations.upgrade_async(database_url, spec.migrations_dir, spec.metadata)
    values: dict[str, Any] = {
        "database_url": database_url,
        "grpc_host": "127.0.0.1",
        "grpc_port": 0,
        "metrics_port": 0,
        "api_keys": keys.store.to_json(),
        "service_key": keys.by_name["service"],
        "tiers_target": "dns:///127.0.0.1:1",
        "promotions_target": "dns:///127.0.0.1:1",
        "points_target": "dns:///127.0.0.1:1",
    }
    values.update(settings)
    config = spec.settings_cls(**values)
    server = ServiceServer(
        spec, config, clock=clock, ids=ids, health_check_interval=health_check_interval
    )
    await server.start()
    channel = aio.insecure_channel(f"127.0.0.1:{server.port}")
    try:
        yield RunningService(server, channel, keys)
    finally:
        await channel.close()
        await server.stop(grace=1.0)
