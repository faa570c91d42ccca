"""Server bootstrap shared by every service (grpc.aio).

* the policy interceptor (overload cap, auth, errors, metrics) behind OpenTelemetry;
* standard ``grpc.health.v1`` whose status follows a real database check;
* server reflection, so grpcurl and ``buf curl`` work without .proto files;
* keepalive and max-connection-age, so clients rebalance across replicas;
* graceful stop: health NOT_SERVING, refuse new calls, let in-flight calls finish
  within the grace period.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from types import TracebackType
from typing import Self

from grpc import aio
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from shared import auth, db, telemetry
from shared.clock import Clock, SystemClock
from shared.grpc.interceptor import PolicyInterceptor, RpcObserver
from shared.ids import IdGenerator, TimeOrderedIds
from shared.metrics import RpcMetrics
from shared.service import Mounted, Runtime, ServiceSpec
from shared.settings import ServiceSettings

log = logging.getLogger("loyalty.server")

HEALTH_CHECK_INTERVAL_SECONDS = 5.0
HEALTH_CHECK_TIMEOUT_SECONDS = 2.0
# Liveness probes ask for this name: it stays SERVING while the process can answer at
# all, so a database outage takes pods out of rotation (readiness) without restarting
# them (liveness).
LIVENESS_SERVICE = "liveness"
SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


def server_options(settings: ServiceSettings) -> list[tuple[str, int]]:
    return [
        # Never share a port silently with a second process (grpc's default allows it).
        ("grpc.so_reuseport", 0),
        ("grpc.keepalive_time_ms", settings.keepalive_time_seconds * 1000),
        ("grpc.keepalive_timeout_ms", 10_000),
        ("grpc.keepalive_permit_without_calls", 1),
        ("grpc.http2.min_ping_interval_without_data_ms", 5_000),
        ("grpc.max_connection_age_ms", settings.max_connection_age_seconds * 1000),
        ("grpc.max_connection_age_grace_ms", settings.max_connection_age_grace_seconds * 1000),
        ("grpc.max_receive_message_length", 16 * 1024 * 1024),
    ]


class ServiceServer:
    """One service on one port. ``async with ServiceServer(...) as server: server.port``."""

    def __init__(
        self,
        spec: ServiceSpec,
        settings: ServiceSettings,
        *,
        clock: Clock | None = None,
        ids: IdGenerator | None = None,
        observer: RpcObserver | None = None,
        health_check_interval: float = HEALTH_CHECK_INTERVAL_SECONDS,
    ) -> None:
        self.spec = spec
        self.settings = settings
        self.clock = clock or SystemClock()
        self.ids = ids or TimeOrderedIds()
        self._observer = observer
        self._health_check_interval = health_check_interval
        self.port = 0
        self._server: aio.Server | None = None
        self._mounted: Mounted | None = None
        self._health = health.aio.HealthServicer()
        self._tasks: list[asyncio.Task[None]] = []
        self._stopping = False
        self.engine = db.create_engine(
            settings.database_url.get_secret_value(), pool_size=settings.db_pool_size
        )

    async def start(self) -> int:
        settings = self.settings
        telemetry.instrument_engine(self.engine)
        store = auth.KeyStore.from_settings(
            settings.api_keys_file,
            settings.api_keys.get_secret_value() if settings.api_keys else None,
        )
        mounted = await self.spec.mount(Runtime(settings, self.engine, self.clock, self.ids))
        self._mounted = mounted
        prefix = f"/{self.spec.full_name}/"
        policy = PolicyInterceptor(
            domain=self.spec.error_domain,
            authenticator=auth.Authenticator(store),
            scopes={prefix + name: scopes for name, scopes in mounted.scopes.items()},
            max_concurrent_rpcs=settings.max_concurrent_rpcs,
            observer=self._observer or RpcMetrics(self.spec.name),
        )
        server = aio.server(
            interceptors=[telemetry.server_interceptor(), policy],
            options=server_options(settings),
        )
        mounted.add_to_server(mounted.servicer, server)
        health_pb2_grpc.add_HealthServicer_to_server(self._health, server)
        reflection.enable_server_reflection(
            [self.spec.full_name, health.SERVICE_NAME, reflection.SERVICE_NAME], server
        )
        address = f"{settings.grpc_host}:{settings.effective_grpc_port}"
        try:
            self.port = server.add_insecure_port(address)
        except RuntimeError as exc:
            raise OSError(f"{self.spec.name}: cannot listen on {address}: {exc}") from None
        await server.start()
        self._server = server
        await self._health.set(LIVENESS_SERVICE, SERVING)
        await self._check_database()
        self._tasks.append(asyncio.create_task(self._watch_database()))
        self._tasks.extend(asyncio.create_task(job()) for job in mounted.background)
        log.info("%s listening on port %d", self.spec.name, self.port)
        return self.port

    async def _set_health(
        self, status: health_pb2.HealthCheckResponse.ServingStatus.ValueType
    ) -> None:
        for name in ("", self.spec.full_name):
            await self._health.set(name, status)

    async def _check_database(self) -> None:
        try:
            await asyncio.wait_for(db.ping(self.engine), HEALTH_CHECK_TIMEOUT_SECONDS)
        except Exception as exc:  # any failure means: do not send traffic here
            log.warning("database check failed: %s", type(exc).__name__)
            healthy = False
        else:
            healthy = True
        if not self._stopping:
            await self._set_health(SERVING if healthy else NOT_SERVING)

    async def _watch_database(self) -> None:
        while True:
            await asyncio.sleep(self._health_check_interval)
            await self._check_database()

    async def stop(self, grace: float | None = None) -> None:
        """Stop accepting calls, let in-flight calls finish within ``grace`` seconds."""
        if self._stopping:
            return
        self._stopping = True
        await self._health.enter_graceful_shutdown()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._server is not None:
            await self._server.stop(
                self.settings.shutdown_grace_seconds if grace is None else grace
            )
        if self._mounted is not None and self._mounted.close is not None:
            await self._mounted.close()
        await self.engine.dispose()
        log.info("%s stopped", self.spec.name)

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop(grace=1.0)


async def serve_forever(spec: ServiceSpec, settings: ServiceSettings) -> None:
    """What ``loyalty serve <service>`` runs: serve until SIGTERM/SIGINT, then drain."""
    import signal

    from shared import logs, metrics

    logs.configure_logging(spec.name, settings.log_level)
    telemetry.configure_tracing(spec.name)
    if settings.effective_metrics_port:
        metrics.start_metrics_server(settings.effective_metrics_port)
    server = ServiceServer(spec, settings)
    await server.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    await stop.wait()
    log.info("shutting down %s (grace %.0fs)", spec.name, settings.shutdown_grace_seconds)
    await server.stop()
