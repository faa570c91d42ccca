"""NetworkPolicy, evaluated: who can open a connection to whom in each overlay.

The rendered policies are evaluated with Kubernetes semantics (a pod selected by a
policy of a direction is isolated in that direction; traffic needs the sender's
egress and the receiver's ingress) against the rendered pods plus the pods that live
elsewhere: cluster DNS, Prometheus, the CloudNativePG operator and its instances, an
operator's admin pod, strangers and the internet.
"""

from __future__ import annotations

import pytest

from .manifests import (
    COMPONENT,
    Obj,
    Peer,
    connection_allowed,
    of_kind,
    peer_from_template,
    pod_templates,
    server_deployments,
    services,
)

DNS = Peer("kube-dns", "kube-system", (("k8s-app", "kube-dns"),), (("dns", 53),))
PROMETHEUS = Peer("prometheus", "monitoring", (("app.kubernetes.io/name", "prometheus"),))
CNPG_OPERATOR = Peer(
    "cnpg-operator", "cnpg-system", (("app.kubernetes.io/name", "cloudnative-pg"),)
)
OTHER_NAMESPACE = Peer("other-namespace-pod", "elsewhere", (("app", "curious"),))
INTERNET = Peer("internet", None, ip="203.0.113.10")
API_SERVER = Peer("kubernetes-api", None, ip="172.20.0.10")


def namespace_of(objs: tuple[Obj, ...]) -> str:
    return of_kind(objs, "Namespace")[0]["metadata"]["name"]


def stranger(ns: str) -> Peer:
    return Peer("stranger", ns, (("app", "curious"),))


def admin(ns: str) -> Peer:
    return Peer("admin-client", ns, (("loyalty/admin-client", "true"),))


def grpc_port(deployment: Obj) -> int:
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    return next(p["containerPort"] for p in container["ports"] if p["name"] == "grpc")


def metrics_port(deployment: Obj) -> int:
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    return next(p["containerPort"] for p in container["ports"] if p["name"] == "metrics")


def cnpg_instances(objs: tuple[Obj, ...], ns: str) -> dict[str, Peer]:
    """The pods CloudNativePG creates for each Cluster (labels as the operator sets
    them, plus the Cluster's inheritedMetadata)."""
    peers = {}
    for cluster in of_kind(objs, "Cluster"):
        name = cluster["metadata"]["name"]
        inherited = (cluster["spec"].get("inheritedMetadata") or {}).get("labels") or {}
        pod_labels = {"cnpg.io/cluster": name, "cnpg.io/podRole": "instance", **inherited}
        peers[name] = Peer(
            f"{name}-1",
            ns,
            tuple(sorted(pod_labels.items())),
            (("postgresql", 5432), ("metrics", 9187), ("status", 8000)),
            ip="10.0.0.2",
        )
    return peers


def build_net(overlay: str, overlay_objs: tuple[Obj, ...]):
    ns = namespace_of(overlay_objs)
    policies = of_kind(overlay_objs, "NetworkPolicy")
    deployments = server_deployments(overlay_objs)
    servers = {
        name: peer_from_template(t)
        for t in pod_templates(overlay_objs)
        if (name := t.owner["metadata"]["name"]) in deployments and t.owner["kind"] == "Deployment"
    }
    migrations = {
        t.owner["metadata"]["name"].removesuffix("-migrate"): peer_from_template(t)
        for t in pod_templates(overlay_objs)
        if t.labels.get(COMPONENT) == "migration"
    }
    return overlay, ns, policies, deployments, servers, migrations


@pytest.fixture(scope="module")
def net(overlay: str, overlay_objs: tuple[Obj, ...]):
    return build_net(overlay, overlay_objs)


def test_services_reach_exactly_what_they_call(net) -> None:
    _, _, policies, deployments, servers, _ = net
    for src_name, src in servers.items():
        for dst_name, dst in servers.items():
            allowed = connection_allowed(policies, src, dst, grpc_port(deployments[dst_name]))
            expected = dst_name in services()[src_name].calls
            assert allowed == expected, f"{src_name} -> {dst_name}: allowed={allowed}"
            # Never anything but the gRPC port.
            assert not connection_allowed(policies, src, dst, metrics_port(deployments[dst_name]))


def test_gateway_is_the_only_door(net) -> None:
    _, ns, policies, deployments, servers, _ = net
    for name, peer in servers.items():
        port = grpc_port(deployments[name])
        # Clients outside the namespace (ingress controller, POS, apps): gateway only.
        for outsider in (OTHER_NAMESPACE, INTERNET):
            allowed = connection_allowed(policies, outsider, peer, port)
            assert allowed == (name == "gateway"), f"{outsider.name} -> {name}"
        # An unlabelled pod in the namespace has no egress at all (default deny).
        assert not connection_allowed(policies, stranger(ns), peer, port), name
        # Labelled admin tooling in the namespace reaches every service.
        assert connection_allowed(policies, admin(ns), peer, grpc_port(deployments[name])), name


def test_every_pod_resolves_dns(net, overlay_objs: tuple[Obj, ...]) -> None:
    _, _, policies, _, _, _ = net
    for t in pod_templates(overlay_objs):
        peer = peer_from_template(t)
        for protocol in ("UDP", "TCP"):
            assert connection_allowed(policies, peer, DNS, 53, protocol), (
                f"{t.where} DNS {protocol}"
            )


def test_prometheus_scrapes_metrics_and_nobody_else(net) -> None:
    _, ns, policies, deployments, servers, _ = net
    for name, peer in servers.items():
        port = metrics_port(deployments[name])
        assert connection_allowed(policies, PROMETHEUS, peer, port), name
        assert not connection_allowed(policies, stranger(ns), peer, port), name
        assert not connection_allowed(policies, OTHER_NAMESPACE, peer, port), name


def test_no_service_reaches_the_internet(net) -> None:
    _, _, policies, _, servers, migrations = net
    for peer in [*servers.values(), *migrations.values()]:
        for port in (80, 443, 5432):
            assert not connection_allowed(policies, peer, INTERNET, port), peer.name


def test_dev_database_access(dev: tuple[Obj, ...]) -> None:
    _, ns, policies, _, servers, migrations = build_net("dev", dev)
    database = next(
        peer_from_template(t)
        for t in pod_templates(dev)
        if t.owner["kind"] == "StatefulSet" and t.owner["metadata"]["name"] == "postgres"
    )
    for peer in [*servers.values(), *migrations.values()]:
        assert connection_allowed(policies, peer, database, 5432), peer.name
    assert not connection_allowed(policies, stranger(ns), database, 5432)
    assert not connection_allowed(policies, OTHER_NAMESPACE, database, 5432)


def test_prod_database_access(prod: tuple[Obj, ...]) -> None:
    _, ns, policies, _, servers, migrations = build_net("prod", prod)
    instances = cnpg_instances(prod, ns)
    assert set(instances) == {f"{s}-db" for s in services()}
    for name in services():
        for peer in (servers[name], migrations[name]):
            for db_name, db in instances.items():
                allowed = connection_allowed(policies, peer, db, 5432)
                assert allowed == (db_name == f"{name}-db"), f"{peer.name} -> {db_name}"
    for db_name, db in instances.items():
        # The operator manages the instances; they replicate among themselves.
        assert connection_allowed(policies, CNPG_OPERATOR, db, 8000), db_name
        assert connection_allowed(policies, CNPG_OPERATOR, db, 5432), db_name
        replica = Peer(db.name.replace("-1", "-2"), ns, db.labels, db.ports, ip="10.0.0.3")
        assert connection_allowed(policies, replica, db, 5432), db_name
        # The instance manager and the backup sidecar reach the API and the bucket.
        assert connection_allowed(policies, db, API_SERVER, 443), db_name
        assert connection_allowed(policies, db, INTERNET, 443), db_name
        assert connection_allowed(policies, PROMETHEUS, db, 9187), db_name
        for other_name, other in instances.items():
            if other_name != db_name:
                assert not connection_allowed(policies, other, db, 5432), (
                    f"{other_name} -> {db_name}"
                )
        assert not connection_allowed(policies, stranger(ns), db, 5432)
        assert not connection_allowed(policies, OTHER_NAMESPACE, db, 5432)


def test_prod_telemetry_path(prod: tuple[Obj, ...]) -> None:
    _, ns, policies, _, servers, migrations = build_net("prod", prod)
    collector = next(
        peer_from_template(t)
        for t in pod_templates(prod)
        if t.owner["metadata"]["name"] == "otel-collector"
    )
    for peer in [*servers.values(), *migrations.values()]:
        assert connection_allowed(policies, peer, collector, 4317), peer.name
    assert not connection_allowed(policies, stranger(ns), collector, 4317)
    assert connection_allowed(policies, collector, INTERNET, 4317)
    assert connection_allowed(policies, collector, INTERNET, 443)
    assert connection_allowed(policies, collector, DNS, 53, "UDP")
