"""Prometheus metrics of a service process: RPC rate, errors, latency and load; domain counters.

Everything is registered in ``REGISTRY`` (this module's own, with the process, GC and
platform collectors), never in prometheus_client's global default, so nothing a library
registers leaks into ``/metrics``. Each family is declared once per process and every
series carries a ``service`` label, so several services can share a process (as in tests)
and dashboards aggregate across them the same way.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    start_http_server,
)
from prometheus_client.gc_collector import GCCollector
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector

__all__ = [
    "LATENCY_BUCKETS",
    "REGISTRY",
    "RpcMetrics",
    "domain_counter",
    "render_metrics",
    "start_metrics_server",
]

REGISTRY = CollectorRegistry()
ProcessCollector(registry=REGISTRY)
PlatformCollector(registry=REGISTRY)
GCCollector(registry=REGISTRY)

# From a cached read (~0.5 ms) to the longest deadline a client sets (10 s).
LATENCY_BUCKETS = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
)  # fmt: skip

_RPC_LABELS = ("service", "method", "code")
_REQUESTS = Counter(
    "loyalty_rpc_requests_total",
    "RPCs finished, by full method name and status code.",
    _RPC_LABELS,
    registry=REGISTRY,
)
_DURATION = Histogram(
    "loyalty_rpc_duration_seconds",
    "Time from receiving an RPC to its status, by full method name and status code.",
    _RPC_LABELS,
    buckets=LATENCY_BUCKETS,
    registry=REGISTRY,
)
_IN_FLIGHT = Gauge(
    "loyalty_rpc_in_flight",
    "RPCs being handled right now.",
    ("service",),
    registry=REGISTRY,
)
_REJECTED = Counter(
    "loyalty_rpc_rejected_total",
    "RPCs refused before reaching a handler (e.g. reason=overloaded).",
    ("service", "reason"),
    registry=REGISTRY,
)

_lock = threading.Lock()
_domain_counters: dict[str, tuple[Counter, tuple[str, ...]]] = {}


class RpcMetrics:
    """The RPC metrics of one service, fed by its server interceptor on every call.

    ``method`` is the full gRPC name (``/loyalty.ledger.v1.LedgerService/Earn``) of a
    registered method only, since each one is a series; ``code`` is the status name
    (``OK``, ``NOT_FOUND``, ...).
    """

    __slots__ = ("_calls", "_in_flight", "_rejected", "service")

    def __init__(self, service: str) -> None:
        self.service = service
        self._in_flight = _IN_FLIGHT.labels(service)
        # labels() hashes and locks on every call; a plain dict lookup keeps observe()
        # cheap on the hot path.
        self._calls: dict[tuple[str, str], tuple[Counter, Histogram]] = {}
        self._rejected: dict[str, Counter] = {}

    def observe(self, method: str, code: str, seconds: float) -> None:
        """Count one finished RPC and its duration."""
        children = self._calls.get((method, code))
        if children is None:
            children = (
                _REQUESTS.labels(self.service, method, code),
                _DURATION.labels(self.service, method, code),
            )
            self._calls[(method, code)] = children
        children[0].inc()
        children[1].observe(seconds)

    def rejected(self, reason: str) -> None:
        """Count one RPC refused before its handler ran (``overloaded``, ...)."""
        child = self._rejected.get(reason)
        if child is None:
            child = self._rejected[reason] = _REJECTED.labels(self.service, reason)
        child.inc()

    def inc(self) -> None:
        """An RPC started; pair with ``dec()`` in a ``finally``."""
        self._in_flight.inc()

    def dec(self) -> None:
        self._in_flight.dec()


def domain_counter(name: str, doc: str, labels: Sequence[str] = ()) -> Counter:
    """Declare a domain counter once per process, with ``service`` as its first label.

    ``name`` is the exposed name (``loyalty_points_earned_total``). Declaring the same
    name again with the same labels returns the same counter, so module-level
    declarations survive re-imports; use it as
    ``POINTS_EARNED.labels(service="ledger", program=...).inc(points)``.
    """
    if not (name.startswith("loyalty_") and name.endswith("_total")):
        raise ValueError(f"domain counter {name!r}: name must be loyalty_<what>_total")
    label_names = ("service", *labels)
    with _lock:
        declared = _domain_counters.get(name)
        if declared is None:
            counter = Counter(name, doc, label_names, registry=REGISTRY)
            _domain_counters[name] = (counter, label_names)
            return counter
    counter, declared_labels = declared
    if declared_labels != label_names:
        raise ValueError(
            f"domain counter {name!r} already declared with labels {list(declared_labels)}"
        )
    return counter


def start_metrics_server(port: int | None, host: str = "0.0.0.0") -> int | None:  # noqa: S104
    """Serve ``/metrics`` from ``REGISTRY`` in a daemon thread; return the bound port.

    ``port=0`` means disabled (as ``LOYALTY_METRICS_PORT=0``) and returns None;
    ``port=None`` binds an ephemeral port, for tests.
    """
    if port == 0:
        return None
    server, _thread = start_http_server(port or 0, addr=host, registry=REGISTRY)
    return server.server_port


def render_metrics() -> bytes:
    """The text exposition of ``REGISTRY``, as ``/metrics`` would serve it."""
    return generate_latest(REGISTRY)
