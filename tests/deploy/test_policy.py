"""Policy tests: what a careful cluster admission (and an SRE's first hour) checks.

Each test reads the rendered objects of a target (base, dev, prod) or of an overlay
(dev, prod) and the services' own settings classes, so a setting added without a
default, a port changed in a settings class, or a probe on the wrong port fails here.
"""

from __future__ import annotations

import math
import os
import re
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from shared.settings import ServiceSettings, SettingsError
from shared.settings import load_settings as settings_from_env

from .manifests import (
    COMPONENT,
    DOCS,
    NAME,
    PART_OF,
    Obj,
    PodTemplate,
    effective_env,
    labels,
    main_container,
    named,
    of_kind,
    pod_templates,
    selector_matches,
    server_deployments,
    services,
)

try:
    from shared.grpc.server import LIVENESS_SERVICE
except ImportError:  # the server module is not importable: the health name it registers
    LIVENESS_SERVICE = "liveness"

RESTRICTED_VOLUME_TYPES = {
    "configMap",
    "csi",
    "downwardAPI",
    "emptyDir",
    "ephemeral",
    "persistentVolumeClaim",
    "projected",
    "secret",
}


def quantity(value: str | int | float) -> float:
    """A Kubernetes quantity as a number (cpu in cores, memory in bytes)."""
    text = str(value)
    suffixes = {
        "m": 1e-3,
        "k": 1e3,
        "M": 1e6,
        "G": 1e9,
        "T": 1e12,
        "Ki": 2**10,
        "Mi": 2**20,
        "Gi": 2**30,
        "Ti": 2**40,
    }
    match = re.fullmatch(r"([0-9.]+)([A-Za-z]*)", text)
    assert match, f"bad quantity {value!r}"
    return float(match.group(1)) * suffixes.get(match.group(2), 1)


def load_settings(
    deployment: Obj, objs: tuple[Obj, ...], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> ServiceSettings:
    """Load the service's settings from the Deployment's environment, as `loyalty serve`
    does at start-up (Secrets and the API key file are stand-ins)."""
    info = services()[deployment["metadata"]["name"]]
    env = effective_env(main_container(deployment), objs)
    for name in list(os.environ):
        if name.startswith("LOYALTY_"):
            monkeypatch.delenv(name)
    keys = tmp_path / "keys.json"
    keys.write_text("{}")
    for name, value in env.values.items():
        if not name.startswith("LOYALTY_"):
            continue
        if name == "LOYALTY_API_KEYS_FILE":
            value = str(keys)
        elif name in env.secrets:
            value = "secret-from-" + env.secrets[name][0]
        monkeypatch.setenv(name, value)
    try:
        return settings_from_env(info.settings)
    except SettingsError as exc:
        pytest.fail(f"{deployment['metadata']['name']}: {exc}")


def preferred_spread_ok(t: PodTemplate) -> bool:
    constraints = t.spec.get("topologySpreadConstraints") or []
    return any(
        c["topologyKey"] == "kubernetes.io/hostname"
        and c["maxSkew"] == 1
        and c["whenUnsatisfiable"] == "DoNotSchedule"
        and selector_matches(c["labelSelector"], t.labels)
        for c in constraints
    )


# --------------------------------------------------------------------------- security


def test_pod_security_restricted(objs: tuple[Obj, ...]) -> None:
    """The Pod Security Standard "restricted" profile, for every pod template."""
    for t in pod_templates(objs):
        pod_sc = t.spec.get("securityContext") or {}
        for flag in ("hostNetwork", "hostPID", "hostIPC", "hostUsers"):
            assert t.spec.get(flag, flag == "hostUsers") in (False, True), flag
            if flag != "hostUsers":
                assert not t.spec.get(flag), f"{t.where}: {flag}"
        for volume in t.spec.get("volumes") or []:
            kinds = set(volume) - {"name"}
            assert kinds <= RESTRICTED_VOLUME_TYPES, f"{t.where}: volume {volume['name']} {kinds}"
        assert (pod_sc.get("seccompProfile") or {}).get("type") in (
            "RuntimeDefault",
            "Localhost",
        ), f"{t.where}: pod seccompProfile"
        for c in t.containers:
            sc = c.get("securityContext") or {}
            where = f"{t.where} container {c['name']}"
            assert sc.get("runAsNonRoot", pod_sc.get("runAsNonRoot")) is True, (
                f"{where}: runAsNonRoot"
            )
            assert sc.get("runAsUser", pod_sc.get("runAsUser", 1)) != 0, f"{where}: runAsUser 0"
            assert sc.get("allowPrivilegeEscalation") is False, f"{where}: allowPrivilegeEscalation"
            assert not sc.get("privileged"), f"{where}: privileged"
            caps = sc.get("capabilities") or {}
            assert "ALL" in (caps.get("drop") or []), f"{where}: capabilities.drop ALL"
            assert set(caps.get("add") or []) <= {"NET_BIND_SERVICE"}, f"{where}: capabilities.add"
            assert not c.get("ports") or all("hostPort" not in p for p in c["ports"]), where
            # Beyond "restricted": nothing writes to the image.
            assert sc.get("readOnlyRootFilesystem") is True, f"{where}: readOnlyRootFilesystem"


def test_writable_tmp_is_an_empty_dir(objs: tuple[Obj, ...]) -> None:
    for t in pod_templates(objs):
        volumes = {v["name"]: v for v in t.spec.get("volumes") or []}
        for c in t.spec["containers"]:
            mounts = {m["mountPath"]: m["name"] for m in c.get("volumeMounts") or []}
            assert "/tmp" in mounts, f"{t.where} {c['name']}: no /tmp mount"
            assert "emptyDir" in volumes[mounts["/tmp"]], f"{t.where}: /tmp is not an emptyDir"


def test_no_service_account_tokens(objs: tuple[Obj, ...]) -> None:
    """No workload here talks to the Kubernetes API: no token is mounted anywhere,
    and each workload runs as its own ServiceAccount, not "default"."""
    accounts = {sa["metadata"]["name"]: sa for sa in of_kind(objs, "ServiceAccount")}
    for sa in accounts.values():
        assert sa.get("automountServiceAccountToken") is False, sa["metadata"]["name"]
    for t in pod_templates(objs):
        assert t.spec.get("automountServiceAccountToken") is False, t.where
        name = t.spec.get("serviceAccountName")
        assert name in accounts, f"{t.where}: serviceAccountName {name!r} is not defined here"


def test_resources_requests_and_limits(objs: tuple[Obj, ...]) -> None:
    for t in pod_templates(objs):
        for c in t.containers:
            resources = c.get("resources") or {}
            for kind in ("requests", "limits"):
                for resource in ("cpu", "memory"):
                    assert resource in (resources.get(kind) or {}), (
                        f"{t.where} {c['name']}: no {kind}.{resource}"
                    )
            for resource in ("cpu", "memory"):
                assert quantity(resources["requests"][resource]) <= quantity(
                    resources["limits"][resource]
                ), f"{t.where} {c['name']}: {resource} request above limit"


# --------------------------------------------------------------------------- labels


def test_workloads_and_pods_are_labelled(objs: tuple[Obj, ...]) -> None:
    for t in pod_templates(objs):
        for key in (NAME, COMPONENT, PART_OF):
            assert key in labels(t.owner), f"{t.where}: no {key}"
            assert t.labels.get(key) == labels(t.owner)[key], f"{t.where}: pod label {key}"
        selector = t.owner["spec"].get("selector") if t.owner["kind"] != "Job" else None
        if selector is not None:
            assert selector_matches(selector, t.labels), f"{t.where}: selector misses its pods"
            # Selectors are immutable: they must not carry labels that change per release.
            assert set(selector.get("matchLabels", {})) <= {NAME, COMPONENT}, t.where


# --------------------------------------------------------------------------- services


def test_every_service_is_deployed(objs: tuple[Obj, ...]) -> None:
    assert set(server_deployments(objs)) == set(services())


def test_entrypoint_args_name_the_service(objs: tuple[Obj, ...]) -> None:
    """The image's ENTRYPOINT is `loyalty`; the args pick the service. No manifest
    overrides the entrypoint."""
    for name, deployment in server_deployments(objs).items():
        container = main_container(deployment)
        assert "command" not in container, f"{name}: overrides the image entrypoint"
        assert container["args"] == ["serve", name], f"{name}: args {container['args']}"
        assert name in services()


def test_probes_are_native_grpc_on_the_grpc_port(
    objs: tuple[Obj, ...], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    for name, deployment in server_deployments(objs).items():
        settings = load_settings(deployment, objs, monkeypatch, tmp_path)
        container = main_container(deployment)
        for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
            assert probe in container, f"{name}: no {probe}"
            grpc = container[probe].get("grpc")
            assert grpc is not None, f"{name}: {probe} is not a gRPC probe"
            assert grpc["port"] == settings.effective_grpc_port, (
                f"{name}: {probe} on {grpc['port']}, service listens on "
                f"{settings.effective_grpc_port}"
            )
        # Ready means this service (not just the process) serves, database included;
        # alive and started only mean the process answers.
        assert container["readinessProbe"]["grpc"].get("service") == services()[name].grpc_service
        for probe in ("startupProbe", "livenessProbe"):
            assert container[probe]["grpc"].get("service") == LIVENESS_SERVICE, f"{name}: {probe}"
        # A slow start must not be killed by liveness: startup covers at least 30 s.
        startup = container["startupProbe"]
        assert startup["periodSeconds"] * startup["failureThreshold"] >= 30


def test_other_containers_have_probes(objs: tuple[Obj, ...]) -> None:
    for t in pod_templates(objs):
        if t.owner["kind"] == "Job":
            continue
        for c in t.spec["containers"]:
            assert "readinessProbe" in c, f"{t.where} {c['name']}"
            assert "livenessProbe" in c, f"{t.where} {c['name']}"


def test_container_and_service_ports_match_the_settings(
    objs: tuple[Obj, ...], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    for name, deployment in server_deployments(objs).items():
        settings = load_settings(deployment, objs, monkeypatch, tmp_path)
        container = main_container(deployment)
        ports = {p["name"]: p["containerPort"] for p in container["ports"]}
        assert ports["grpc"] == settings.effective_grpc_port, name
        assert ports["metrics"] == settings.effective_metrics_port, name
        service = named(objs, "Service", name)
        assert service["spec"].get("clusterIP") == "None", f"{name}: Service must be headless"
        assert selector_matches(
            {"matchLabels": service["spec"]["selector"]},
            deployment["spec"]["template"]["metadata"]["labels"],
        )
        service_ports = {p["name"]: p for p in service["spec"]["ports"]}
        assert set(service_ports) == {"grpc", "metrics"}, name
        for port_name, listening in (
            ("grpc", settings.effective_grpc_port),
            ("metrics", settings.effective_metrics_port),
        ):
            p = service_ports[port_name]
            target = p.get("targetPort", p["port"])
            target = ports[target] if isinstance(target, str) else target
            # Headless: clients dial the pod on the Service's port number directly.
            assert p["port"] == target == listening, f"{name}: Service port {port_name}"


def test_required_settings_are_provided(objs: tuple[Obj, ...]) -> None:
    """Every setting without a default (Settings.required_env()) is in the
    Deployment's environment, and so is one source of API keys."""
    for name, deployment in server_deployments(objs).items():
        info = services()[name]
        container = main_container(deployment)
        env = effective_env(container, objs)
        missing = set(info.settings.required_env()) - set(env.values)
        assert not missing, f"{name}: required settings not provided: {sorted(missing)}"
        assert {"LOYALTY_API_KEYS", "LOYALTY_API_KEYS_FILE"} & set(env.values), name
        keys_file = env.values.get("LOYALTY_API_KEYS_FILE")
        if keys_file:
            mounts = {m["mountPath"]: m for m in container.get("volumeMounts") or []}
            directory = str(Path(keys_file).parent)
            assert directory in mounts, f"{name}: nothing mounted at {directory}"
            volume = next(
                v
                for v in deployment["spec"]["template"]["spec"]["volumes"]
                if v["name"] == mounts[directory]["name"]
            )
            assert "secret" in volume, f"{name}: API keys must come from a Secret"
            items = volume["secret"].get("items")
            assert items is None or Path(keys_file).name in {i["path"] for i in items}
            # Mounted without subPath, so a rotated Secret reaches the running pods.
            assert "subPath" not in mounts[directory]


def test_settings_load_from_the_manifests(
    objs: tuple[Obj, ...], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The values in the ConfigMaps are valid for the settings classes."""
    for deployment in server_deployments(objs).values():
        load_settings(deployment, objs, monkeypatch, tmp_path)


def test_environment_is_well_formed(objs: tuple[Obj, ...]) -> None:
    for t in pod_templates(objs):
        for c in t.containers:
            env = effective_env(c, objs)
            assert not env.problems, f"{t.where} {c['name']}: {env.problems}"
            assert not env.unresolved, f"{t.where} {c['name']}: unresolved {env.unresolved}"
            names = [v["name"] for v in c.get("env") or []]
            assert len(names) == len(set(names)), f"{t.where} {c['name']}: duplicate env"


def test_targets_follow_the_call_graph(
    objs: tuple[Obj, ...], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Each `<service>_target` setting is `dns:///<headless Service>:<its gRPC port>`,
    so client-side round_robin sees every pod of the service it calls."""
    deployments = server_deployments(objs)
    for name, deployment in deployments.items():
        settings = load_settings(deployment, objs, monkeypatch, tmp_path)
        for callee in services()[name].calls:
            target = getattr(settings, f"{callee}_target")
            match = re.fullmatch(r"dns:///([a-z0-9-]+):(\d+)", target)
            assert match, f"{name}: {callee}_target {target!r} is not dns:///<service>:<port>"
            host, port = match.group(1), int(match.group(2))
            service = named(objs, "Service", host)
            assert service["spec"].get("clusterIP") == "None"
            callee_settings = load_settings(deployments[callee], objs, monkeypatch, tmp_path)
            assert port == callee_settings.effective_grpc_port, f"{name} -> {callee}: port"
            assert selector_matches(
                {"matchLabels": service["spec"]["selector"]},
                deployments[callee]["spec"]["template"]["metadata"]["labels"],
            ), f"{name}: {callee}_target does not reach {callee}'s pods"


def test_graceful_shutdown_fits_the_grace_period(
    objs: tuple[Obj, ...], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    for name, deployment in server_deployments(objs).items():
        settings = load_settings(deployment, objs, monkeypatch, tmp_path)
        spec = deployment["spec"]["template"]["spec"]
        container = main_container(deployment)
        pre_stop = container["lifecycle"]["preStop"]["sleep"]["seconds"]
        assert pre_stop >= 3, f"{name}: preStop must outlast endpoint propagation"
        grace = spec["terminationGracePeriodSeconds"]
        assert grace > pre_stop + settings.shutdown_grace_seconds, (
            f"{name}: terminationGracePeriodSeconds {grace} <= preStop {pre_stop} + "
            f"LOYALTY_SHUTDOWN_GRACE_SECONDS {settings.shutdown_grace_seconds}"
        )
        strategy = deployment["spec"]["strategy"]
        assert strategy["rollingUpdate"]["maxUnavailable"] == 0, f"{name}: rollout drops capacity"


def test_topology_spread_across_nodes(objs: tuple[Obj, ...]) -> None:
    for t in pod_templates(objs):
        if t.owner["kind"] == "Deployment":
            assert preferred_spread_ok(t), f"{t.where}: no hostname topology spread"


def test_disruption_budgets(objs: tuple[Obj, ...]) -> None:
    budgets = of_kind(objs, "PodDisruptionBudget")
    for t in pod_templates(objs):
        if t.owner["kind"] != "Deployment":
            continue
        covering = [b for b in budgets if selector_matches(b["spec"]["selector"], t.labels)]
        assert len(covering) == 1, f"{t.where}: {len(covering)} PodDisruptionBudgets"
        assert covering[0]["spec"].get("maxUnavailable") == 1, t.where
        # A budget that selects another workload's pods too would block its drains.
        others = [o for o in pod_templates(objs) if o.owner is not t.owner]
        assert not any(selector_matches(covering[0]["spec"]["selector"], o.labels) for o in others)


def test_autoscaling(target: str, objs: tuple[Obj, ...]) -> None:
    autoscalers = {
        h["spec"]["scaleTargetRef"]["name"]: h for h in of_kind(objs, "HorizontalPodAutoscaler")
    }
    for name, deployment in server_deployments(objs).items():
        if target == "dev":
            assert not autoscalers, "dev runs one replica of each service"
            assert deployment["spec"]["replicas"] == 1
            continue
        hpa = autoscalers.get(name)
        assert hpa is not None, f"{name}: no HorizontalPodAutoscaler"
        assert hpa["apiVersion"] == "autoscaling/v2"
        assert hpa["spec"]["scaleTargetRef"]["kind"] == "Deployment"
        assert 2 <= hpa["spec"]["minReplicas"] < hpa["spec"]["maxReplicas"], name
        assert any(
            m["type"] == "Resource" and m["resource"]["name"] == "cpu"
            for m in hpa["spec"]["metrics"]
        )
        if target == "base":
            assert deployment["spec"]["replicas"] == 2
        else:
            # The autoscaler owns the count; apply must not reset it.
            assert "replicas" not in deployment["spec"], f"{name}: replicas set beside an HPA"
            assert hpa["spec"]["minReplicas"] >= 3, name


def test_migration_job_per_service(objs: tuple[Obj, ...]) -> None:
    jobs = {j["metadata"]["name"]: j for j in of_kind(objs, "Job")}
    for name, deployment in server_deployments(objs).items():
        job = jobs.get(f"{name}-migrate")
        assert job is not None, f"{name}: no migration Job"
        container = main_container(job)
        assert container["args"] == ["migrate", name]
        assert "command" not in container
        assert container["image"] == main_container(deployment)["image"], "same release"
        env = effective_env(container, objs)
        server_env = effective_env(main_container(deployment), objs)
        assert env.values["LOYALTY_DATABASE_URL"] == server_env.values["LOYALTY_DATABASE_URL"]
        assert env.secrets.get("LOYALTY_DATABASE_URL") == server_env.secrets.get(
            "LOYALTY_DATABASE_URL"
        )
        spec = job["spec"]
        assert spec["template"]["spec"]["restartPolicy"] == "Never"
        assert spec.get("backoffLimit", 6) >= 1
        assert spec.get("activeDeadlineSeconds")


def test_images_are_pinned(overlay: str, overlay_objs: tuple[Obj, ...]) -> None:
    for t in pod_templates(overlay_objs):
        for c in t.containers:
            image = c["image"]
            assert "@sha256:" in image or re.search(r":[\w.-]+$", image.split("/")[-1]), image
            assert not image.endswith(":latest"), f"{t.where}: {image}"
            if overlay == "prod" and labels(t.owner).get(COMPONENT) in ("server", "migration"):
                assert "/" in image, f"{t.where}: prod pulls from a registry, not {image}"


def test_secrets_are_referenced_not_committed(objs: tuple[Obj, ...]) -> None:
    """No Secret object is rendered; every Secret a manifest names is documented in
    docs/operations.md so an operator knows to create it."""
    assert not of_kind(objs, "Secret"), "Secrets must not be committed"
    docs = DOCS.read_text() if DOCS.is_file() else ""
    referenced: set[str] = set()
    for t in pod_templates(objs):
        for c in t.containers:
            referenced |= {s for s, _ in effective_env(c, objs).secrets.values()}
        referenced |= {
            v["secret"]["secretName"] for v in t.spec.get("volumes") or [] if "secret" in v
        }
    for store in (o for o in objs if o["kind"] == "ObjectStore"):
        creds = store["spec"]["configuration"].get("s3Credentials") or {}
        referenced |= {ref["name"] for ref in creds.values() if isinstance(ref, dict)}
    for name in sorted(referenced):
        generic = re.sub(r"^(gateway|points|promotions|tiers)-", "<service>-", name)
        assert name in docs or generic in docs, f"Secret {name} is not documented in {DOCS.name}"


# --------------------------------------------------------------------------- databases


def test_dev_database_holds_every_service_database(dev: tuple[Obj, ...]) -> None:
    statefulset = named(dev, "StatefulSet", "postgres")
    assert statefulset["spec"]["replicas"] == 1
    initdb = next(
        c for c in of_kind(dev, "ConfigMap") if c["metadata"]["name"].startswith("postgres-initdb")
    )
    script = "\n".join(initdb["data"].values())
    for name in services():
        assert re.search(rf"CREATE DATABASE {name}\b", script), name


def test_prod_databases(prod: tuple[Obj, ...]) -> None:
    """One CloudNativePG Cluster per service: three instances on different nodes,
    WAL archiving and scheduled backups, and the service connected to its primary."""
    clusters = {c["metadata"]["name"]: c for c in of_kind(prod, "Cluster")}
    stores = {s["metadata"]["name"]: s for s in of_kind(prod, "ObjectStore")}
    backups = of_kind(prod, "ScheduledBackup")
    for name, deployment in server_deployments(prod).items():
        cluster = clusters.get(f"{name}-db")
        assert cluster is not None, f"{name}: no CloudNativePG Cluster"
        spec = cluster["spec"]
        assert spec["instances"] == 3
        assert spec["affinity"]["enablePodAntiAffinity"] is True
        assert spec["affinity"]["podAntiAffinityType"] == "required"
        assert spec.get("enableSuperuserAccess") is False
        archivers = [p for p in spec.get("plugins") or [] if p.get("isWALArchiver")]
        assert len(archivers) == 1, f"{name}: WAL archiving"
        store = stores[archivers[0]["parameters"]["barmanObjectName"]]
        assert store["spec"].get("retentionPolicy"), f"{name}: backup retention"
        scheduled = [b for b in backups if b["spec"]["cluster"]["name"] == f"{name}-db"]
        assert scheduled, f"{name}: no ScheduledBackup"
        assert all(b["spec"]["method"] == "plugin" for b in scheduled)
        assert {b["spec"]["pluginConfiguration"]["name"] for b in scheduled} == {
            archivers[0]["name"]
        }
        # The service (and its migration Job) talk to this cluster's primary.
        for workload in (deployment, named(prod, "Job", f"{name}-migrate")):
            env = effective_env(main_container(workload), prod)
            url = urlsplit(env.values["LOYALTY_DATABASE_URL"])
            assert url.scheme == "postgresql+psycopg", url.scheme
            assert url.hostname == f"{name}-db-rw", f"{name}: connects to {url.hostname}"
            assert url.path.lstrip("/") == spec["bootstrap"]["initdb"]["database"]
            assert url.password is None, "credentials come from the operator's Secret"
            assert env.secrets["PGUSER"] == (f"{name}-db-app", "username")
            assert env.secrets["PGPASSWORD"] == (f"{name}-db-app", "password")


def test_prod_connection_budget(
    prod: tuple[Obj, ...], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """At the autoscaler's maximum, during a rollout (surge), with every pod's pool
    full, the database still has room. LOYALTY_DB_POOL_SIZE is a hard cap per process
    (shared/db.py creates the pool with max_overflow=0)."""
    autoscalers = {
        h["spec"]["scaleTargetRef"]["name"]: h for h in of_kind(prod, "HorizontalPodAutoscaler")
    }
    for name, deployment in server_deployments(prod).items():
        settings = load_settings(deployment, prod, monkeypatch, tmp_path)
        max_pods = autoscalers[name]["spec"]["maxReplicas"]
        surge = deployment["spec"]["strategy"]["rollingUpdate"]["maxSurge"]
        surge_pods = (
            math.ceil(max_pods * int(surge.rstrip("%")) / 100)
            if str(surge).endswith("%")
            else int(surge)
        )
        per_pod = settings.db_pool_size
        needed = (max_pods + surge_pods + 1) * per_pod  # + 1: the migration Job
        cluster = named(prod, "Cluster", f"{name}-db")
        available = int(cluster["spec"]["postgresql"]["parameters"]["max_connections"]) - 10
        assert needed <= available, (
            f"{name}: up to {needed} connections, database allows {available}"
        )


def test_telemetry_settings_are_accepted(
    objs: tuple[Obj, ...], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The OTEL_* values of the ConfigMaps select an exporter shared/telemetry.py supports."""
    from shared import telemetry

    for name, deployment in server_deployments(objs).items():
        env = effective_env(main_container(deployment), objs)
        for variable in [v for v in os.environ if v.startswith("OTEL_")]:
            monkeypatch.delenv(variable)
        for variable, value in env.values.items():
            if variable.startswith("OTEL_"):
                monkeypatch.setenv(variable, value)
        assert env.values.get("OTEL_SERVICE_NAME") == name
        try:
            exporters = telemetry.exporters_from_env()
        except ValueError as exc:
            pytest.fail(f"{name}: {exc}")
        for exporter in exporters:
            exporter.shutdown()
