"""Every rendered object validates offline against the Kubernetes API schemas
(kubernetes-validate's strict schemas: unknown fields are errors, as with
`kubectl apply --validate=strict`), for the oldest supported version (1.30) and the
newest the package ships. Custom resources (CloudNativePG, Barman Cloud plugin,
Prometheus Operator) validate against the small schemas in tests/deploy/schemas/,
which cover the fields these manifests use."""

from __future__ import annotations

import pytest

from .manifests import Obj, crd_schema_errors, k8s_schema_errors, k8s_schema_versions

MIN_VERSION = "1.30.0"
CRD_GROUPS = {"postgresql.cnpg.io", "barmancloud.cnpg.io", "monitoring.coreos.com"}


def versions() -> list[str]:
    try:
        shipped = k8s_schema_versions()
    except ImportError:  # reported by _need_validator
        return [MIN_VERSION]
    return sorted({MIN_VERSION, shipped[-1]})


@pytest.fixture(scope="module", autouse=True)
def _need_validator() -> None:
    try:
        import kubernetes_validate  # type: ignore[import-untyped]  # noqa: F401
    except ImportError:
        pytest.fail(
            "kubernetes-validate is not installed (a dev dependency: pip install -e '.[dev]')"
        )


def test_schemas_cover_kubernetes_1_30_and_later() -> None:
    shipped = k8s_schema_versions()
    assert MIN_VERSION in shipped
    assert tuple(map(int, shipped[-1].split("."))) >= (1, 30, 0)


@pytest.mark.parametrize("version", versions())
def test_objects_validate_against_kubernetes_schema(objs: tuple[Obj, ...], version: str) -> None:
    failures: list[str] = []
    for o in objs:
        if o["apiVersion"].split("/")[0] in CRD_GROUPS:
            continue
        errors = k8s_schema_errors(o, version)
        where = f"{o['apiVersion']} {o['kind']}/{o['metadata']['name']}"
        if errors is None:
            failures.append(f"{where}: no schema in Kubernetes {version}")
        else:
            failures += [f"{where}: {e}" for e in errors]
    assert not failures, "\n".join(failures)


def test_custom_resources_validate_against_their_schema(objs: tuple[Obj, ...]) -> None:
    failures: list[str] = []
    for o in objs:
        if o["apiVersion"].split("/")[0] not in CRD_GROUPS:
            continue
        errors = crd_schema_errors(o)
        where = f"{o['apiVersion']} {o['kind']}/{o['metadata']['name']}"
        if errors is None:
            failures.append(f"{where}: no schema in tests/deploy/schemas")
        else:
            failures += [f"{where}: {e}" for e in errors]
    assert not failures, "\n".join(failures)


def test_validator_rejects_what_a_cluster_would(have_kubectl: None) -> None:
    """The validation above is not vacuous: a misspelt field and a wrong type fail."""
    import copy

    from .manifests import render, server_deployments

    deployment = copy.deepcopy(next(iter(server_deployments(render("prod")).values())))
    deployment["spec"]["template"]["spec"]["containers"][0]["livenessProbe"]["grcp"] = {}
    assert k8s_schema_errors(deployment, MIN_VERSION)
    deployment = copy.deepcopy(next(iter(server_deployments(render("prod")).values())))
    deployment["spec"]["revisionHistoryLimit"] = "five"
    assert k8s_schema_errors(deployment, MIN_VERSION)
    cluster = copy.deepcopy(next(o for o in render("prod") if o["kind"] == "Cluster"))
    cluster["spec"]["instance"] = 3
    assert crd_schema_errors(cluster)
