"""Monitoring in prod: the scrape configuration reaches every service, and the alert
rules are valid PromQL that fire on sick series and stay quiet on healthy ones
(`promtool test rules` with tests/deploy/alerts_test.yaml)."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from .manifests import DOCS, Obj, labels, of_kind, selector_matches, server_deployments

ALERTS_TEST = Path(__file__).with_name("alerts_test.yaml")
METRICS = {
    "error rate": "loyalty_rpc_requests_total",
    "p99 latency": "loyalty_rpc_duration_seconds_bucket",
    "outbox lag": "loyalty_outbox_lag_seconds",
}
PROMTOOL_MISSING = (
    "promtool not found on PATH (Debian: apt-get install prometheus); "
    "the PromQL of the alerts is not checked"
)


def rules(prod: tuple[Obj, ...]) -> list[Obj]:
    return [
        r for o in of_kind(prod, "PrometheusRule") for g in o["spec"]["groups"] for r in g["rules"]
    ]


def github_anchor(heading: str) -> str:
    return re.sub(r"[^a-z0-9 -]", "", heading.strip().lower()).replace(" ", "-")


def test_alerts_cover_errors_latency_and_outbox_lag(prod: tuple[Obj, ...]) -> None:
    alerts = [r for r in rules(prod) if "alert" in r]
    for what, metric in METRICS.items():
        assert any(metric in r["expr"] for r in alerts), f"no alert on {what} ({metric})"
    assert any("histogram_quantile(0.99" in r["expr"] for r in alerts), "no p99 alert"
    anchors = {
        github_anchor(line.lstrip("#"))
        for line in (DOCS.read_text().splitlines() if DOCS.is_file() else [])
        if line.startswith("#")
    }
    for alert in alerts:
        assert alert["labels"]["severity"] in {"warning", "critical"}, alert["alert"]
        assert alert.get("for"), f"{alert['alert']}: fires on a single bad scrape"
        assert {"summary", "description", "runbook_url"} <= alert["annotations"].keys()
        runbook = alert["annotations"]["runbook_url"]
        assert runbook.startswith("docs/operations.md#"), runbook
        assert runbook.split("#", 1)[1] in anchors, f"{alert['alert']}: no section {runbook}"


def test_service_monitor_scrapes_every_service(prod: tuple[Obj, ...]) -> None:
    monitors = of_kind(prod, "ServiceMonitor")
    for name in server_deployments(prod):
        service = next(s for s in of_kind(prod, "Service") if s["metadata"]["name"] == name)
        matching = [m for m in monitors if selector_matches(m["spec"]["selector"], labels(service))]
        assert len(matching) == 1, f"{name}: scraped by {len(matching)} ServiceMonitors"
        port_names = {p["name"] for p in service["spec"]["ports"]}
        for endpoint in matching[0]["spec"]["endpoints"]:
            assert endpoint["port"] in port_names, f"{name}: no port {endpoint['port']}"
            assert endpoint.get("path", "/metrics") == "/metrics"


def test_pod_monitor_scrapes_every_database(prod: tuple[Obj, ...]) -> None:
    monitors = of_kind(prod, "PodMonitor")
    for cluster in of_kind(prod, "Cluster"):
        pod_labels = {"cnpg.io/cluster": cluster["metadata"]["name"]}
        assert any(selector_matches(m["spec"]["selector"], pod_labels) for m in monitors), cluster[
            "metadata"
        ]["name"]


@pytest.fixture
def rule_dir(prod: tuple[Obj, ...], tmp_path: Path) -> Path:
    if shutil.which("promtool") is None:
        pytest.skip(PROMTOOL_MISSING)
    groups = [g for o in of_kind(prod, "PrometheusRule") for g in o["spec"]["groups"]]
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump({"groups": groups}))
    shutil.copy(ALERTS_TEST, tmp_path / ALERTS_TEST.name)
    return tmp_path


def promtool(*args: str, cwd: Path) -> None:
    result = subprocess.run(
        ["promtool", *args], cwd=cwd, capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_rules_are_valid_promql(rule_dir: Path) -> None:
    promtool("check", "rules", "rules.yaml", cwd=rule_dir)


def test_alerts_fire_on_sick_series_only(rule_dir: Path) -> None:
    promtool("test", "rules", ALERTS_TEST.name, cwd=rule_dir)
