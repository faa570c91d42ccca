"""Servers under test, each in its own OS process, started and stopped by the harness.

Each runs in a session of its own, so Ctrl-C in the terminal reaches only the harness,
which then stops them (SIGTERM, then SIGKILL) from its ``finally`` blocks.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from grpc import aio
from grpc_health.v1 import health_pb2, health_pb2_grpc

REPO_ROOT = Path(__file__).resolve().parent.parent
START_TIMEOUT_SECONDS = 60.0
STOP_TIMEOUT_SECONDS = 10.0
LOG_TAIL_LINES = 30


@dataclass(frozen=True)
class RunningServer:
    name: str
    pid: int
    target: str  # host:port


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def python_module(module: str, *args: str) -> list[str]:
    """A command running ``module`` with this interpreter (the project's venv)."""
    return [sys.executable, "-m", module, *args]


def run_command(command: Sequence[str], env: Mapping[str, str]) -> None:
    """Run a set-up command to completion; its output is shown only if it fails."""
    result = subprocess.run(
        command,
        cwd=REPO_ROOT,
        env=dict(env),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(
            f"{' '.join(command[2:])} failed ({result.returncode}):\n{result.stdout}{result.stderr}"
        )


@contextlib.asynccontextmanager
async def serving(
    name: str, command: Sequence[str], env: Mapping[str, str], port: int, log_file: Path
) -> AsyncIterator[RunningServer]:
    """Start ``command``, wait until its gRPC health says SERVING, stop it on exit."""
    with log_file.open("w") as log:
        process = await asyncio.create_subprocess_exec(
            *command,
            cwd=REPO_ROOT,
            env=dict(env),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        target = f"127.0.0.1:{port}"
        await _wait_serving(name, process, target, log_file)
        yield RunningServer(name, process.pid, target)
    finally:
        await _stop(process)


async def _wait_serving(
    name: str, process: asyncio.subprocess.Process, target: str, log_file: Path
) -> None:
    deadline = time.monotonic() + START_TIMEOUT_SECONDS
    async with aio.insecure_channel(target) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        while True:
            if process.returncode is not None:
                raise RuntimeError(
                    f"{name} exited with code {process.returncode}:\n{_tail(log_file)}"
                )
            with contextlib.suppress(aio.AioRpcError):
                reply = await health.Check(health_pb2.HealthCheckRequest(), timeout=1.0)
                if reply.status == health_pb2.HealthCheckResponse.SERVING:
                    return
            if time.monotonic() > deadline:
                raise TimeoutError(f"{name} not SERVING after {START_TIMEOUT_SECONDS:.0f} s")
            await asyncio.sleep(0.1)


async def _stop(process: asyncio.subprocess.Process) -> None:
    if process.returncode is None:
        process.send_signal(signal.SIGTERM)  # the graceful stop a real deployment gets
        try:
            await asyncio.wait_for(process.wait(), STOP_TIMEOUT_SECONDS)
        except TimeoutError:
            process.kill()
            await process.wait()


def _tail(log_file: Path) -> str:
    with contextlib.suppress(OSError):
        return "\n".join(log_file.read_text().splitlines()[-LOG_TAIL_LINES:])
    return ""


def clean_environment() -> dict[str, str]:
    """This process's environment without LOYALTY_* settings that could leak into a server."""
    return {key: value for key, value in os.environ.items() if not key.startswith("LOYALTY_")}
