"""Prometheus metrics: RPC series, domain counters, and the /metrics endpoint.

The registry is per process, so each test uses its own ``service`` label value.
"""

from __future__ import annotations

import urllib.request
import uuid

import pytest
from prometheus_client.parser import text_string_to_metric_families

from shared.metrics import RpcMetrics, domain_counter, render_metrics, start_metrics_server

METHOD = "/loyalty.points.v1.PointsService/Earn"


def sample(name: str, **labels: str) -> float | None:
    """The value of one series as ``render_metrics()`` exposes it, or None if absent."""
    for family in text_string_to_metric_families(render_metrics().decode()):
        for s in family.samples:
            if s.name == name and s.labels == labels:
                return float(s.value)
    return None


@pytest.fixture
def service() -> str:
    return f"svc-{uuid.uuid4().hex[:8]}"


def test_observe_counts_calls_and_durations_by_method_and_code(service: str) -> None:
    metrics = RpcMetrics(service)
    metrics.observe(METHOD, "OK", 0.003)
    metrics.observe(METHOD, "OK", 0.2)
    metrics.observe(METHOD, "NOT_FOUND", 0.0004)

    ok = {"service": service, "method": METHOD, "code": "OK"}
    not_found = {**ok, "code": "NOT_FOUND"}
    assert sample("loyalty_rpc_requests_total", **ok) == 2
    assert sample("loyalty_rpc_requests_total", **not_found) == 1
    assert sample("loyalty_rpc_duration_seconds_count", **ok) == 2
    assert sample("loyalty_rpc_duration_seconds_sum", **ok) == pytest.approx(0.203)
    assert sample("loyalty_rpc_duration_seconds_bucket", **ok, le="0.0005") == 0
    assert sample("loyalty_rpc_duration_seconds_bucket", **ok, le="0.005") == 1
    assert sample("loyalty_rpc_duration_seconds_bucket", **ok, le="10.0") == 2
    assert sample("loyalty_rpc_duration_seconds_bucket", **not_found, le="0.0005") == 1


def test_two_instances_for_one_service_share_series(service: str) -> None:
    RpcMetrics(service).observe(METHOD, "OK", 0.01)
    RpcMetrics(service).observe(METHOD, "OK", 0.01)

    labels = {"service": service, "method": METHOD, "code": "OK"}
    assert sample("loyalty_rpc_requests_total", **labels) == 2


def test_in_flight_and_rejections(service: str) -> None:
    metrics = RpcMetrics(service)
    metrics.inc()
    metrics.inc()
    metrics.dec()
    metrics.rejected("overloaded")
    metrics.rejected("overloaded")

    assert sample("loyalty_rpc_in_flight", service=service) == 1
    assert sample("loyalty_rpc_rejected_total", service=service, reason="overloaded") == 2


def test_domain_counter_is_declared_once_with_the_service_label(service: str) -> None:
    name = f"loyalty_test_{uuid.uuid4().hex[:8]}_total"
    counter = domain_counter(name, "Points earned in tests.", ["program"])
    assert domain_counter(name, "Points earned in tests.", ("program",)) is counter

    counter.labels(service=service, program="coffee").inc(25)

    assert sample(name, service=service, program="coffee") == 25


def test_domain_counter_refuses_a_conflicting_or_unprefixed_declaration() -> None:
    name = f"loyalty_test_{uuid.uuid4().hex[:8]}_total"
    domain_counter(name, "A counter.", ["program"])
    with pytest.raises(ValueError, match="already declared"):
        domain_counter(name, "A counter.", ["tier"])
    with pytest.raises(ValueError, match="loyalty_<what>_total"):
        domain_counter("points_earned_total", "No prefix.")
    with pytest.raises(ValueError, match="loyalty_<what>_total"):
        domain_counter("loyalty_points_earned", "No suffix.")


def test_metrics_server_answers_on_a_real_port(service: str) -> None:
    RpcMetrics(service).observe(METHOD, "OK", 0.01)

    port = start_metrics_server(None, host="127.0.0.1")

    assert port is not None
    assert port > 0
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        assert response.status == 200
        body = response.read().decode()
    assert f'service="{service}"' in body
    assert "loyalty_rpc_requests_total" in body
    assert "process_cpu_seconds_total" in body


def test_metrics_server_port_zero_means_disabled() -> None:
    assert start_metrics_server(0) is None
