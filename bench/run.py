"""``python -m bench.run``: the suite's benchmark (``make bench``); see bench/README.md.

Starts PostgreSQL (a throwaway cluster, or the server named by ``--database-url`` /
``LOYALTY_BENCH_DATABASE_URL``, where it creates and drops its own databases), then each
baseline server and the points service in turn, each in its own process with a fresh
database, and measures each scenario at a fixed concurrency from several client
processes. Prints a table and writes JSON to bench/results/. Every process and database
it started is gone when it returns, also after Ctrl-C or SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import json
import os
import secrets
import signal
import sys
import tempfile
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
from grpc import aio

from bench import cpu, machine
from bench.calls import build_call
from bench.load import lanes_per_client, run_load
from bench.report import (
    BUSY_OTHER_CORES,
    ScenarioResult,
    document,
    evaluate_all,
    measured,
    render,
)
from bench.scenarios import SCENARIOS, PointsAdmin, Scenario, ServerName, Setup
from bench.servers import (
    REPO_ROOT,
    RunningServer,
    clean_environment,
    free_port,
    python_module,
    run_command,
    serving,
)
from shared import auth, db
from shared.keys_cli import write_key_file
from tests.support.postgres import (
    PostgresServer,
    ThrowawayPostgres,
    remove_orphaned_clusters,
)

DATABASE_URL_ENV = "LOYALTY_BENCH_DATABASE_URL"
RESULTS_DIR = REPO_ROOT / "bench" / "results"
# The points service's default cap; raised only if the bench sends more at once.
DEFAULT_MAX_CONCURRENT_RPCS = 256
# Targets of calls points never makes in these scenarios (no tier rule, no vouchers).
NOWHERE = "dns:///127.0.0.1:1"


@dataclass(frozen=True)
class Options:
    duration: float
    warmup: float
    concurrency: int
    clients: int
    pool_size: int
    scenarios: tuple[Scenario, ...]
    database_url: str | None


@dataclass(frozen=True)
class Keys:
    admin: str
    pos: str
    service: str


def parse_options(argv: Sequence[str] | None = None) -> Options:
    names = [s.name for s in SCENARIOS]
    parser = argparse.ArgumentParser(
        prog="python -m bench.run", description=__doc__.split("\n", 1)[0]
    )
    parser.add_argument("--duration", type=float, default=10.0, help="measured seconds")
    parser.add_argument("--warmup", type=float, default=2.0, help="unmeasured seconds first")
    parser.add_argument("--concurrency", type=int, default=64, help="calls in flight, in all")
    parser.add_argument("--clients", type=int, default=2, help="client processes")
    parser.add_argument(
        "--pool-size", type=int, help="database connections per server (default: concurrency)"
    )
    parser.add_argument(
        "--scenarios",
        default=",".join(names),
        help=f"comma-separated, from: {', '.join(names)} (the baselines always run)",
    )
    parser.add_argument(
        "--database-url",
        default=os.environ.get(DATABASE_URL_ENV),
        help=f"a PostgreSQL server where the bench may CREATE DATABASE (default: "
        f"${DATABASE_URL_ENV}, else a throwaway cluster)",
    )
    args = parser.parse_args(argv)
    wanted = {name.strip() for name in args.scenarios.split(",") if name.strip()}
    if unknown := wanted - set(names):
        parser.error(f"unknown scenarios: {', '.join(sorted(unknown))}")
    if args.duration <= 0 or args.warmup < 0 or args.concurrency < 1 or args.clients < 1:
        parser.error("need --duration > 0, --warmup >= 0, --concurrency >= 1, --clients >= 1")
    return Options(
        duration=args.duration,
        warmup=args.warmup,
        concurrency=args.concurrency,
        clients=args.clients,
        pool_size=args.pool_size or args.concurrency,
        # Ratios need the baselines measured in the same run, so they always are.
        scenarios=tuple(s for s in SCENARIOS if s.name in wanted or s.server != "points"),
        database_url=args.database_url,
    )


def main(argv: Sequence[str] | None = None) -> int:
    options = parse_options(argv)
    try:
        asyncio.run(_run(options))
    except (KeyboardInterrupt, asyncio.CancelledError):  # Ctrl-C, SIGTERM
        print("\ninterrupted: servers, clients and databases cleaned up", file=sys.stderr)
        return 130
    return 0


async def _run(options: Options) -> None:
    # asyncio turns Ctrl-C into cancellation; SIGTERM (a killed `make`) gets the same.
    task = asyncio.current_task()
    assert task is not None
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
    run_id = secrets.token_hex(4)
    results: list[ScenarioResult] = []
    with contextlib.ExitStack() as stack:
        workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="loyalty-bench-")))
        postgres = stack.enter_context(_postgres(options.database_url))
        facts = machine.facts(postgres.admin_url)
        facts["busy_cores_before_start"] = round(await _busy_cores(), 2)
        postgres_pid = _postmaster_pid(postgres)
        keys = _write_keys(workdir / "api-keys.json")
        _print_header(options, facts)
        for group in dict.fromkeys(s.server for s in options.scenarios):
            chosen = [s for s in options.scenarios if s.server == group]
            database_url = ""  # echo touches no database
            if group != "echo":
                database = _database(postgres, f"bench_{group}_{run_id}")
                database_url = stack.enter_context(database)
            async with _server(group, database_url, keys, options, workdir) as server:
                for scenario in chosen:
                    result = await _measure(scenario, server, keys, options, run_id, postgres_pid)
                    print(_progress(result), flush=True)
                    results.append(result)
    verdicts = evaluate_all(results)
    settings = {
        "duration_seconds": options.duration,
        "warmup_seconds": options.warmup,
        "concurrency": options.concurrency,
        "client_processes": len(lanes_per_client(options.concurrency, options.clients)),
        "db_pool_size": options.pool_size,
        "database": db.redact_url(options.database_url) if options.database_url else "throwaway",
    }
    path = _write_results(
        document(machine=facts, settings=settings, results=results, verdicts=verdicts)
    )
    print()
    print(render(results, verdicts))
    print(f"\nresults: {path.relative_to(REPO_ROOT)}")


async def _measure(
    scenario: Scenario,
    server: RunningServer,
    keys: Keys,
    options: Options,
    run_id: str,
    postgres_pid: int | None,
) -> ScenarioResult:
    id_prefix = f"{run_id}-{scenario.name}"
    async with aio.insecure_channel(server.target) as channel:
        setup = Setup(
            target=server.target,
            pos_key=keys.pos,
            id_prefix=id_prefix,
            points=PointsAdmin(channel, keys.admin, id_prefix),
        )
        try:
            prepared = await scenario.prepare(setup)
            # One call before the load: an RPC not built yet is reported, not measured.
            await build_call(prepared.workload, channel)(f"{id_prefix}-probe")
        except aio.AioRpcError as error:
            if error.code() != grpc.StatusCode.UNIMPLEMENTED:
                raise
            return ScenarioResult(scenario.name, unavailable=error.details() or "UNIMPLEMENTED")
        load = await run_load(
            prepared.workload,
            concurrency=options.concurrency,
            clients=options.clients,
            warmup=options.warmup,
            duration=options.duration,
            server_pid=server.pid,
            postgres_pid=postgres_pid,
        )
        # The probe succeeded too, so it counts as one more applied call.
        balance = await prepared.verify(load.total_ok + 1) if prepared.verify else None
    return measured(
        scenario.name,
        seconds=load.seconds,
        codes=load.codes,
        latencies_ms=load.latencies_ms,
        cpu=load.cpu,
        balance=balance,
    )


@contextlib.asynccontextmanager
async def _server(
    group: ServerName, database_url: str, keys: Keys, options: Options, workdir: Path
) -> AsyncIterator[RunningServer]:
    port = free_port()
    env = clean_environment()
    if group != "points":
        command = python_module("bench.baseline", group, "--port", str(port))
        if database_url:
            command += ["--database-url", database_url, "--pool-size", str(options.pool_size)]
    else:
        env |= {
            "LOYALTY_DATABASE_URL": database_url,
            "LOYALTY_API_KEYS_FILE": str(workdir / "api-keys.json"),
            "LOYALTY_SERVICE_KEY": keys.service,
            "LOYALTY_TIERS_TARGET": NOWHERE,
            "LOYALTY_PROMOTIONS_TARGET": NOWHERE,
            "LOYALTY_GRPC_HOST": "127.0.0.1",
            "LOYALTY_GRPC_PORT": str(port),
            "LOYALTY_METRICS_PORT": "0",
            "LOYALTY_DB_POOL_SIZE": str(options.pool_size),
            "LOYALTY_MAX_CONCURRENT_RPCS": str(
                max(DEFAULT_MAX_CONCURRENT_RPCS, options.concurrency)
            ),
            "LOYALTY_SHUTDOWN_GRACE_SECONDS": "2",
        }
        run_command(python_module("services.cli", "migrate", "points"), env)
        command = python_module("services.cli", "serve", "points")
    async with serving(group, command, env, port, workdir / f"{group}.log") as server:
        yield server


@contextlib.contextmanager
def _postgres(url: str | None) -> Iterator[PostgresServer]:
    if url:
        server: PostgresServer = PostgresServer(_psycopg_url(url))
    else:
        remove_orphaned_clusters()  # left by a run that was killed outright
        server = ThrowawayPostgres()
    try:
        yield server
    finally:
        server.close()


def _postmaster_pid(server: PostgresServer) -> int | None:
    """The throwaway cluster's server process; None for a server run by someone else."""
    if not isinstance(server, ThrowawayPostgres):
        return None
    return int((server.data_dir / "postmaster.pid").read_text().split()[0])


async def _busy_cores(seconds: float = 1.0) -> float:
    """CPU the machine spends on other work while the bench is idle."""
    before = cpu.machine_busy_ticks()
    await asyncio.sleep(seconds)
    return (cpu.machine_busy_ticks() - before) / cpu.CLOCK_TICKS_PER_SECOND / seconds


@contextlib.contextmanager
def _database(server: PostgresServer, name: str) -> Iterator[str]:
    url = server.create_database(name)
    try:
        yield url
    finally:
        server.drop_database(name)


def _psycopg_url(url: str) -> str:
    parsed = db.parse_url(url)
    if parsed.get_backend_name() != "postgresql":
        raise SystemExit(f"{DATABASE_URL_ENV} / --database-url: need a PostgreSQL URL")
    return parsed.set(drivername=db.POSTGRES_DRIVER).render_as_string(hide_password=False)


def _write_keys(path: Path) -> Keys:
    admin, admin_record = auth.generate_key("bench-admin", [auth.Scope.ADMIN])
    pos, pos_record = auth.generate_key("bench-till", [auth.Scope.POS])
    service, service_record = auth.generate_key("bench-service", [auth.Scope.SERVICE])
    write_key_file(path, auth.KeyStore([admin_record, pos_record, service_record]))
    return Keys(admin=admin, pos=pos, service=service)


def _write_results(content: dict[str, object]) -> Path:
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = RESULTS_DIR / f"{dt.datetime.now(dt.UTC):%Y%m%dT%H%M%SZ}.json"
    path.write_text(json.dumps(content, indent=2, ensure_ascii=False) + "\n")
    return path


def _print_header(options: Options, facts: dict[str, Any]) -> None:
    postgres = facts["postgresql"]
    lanes = lanes_per_client(options.concurrency, options.clients)
    print(
        f"{facts['cpu_count']} CPUs ({facts['cpu_model']}); "
        f"PostgreSQL {postgres['server_version']} (fsync {postgres['fsync']}); "
        f"{options.concurrency} in flight from {len(lanes)} client processes; "
        f"{options.warmup:g} s warm-up + {options.duration:g} s per scenario",
        flush=True,
    )
    busy = facts["busy_cores_before_start"]
    if busy > BUSY_OTHER_CORES:
        print(
            f"WARNING: {busy:.2f} cores were busy before the bench started: something else "
            "is running, and the numbers will be lower than this machine's (see CPU other)",
            flush=True,
        )


def _progress(result: ScenarioResult) -> str:
    if not result.ran:
        return f"{result.name}: not available ({result.unavailable})"
    p99 = f", p99 {result.latency.p99_ms:.1f} ms" if result.latency else ""
    errors = sum(result.errors.values())
    return f"{result.name}: {result.throughput:,.0f}/s{p99}, {errors:,} errors"


if __name__ == "__main__":
    sys.exit(main())
