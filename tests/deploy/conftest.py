"""Fixtures of the deployment tests. Rendering needs `kubectl` (its built-in
kustomize); without it the manifest tests skip and say why."""

from __future__ import annotations

import pytest

from .manifests import OVERLAYS, TARGETS, Obj, kubectl, render

KUBECTL_MISSING = (
    "kubectl not found on PATH: the manifest tests render deploy/k8s with "
    "`kubectl kustomize` (install kubectl >= 1.27, which bundles kustomize v5)"
)


@pytest.fixture(scope="session")
def have_kubectl() -> None:
    if kubectl() is None:
        pytest.skip(KUBECTL_MISSING)


@pytest.fixture(scope="session", params=list(TARGETS))
def target(request: pytest.FixtureRequest, have_kubectl: None) -> str:
    """Each kustomize target: base, dev, prod."""
    return request.param


@pytest.fixture(scope="session", params=list(OVERLAYS))
def overlay(request: pytest.FixtureRequest, have_kubectl: None) -> str:
    """Each deployable overlay: dev, prod."""
    return request.param


@pytest.fixture(scope="session")
def objs(target: str) -> tuple[Obj, ...]:
    return render(target)


@pytest.fixture(scope="session")
def overlay_objs(overlay: str) -> tuple[Obj, ...]:
    return render(overlay)


@pytest.fixture(scope="session")
def prod(have_kubectl: None) -> tuple[Obj, ...]:
    return render("prod")


@pytest.fixture(scope="session")
def dev(have_kubectl: None) -> tuple[Obj, ...]:
    return render("dev")
