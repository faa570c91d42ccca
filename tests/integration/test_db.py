"""shared.db against real PostgreSQL and SQLite."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import Column, ForeignKey, Integer, String, Table, UniqueConstraint, inspect, select
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.ext.asyncio import AsyncEngine

from shared.db import create_engine, is_postgres, is_sqlite, new_metadata, ping, redact_url
from tests.support.postgres import ThrowawayPostgres

metadata = new_metadata()
owners = Table(
    "owners",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("email", String(100), nullable=False),
    UniqueConstraint("email"),
)
pets = Table(
    "pets",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("owner_id", ForeignKey("owners.id"), nullable=False),
    Column("name", String(50), nullable=False),
)


@pytest.fixture
async def engine(db_url: str) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(db_url, pool_size=5)
    async with engine.begin() as connection:
        await connection.run_sync(metadata.drop_all)
        await connection.run_sync(metadata.create_all)
    yield engine
    await engine.dispose()


async def test_round_trip(engine: AsyncEngine) -> None:
    await ping(engine)
    async with engine.begin() as connection:
        await connection.execute(owners.insert(), [{"id": 1, "email": "ada@example.com"}])
        await connection.execute(pets.insert(), [{"id": 7, "owner_id": 1, "name": "Rex"}])
    async with engine.connect() as connection:
        rows = await connection.execute(
            select(owners.c.email, pets.c.name).join(pets, pets.c.owner_id == owners.c.id)
        )
        assert rows.all() == [("ada@example.com", "Rex")]


async def test_foreign_keys_are_enforced(engine: AsyncEngine) -> None:
    with pytest.raises(IntegrityError):
        async with engine.begin() as connection:
            await connection.execute(pets.insert(), [{"id": 1, "owner_id": 404, "name": "Stray"}])


async def test_constraint_names_follow_the_convention(engine: AsyncEngine) -> None:
    async with engine.connect() as connection:
        unique, foreign = await connection.run_sync(
            lambda sync: (
                inspect(sync).get_unique_constraints("owners"),
                inspect(sync).get_foreign_keys("pets"),
            )
        )
    assert [c["name"] for c in unique] == ["uq_owners_email"]
    assert [c["name"] for c in foreign] == ["fk_pets_owner_id_owners"]


async def test_dialect_helpers(engine: AsyncEngine, db_url: str) -> None:
    assert is_sqlite(engine) == db_url.startswith("sqlite")
    assert is_postgres(engine) == db_url.startswith("postgresql")


async def test_sqlite_pragmas(sqlite_url: str) -> None:
    engine = create_engine(sqlite_url)
    try:
        async with engine.connect() as connection:
            pragmas = {
                name: (await connection.exec_driver_sql(f"PRAGMA {name}")).scalar()
                for name in ("foreign_keys", "journal_mode", "synchronous", "busy_timeout")
            }
    finally:
        await engine.dispose()
    # synchronous: 1 is NORMAL
    assert pragmas == {
        "foreign_keys": 1,
        "journal_mode": "wal",
        "synchronous": 1,
        "busy_timeout": 5000,
    }


async def test_sqlite_read_then_write_transactions_serialize(sqlite_url: str) -> None:
    # Deferred SQLite transactions would fail with "database is locked" here, or lose
    # updates; BEGIN IMMEDIATE makes each wait for the previous one.
    engine = create_engine(sqlite_url)
    counters = Table(
        "counters",
        new_metadata(),
        Column("id", Integer, primary_key=True),
        Column("value", Integer, nullable=False),
    )
    async with engine.begin() as connection:
        await connection.run_sync(counters.create)
        await connection.execute(counters.insert(), [{"id": 1, "value": 0}])

    async def increment() -> None:
        async with engine.begin() as connection:
            value = (await connection.execute(select(counters.c.value))).scalar_one()
            await asyncio.sleep(0.01)
            await connection.execute(counters.update().values(value=value + 1))

    try:
        await asyncio.gather(*(increment() for _ in range(5)))
        async with engine.connect() as connection:
            assert (await connection.execute(select(counters.c.value))).scalar_one() == 5
    finally:
        await engine.dispose()


async def test_sqlite_creates_the_parent_folder(tmp_path: Path) -> None:
    path = tmp_path / "nested" / "deeper" / "points.db"
    engine = create_engine(f"sqlite+aiosqlite:///{path}")
    try:
        await ping(engine)
    finally:
        await engine.dispose()
    assert path.is_file()


async def test_sqlite_memory_database() -> None:
    engine = create_engine("sqlite+aiosqlite://", pool_size=3)
    try:
        await ping(engine)
    finally:
        await engine.dispose()


async def test_ping_fails_fast_when_nothing_listens(unused_tcp_port: int) -> None:
    engine = create_engine(f"postgresql+psycopg://u:pw@127.0.0.1:{unused_tcp_port}/db")
    started = time.monotonic()
    try:
        with pytest.raises(OperationalError):
            await ping(engine)
    finally:
        await engine.dispose()
    assert time.monotonic() - started < 2


async def test_engine_recovers_after_postgres_restart(
    pg_server_managed: ThrowawayPostgres, pg_url: str
) -> None:
    engine = create_engine(pg_url, pool_size=2)
    try:
        await ping(engine)  # leaves a pooled connection that the restart breaks
        await asyncio.to_thread(pg_server_managed.restart)
        await ping(engine)
    finally:
        await engine.dispose()


@pytest.mark.parametrize(
    "url", ["mysql+aiomysql://app:s3cret@db/loyalty", "postgresql://app:s3cret@db/loyalty"]
)
def test_unsupported_scheme_is_named_without_the_password(url: str) -> None:
    with pytest.raises(ValueError, match="unsupported database URL scheme") as error:
        create_engine(url)
    assert url.split("://")[0] in str(error.value)
    assert "s3cret" not in str(error.value)


def test_unparseable_url_is_not_echoed() -> None:
    with pytest.raises(ValueError, match="not a valid SQLAlchemy URL") as error:
        create_engine("app:s3cret@db")
    assert "s3cret" not in str(error.value)


def test_redact_url() -> None:
    assert redact_url("postgresql+psycopg://app:s3cret@db:5432/points") == (
        "postgresql+psycopg://app:***@db:5432/points"
    )
