"""Every kustomize target renders, and what it renders hangs together."""

from __future__ import annotations

import re

import yaml

from .manifests import K8S, OVERLAYS, PART_OF, TARGETS, Obj, labels, of_kind

CLUSTER_SCOPED = {"Namespace", "ClusterRole", "ClusterRoleBinding", "CustomResourceDefinition"}
DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
LABEL_NAME = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")
LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
# Kinds whose names become DNS labels (Service) or hostnames (pods of a StatefulSet).
DNS_LABEL_KINDS = {"Service", "Namespace", "StatefulSet"}


def test_target_renders(objs: tuple[Obj, ...]) -> None:
    assert objs, "rendered nothing"
    for o in objs:
        assert {"apiVersion", "kind", "metadata"} <= o.keys(), o
        assert o["metadata"].get("name"), o


def test_no_duplicate_objects(objs: tuple[Obj, ...]) -> None:
    keys = [
        (
            o["apiVersion"].split("/")[0],
            o["kind"],
            o["metadata"].get("namespace"),
            o["metadata"]["name"],
        )
        for o in objs
    ]
    assert len(keys) == len(set(keys)), sorted(k for k in keys if keys.count(k) > 1)


def test_names_and_labels_are_valid(objs: tuple[Obj, ...]) -> None:
    """What the API server's object-meta validation would refuse (the JSON schemas
    only say 'string')."""
    for o in objs:
        name = o["metadata"]["name"]
        where = f"{o['kind']}/{name}"
        pattern = DNS_LABEL if o["kind"] in DNS_LABEL_KINDS else DNS_SUBDOMAIN
        limit = 63 if o["kind"] in DNS_LABEL_KINDS else 253
        assert pattern.match(name), f"{where}: invalid name"
        assert len(name) <= limit, f"{where}: name too long"
        metas = [o["metadata"]]
        template = (o.get("spec") or {}).get("template")
        if isinstance(template, dict) and "metadata" in template:
            metas.append(template["metadata"])
        for meta in metas:
            for key, value in (meta.get("labels") or {}).items():
                prefix, _, label = key.rpartition("/")
                assert LABEL_NAME.match(label), f"{where}: label {key}"
                assert len(label) <= 63, f"{where}: label {key}"
                if prefix:
                    assert DNS_SUBDOMAIN.match(prefix), f"{where}: label prefix {key}"
                    assert len(prefix) <= 253, f"{where}: label prefix {key}"
                assert isinstance(value, str), f"{where}: label {key} value must be a string"
                assert LABEL_VALUE.match(value), f"{where}: {key}={value}"
                assert len(value) <= 63, f"{where}: {key}={value}"


def test_every_object_is_labelled(objs: tuple[Obj, ...]) -> None:
    for o in objs:
        assert labels(o).get(PART_OF) == "loyalty", f"{o['kind']}/{o['metadata']['name']}"
        assert labels(o).get("app.kubernetes.io/managed-by") == "kustomize"


def test_overlay_puts_everything_in_its_namespace(overlay_objs: tuple[Obj, ...]) -> None:
    namespaces = of_kind(overlay_objs, "Namespace")
    assert len(namespaces) == 1
    ns = namespaces[0]
    # Pod Security Admission refuses any pod that is not "restricted".
    assert labels(ns).get("pod-security.kubernetes.io/enforce") == "restricted"
    for o in overlay_objs:
        if o["kind"] not in CLUSTER_SCOPED:
            assert o["metadata"].get("namespace") == ns["metadata"]["name"], o["metadata"]


def test_overlays_use_different_namespaces(have_kubectl: None) -> None:
    from .manifests import render

    names = {of_kind(render(o), "Namespace")[0]["metadata"]["name"] for o in OVERLAYS}
    assert len(names) == len(OVERLAYS)


def test_every_component_is_used_by_an_overlay() -> None:
    used: set[str] = set()
    for overlay in OVERLAYS:
        kustomization = yaml.safe_load((TARGETS[overlay] / "kustomization.yaml").read_text())
        used |= {(TARGETS[overlay] / c).resolve().name for c in kustomization.get("components", [])}
    present = {p.name for p in (K8S / "components").iterdir() if p.is_dir()}
    assert present == used, f"unused components: {sorted(present - used)}"


def test_all_manifest_files_are_valid_yaml() -> None:
    for path in K8S.rglob("*.yaml"):
        list(yaml.safe_load_all(path.read_text()))
