"""The `loyalty` command: run, migrate and administer the suite."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Annotated

import typer

from services.registry import SERVICE_NAMES, get_spec
from shared.keys_cli import keys_app

app = typer.Typer(
    help="Loyalty suite: points ledger, promotions engine, tiers and gateway over gRPC.",
    no_args_is_help=True,
    add_completion=False,
    # Plain tracebacks: rich ones print local variables, which may hold secrets.
    pretty_exceptions_enable=False,
)
app.add_typer(keys_app, name="keys", help="Create, list and revoke API keys (hashed key file).")

DEFAULT_DATA_DIR = Path(".loyalty-data")


def _service(name: str) -> str:
    if name not in SERVICE_NAMES:
        raise typer.BadParameter(f"expected one of: {', '.join(SERVICE_NAMES)}")
    return name


ServiceArg = Annotated[
    str,
    typer.Argument(
        help=f"One of: {', '.join(SERVICE_NAMES)}.", callback=_service, show_default=False
    ),
]


@app.command()
def serve(service: ServiceArg) -> None:
    """Run one service in the foreground (what a container runs). Settings: LOYALTY_* env."""
    from shared.grpc.server import serve_forever
    from shared.settings import load_settings

    spec = get_spec(service)
    settings = load_settings(spec.settings_cls)
    asyncio.run(serve_forever(spec, settings))


@app.command()
def migrate(
    service: ServiceArg,
    database_url: Annotated[
        str | None,
        typer.Option(
            help="Database to migrate (default: LOYALTY_DATABASE_URL).", show_default=False
        ),
    ] = None,
) -> None:
    """Bring one service's database schema up to date (safe to run repeatedly)."""
    from shared import migrations
    from shared.db import redact_url

    url = database_url or os.environ.get("LOYALTY_DATABASE_URL")
    if not url:
        raise typer.BadParameter("pass --database-url or set LOYALTY_DATABASE_URL")
    spec = get_spec(service)
    migrations.upgrade(url, spec.migrations_dir, spec.metadata)
    typer.echo(f"{service}: {redact_url(url)} is at {migrations.current(url)}")


@app.command()
def up(
    data_dir: Annotated[
        Path, typer.Option(help="Folder for SQLite files and local keys.")
    ] = DEFAULT_DATA_DIR,
    host: Annotated[str, typer.Option(help="Address the services listen on.")] = "127.0.0.1",
    base_port: Annotated[
        int,
        typer.Option(
            help="gRPC port of the gateway; points, promotions, tiers use the next three."
        ),
    ] = 50050,
    metrics_base_port: Annotated[
        int, typer.Option(help="Metrics port of the gateway; the others use the next three.")
    ] = 9460,
) -> None:
    """Start all four services locally on the embedded store; Ctrl-C stops them."""
    from services.local_suite import Ports, run_suite

    raise typer.Exit(run_suite(data_dir, host, Ports(base_port, metrics_base_port)))


def main() -> None:
    app()


if __name__ == "__main__":
    main()
