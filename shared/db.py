"""Database engines: PostgreSQL (psycopg 3, production) and SQLite (aiosqlite, embedded).

Every service builds its engine here so pool sizing, time-outs and SQLite's pragmas are
decided once. Only two URL schemes are accepted; anything else is a configuration error
reported without the password.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Connection, MetaData, event, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

POSTGRES_DRIVER = "postgresql+psycopg"
SQLITE_DRIVER = "sqlite+aiosqlite"

# Constraint names must be deterministic: Alembic migrations refer to them by name, and
# SQLite batch migrations cannot drop or alter a constraint that has none.
NAMING_CONVENTION: dict[str, str] = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_N_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

# libpq would otherwise wait 130 s for an unreachable host; a service should fail sooner.
CONNECT_TIMEOUT_SECONDS = 10
# A health check must answer within its own deadline even while a connect hangs.
PING_TIMEOUT_SECONDS = 5.0
# A caller waits this long for a pooled connection before the RPC fails.
POOL_TIMEOUT_SECONDS = 10.0
# How long an SQLite writer waits for the lock held by another before "database is locked".
SQLITE_BUSY_TIMEOUT_MS = 5000


def new_metadata() -> MetaData:
    """A service's own ``MetaData``, with the project's constraint naming convention."""
    return MetaData(naming_convention=NAMING_CONVENTION)


def redact_url(url: str | URL) -> str:
    """The URL fit for a log line: the password replaced by ``***``."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return "<unparseable database URL>"


def parse_url(url: str | URL) -> URL:
    """Parse ``url``; the error never repeats it, since it may hold a password."""
    try:
        return make_url(url)
    except ArgumentError:
        raise ValueError(
            "database URL is not a valid SQLAlchemy URL; expected "
            f"{POSTGRES_DRIVER}://user:pass@host/db or {SQLITE_DRIVER}:///path/file.db"
        ) from None


def create_engine(url: str | URL, *, pool_size: int = 10) -> AsyncEngine:
    """An async engine for ``url``, tuned for its dialect.

    ``pool_size`` is a hard cap on connections per process (no overflow), so that
    replicas times pool size stays within the server's ``max_connections``; callers
    beyond it queue for up to ``POOL_TIMEOUT_SECONDS``.
    """
    parsed = parse_url(url)
    if parsed.drivername == POSTGRES_DRIVER:
        return _postgres_engine(parsed, pool_size)
    if parsed.drivername == SQLITE_DRIVER:
        return _sqlite_engine(parsed, pool_size)
    raise ValueError(
        f"unsupported database URL scheme {parsed.drivername!r}: "
        f"use {POSTGRES_DRIVER}:// or {SQLITE_DRIVER}://"
    )


Bound = AsyncEngine | AsyncConnection | Connection


def is_sqlite(bind: Bound) -> bool:
    return bind.dialect.name == "sqlite"


def is_postgres(bind: Bound) -> bool:
    return bind.dialect.name == "postgresql"


async def ping(engine: AsyncEngine) -> None:
    """One round trip to the database; raises if it is unreachable or too slow.

    Raises the driver's error, or TimeoutError after ``PING_TIMEOUT_SECONDS``.
    """
    async with asyncio.timeout(PING_TIMEOUT_SECONDS), engine.connect() as connection:
        await connection.execute(text("SELECT 1"))


def _postgres_engine(url: URL, pool_size: int) -> AsyncEngine:
    connect_args: dict[str, Any] = {}
    if "connect_timeout" not in url.query:
        connect_args["connect_timeout"] = CONNECT_TIMEOUT_SECONDS
    return create_async_engine(
        url,
        pool_size=pool_size,
        max_overflow=0,
        pool_timeout=POOL_TIMEOUT_SECONDS,
        # Replaces connections broken by a database restart or failover before use.
        pool_pre_ping=True,
        connect_args=connect_args,
    )


def _sqlite_engine(url: URL, pool_size: int) -> AsyncEngine:
    in_memory = url.database in (None, "", ":memory:")
    if not in_memory and "uri" not in url.query:
        Path(str(url.database)).expanduser().parent.mkdir(parents=True, exist_ok=True)
    # A memory database lives in one connection (StaticPool), which takes no pool size.
    pool_args: dict[str, Any] = {} if in_memory else {"pool_size": pool_size, "max_overflow": 0}
    engine = create_async_engine(url, **pool_args)
    event.listen(engine.sync_engine, "connect", _configure_sqlite_connection)
    event.listen(engine.sync_engine, "begin", _begin_immediate)
    return engine


def _configure_sqlite_connection(dbapi_connection: Any, _record: object) -> None:
    # Take transaction control away from the sqlite3 module, which would not BEGIN
    # before a SELECT or SAVEPOINT (see ``_begin_immediate``). It also lets the pragmas
    # below run outside a transaction, where they take effect.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    for pragma in (
        "journal_mode=WAL",  # readers do not block the writer
        "synchronous=NORMAL",  # durable with WAL except for the last commits on power loss
        "foreign_keys=ON",
        f"busy_timeout={SQLITE_BUSY_TIMEOUT_MS}",
    ):
        cursor.execute(f"PRAGMA {pragma}")
    cursor.close()


def _begin_immediate(connection: Connection) -> None:
    # Every transaction takes the write lock up front. A deferred transaction that reads
    # and then writes fails at once with SQLITE_BUSY when another writer got in between;
    # an immediate one waits (busy_timeout) and then sees the other's committed changes.
    connection.exec_driver_sql("BEGIN IMMEDIATE")


def after_position(created_at: Any, item_id: Any, position: tuple[dt.datetime, str]) -> Any:
    """Keyset condition for lists ordered by (created_at, id): rows after ``position``."""
    at, after_id = position
    return sa.or_(created_at > at, sa.and_(created_at == at, item_id > after_id))
