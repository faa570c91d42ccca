"""The baselines: bare grpc.aio servers, measured in the same run as the services.

``python -m bench.baseline KIND --port P [--database-url URL --pool-size N]`` serves one
method of raw bytes, with no interceptor, auth, protobuf or domain code:

* ``echo``: ``Echo`` returns the request — the cost of grpc.aio alone.
* ``sql``: ``Write`` inserts the request id into a small table and commits in ONE round
  trip: ``INSERT ... RETURNING`` on a psycopg 3 connection in autocommit mode. This is
  the issue's "bare grpc.aio handler doing one SQL round trip and commit", the floor for
  any write on this machine, and the baseline the targets' ratios refer to.
* ``sqlalchemy``: ``Write`` does the same insert through ``shared.db.create_engine``, the
  engine every service gets (async SQLAlchemy, same pool, pre-ping): on the wire a ping,
  BEGIN, the insert and COMMIT. For reference only: it shows how much of a service's gap
  to ``sql`` is the stack it shares, and how much is its own code.

Standard ``grpc.health.v1`` reports SERVING once the server can answer, which is what
the harness waits for.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Literal

import grpc
import psycopg
from grpc import aio
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from bench.calls import BASELINE_SERVICE
from shared import db
from tests.support.postgres import libpq_url

Kind = Literal["echo", "sql", "sqlalchemy"]
Context = aio.ServicerContext[bytes, bytes]
Handler = Callable[[bytes, Context], Awaitable[bytes]]

# Like the services' tables: a generated key and a unique request id (idempotency), so a
# write maintains comparable indexes.
CREATE_TABLE = (
    "CREATE TABLE IF NOT EXISTS bench_writes ("
    " id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,"
    " request_id text NOT NULL UNIQUE,"
    " created_at timestamptz NOT NULL DEFAULT now())"
)


async def echo(request: bytes, context: Context) -> bytes:
    return request


class Connections:
    """At most ``size`` autocommit connections, opened when first needed, then reused."""

    def __init__(self, url: str, size: int) -> None:
        self._url = libpq_url(url)
        self._slots = asyncio.Semaphore(size)
        self._idle: list[psycopg.AsyncConnection[tuple[object, ...]]] = []

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[psycopg.AsyncConnection[tuple[object, ...]]]:
        async with self._slots:
            if self._idle:
                connection = self._idle.pop()
            else:
                connection = await psycopg.AsyncConnection.connect(self._url, autocommit=True)
            try:
                yield connection
            finally:
                if not connection.broken:
                    self._idle.append(connection)

    async def close(self) -> None:
        for connection in self._idle:
            await connection.close()


def one_round_trip(connections: Connections) -> Handler:
    async def write(request: bytes, context: Context) -> bytes:
        async with connections.connection() as connection:
            cursor = await connection.execute(
                "INSERT INTO bench_writes (request_id) VALUES (%s) RETURNING id",
                (request.decode(),),
            )
            row = await cursor.fetchone()
        return str(row[0] if row else "").encode()

    return write


def through_shared_engine(engine: AsyncEngine) -> Handler:
    insert = text("INSERT INTO bench_writes (request_id) VALUES (:request_id) RETURNING id")

    async def write(request: bytes, context: Context) -> bytes:
        async with engine.begin() as connection:
            row_id = (await connection.execute(insert, {"request_id": request.decode()})).scalar()
        return str(row_id).encode()

    return write


Cleanup = Callable[[], Awaitable[None]]


async def _method(kind: Kind, database_url: str, pool_size: int) -> tuple[str, Handler, Cleanup]:
    """The one method a baseline server of ``kind`` serves, and how to release its pool."""
    if kind == "echo":
        return "Echo", echo, _nothing
    async with await psycopg.AsyncConnection.connect(
        libpq_url(database_url), autocommit=True
    ) as connection:
        await connection.execute(CREATE_TABLE)
    if kind == "sql":
        connections = Connections(database_url, pool_size)
        return "Write", one_round_trip(connections), connections.close
    engine = db.create_engine(database_url, pool_size=pool_size)
    return "Write", through_shared_engine(engine), engine.dispose


async def _nothing() -> None:
    """Echo holds nothing to release."""


async def serve(kind: Kind, port: int, database_url: str, pool_size: int) -> None:
    name, handler, cleanup = await _method(kind, database_url, pool_size)
    handlers: dict[str, grpc.RpcMethodHandler[bytes, bytes]] = {
        name: grpc.unary_unary_rpc_method_handler(handler)
    }
    server = aio.server()
    server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler(BASELINE_SERVICE, handlers),)
    )
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    await health_servicer.set("", health_pb2.HealthCheckResponse.SERVING)
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(signum, stop.set)
    await stop.wait()
    await server.stop(grace=1.0)
    await cleanup()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("kind", choices=["echo", "sql", "sqlalchemy"])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--database-url", default="", help="required for sql and sqlalchemy")
    parser.add_argument("--pool-size", type=int, default=64)
    args = parser.parse_args()
    if args.kind != "echo" and not args.database_url:
        parser.error(f"{args.kind} needs --database-url")
    asyncio.run(serve(args.kind, args.port, args.database_url, args.pool_size))


if __name__ == "__main__":
    main()
