"""`loyalty up`: the whole suite on one machine, each service its own process.

Uses the embedded default store (one SQLite file per service in the data folder),
creates local API keys on first start, migrates, starts the four processes exactly as
a container would (`loyalty serve <service>` with settings in the environment), waits
for each to report SERVING, and stops them all cleanly on Ctrl-C.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from services.registry import SERVICE_NAMES, get_spec
from shared import auth, migrations
from shared.keys_cli import write_key_file

CREDENTIALS_FILE = "local-credentials.env"
KEYS_FILE = "api-keys.json"
READY_TIMEOUT_SECONDS = 30.0
DEFAULT_GRPC_BASE = 50050  # gateway; points, promotions and tiers follow
DEFAULT_METRICS_BASE = 9460


@dataclass(frozen=True)
class LocalCredentials:
    admin_key: str
    service_key: str
    keys_file: Path


def ensure_local_credentials(data_dir: Path) -> LocalCredentials:
    """Create an admin key and a service key once; later starts reuse them.

    The clear keys are kept in a 0600 file inside the data folder so that local tools
    (`loyalty demo`, your scripts) can use them. This is for a developer machine only:
    in a cluster, keys live in a Secret and the clear value is shown once.
    """
    keys_file = data_dir / KEYS_FILE
    credentials_file = data_dir / CREDENTIALS_FILE
    if keys_file.exists() and credentials_file.exists():
        values = dict(
            line.split("=", 1) for line in credentials_file.read_text().splitlines() if "=" in line
        )
        return LocalCredentials(
            values["LOYALTY_ADMIN_KEY"], values["LOYALTY_SERVICE_KEY"], keys_file
        )
    admin_key, admin_record = auth.generate_key("local-admin", ["admin"])
    service_key, service_record = auth.generate_key("local-services", ["service"])
    write_key_file(keys_file, auth.KeyStore([admin_record, service_record]))
    descriptor = os.open(credentials_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        handle.write(f"LOYALTY_ADMIN_KEY={admin_key}\nLOYALTY_SERVICE_KEY={service_key}\n")
    return LocalCredentials(admin_key, service_key, keys_file)


def sqlite_url(data_dir: Path, service: str) -> str:
    return f"sqlite+aiosqlite:///{(data_dir / f'{service}.db').resolve()}"


@dataclass(frozen=True)
class Ports:
    """Where each service listens: its default ports shifted so several suites can coexist."""

    grpc_base: int = DEFAULT_GRPC_BASE
    metrics_base: int = DEFAULT_METRICS_BASE

    def grpc(self, service: str) -> int:
        return get_spec(service).settings_cls.default_grpc_port - DEFAULT_GRPC_BASE + self.grpc_base

    def metrics(self, service: str) -> int:
        offset = get_spec(service).settings_cls.default_metrics_port - DEFAULT_METRICS_BASE
        return offset + self.metrics_base


def service_environment(
    service: str, data_dir: Path, credentials: LocalCredentials, host: str, ports: Ports
) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        LOYALTY_DATABASE_URL=sqlite_url(data_dir, service),
        LOYALTY_API_KEYS_FILE=str(credentials.keys_file.resolve()),
        LOYALTY_SERVICE_KEY=credentials.service_key,
        LOYALTY_GRPC_HOST=host,
        LOYALTY_GRPC_PORT=str(ports.grpc(service)),
        LOYALTY_METRICS_PORT=str(ports.metrics(service)),
    )
    for callee in ("points", "promotions", "tiers"):
        env[f"LOYALTY_{callee.upper()}_TARGET"] = f"dns:///{host}:{ports.grpc(callee)}"
    return env


def wait_until_serving(address: str, deadline: float) -> bool:
    with grpc.insecure_channel(address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        while time.monotonic() < deadline:
            try:
                reply = stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=1.0)
                if reply.status == health_pb2.HealthCheckResponse.SERVING:
                    return True
            except grpc.RpcError:
                pass
            time.sleep(0.2)
    return False


def run_suite(data_dir: Path, host: str, ports: Ports) -> int:
    data_dir.mkdir(parents=True, exist_ok=True)
    credentials = ensure_local_credentials(data_dir)
    for service in SERVICE_NAMES:
        spec = get_spec(service)
        migrations.upgrade(sqlite_url(data_dir, service), spec.migrations_dir, spec.metadata)
    processes: dict[str, subprocess.Popen[bytes]] = {}
    stopping = False

    def request_stop(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)
    try:
        for service in SERVICE_NAMES:
            processes[service] = subprocess.Popen(  # noqa: S603 - fixed argv, our own CLI
                [sys.executable, "-m", "services.cli", "serve", service],
                env=service_environment(service, data_dir, credentials, host, ports),
            )
        deadline = time.monotonic() + READY_TIMEOUT_SECONDS
        print(f"{'service':<12} {'gRPC':<22} {'metrics':<28} pid")
        for service in SERVICE_NAMES:
            address = f"{host}:{ports.grpc(service)}"
            if not wait_until_serving(address, deadline):
                print(
                    f"{service} did not become ready at {address}; see its log above",
                    file=sys.stderr,
                )
                return 1
            metrics = f"http://{host}:{ports.metrics(service)}/metrics"
            print(f"{service:<12} {address:<22} {metrics:<28} {processes[service].pid}")
        print(f"\nAdmin API key and service key: {data_dir / CREDENTIALS_FILE} (local use only).")
        print("Press Ctrl-C to stop.", flush=True)
        while not stopping:
            for service, process in processes.items():
                if process.poll() is not None:
                    print(
                        f"{service} exited with code {process.returncode}; stopping the suite",
                        file=sys.stderr,
                    )
                    return 1
            time.sleep(0.2)
        return 0
    finally:
        stop_all(processes)


def stop_all(processes: dict[str, subprocess.Popen[bytes]], grace_seconds: float = 20.0) -> None:
    """SIGTERM callers first (gateway last in SERVICE_NAMES) so they drain before callees."""
    for service in reversed(SERVICE_NAMES):
        process = processes.get(service)
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + grace_seconds
    for process in processes.values():
        try:
            process.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
