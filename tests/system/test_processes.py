"""The `loyalty` command as an operator runs it: real processes, real signals."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from services.registry import SERVICE_NAMES, get_spec
from shared import auth, migrations
from shared.keys_cli import write_key_file

LOYALTY = [sys.executable, "-m", "services.cli"]


def free_port_block(size: int) -> int:
    """A base port with ``size`` free ports after it (best effort, like any test server)."""
    for _ in range(50):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            base = probe.getsockname()[1]
        if base + size < 65535 and all(_free(base + i) for i in range(size)):
            return base
    raise RuntimeError("no free port block")


def _free(port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def wait_serving(address: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    with grpc.insecure_channel(address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        while time.monotonic() < deadline:
            try:
                if stub.Check(health_pb2.HealthCheckRequest(), timeout=1).status == 1:
                    return
            except grpc.RpcError:
                time.sleep(0.1)
    raise AssertionError(f"{address} never became SERVING")


def reflected_services(address: str) -> set[str]:
    with grpc.insecure_channel(address) as channel:
        stub = reflection_pb2_grpc.ServerReflectionStub(channel)
        request = reflection_pb2.ServerReflectionRequest(list_services="")
        reply = next(stub.ServerReflectionInfo(iter([request]), timeout=5))
        return {s.name for s in reply.list_services_response.service}


@pytest.fixture
def points_env(tmp_path: Path) -> dict[str, str]:
    keys = tmp_path / "keys.json"
    _, record = auth.generate_key("ops", ["admin"])
    write_key_file(keys, auth.KeyStore([record]))
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOYALTY_")}
    env.update(
        LOYALTY_DATABASE_URL=f"sqlite+aiosqlite:///{tmp_path / 'points.db'}",
        LOYALTY_API_KEYS_FILE=str(keys),
        LOYALTY_SERVICE_KEY="lk_unused_in_this_test",
        LOYALTY_TIERS_TARGET="dns:///127.0.0.1:1",
        LOYALTY_PROMOTIONS_TARGET="dns:///127.0.0.1:1",
        LOYALTY_GRPC_HOST="127.0.0.1",
        LOYALTY_GRPC_PORT=str(free_port_block(1)),
        LOYALTY_METRICS_PORT="0",
        LOYALTY_SHUTDOWN_GRACE_SECONDS="5",
    )
    return env


def test_serve_refuses_to_start_with_a_bad_environment_and_names_the_variable(points_env):
    del points_env["LOYALTY_DATABASE_URL"]
    done = subprocess.run(
        [*LOYALTY, "serve", "points"], env=points_env, capture_output=True, text=True, timeout=30
    )
    assert done.returncode != 0
    assert "LOYALTY_DATABASE_URL" in done.stderr
    assert "Traceback" not in done.stderr


def test_migrate_then_serve_then_sigterm_exits_cleanly(points_env):
    migrated = subprocess.run(
        [*LOYALTY, "migrate", "points"], env=points_env, capture_output=True, text=True, timeout=60
    )
    assert migrated.returncode == 0, migrated.stderr
    assert f"is at {migrations.head(get_spec('points').migrations_dir)}" in migrated.stdout
    assert "points.db" in migrated.stdout
    process = subprocess.Popen(
        [*LOYALTY, "serve", "points"], env=points_env, stderr=subprocess.PIPE, text=True
    )
    try:
        address = f"127.0.0.1:{points_env['LOYALTY_GRPC_PORT']}"
        wait_serving(address)
        assert "loyalty.points.v1.PointsService" in reflected_services(address)
        started = time.monotonic()
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 0
        assert time.monotonic() - started < 5
    finally:
        if process.poll() is None:
            process.kill()
    assert process.stderr is not None
    logs = [json.loads(line) for line in process.stderr.read().splitlines() if line.startswith("{")]
    messages = [entry["message"] for entry in logs]
    assert any("shutting down points" in m for m in messages)
    assert all(entry["service"] == "points" for entry in logs)


def test_up_runs_all_four_services_and_stops_them_on_ctrl_c(tmp_path):
    base, metrics = free_port_block(4), free_port_block(4)
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOYALTY_")}
    process = subprocess.Popen(
        [
            *LOYALTY,
            "up",
            "--data-dir",
            str(tmp_path / "data"),
            "--base-port",
            str(base),
            "--metrics-base-port",
            str(metrics),
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        for service in SERVICE_NAMES:
            address = f"127.0.0.1:{base + get_spec(service).settings_cls.default_grpc_port - 50050}"
            wait_serving(address, timeout=40)
            assert get_spec(service).full_name in reflected_services(address)
        credentials = (tmp_path / "data" / "local-credentials.env").read_text()
        assert "LOYALTY_ADMIN_KEY=lk_" in credentials
        assert oct((tmp_path / "data" / "local-credentials.env").stat().st_mode)[-3:] == "600"
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=30) == 0
    finally:
        if process.poll() is None:
            process.kill()
    assert process.stdout is not None
    banner = process.stdout.read()
    for service in SERVICE_NAMES:
        assert service in banner
