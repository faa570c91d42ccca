"""Each service's migrations build exactly the schema its tables declare, on both databases."""

import secrets

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from services.registry import SERVICE_NAMES, get_spec
from shared import migrations
from shared.db import create_engine


@pytest.fixture(params=["pg", "sqlite"])
def fresh_url(request, tmp_path):
    """A new database per test: each service has its own schema history."""
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'schema.db'}"
        return
    server = request.getfixturevalue("pg_server")
    name = f"t_schema_{secrets.token_hex(4)}"
    yield server.create_database(name)
    server.drop_database(name)


@pytest.mark.parametrize("service", SERVICE_NAMES)
async def test_migrations_match_the_declared_tables(fresh_url, service):
    spec = get_spec(service)
    await migrations.upgrade_async(fresh_url, spec.migrations_dir, spec.metadata)
    assert await migrations.current_async(fresh_url) == migrations.head(spec.migrations_dir)
    engine = create_engine(fresh_url)
    try:
        async with engine.connect() as connection:
            diff = await connection.run_sync(
                lambda sync: compare_metadata(MigrationContext.configure(sync), spec.metadata)
            )
    finally:
        await engine.dispose()
    assert diff == [], f"{service}: migrations and tables disagree: {diff}"
