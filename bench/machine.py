"""Facts about the machine and software a run measured, stored with its numbers."""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import platform
import subprocess
from typing import Any

import grpc
import psycopg
import sqlalchemy

from bench.servers import REPO_ROOT
from tests.support.postgres import libpq_url

# The version, and settings that change what a commit costs and so what the SQL numbers
# mean (the throwaway cluster runs with fsync off).
POSTGRES_SETTINGS = (
    "server_version",
    "fsync",
    "synchronous_commit",
    "shared_buffers",
    "max_connections",
)


def facts(admin_url: str) -> dict[str, Any]:
    return {
        "recorded_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "cpu_count": os.cpu_count(),
        "cpu_model": _cpu_model(),
        "memory_gib": _memory_gib(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "grpcio": grpc.__version__,
        "sqlalchemy": sqlalchemy.__version__,
        "psycopg": psycopg.__version__,
        "postgresql": _postgres(admin_url),
        "git": _git(),
    }


def _cpu_model() -> str:
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as cpuinfo:
        for line in cpuinfo:
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def _memory_gib() -> float | None:
    with contextlib.suppress(OSError), open("/proc/meminfo") as meminfo:
        for line in meminfo:
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 1024**2, 1)
    return None


def _postgres(admin_url: str) -> dict[str, str]:
    with psycopg.connect(libpq_url(admin_url), autocommit=True) as connection:
        rows = connection.execute(
            "SELECT name, current_setting(name) FROM unnest(%s::text[]) AS name",
            [list(POSTGRES_SETTINGS)],
        ).fetchall()
    return {str(name): str(value) for name, value in rows}


def _git() -> dict[str, Any]:
    def git(*args: str) -> str:
        return subprocess.run(
            ["git", *args], cwd=REPO_ROOT, capture_output=True, text=True, check=True
        ).stdout.strip()

    try:
        # "dirty": the numbers are of the working tree, which differs from the commit.
        return {"commit": git("rev-parse", "HEAD"), "dirty": bool(git("status", "--porcelain"))}
    except (OSError, subprocess.CalledProcessError):
        return {"commit": None, "dirty": None}
