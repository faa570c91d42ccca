"""The PostgreSQL harness itself: fresh databases, restarts, a fast test server."""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import tempfile
from pathlib import Path

import psycopg
import pytest

from tests.support.postgres import (
    CLUSTER_PREFIX,
    PostgresServer,
    ThrowawayPostgres,
    libpq_url,
    remove_orphaned_clusters,
)


def connect(url: str) -> psycopg.Connection:
    return psycopg.connect(libpq_url(url), autocommit=True)


def user_tables(url: str) -> list[str]:
    with connect(url) as connection:
        rows = connection.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'"
        )
        return [row[0] for row in rows]


def test_module_database_starts_empty(pg_url: str) -> None:
    # The first test of this module to use pg_url: nothing has written to it yet.
    assert user_tables(pg_url) == []


def test_each_new_database_is_empty(pg_server: PostgresServer, pg_url: str) -> None:
    with connect(pg_url) as connection:
        connection.execute("CREATE TABLE leftover (id int)")
    name = f"t_harness_{secrets.token_hex(4)}"
    url = pg_server.create_database(name)
    try:
        assert user_tables(url) == []
    finally:
        pg_server.drop_database(name)


def test_drop_database_disconnects_clients(pg_server: PostgresServer) -> None:
    name = f"t_harness_{secrets.token_hex(4)}"
    url = pg_server.create_database(name)
    with connect(url) as client:
        pg_server.drop_database(name)
        with pytest.raises(psycopg.OperationalError):
            client.execute("SELECT 1")
    with connect(pg_server.admin_url) as admin:
        found = admin.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name])
        assert found.fetchone() is None


def test_restart_keeps_data_and_address(pg_server_managed: ThrowawayPostgres, pg_url: str) -> None:
    with connect(pg_url) as connection:
        connection.execute("CREATE TABLE survivors (name text)")
        connection.execute("INSERT INTO survivors VALUES ('ada')")
    pg_server_managed.stop(mode="immediate")  # a crash: committed rows must still be there
    with pytest.raises(psycopg.OperationalError):
        connect(pg_url).close()
    pg_server_managed.start()
    pg_server_managed.restart()
    with connect(pg_url) as connection:
        assert connection.execute("SELECT name FROM survivors").fetchall() == [("ada",)]


def test_throwaway_server_settings(pg_server_managed: ThrowawayPostgres) -> None:
    with connect(pg_server_managed.admin_url) as connection:
        settings: dict[str, str] = dict(
            connection.execute(
                "SELECT name, setting FROM pg_settings WHERE name = ANY(%s)",
                [["fsync", "full_page_writes", "synchronous_commit", "max_connections"]],
            ).fetchall()
        )
    assert settings == {
        "fsync": "off",
        "full_page_writes": "off",
        "synchronous_commit": "on",  # see SERVER_SETTINGS
        "max_connections": "200",
    }
    if os.geteuid() == 0:
        assert pg_server_managed.data_dir.stat().st_uid != 0
    assert Path(pg_server_managed.root, "owner.pid").read_text() == str(os.getpid())


def test_clusters_of_dead_runs_are_removed() -> None:
    dead_run = Path(tempfile.mkdtemp(prefix=CLUSTER_PREFIX))
    live_run = Path(tempfile.mkdtemp(prefix=CLUSTER_PREFIX))
    try:
        dead = subprocess.Popen(["true"])
        dead.wait()
        (dead_run / "owner.pid").write_text(str(dead.pid))
        (live_run / "owner.pid").write_text(str(os.getpid()))
        remove_orphaned_clusters()
        assert not dead_run.exists()
        assert live_run.exists()
    finally:
        shutil.rmtree(dead_run, ignore_errors=True)
        shutil.rmtree(live_run, ignore_errors=True)
