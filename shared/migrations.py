"""Alembic migrations, one history per service, driven from code (no ``alembic.ini``).

A service keeps ``migrations/env.py`` and ``migrations/versions/`` next to its tables;
its ``env.py`` is just::

    from services.points.storage.tables import metadata
    from shared.migrations import run_env

    run_env(metadata)

``upgrade_async`` runs Alembic on the caller's event loop: the migration code is
synchronous, so it runs inside ``AsyncConnection.run_sync`` on a connection opened here
and handed to ``env.py`` through ``Config.attributes``. ``upgrade``/``current`` are the
same for synchronous callers (the CLI) and refuse to run inside a running event loop.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Coroutine, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any, TypeVar

from alembic import command, context
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, MetaData, text

from shared.db import create_engine, is_sqlite

DEFAULT_VERSION_TABLE = "alembic_version"

_CONNECTION = "connection"
_METADATA = "target_metadata"
_VERSION_TABLE = "version_table"

T = TypeVar("T")

_ALEMBIC_LOCK = threading.Lock()


async def upgrade_async(
    url: str,
    migrations_dir: Path,
    metadata: MetaData,
    revision: str = "head",
    *,
    version_table: str = DEFAULT_VERSION_TABLE,
) -> None:
    """Migrate the database at ``url`` to ``revision``; a no-op when it is there already.

    ``metadata`` must be the one ``migrations_dir/env.py`` passes to ``run_env``: a
    mismatch means the wrong service's migrations were picked, and is refused.
    """
    config = _config(migrations_dir)
    config.attributes[_METADATA] = metadata
    config.attributes[_VERSION_TABLE] = version_table
    engine = create_engine(url, pool_size=1)
    try:
        async with _one_alembic_command_at_a_time(), engine.connect() as connection:
            await connection.run_sync(_run_upgrade, config, revision)
    finally:
        await engine.dispose()


async def current_async(url: str, *, version_table: str = DEFAULT_VERSION_TABLE) -> str | None:
    """The revision the database is at, or None before its first migration.

    Only the version table is read; compare with ``head(migrations_dir)`` to see
    whether a migration is due.
    """
    engine = create_engine(url, pool_size=1)
    try:
        async with engine.connect() as connection:
            return await connection.run_sync(_current_revision, version_table)
    finally:
        await engine.dispose()


def head(migrations_dir: Path) -> str | None:
    """The newest revision in ``migrations_dir`` (None for an empty history)."""
    return ScriptDirectory.from_config(_config(migrations_dir)).get_current_head()


def upgrade(
    url: str,
    migrations_dir: Path,
    metadata: MetaData,
    revision: str = "head",
    *,
    version_table: str = DEFAULT_VERSION_TABLE,
) -> None:
    """``upgrade_async`` for synchronous callers."""
    _run(upgrade_async(url, migrations_dir, metadata, revision, version_table=version_table))


def current(url: str, *, version_table: str = DEFAULT_VERSION_TABLE) -> str | None:
    """``current_async`` for synchronous callers."""
    return _run(current_async(url, version_table=version_table))


def run_env(metadata: MetaData) -> None:
    """The body of every service's ``env.py``: run the migrations on our connection."""
    config = context.config
    connection = config.attributes.get(_CONNECTION)
    if context.is_offline_mode() or not isinstance(connection, Connection):
        raise RuntimeError(
            "run migrations with shared.migrations.upgrade(), not the alembic command"
        )
    if config.attributes.get(_METADATA) is not metadata:
        raise RuntimeError(
            f"{config.get_main_option('script_location')}/env.py migrates a different "
            "MetaData than the one passed to upgrade()"
        )
    sqlite = is_sqlite(connection)
    context.configure(
        connection=connection,
        target_metadata=metadata,
        version_table=config.attributes[_VERSION_TABLE],
        # SQLite alters most things by copying the table; autogenerate must say so.
        render_as_batch=sqlite,
        # One transaction for the whole upgrade on SQLite too (Alembic assumes
        # SQLite cannot roll back DDL; it can): all of it applies or none.
        transactional_ddl=True,
    )
    with _sqlite_migration(connection) if sqlite else _postgres_migration(connection):
        context.run_migrations()


def _config(migrations_dir: Path) -> Config:
    config = Config()
    config.set_main_option("script_location", str(migrations_dir))
    return config


@asynccontextmanager
async def _one_alembic_command_at_a_time() -> AsyncIterator[None]:
    # Alembic publishes the running migration in module globals (``alembic.context``,
    # ``alembic.op``), so two upgrades in one process, even of different services'
    # databases, must not interleave. Polling a thread lock covers every event loop and
    # thread, and a cancelled waiter never ends up holding it.
    while not _ALEMBIC_LOCK.acquire(blocking=False):  # noqa: ASYNC110
        await asyncio.sleep(0.05)
    try:
        yield
    finally:
        _ALEMBIC_LOCK.release()


def _run_upgrade(connection: Connection, config: Config, revision: str) -> None:
    config.attributes[_CONNECTION] = connection
    command.upgrade(config, revision)


def _current_revision(connection: Connection, version_table: str) -> str | None:
    migration_context = MigrationContext.configure(
        connection, opts={"version_table": version_table}
    )
    return migration_context.get_current_revision()


@contextmanager
def _postgres_migration(connection: Connection) -> Iterator[None]:
    with context.begin_transaction():
        # Two replicas upgrading at once would both create the same tables: the second
        # waits here, then finds the version table at head. (On SQLite, BEGIN IMMEDIATE
        # serializes them the same way.)
        connection.execute(
            text("SELECT pg_advisory_xact_lock(hashtext(:key))"),
            {"key": f"alembic:{context.get_context().version_table}"},
        )
        yield


@contextmanager
def _sqlite_migration(connection: Connection) -> Iterator[None]:
    # A batch migration drops and recreates a table. With foreign keys enforced, dropping
    # a referenced table deletes (or fails on) the rows pointing at it, so enforcement
    # is off while migrating (the pragma only works outside a transaction) and the
    # result is checked before commit instead.
    _execute_outside_transaction(connection, "PRAGMA foreign_keys=OFF")
    try:
        with context.begin_transaction():
            yield
            violations = connection.exec_driver_sql("PRAGMA foreign_key_check").all()
            if violations:
                raise RuntimeError(f"migration leaves broken foreign keys: {violations[:5]}")
    finally:
        _execute_outside_transaction(connection, "PRAGMA foreign_keys=ON")


def _execute_outside_transaction(connection: Connection, sql: str) -> None:
    # Straight to the driver: Connection.execute would BEGIN first.
    cursor = connection.connection.cursor()
    try:
        cursor.execute(sql)
    finally:
        cursor.close()


def _run(coroutine: Coroutine[Any, Any, T]) -> T:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        # A private loop: the thread's current loop (e.g. pytest-asyncio's) stays set.
        with asyncio.Runner(loop_factory=asyncio.new_event_loop) as runner:
            return runner.run(coroutine)
    coroutine.close()
    raise RuntimeError("called inside a running event loop: await the *_async variant")
