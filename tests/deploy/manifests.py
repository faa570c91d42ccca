"""Helpers for the deployment tests: render kustomize targets, read rendered objects,
work out a container's effective environment, and evaluate NetworkPolicies.

Nothing here talks to a cluster. ``kubectl kustomize`` renders offline; schemas come
from the kubernetes-validate package (Kubernetes API) and from ``schemas/`` (CRDs).
"""

from __future__ import annotations

import functools
import importlib
import ipaddress
import json
import re
import shutil
import subprocess
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

if TYPE_CHECKING:
    from shared.settings import ServiceSettings

REPO = Path(__file__).resolve().parents[2]
K8S = REPO / "deploy" / "k8s"
DOCS = REPO / "docs" / "operations.md"
SCHEMAS = Path(__file__).resolve().parent / "schemas"

# What `kubectl kustomize` renders: the base (checked for completeness, not deployed
# on its own) and the two overlays.
TARGETS = {"base": K8S / "base", "dev": K8S / "overlays" / "dev", "prod": K8S / "overlays" / "prod"}
OVERLAYS = ("dev", "prod")

WORKLOAD_KINDS = ("Deployment", "StatefulSet", "DaemonSet", "Job", "CronJob")
PART_OF = "app.kubernetes.io/part-of"
NAME = "app.kubernetes.io/name"
COMPONENT = "app.kubernetes.io/component"

Obj = dict[str, Any]


# ---------------------------------------------------------------------------- render


def kubectl() -> str | None:
    return shutil.which("kubectl")


@functools.cache
def render(target: str) -> tuple[Obj, ...]:
    """The objects `kubectl kustomize` renders for a target (cached per session)."""
    binary = kubectl()
    assert binary is not None
    result = subprocess.run(
        [binary, "kustomize", str(TARGETS[target])],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if result.returncode != 0:
        raise AssertionError(f"kubectl kustomize {TARGETS[target]} failed:\n{result.stderr}")
    return tuple(doc for doc in yaml.safe_load_all(result.stdout) if doc)


def of_kind(objs: Iterable[Obj], kind: str) -> list[Obj]:
    return [o for o in objs if o["kind"] == kind]


def named(objs: Iterable[Obj], kind: str, name: str) -> Obj:
    found = [o for o in objs if o["kind"] == kind and o["metadata"]["name"] == name]
    assert len(found) == 1, f"expected one {kind}/{name}, found {len(found)}"
    return found[0]


def labels(obj: Obj) -> dict[str, str]:
    return obj.get("metadata", {}).get("labels") or {}


# ---------------------------------------------------------------------------- services


@dataclass(frozen=True)
class ServiceInfo:
    name: str
    settings: type[ServiceSettings]

    @property
    def grpc_service(self) -> str:
        """Fully qualified gRPC service name the server registers with grpc.health.v1."""
        from services.registry import get_spec

        return get_spec(self.name).full_name

    @property
    def calls(self) -> frozenset[str]:
        """Services this one calls: the ``<service>_target`` settings it declares."""
        return frozenset(
            f.removesuffix("_target") for f in self.settings.model_fields if f.endswith("_target")
        )


@functools.cache
def services() -> dict[str, ServiceInfo]:
    """Every service in services/ that has a settings module, keyed by name."""
    from shared.settings import ServiceSettings

    found: dict[str, ServiceInfo] = {}
    for settings_py in sorted((REPO / "services").glob("*/settings.py")):
        name = settings_py.parent.name
        module = importlib.import_module(f"services.{name}.settings")
        classes = [
            v
            for v in vars(module).values()
            if isinstance(v, type)
            and issubclass(v, ServiceSettings)
            and v.__module__ == module.__name__
            and v.service_name == name
        ]
        assert len(classes) == 1, f"services/{name}/settings.py: expected one settings class"
        found[name] = ServiceInfo(name, classes[0])
    return found


# ---------------------------------------------------------------------------- pods


@dataclass
class PodTemplate:
    owner: Obj
    spec: Obj
    labels: dict[str, str]
    namespace: str | None

    @property
    def where(self) -> str:
        return f"{self.owner['kind']}/{self.owner['metadata']['name']}"

    @property
    def containers(self) -> list[Obj]:
        return list(self.spec.get("initContainers") or []) + list(self.spec["containers"])


def pod_templates(objs: Iterable[Obj]) -> Iterator[PodTemplate]:
    for o in objs:
        if o["kind"] not in WORKLOAD_KINDS:
            continue
        spec = o["spec"]
        if o["kind"] == "CronJob":
            spec = spec["jobTemplate"]["spec"]
        template = spec["template"]
        yield PodTemplate(
            owner=o,
            spec=template["spec"],
            labels=template.get("metadata", {}).get("labels") or {},
            namespace=o["metadata"].get("namespace"),
        )


def server_deployments(objs: Iterable[Obj]) -> dict[str, Obj]:
    """The loyalty server Deployments, keyed by service name."""
    return {
        d["metadata"]["name"]: d
        for d in of_kind(objs, "Deployment")
        if labels(d).get(COMPONENT) == "server" and labels(d).get(PART_OF) == "loyalty"
    }


def main_container(workload: Obj) -> Obj:
    spec = workload["spec"]["template"]["spec"]
    name = workload["metadata"]["name"].removesuffix("-migrate")
    matches = [c for c in spec["containers"] if c["name"] == name]
    assert len(matches) == 1, f"{workload['metadata']['name']}: no container named {name}"
    return matches[0]


def selector_matches(selector: Obj | None, pod_labels: dict[str, str]) -> bool:
    """Kubernetes LabelSelector semantics (an empty selector matches everything)."""
    if selector is None:
        return False
    for key, value in (selector.get("matchLabels") or {}).items():
        if pod_labels.get(key) != value:
            return False
    for expr in selector.get("matchExpressions") or []:
        key, op, values = expr["key"], expr["operator"], expr.get("values") or []
        if op == "In" and pod_labels.get(key) not in values:
            return False
        if op == "NotIn" and key in pod_labels and pod_labels[key] in values:
            return False
        if op == "Exists" and key not in pod_labels:
            return False
        if op == "DoesNotExist" and key in pod_labels:
            return False
    return True


# ---------------------------------------------------------------------------- environment

_REF = re.compile(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)")


def expand(value: str, env: dict[str, str]) -> tuple[str, list[str]]:
    """Kubernetes $(VAR) expansion; returns the result and the names left unresolved."""
    missing: list[str] = []

    def sub(m: re.Match[str]) -> str:
        if m.group(0) == "$$":
            return "$"
        name = m.group(1)
        if name in env:
            return env[name]
        missing.append(name)
        return m.group(0)

    return _REF.sub(sub, value), missing


@dataclass
class Env:
    values: dict[str, str] = field(default_factory=dict)
    # Variables whose value comes from a Secret: name -> (secret, key).
    secrets: dict[str, tuple[str, str]] = field(default_factory=dict)
    unresolved: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


def effective_env(container: Obj, objs: Iterable[Obj]) -> Env:
    """The environment a container starts with, as the kubelet builds it: envFrom
    first, then env in order with $(VAR) expansion. Secret values are placeholders."""
    objs = list(objs)
    env = Env()
    for source in container.get("envFrom") or []:
        prefix = source.get("prefix", "")
        if "configMapRef" in source:
            cm = named(objs, "ConfigMap", source["configMapRef"]["name"])
            for k, v in (cm.get("data") or {}).items():
                env.values[prefix + k] = v
        elif "secretRef" in source:
            env.problems.append(f"envFrom secretRef {source['secretRef']['name']}: keys unknown")
    for var in container.get("env") or []:
        name = var["name"]
        if "value" in var and "valueFrom" in var:
            env.problems.append(f"{name}: both value and valueFrom")
        if "valueFrom" in var:
            ref = var["valueFrom"]
            if "secretKeyRef" in ref:
                secret = ref["secretKeyRef"]
                env.secrets[name] = (secret["name"], secret["key"])
                env.values[name] = f"<secret {secret['name']}/{secret['key']}>"
            elif "configMapKeyRef" in ref:
                cm = named(objs, "ConfigMap", ref["configMapKeyRef"]["name"])
                env.values[name] = cm["data"][ref["configMapKeyRef"]["key"]]
            elif "fieldRef" in ref:
                env.values[name] = f"<field {ref['fieldRef']['fieldPath']}>"
            elif "resourceFieldRef" in ref:
                env.values[name] = f"<resource {ref['resourceFieldRef']['resource']}>"
            else:
                env.problems.append(f"{name}: unknown valueFrom {sorted(ref)}")
        else:
            value, missing = expand(var.get("value", ""), env.values)
            env.unresolved += [f"{name} -> $({m})" for m in missing]
            env.values[name] = value
    return env


# ---------------------------------------------------------------------------- schemas


@functools.cache
def _k8s_schema_dir(version: str) -> Path:
    import kubernetes_validate  # type: ignore[import-untyped]

    root = Path(kubernetes_validate.__file__).parent / "kubernetes-json-schema"
    return root / f"v{version}-local-strict"


def k8s_schema_versions() -> list[str]:
    """Kubernetes versions whose schemas kubernetes-validate ships, oldest first."""
    import kubernetes_validate.utils  # type: ignore[import-untyped]

    return sorted(
        set(kubernetes_validate.utils.all_versions()), key=lambda v: tuple(map(int, v.split(".")))
    )


@functools.cache
def _k8s_validator(version: str, api_version: str, kind: str) -> Any:
    import jsonschema
    from referencing import Registry, Resource

    directory = _k8s_schema_dir(version)
    group_version = re.sub(r"^([^./]*)(?:\.[^/]*)?/", r"\1-", api_version)
    path = directory / f"{kind.lower()}-{group_version}.json"
    if not path.is_file():
        return None
    schema = json.loads(path.read_text())
    definitions = json.loads((directory / "_definitions.json").read_text())
    registry = Resource.from_contents(schema) @ Registry()
    registry = Resource.from_contents(definitions) @ registry
    return jsonschema.Draft202012Validator(schema, registry=registry)


def k8s_schema_errors(obj: Obj, version: str) -> list[str] | None:
    """Errors of ``obj`` against the strict Kubernetes schema, None if no such kind."""
    validator = _k8s_validator(version, obj["apiVersion"], obj["kind"])
    if validator is None:
        return None
    return [
        f"{'.'.join(map(str, e.absolute_path)) or '<root>'}: {e.message}"
        for e in validator.iter_errors(obj)
    ]


@functools.cache
def _crd_validator(api_version: str, kind: str) -> Any:
    import jsonschema

    group, _, version = api_version.rpartition("/")
    path = SCHEMAS / f"{group}_{kind.lower()}_{version}.json"
    if not path.is_file():
        return None
    return jsonschema.Draft202012Validator(json.loads(path.read_text()))


def crd_schema_errors(obj: Obj) -> list[str] | None:
    validator = _crd_validator(obj["apiVersion"], obj["kind"])
    if validator is None:
        return None
    return [
        f"{'.'.join(map(str, e.absolute_path)) or '<root>'}: {e.message}"
        for e in validator.iter_errors(obj)
    ]


# ---------------------------------------------------------------------------- network


@dataclass(frozen=True)
class Peer:
    """A pod (or an address outside the cluster) that sends or receives traffic."""

    name: str
    namespace: str | None  # None: not a pod (an address outside the cluster)
    labels: tuple[tuple[str, str], ...] = ()
    ports: tuple[tuple[str, int], ...] = ()  # named container ports
    ip: str = "10.0.0.1"

    @property
    def label_map(self) -> dict[str, str]:
        return dict(self.labels)


def peer_from_template(t: PodTemplate) -> Peer:
    ports = tuple(
        (p["name"], p["containerPort"])
        for c in t.spec["containers"]
        for p in c.get("ports") or []
        if "name" in p
    )
    return Peer(t.where, t.namespace, tuple(sorted(t.labels.items())), ports)


def _namespace_labels(namespace: str) -> dict[str, str]:
    return {"kubernetes.io/metadata.name": namespace}


def _peer_matches(rule_peer: Obj, peer: Peer, policy_namespace: str) -> bool:
    if "ipBlock" in rule_peer:
        block = rule_peer["ipBlock"]
        network = ipaddress.ip_network(block["cidr"])
        address = ipaddress.ip_address(peer.ip)
        if address.version != network.version or address not in network:
            return False
        return not any(address in ipaddress.ip_network(e) for e in block.get("except") or [])
    if peer.namespace is None:  # an outside address matches only ipBlocks
        return False
    ns_selector = rule_peer.get("namespaceSelector")
    if ns_selector is None:
        if peer.namespace != policy_namespace:
            return False
    elif not selector_matches(ns_selector, _namespace_labels(peer.namespace)):
        return False
    pod_selector = rule_peer.get("podSelector")
    if pod_selector is None:
        return True
    return selector_matches(pod_selector, peer.label_map)


def _port_matches(rule_ports: list[Obj] | None, port: int, protocol: str, dest: Peer) -> bool:
    if not rule_ports:
        return True
    for p in rule_ports:
        if p.get("protocol", "TCP") != protocol:
            continue
        if "port" not in p:
            return True
        wanted = p["port"]
        if isinstance(wanted, str):
            if dict(dest.ports).get(wanted) == port:
                return True
            continue
        first = int(wanted)
        last = int(p["endPort"]) if "endPort" in p else first
        if first <= port <= last:
            return True
    return False


def _allowed_by(
    policies: list[Obj],
    direction: str,
    subject: Peer,
    other: Peer,
    port: int,
    protocol: str,
    dest: Peer,
) -> bool:
    """Whether the policies that select ``subject`` let this traffic through."""
    policy_type = "Ingress" if direction == "ingress" else "Egress"
    selecting = [
        p
        for p in policies
        if subject.namespace is not None
        and p["metadata"].get("namespace") == subject.namespace
        and policy_type in p["spec"].get("policyTypes", ["Ingress"])
        and selector_matches(p["spec"]["podSelector"], subject.label_map)
    ]
    if not selecting:
        return True  # no policy isolates this pod in this direction
    key = "from" if direction == "ingress" else "to"
    for policy in selecting:
        for rule in policy["spec"].get(direction) or []:
            peers = rule.get(key)
            if peers and not any(
                _peer_matches(rp, other, policy["metadata"].get("namespace")) for rp in peers
            ):
                continue
            if _port_matches(rule.get("ports"), port, protocol, dest):
                return True
    return False


def connection_allowed(
    policies: list[Obj], src: Peer, dst: Peer, port: int, protocol: str = "TCP"
) -> bool:
    """NetworkPolicy semantics: the sender's egress AND the receiver's ingress must allow.
    Pods outside the rendered namespace have no policies (they are not ours)."""
    return _allowed_by(policies, "egress", src, dst, port, protocol, dst) and _allowed_by(
        policies, "ingress", dst, src, port, protocol, dst
    )
