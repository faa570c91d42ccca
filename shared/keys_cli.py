"""``loyalty keys create|list|revoke``: manage the API keys file the services read.

The file holds only hashes, so it can be copied into a Kubernetes Secret
(``LOYALTY_API_KEYS``) or mounted as ``LOYALTY_API_KEYS_FILE``; the clear key is printed
once, by ``create``, and exists nowhere else. Services read the keys at start-up, so a
revocation takes effect when they restart.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, NoReturn

import typer

from shared.auth import ALL_PROGRAMS_ID, KeyConfigError, KeyRecord, KeyStore, Scope, generate_key
from shared.settings import ServiceSettings

KEYS_FILE_ENV = ServiceSettings.env_name("api_keys_file")
DEFAULT_KEYS_FILE = Path(".loyalty-data") / "api-keys.json"

keys_app = typer.Typer(
    help="Create, list and revoke API keys (the file stores only their hashes).",
    no_args_is_help=True,
)

KeysFile = Annotated[
    Path,
    typer.Option(
        "--file",
        "-f",
        envvar=KEYS_FILE_ENV,
        help="The API keys file (JSON). Created by `create` if missing.",
    ),
]


def write_key_file(path: Path, store: KeyStore) -> None:
    """Replace ``path`` with ``store``, readable and writable by its owner only (0600).

    The document goes to a temporary file in the same directory, is flushed to disk, then
    renamed over ``path``: a service starting, or a crash, sees the old file or the new
    one, never half of one.
    """
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8") as file:
            os.fchmod(file.fileno(), 0o600)  # what mkstemp does today; the file is 0600 by contract
            file.write(store.to_json())
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)  # make the rename itself survive a power cut
    finally:
        os.close(directory)


def _fail(message: str) -> NoReturn:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(1)


@contextmanager
def _errors_as_exit() -> Iterator[None]:
    """A bad file or a failed write is a one-line message and exit code 1, no traceback."""
    try:
        yield
    except KeyConfigError as exc:
        _fail(str(exc))
    except OSError as exc:
        _fail(f"{exc.filename or 'API keys file'}: {exc.strerror}")


def _load(path: Path, *, create: bool = False) -> KeyStore:
    if create and not path.exists():
        return KeyStore()
    if not path.exists():
        _fail(f"{path}: no such API keys file (`loyalty keys create` makes one)")
    return KeyStore.load(path)


def _programs(record: KeyRecord) -> str:
    return "all" if record.programs == (ALL_PROGRAMS_ID,) else ",".join(record.programs)


def _rfc3339(moment: datetime | None) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ") if moment else "-"


@keys_app.command()
def create(
    name: Annotated[str, typer.Argument(help="Who uses the key, e.g. 'store 12 till 3'.")],
    scope: Annotated[
        list[Scope], typer.Option("--scope", "-s", help="A scope of the key; repeatable.")
    ],
    program: Annotated[
        list[str] | None,
        typer.Option(
            "--program",
            "-p",
            help="A program id the key may use; repeatable. Default: all programs.",
        ),
    ] = None,
    file: KeysFile = DEFAULT_KEYS_FILE,
) -> None:
    """Create a key and print it once: only its hash is stored."""
    with _errors_as_exit():
        store = _load(file, create=True)
        key, record = generate_key(name, scope, program or [ALL_PROGRAMS_ID])
        write_key_file(file, store.with_key(record))
    # The key alone goes to stdout, so `KEY=$(loyalty keys create ...)` captures just it.
    typer.echo(
        f"Created API key {record.id} ({record.name}): scopes {','.join(record.scopes)}, "
        f"programs {_programs(record)}, in {file}.\n"
        "Store the key now (e.g. in a secret manager): it is shown only this once and "
        "cannot be recovered.",
        err=True,
    )
    typer.echo(key)


@keys_app.command("list")
def list_keys(file: KeysFile = DEFAULT_KEYS_FILE) -> None:
    """List the keys: id, name, scopes, programs, creation and revocation times."""
    with _errors_as_exit():
        store = _load(file)
    if not store.records:
        typer.echo(f"No API keys in {file}.")
        return
    header = ("ID", "NAME", "SCOPES", "PROGRAMS", "CREATED", "REVOKED")
    rows = [header] + [
        (
            r.id,
            r.name,
            ",".join(r.scopes),
            _programs(r),
            _rfc3339(r.created_at),
            _rfc3339(r.revoked_at),
        )
        for r in store.records
    ]
    typer.echo("\n".join(_table(rows)))


def _table(rows: Sequence[Sequence[str]]) -> Iterator[str]:
    widths = [max(len(row[column]) for row in rows) for column in range(len(rows[0]))]
    for row in rows:
        yield "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()


@keys_app.command()
def revoke(
    key_id: Annotated[str, typer.Argument(help="The key's id, as shown by `list`.")],
    file: KeysFile = DEFAULT_KEYS_FILE,
) -> None:
    """Revoke a key: services reject it once they restart."""
    with _errors_as_exit():
        store = _load(file)
        record = store.get(key_id)
        if record is None:
            _fail(f"no API key with id {key_id!r} in {file}")
        if record.revoked_at is not None:
            typer.echo(f"API key {key_id} was already revoked at {_rfc3339(record.revoked_at)}.")
            return
        write_key_file(file, store.with_revoked(key_id, datetime.now(UTC).replace(microsecond=0)))
    typer.echo(
        f"Revoked API key {key_id} ({record.name}). Services accept it until they restart "
        "with the updated file or Secret."
    )
