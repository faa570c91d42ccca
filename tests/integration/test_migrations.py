"""shared.migrations: a throwaway Alembic history upgraded on PostgreSQL and SQLite."""

from __future__ import annotations

import asyncio
import os
import secrets
import subprocess
import sys
import time
from pathlib import Path

import psycopg
import pytest
from sqlalchemy import Column, ForeignKey, Integer, String, Table, select, text

from shared.db import create_engine, new_metadata
from shared.migrations import current, current_async, head, upgrade, upgrade_async
from tests.support.postgres import PostgresServer, libpq_url

# The schema the migrations below arrive at; env.py imports it from this module.
METADATA = new_metadata()
widgets = Table(
    "widgets",
    METADATA,
    Column("id", Integer, primary_key=True),
    Column("name", String(50), nullable=False),
)
parts = Table(
    "parts",
    METADATA,
    Column("id", Integer, primary_key=True),
    Column("widget_id", ForeignKey("widgets.id"), nullable=False),
)

ENV_PY = f"""
from shared.migrations import run_env
from {__name__} import METADATA

run_env(METADATA)
"""

FIRST = """
import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None


def upgrade() -> None:
    op.create_table(
        "widgets",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("name", sa.String(50), nullable=True),
    )
    op.create_table(
        "parts",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("widget_id", sa.Integer, sa.ForeignKey("widgets.id"), nullable=False),
    )
"""

# Recreates "widgets" on SQLite while "parts" rows point at it.
SECOND = """
import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"


def upgrade() -> None:
    op.execute("UPDATE widgets SET name = 'unnamed' WHERE name IS NULL")
    with op.batch_alter_table("widgets") as batch:
        batch.alter_column("name", existing_type=sa.String(50), nullable=False)
"""


@pytest.fixture(scope="module")
def migrations_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("migrations")
    (folder / "versions").mkdir()
    (folder / "env.py").write_text(ENV_PY)
    (folder / "versions" / "0001_widgets.py").write_text(FIRST)
    (folder / "versions" / "0002_name_required.py").write_text(SECOND)
    return folder


async def test_upgrade_in_steps_then_again(db_url: str, migrations_dir: Path) -> None:
    assert head(migrations_dir) == "0002"
    assert await current_async(db_url) is None

    await upgrade_async(db_url, migrations_dir, METADATA, "0001")
    assert await current_async(db_url) == "0001"
    engine = create_engine(db_url)
    try:
        async with engine.begin() as connection:
            await connection.execute(widgets.insert(), [{"id": 1, "name": None}])
            await connection.execute(parts.insert(), [{"id": 1, "widget_id": 1}])

        await upgrade_async(db_url, migrations_dir, METADATA)
        assert await current_async(db_url) == "0002"
        await upgrade_async(db_url, migrations_dir, METADATA)  # already at head: no-op
        assert await current_async(db_url) == "0002"

        async with engine.connect() as connection:
            joined = select(widgets.c.name, parts.c.id).join(parts)
            assert (await connection.execute(joined)).all() == [("unnamed", 1)]
            versions = await connection.execute(text("SELECT version_num FROM alembic_version"))
            assert versions.scalars().all() == ["0002"]
    finally:
        await engine.dispose()


def test_sync_api_outside_an_event_loop(tmp_path: Path, migrations_dir: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'sync.db'}"
    upgrade(url, migrations_dir, METADATA, version_table="widget_versions")
    assert current(url, version_table="widget_versions") == "0002"
    assert current(url) is None  # the default version table was never created


async def test_sync_api_refuses_a_running_loop(tmp_path: Path, migrations_dir: Path) -> None:
    with pytest.raises(RuntimeError, match="await the \\*_async variant"):
        upgrade(f"sqlite+aiosqlite:///{tmp_path / 'loop.db'}", migrations_dir, METADATA)


async def test_wrong_metadata_is_refused(tmp_path: Path, migrations_dir: Path) -> None:
    with pytest.raises(RuntimeError, match="different MetaData"):
        await upgrade_async(
            f"sqlite+aiosqlite:///{tmp_path / 'wrong.db'}", migrations_dir, new_metadata()
        )


async def test_concurrent_upgrades_in_one_process(tmp_path: Path, migrations_dir: Path) -> None:
    # Alembic keeps the running migration in module globals: these must take turns.
    urls = [f"sqlite+aiosqlite:///{tmp_path / f'{n}.db'}" for n in range(3)]
    await asyncio.gather(*(upgrade_async(url, migrations_dir, METADATA) for url in urls * 2))
    assert [await current_async(url) for url in urls] == ["0002"] * 3


def test_concurrent_upgrades_from_several_processes(
    pg_server: PostgresServer, migrations_dir: Path
) -> None:
    # Two replicas starting together. The test holds the upgrade lock until both wait for
    # it, so they really race; without the lock the second would fail creating "widgets".
    name = f"t_concurrent_upgrades_{secrets.token_hex(4)}"
    url = pg_server.create_database(name)
    script = (
        "import sys, pathlib\n"
        "from shared.migrations import upgrade\n"
        f"from {__name__} import METADATA\n"
        "upgrade(sys.argv[1], pathlib.Path(sys.argv[2]), METADATA)\n"
    )
    environment = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    try:
        with psycopg.connect(libpq_url(url), autocommit=True) as gate:
            gate.execute("SELECT pg_advisory_lock(hashtext('alembic:alembic_version'))")
            processes = [
                subprocess.Popen(
                    [sys.executable, "-c", script, url, str(migrations_dir)],
                    env=environment,
                    stderr=subprocess.PIPE,
                    text=True,
                )
                for _ in range(2)
            ]
            _wait_for_lock_waiters(gate, 2, processes)
        errors = [process.communicate(timeout=60)[1] for process in processes]
        assert [process.returncode for process in processes] == [0, 0], errors
        assert current(url) == "0002"
    finally:
        pg_server.drop_database(name)


def _wait_for_lock_waiters(
    connection: psycopg.Connection, count: int, processes: list[subprocess.Popen[str]]
) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        waiting = connection.execute(
            "SELECT count(*) FROM pg_locks JOIN pg_database ON pg_database.oid = database"
            " WHERE datname = current_database() AND locktype = 'advisory' AND NOT granted"
        ).fetchone()
        if waiting == (count,):
            return
        assert all(process.poll() is None for process in processes), "an upgrade ended early"
        time.sleep(0.05)
    raise AssertionError(f"{count} upgrades did not queue for the lock")
