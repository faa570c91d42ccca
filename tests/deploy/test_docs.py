"""docs/operations.md answers what an SRE asks in the first hour, and what it points
at exists: files, overlays, Secrets, metrics."""

from __future__ import annotations

import re

from .manifests import DOCS, K8S, REPO, services

SECTIONS = (
    "Deploy",
    "Migrate",
    "Roll back",
    "Scale",
    "Rotate API keys",
    "Back up and restore",
    "Dashboards and traces",
    "Run the suite locally as the cluster would",
    "Capacity",
    "Secrets",
    "Development cluster",
    "Alerts",
)


def text() -> str:
    assert DOCS.is_file(), f"{DOCS} is missing"
    return DOCS.read_text()


def headings() -> list[str]:
    return [line.lstrip("#").strip() for line in text().splitlines() if line.startswith("#")]


def test_answers_the_operations_questions() -> None:
    found = headings()
    for section in SECTIONS:
        assert section in found, f"no section '{section}'"


def test_internal_links_resolve() -> None:
    anchors = {re.sub(r"[^a-z0-9 -]", "", h.lower()).replace(" ", "-") for h in headings()}
    for link in re.findall(r"\]\(#([^)]+)\)", text()):
        assert link in anchors, f"broken link #{link}"


def test_mentioned_files_exist() -> None:
    top = r"`((?:deploy|tests|docs|services|shared|bench)/[^`\s*<>]*)`"
    for path in set(re.findall(top, text())):
        assert (REPO / path.rstrip("/")).exists(), f"{path} does not exist"
    within = r"`((?:components|overlays|base)/[^`\s*<>]+)`"
    for path in set(re.findall(within, text())):
        assert (K8S / path.rstrip("/")).exists(), f"deploy/k8s/{path} does not exist"
    for path in set(re.findall(r"(deploy/k8s/[\w./-]+)", text())):
        assert (REPO / path.rstrip("/.")).exists(), f"{path} does not exist"


def test_metric_names_are_documented() -> None:
    rules = (K8S / "components" / "prometheus-monitoring" / "prometheusrule.yaml").read_text()
    used = set(re.findall(r"\b(loyalty_[a-z_]+?)(?:_bucket|_sum|_count)?\b", rules))
    for metric in used:
        assert metric in text(), f"{metric} is used by the alerts but not documented"
    assert "loyalty_outbox_lag_seconds" in text()


def test_capacity_table_cites_measurements_for_every_service() -> None:
    capacity = text().split("## Capacity", 1)[1]
    assert "make bench" in capacity
    assert "bench/" in capacity
    for name in services():
        assert re.search(rf"^\| [^|]*\b{name}\b[^|]* \|", capacity, re.M), f"no row for {name}"
    for word in ("Citus", "customer_id", "program_id"):
        assert word in capacity


def test_local_run_uses_the_configmap_sources() -> None:
    local = text().split("## Run the suite locally as the cluster would", 1)[1].split("\n## ", 1)[0]
    assert "loyalty serve" in local
    assert "deploy/k8s/base/common.env" in local
    for name in services():
        assert (K8S / "base" / name / "settings.env").is_file()
    assert "deploy/k8s/base/$1/settings.env" in local
