"""PostgreSQL for the test suite: a server given by URL, or a throwaway one started here.

``LOYALTY_TEST_DATABASE_URL`` names a server where the suite may CREATE DATABASE.
Without it, ``start_postgres`` runs initdb in a temporary folder and starts a server on
127.0.0.1 tuned for speed over durability; ``close`` (or interpreter exit) removes it, and
clusters left behind by a killed run are removed by the next one.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import pwd
import re
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path
from typing import Literal

import psycopg
from psycopg import sql
from sqlalchemy.engine import URL, make_url

DATABASE_URL_ENV = "LOYALTY_TEST_DATABASE_URL"
# Created to run the server when the suite runs as root (which PostgreSQL refuses to be)
# and there is no "nobody".
DEDICATED_USER = "loyaltytest"
CLUSTER_PREFIX = "loyalty-pg-"
SUPERUSER = "postgres"
START_TIMEOUT_SECONDS = 30

# Surviving an OS crash is worthless for a database deleted after the run, so nothing is
# flushed to disk. synchronous_commit stays on: with fsync off it only costs a write() to
# the page cache, and without it a crash of PostgreSQL itself (``stop("immediate")``, as
# fault tests do) would lose commits that clients were told had succeeded.
SERVER_SETTINGS = {
    "listen_addresses": "'127.0.0.1'",
    "fsync": "off",
    "full_page_writes": "off",
    "max_connections": "200",
    "timezone": "'UTC'",  # the same on every machine
}

ShutdownMode = Literal["smart", "fast", "immediate"]

_DATABASE_NAME = re.compile(r"[a-z_][a-z0-9_]{0,62}")


class PostgresServer:
    """A server the suite may create databases on; this one is run by someone else."""

    def __init__(self, admin_url: str) -> None:
        self.admin_url = admin_url

    def database_url(self, name: str) -> str:
        url = make_url(self.admin_url).set(database=_checked_name(name))
        return url.render_as_string(hide_password=False)

    def create_database(self, name: str) -> str:
        """Create an empty database ``name``; returns its SQLAlchemy URL."""
        self._admin(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(_checked_name(name))))
        return self.database_url(name)

    def drop_database(self, name: str) -> None:
        """Drop ``name`` even while clients are still connected to it."""
        self._admin(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                sql.Identifier(_checked_name(name))
            )
        )

    def stop(self, mode: ShutdownMode = "fast") -> None:
        raise RuntimeError(f"the server at {DATABASE_URL_ENV} is not ours to stop")

    def start(self) -> None:
        raise RuntimeError(f"the server at {DATABASE_URL_ENV} is not ours to start")

    def restart(self) -> None:
        self.stop()
        self.start()

    def close(self) -> None:
        """Release what this object holds; an external server keeps running."""

    def _admin(self, statement: sql.Composed) -> None:
        # CREATE/DROP DATABASE cannot run inside a transaction block.
        with psycopg.connect(libpq_url(self.admin_url), autocommit=True) as connection:
            connection.execute(statement)


class ThrowawayPostgres(PostgresServer):
    """A PostgreSQL cluster in a temporary folder, owned by this process.

    Data folder and port stay the same across ``stop``/``start``, so URLs handed out
    before a restart keep working after it.
    """

    def __init__(self) -> None:
        self.bin_dir = _find_bin_dir()
        self.user = _unprivileged_user() if os.geteuid() == 0 else None
        self.root = Path(tempfile.mkdtemp(prefix=CLUSTER_PREFIX))
        self.data_dir = self.root / "data"
        self.log_file = self.root / "server.log"
        self.port = _free_port()
        (self.root / "owner.pid").write_text(str(os.getpid()))
        super().__init__(f"postgresql+psycopg://{SUPERUSER}@127.0.0.1:{self.port}/postgres")
        atexit.register(self.close)
        try:
            if self.user is not None:
                shutil.chown(self.root, self.user.pw_uid, self.user.pw_gid)
            self._initdb()
            self.start()
        except BaseException:
            self.close()
            raise

    def start(self) -> None:
        result = self._pg_ctl(
            "start", "-w", "-t", str(START_TIMEOUT_SECONDS), "-l", str(self.log_file)
        )
        if result.returncode != 0:
            raise RuntimeError(f"PostgreSQL did not start:\n{result.stdout}\n{self._log_tail()}")

    def stop(self, mode: ShutdownMode = "fast") -> None:
        """Stop the server; ``immediate`` is a crash as far as the clients can tell."""
        result = self._pg_ctl("stop", "-w", "-m", mode)
        if result.returncode != 0:
            raise RuntimeError(f"PostgreSQL did not stop:\n{result.stdout}")

    def close(self) -> None:
        """Kill the server and delete its files; safe to call more than once."""
        atexit.unregister(self.close)
        if (self.data_dir / "postmaster.pid").exists():
            self._pg_ctl("stop", "-w", "-m", "immediate")
        shutil.rmtree(self.root, ignore_errors=True)

    def _initdb(self) -> None:
        result = self._run(
            str(self.bin_dir / "initdb"),
            f"--pgdata={self.data_dir}",
            f"--username={SUPERUSER}",
            "--auth=trust",
            "--encoding=UTF8",
            "--locale=C",
            "--no-sync",
            "--no-instructions",
        )
        if result.returncode != 0:
            raise RuntimeError(f"initdb failed:\n{result.stdout}")
        settings = {
            **SERVER_SETTINGS,
            "port": str(self.port),
            "unix_socket_directories": f"'{self.root}'",
        }
        with (self.data_dir / "postgresql.conf").open("a") as conf:
            conf.writelines(f"{key} = {value}\n" for key, value in settings.items())

    def _pg_ctl(self, *args: str) -> subprocess.CompletedProcess[str]:
        return self._run(str(self.bin_dir / "pg_ctl"), "-D", str(self.data_dir), *args)

    def _run(self, *command: str) -> subprocess.CompletedProcess[str]:
        return _run_as(self.user, self.root, *command)

    def _log_tail(self, lines: int = 20) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log_file.read_text().splitlines()[-lines:])
        return ""


def start_postgres() -> PostgresServer:
    """The server named by ``LOYALTY_TEST_DATABASE_URL``, else a throwaway one."""
    url = os.environ.get(DATABASE_URL_ENV)
    if url:
        return PostgresServer(url)
    remove_orphaned_clusters()
    return ThrowawayPostgres()


def remove_orphaned_clusters() -> None:
    """Stop and delete throwaway clusters whose test process died without cleaning up."""
    for owner_file in Path(tempfile.gettempdir()).glob(f"{CLUSTER_PREFIX}*/owner.pid"):
        with contextlib.suppress(ValueError, OSError):
            if _process_alive(int(owner_file.read_text())):
                continue
        root = owner_file.parent
        data_dir = root / "data"
        if (data_dir / "postmaster.pid").exists():
            owner = pwd.getpwuid(data_dir.stat().st_uid) if os.geteuid() == 0 else None
            pg_ctl = str(_find_bin_dir() / "pg_ctl")
            _run_as(owner, root, pg_ctl, "-D", str(data_dir), "-m", "immediate", "stop")
        shutil.rmtree(root, ignore_errors=True)


def _run_as(
    user: pwd.struct_passwd | None, cwd: Path, *command: str
) -> subprocess.CompletedProcess[str]:
    """Run ``command`` as ``user`` (None: as ourselves); output and errors are returned."""
    return subprocess.run(
        command,
        cwd=cwd,  # the unprivileged user may not be allowed into our working directory
        user=None if user is None else user.pw_uid,
        group=None if user is None else user.pw_gid,
        extra_groups=None if user is None else [],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        check=False,
    )


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # alive, and someone else's
    return True


def _checked_name(name: str) -> str:
    if not _DATABASE_NAME.fullmatch(name):
        raise ValueError(f"not a test database name (lower-case identifier): {name!r}")
    return name


def libpq_url(url: str | URL) -> str:
    """``url`` as psycopg takes it: the same, without SQLAlchemy's ``+psycopg``."""
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def _find_bin_dir() -> Path:
    found = shutil.which("pg_ctl")
    if found:
        return Path(found).resolve().parent
    # Debian/Ubuntu keep the server binaries off PATH.
    candidates = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"), key=lambda p: int(p.parent.parent.name)
    )
    if candidates:
        return candidates[-1].parent
    raise RuntimeError(
        f"PostgreSQL server binaries (initdb, pg_ctl) not found: install them or set "
        f"{DATABASE_URL_ENV} to a server where the tests may create databases"
    )


def _unprivileged_user() -> pwd.struct_passwd:
    for name in ("nobody", DEDICATED_USER):
        with contextlib.suppress(KeyError):
            return pwd.getpwnam(name)
    subprocess.run(
        ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", DEDICATED_USER],
        check=True,
        capture_output=True,
    )
    return pwd.getpwnam(DEDICATED_USER)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])
