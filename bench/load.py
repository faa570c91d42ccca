"""Closed-loop load from several client processes at a fixed total concurrency.

Each client process runs one asyncio loop with its share of the in-flight calls ("lanes":
each sends a call, waits for the answer, sends the next). All clients follow one
wall-clock schedule: warm-up, then the measured window. A call counts if it completes
inside the window; latency is measured in the client, send to answer.

Processes are spawned, not forked: grpc's core does not survive a fork of a process that
already has channels, and the harness has one open to set scenarios up.

CPU is read from /proc (Linux) at both ends of the window, for the server, the clients,
PostgreSQL (when it is the harness's own) and the whole machine, so a reader can tell
whether the clients were the bottleneck, or something else on the machine took its share.
"""

from __future__ import annotations

import asyncio
import itertools
import multiprocessing
import signal
import time
from array import array
from collections import Counter
from dataclasses import dataclass
from multiprocessing.connection import Connection
from multiprocessing.context import SpawnProcess
from multiprocessing.process import BaseProcess
from typing import TypeVar

from grpc import aio

from bench import cpu
from bench.calls import CALL_TIMEOUT_SECONDS, Workload, build_call
from bench.report import CpuUsage

CONNECT_TIMEOUT_SECONDS = 30.0  # spawning and importing grpc takes a moment on a busy box
START_DELAY_SECONDS = 0.3  # lets every client receive the schedule before it starts
READY = "ready"

T = TypeVar("T")


@dataclass(frozen=True)
class Window:
    """Wall-clock instants shared by all client processes."""

    start: float
    measure_from: float
    stop: float


@dataclass
class ClientReport:
    codes: Counter[str]  # status code name -> calls completed inside the window
    latencies: array[float]  # seconds, successful calls completed inside the window
    total_ok: int  # successful calls of the whole run: what the server applied


@dataclass(frozen=True)
class LoadResult:
    seconds: float
    codes: dict[str, int]
    latencies_ms: list[float]
    total_ok: int
    cpu: CpuUsage


def lanes_per_client(concurrency: int, clients: int) -> list[int]:
    """``concurrency`` split as evenly as possible over at most ``clients`` processes."""
    clients = min(clients, concurrency)
    return [concurrency // clients + (i < concurrency % clients) for i in range(clients)]


async def run_load(
    workload: Workload,
    *,
    concurrency: int,
    clients: int,
    warmup: float,
    duration: float,
    server_pid: int,
    postgres_pid: int | None,
) -> LoadResult:
    context = multiprocessing.get_context("spawn")
    processes: list[SpawnProcess] = []
    pipes: list[Connection] = []
    try:
        for index, lanes in enumerate(lanes_per_client(concurrency, clients)):
            ours, theirs = context.Pipe()
            process = context.Process(
                target=_client_main,
                args=(workload, index, lanes, theirs),
                name=f"bench-client-{index}",
                daemon=True,
            )
            process.start()
            theirs.close()
            processes.append(process)
            pipes.append(ours)
        for pipe, process in zip(pipes, processes, strict=True):
            await _receive(pipe, process, time.time() + CONNECT_TIMEOUT_SECONDS, str)
        start = time.time() + START_DELAY_SECONDS
        window = Window(start, start + warmup, start + warmup + duration)
        for pipe in pipes:
            pipe.send(window)
        pids = [process.pid for process in processes if process.pid is not None]
        await _sleep_until(window.measure_from)
        before = _Ticks.now(server_pid, pids, postgres_pid)
        await _sleep_until(window.stop)
        after = _Ticks.now(server_pid, pids, postgres_pid)
        # Calls in flight at the stop still finish (and count towards total_ok).
        deadline = window.stop + CALL_TIMEOUT_SECONDS + CONNECT_TIMEOUT_SECONDS
        reports = [
            await _receive(pipe, process, deadline, ClientReport)
            for pipe, process in zip(pipes, processes, strict=True)
        ]
    finally:
        for process in processes:
            if process.is_alive():
                process.kill()
            process.join()
        for pipe in pipes:
            pipe.close()
    return _merge(reports, duration, _usage(before, after, duration))


def _merge(reports: list[ClientReport], seconds: float, usage: CpuUsage) -> LoadResult:
    codes: Counter[str] = Counter()
    latencies: list[float] = []
    for report in reports:
        codes.update(report.codes)
        latencies.extend(report.latencies)
    return LoadResult(
        seconds=seconds,
        codes=dict(codes),
        latencies_ms=sorted(1000 * latency for latency in latencies),
        total_ok=sum(report.total_ok for report in reports),
        cpu=usage,
    )


async def _sleep_until(instant: float) -> None:
    await asyncio.sleep(max(0.0, instant - time.time()))


async def _receive(pipe: Connection, process: BaseProcess, deadline: float, expected: type[T]) -> T:
    # Polled, so that Ctrl-C (task cancellation) is never stuck in a blocking read.
    while not pipe.poll():
        if not process.is_alive():
            raise RuntimeError(f"{process.name} exited with code {process.exitcode}")
        if time.time() > deadline:
            raise TimeoutError(f"{process.name} did not answer in time")
        await asyncio.sleep(0.02)
    try:
        message = pipe.recv()
    except EOFError:  # it died: its traceback is on stderr
        process.join(1.0)
        raise RuntimeError(f"{process.name} ended (exit code {process.exitcode})") from None
    if not isinstance(message, expected):
        raise RuntimeError(f"{process.name} sent {type(message).__name__}, not {expected}")
    return message


# ------------------------------------------------------------------------ client side


def _client_main(workload: Workload, index: int, lanes: int, pipe: Connection) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the harness's; it stops us
    pipe.send(asyncio.run(_drive(workload, index, lanes, pipe)))


async def _drive(workload: Workload, index: int, lanes: int, pipe: Connection) -> ClientReport:
    async with aio.insecure_channel(workload.target) as channel:
        await asyncio.wait_for(channel.channel_ready(), CONNECT_TIMEOUT_SECONDS)
        call = build_call(workload, channel)
        pipe.send(READY)
        window: Window = pipe.recv()  # nothing else runs on this loop yet
        report = ClientReport(Counter(), array("d"), 0)
        sequence = itertools.count()

        async def lane() -> None:
            while time.time() < window.stop:
                request_id = f"{workload.id_prefix}-{index}-{next(sequence)}"
                began = time.perf_counter()
                try:
                    await call(request_id)
                except aio.AioRpcError as error:
                    code = error.code().name
                else:
                    code = "OK"
                    report.total_ok += 1
                elapsed = time.perf_counter() - began
                if window.measure_from <= time.time() < window.stop:
                    report.codes[code] += 1
                    if code == "OK":
                        report.latencies.append(elapsed)

        await _sleep_until(window.start)
        await asyncio.gather(*(lane() for _ in range(lanes)))
    return report


# ------------------------------------------------------------------------------- CPU


@dataclass(frozen=True)
class _Ticks:
    machine: int  # busy ticks of all CPUs
    server: int
    clients: int
    postgres: int | None

    @classmethod
    def now(cls, server_pid: int, client_pids: list[int], postgres_pid: int | None) -> _Ticks:
        return cls(
            machine=cpu.machine_busy_ticks(),
            server=cpu.process_ticks(server_pid),
            clients=sum(cpu.process_ticks(pid) for pid in client_pids),
            postgres=None if postgres_pid is None else cpu.tree_ticks(postgres_pid),
        )


def _usage(before: _Ticks, after: _Ticks, seconds: float) -> CpuUsage:
    def cores(ticks: int) -> float:
        return ticks / cpu.CLOCK_TICKS_PER_SECOND / seconds

    machine = cores(after.machine - before.machine)
    server = cores(after.server - before.server)
    clients = cores(after.clients - before.clients)
    postgres = None
    if after.postgres is not None and before.postgres is not None:
        postgres = cores(after.postgres - before.postgres)
    known = server + clients + (postgres or 0.0)
    return CpuUsage(server, clients, postgres, other=max(0.0, machine - known))
