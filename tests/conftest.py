"""Fixtures shared by every test: databases and API keys.

PostgreSQL starts only when a test asks for it (``pg_server``, ``pg_url``, ``db_url[pg]``),
once per session; each test module gets its own empty database. Set
``LOYALTY_TEST_DATABASE_URL`` to use an existing server instead of a throwaway one.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterator

import pytest
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from shared import telemetry
from tests.support.postgres import PostgresServer, ThrowawayPostgres, start_postgres
from tests.support.servers import TestKeys, make_keys


@pytest.fixture(scope="session")
def _span_exporter() -> Iterator[InMemorySpanExporter]:
    telemetry.configure_tracing("loyalty-tests")
    exporter = InMemorySpanExporter()
    processor = SimpleSpanProcessor(exporter)
    telemetry.add_span_processor(processor)
    yield exporter
    processor.shutdown()


@pytest.fixture
def spans(_span_exporter: InMemorySpanExporter) -> InMemorySpanExporter:
    """Every span finished during the test (one tracer provider per process, so shared)."""
    _span_exporter.clear()
    return _span_exporter


@pytest.fixture(scope="session")
def keys() -> TestKeys:
    """A key per scope (admin, pos, reader, service), a program-limited and a revoked one."""
    return make_keys()


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PostgresServer]:
    """The PostgreSQL server of this session, started on first use."""
    server = start_postgres()
    yield server
    server.close()


@pytest.fixture(scope="session")
def pg_server_managed(pg_server: PostgresServer) -> ThrowawayPostgres:
    """The throwaway server, for tests that stop or restart it; skips on an external one."""
    if not isinstance(pg_server, ThrowawayPostgres):
        pytest.skip("stops PostgreSQL, which it may not do to the LOYALTY_TEST_DATABASE_URL one")
    return pg_server


@pytest.fixture(scope="module")
def pg_url(pg_server: PostgresServer, request: pytest.FixtureRequest) -> Iterator[str]:
    """URL of a new, empty PostgreSQL database for this test module."""
    name = _database_name(request.module.__name__)
    url = pg_server.create_database(name)
    yield url
    pg_server.drop_database(name)


@pytest.fixture(scope="module")
def sqlite_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    """URL of a new SQLite file for this test module."""
    return f"sqlite+aiosqlite:///{tmp_path_factory.mktemp('sqlite') / 'test.db'}"


@pytest.fixture(scope="module", params=["postgresql", "sqlite"], ids=["pg", "sqlite"])
def db_url(request: pytest.FixtureRequest) -> str:
    """Each supported database in turn; PostgreSQL is only started when its turn comes."""
    fixture = "pg_url" if request.param == "postgresql" else "sqlite_url"
    url: str = request.getfixturevalue(fixture)
    return url


def _database_name(module: str) -> str:
    # Unique per module and per run, so a server shared by several runs is safe; the
    # module's name says where a leftover database came from.
    slug = re.sub(r"[^a-z0-9]+", "_", module.lower().removeprefix("tests."))
    return f"t_{slug[-45:]}_{secrets.token_hex(4)}"
