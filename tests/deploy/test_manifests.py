"""deploy/ as kustomize renders it: admissible at the "restricted" Pod Security level, probes
tuned for the drain, the gateway's settings valid, and every piece a platform team expects
(PDB, HPA, NetworkPolicy, headless Service, Redis).

Rendered with build/bin/kustomize (`make deploy-check` or `make kustomize` installs it) or
a kustomize on the PATH; skipped when there is none. PyYAML comes with `make deploy-check`.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import pytest

from gateway.config.gateway import load_config
from gateway.config.settings import SETTINGS
from tests.support.paths import REPO

DEPLOY = REPO / "deploy"
RENDERS = {"base": DEPLOY / "base", "production": DEPLOY / "overlays" / "production"}

Resource = dict[str, Any]


def _kustomize() -> str | None:
    built = REPO / "build" / "bin" / "kustomize"
    return str(built) if os.access(built, os.X_OK) else shutil.which("kustomize")


@cache
def _render(directory: Path) -> tuple[Resource, ...]:
    kustomize = _kustomize()
    if kustomize is None:
        pytest.skip("kustomize is not installed: `make kustomize` puts it in build/bin")
    yaml = pytest.importorskip("yaml", reason="PyYAML: `make deploy-check` installs it")
    rendered = subprocess.run(
        [kustomize, "build", str(directory)], capture_output=True, text=True, check=True
    ).stdout
    return tuple(doc for doc in yaml.safe_load_all(rendered) if doc)


@pytest.fixture(params=sorted(RENDERS))
def rendered(request: pytest.FixtureRequest) -> tuple[Resource, ...]:
    return _render(RENDERS[request.param])


def _one(resources: tuple[Resource, ...], kind: str, name: str) -> Resource:
    found = [r for r in resources if r["kind"] == kind and r["metadata"]["name"] == name]
    assert len(found) == 1, f"{kind}/{name}: {len(found)} found"
    return found[0]


def _of_kind(resources: tuple[Resource, ...], kind: str) -> list[Resource]:
    return [r for r in resources if r["kind"] == kind]


def _gateway(resources: tuple[Resource, ...]) -> Resource:
    return _one(resources, "Deployment", "gagiteck-gateway")


def _container(deployment: Resource, name: str) -> Resource:
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    assert container["name"] == name
    return dict(container)


def _config_map(resources: tuple[Resource, ...]) -> dict[str, str]:
    (config,) = [
        r
        for r in _of_kind(resources, "ConfigMap")
        if r["metadata"]["name"].startswith("gagiteck-gateway")
    ]
    return dict(config["data"])


# Placeholders for the Secret made out of band (secret.example.yaml), shaped as advised.
SECRET = {
    "redis-password": "0123456789abcdef" * 4,
    "digest-salt": "fedcba9876543210" * 4,
    "upstream-api-key": "ggt_" + "k" * 40,
    "webhook-secret": "whsec_" + "s" * 32,
}


def _pod_environment(resources: tuple[Resource, ...]) -> dict[str, str]:
    """The gateway container's environment as the kubelet builds it: the ConfigMap, then
    each variable in order, with ``$(NAME)`` expanded from what came before."""
    container = _container(_gateway(resources), "gateway")
    env: dict[str, str] = {}
    for source in container.get("envFrom", []):
        assert source["configMapRef"]["name"].startswith("gagiteck-gateway")
        env.update(_config_map(resources))
    for variable in container["env"]:
        if "value" in variable:
            value = re.sub(r"\$\((\w+)\)", lambda m: env.get(m[1], m[0]), variable["value"])
        elif "secretKeyRef" in variable["valueFrom"]:
            ref = variable["valueFrom"]["secretKeyRef"]
            assert ref["name"] == "gagiteck-gateway"
            value = SECRET[ref["key"]]
        else:
            value = "gagiteck-gateway-7d9f8-x2x5q"  # the downward API's pod name/namespace
        env[variable["name"]] = value
    return env


# -- the Pod Security Standard "restricted" (v1.27+), checked field by field

RESTRICTED_VOLUMES = {
    "configMap",
    "csi",
    "downwardAPI",
    "emptyDir",
    "ephemeral",
    "persistentVolumeClaim",
    "projected",
    "secret",
}


def _restricted_violations(pod: Resource) -> Iterator[str]:
    spec = pod["spec"]
    security = spec.get("securityContext", {})
    for field in ("hostNetwork", "hostPID", "hostIPC"):
        if spec.get(field):
            yield field
    for volume in spec.get("volumes", []):
        kinds = set(volume) - {"name"}
        if not kinds <= RESTRICTED_VOLUMES:
            yield f"volume {volume['name']}: {kinds}"
    if security.get("seccompProfile", {}).get("type") not in ("RuntimeDefault", "Localhost"):
        yield "pod seccompProfile"
    for container in spec["containers"] + spec.get("initContainers", []):
        context = container.get("securityContext", {})
        name = container["name"]
        if context.get("privileged"):
            yield f"{name}: privileged"
        if context.get("allowPrivilegeEscalation") is not False:
            yield f"{name}: allowPrivilegeEscalation must be false"
        if context.get("capabilities", {}).get("drop") != ["ALL"]:
            yield f"{name}: capabilities.drop must be [ALL]"
        if set(context.get("capabilities", {}).get("add", [])) - {"NET_BIND_SERVICE"}:
            yield f"{name}: capabilities added"
        if not (context.get("runAsNonRoot", security.get("runAsNonRoot"))):
            yield f"{name}: runAsNonRoot"
        for field in ("runAsUser", "runAsGroup"):
            value = context.get(field, security.get(field))
            # Numeric and not root, so the kubelet can enforce runAsNonRoot on any image.
            if not isinstance(value, int) or value == 0:
                yield f"{name}: {field} must be a non-zero number"
        if any(port.get("hostPort") for port in container.get("ports", [])):
            yield f"{name}: hostPort"


def test_every_pod_is_admissible_at_the_restricted_level(
    rendered: tuple[Resource, ...],
) -> None:
    deployments = _of_kind(rendered, "Deployment")
    assert {d["metadata"]["name"] for d in deployments} == {"gagiteck-gateway", "gagiteck-redis"}
    for deployment in deployments:
        pod = deployment["spec"]["template"]
        assert list(_restricted_violations(pod)) == [], deployment["metadata"]["name"]
        assert pod["spec"]["automountServiceAccountToken"] is False
        for container in pod["spec"]["containers"]:
            assert container["securityContext"]["readOnlyRootFilesystem"] is True
            for need in ("requests", "limits"):
                assert {"cpu", "memory"} <= set(container["resources"][need])
            assert "livenessProbe" in container
            assert "readinessProbe" in container
    (namespace,) = _of_kind(rendered, "Namespace")
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    assert {r["metadata"].get("namespace") for r in rendered if r["kind"] != "Namespace"} == {
        namespace["metadata"]["name"]
    }


def test_the_gateway_runs_as_the_images_user(rendered: tuple[Resource, ...]) -> None:
    user = re.search(r"^USER (\d+):(\d+)$", (REPO / "Dockerfile").read_text(), re.MULTILINE)
    assert user is not None, "the Dockerfile's USER must be numeric: uid:gid"
    context = _gateway(rendered)["spec"]["template"]["spec"]["securityContext"]
    assert (context["runAsUser"], context["runAsGroup"]) == (int(user[1]), int(user[2]))


def test_no_service_account_holds_a_token(rendered: tuple[Resource, ...]) -> None:
    accounts = _of_kind(rendered, "ServiceAccount")
    assert {a["metadata"]["name"] for a in accounts} == {"gagiteck-gateway", "gagiteck-redis"}
    assert all(a["automountServiceAccountToken"] is False for a in accounts)
    for deployment in _of_kind(rendered, "Deployment"):
        spec = deployment["spec"]["template"]["spec"]
        assert spec["serviceAccountName"] == deployment["metadata"]["name"]


def test_probes_follow_the_drain(rendered: tuple[Resource, ...]) -> None:
    env = _pod_environment(rendered)
    pod = _gateway(rendered)["spec"]["template"]["spec"]
    gateway = _container(_gateway(rendered), "gateway")
    admin_port = int(env["GATEWAY_ADMIN_LISTEN"].rpartition(":")[2])
    # The default, 127.0.0.1, is out of the kubelet's reach.
    assert env["GATEWAY_ADMIN_LISTEN"].startswith("0.0.0.0:")
    assert {"name": "admin", "containerPort": admin_port, "protocol": "TCP"} in gateway["ports"]

    startup, readiness, liveness = (
        gateway[probe] for probe in ("startupProbe", "readinessProbe", "livenessProbe")
    )
    assert readiness["httpGet"] == {"path": "/readyz", "port": "admin"}
    assert liveness["httpGet"] == {"path": "/healthz", "port": "admin"}  # 200 while draining
    assert startup["httpGet"]["port"] == "admin"
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 30
    assert readiness["failureThreshold"] > 1  # one slow answer does not drop a pod

    delay = float(env["GATEWAY_SHUTDOWN_DELAY"])
    grace = float(env["GATEWAY_SHUTDOWN_GRACE"])
    flush = float(env["OTEL_EXPORTER_OTLP_TIMEOUT"]) / 1000
    # The drain is seen by readiness before the delay ends, and SIGKILL waits for all of it.
    assert readiness["periodSeconds"] * readiness["failureThreshold"] < delay
    assert pod["terminationGracePeriodSeconds"] > delay + grace + flush
    # The startup probe holds liveness back while the gateway starts; no guessed delay.
    assert "initialDelaySeconds" not in liveness


def test_the_gateway_settings_load(rendered: tuple[Resource, ...]) -> None:
    env = _pod_environment(rendered)
    known = {setting.env for setting in SETTINGS}
    assert sorted(n for n in env if n.startswith("GATEWAY_") and n not in known) == []
    config = load_config(env)
    assert config.redis_url is not None
    assert config.admin_listen is not None
    assert config.admin_listen.host == "0.0.0.0"
    assert config.telemetry.traces_exporters == ("otlp",)
    assert config.telemetry.otlp.endpoint == env["OTEL_EXPORTER_OTLP_ENDPOINT"]
    assert config.telemetry.otlp.timeout == float(env["OTEL_EXPORTER_OTLP_TIMEOUT"]) / 1000
    assert dict(config.telemetry.resource_attributes)["deployment.environment"]
    # The Redis-outage share follows the live members, not a hand-set count.
    assert "GATEWAY_REPLICAS" not in env


def test_redis_is_deployed_for_the_shared_quota(rendered: tuple[Resource, ...]) -> None:
    env = _pod_environment(rendered)
    service = _one(rendered, "Service", "gagiteck-redis")
    (port,) = service["spec"]["ports"]
    assert env["GATEWAY_REDIS_URL"] == (
        f"redis://:{SECRET['redis-password']}@gagiteck-redis:{port['port']}/0"
    )
    redis = _one(rendered, "Deployment", "gagiteck-redis")
    assert service["spec"]["selector"] == redis["spec"]["selector"]["matchLabels"]
    container = _container(redis, "redis")
    assert re.fullmatch(r"redis:7\.4\.\d+@sha256:[0-9a-f]{64}", container["image"])
    assert "--requirepass" in container["args"]


def test_telemetry_goes_to_the_collector(rendered: tuple[Resource, ...]) -> None:
    env = _pod_environment(rendered)
    assert env["OTEL_EXPORTER_OTLP_ENDPOINT"].startswith("http://otel-collector.")
    attributes = dict(pair.split("=", 1) for pair in env["OTEL_RESOURCE_ATTRIBUTES"].split(","))
    assert "$(" not in env["OTEL_RESOURCE_ATTRIBUTES"]
    assert {"deployment.environment", "k8s.pod.name", "service.instance.id"} <= set(attributes)


def test_services_balance_connections_and_calls(rendered: tuple[Resource, ...]) -> None:
    selector = _gateway(rendered)["spec"]["selector"]["matchLabels"]
    cluster_ip = _one(rendered, "Service", "gagiteck-gateway")
    headless = _one(rendered, "Service", "gagiteck-gateway-headless")
    assert cluster_ip["spec"]["type"] == "ClusterIP"
    assert headless["spec"]["clusterIP"] == "None"
    for service in (cluster_ip, headless):
        assert service["spec"]["selector"] == selector
        grpc = next(p for p in service["spec"]["ports"] if p["name"] == "grpc")
        assert (grpc["port"], grpc["targetPort"], grpc["appProtocol"]) == (
            50051,
            "grpc",
            "kubernetes.io/h2c",
        )


def test_availability_pdb_and_hpa(rendered: tuple[Resource, ...]) -> None:
    deployment = _gateway(rendered)
    assert "replicas" not in deployment["spec"]  # the autoscaler's to set
    assert deployment["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    selector = deployment["spec"]["selector"]["matchLabels"]
    pdb = _one(rendered, "PodDisruptionBudget", "gagiteck-gateway")
    assert pdb["apiVersion"] == "policy/v1"
    assert pdb["spec"]["selector"]["matchLabels"] == selector
    assert pdb["spec"]["maxUnavailable"] == 1
    hpa = _one(rendered, "HorizontalPodAutoscaler", "gagiteck-gateway")
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert hpa["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": "gagiteck-gateway",
    }
    (metric,) = hpa["spec"]["metrics"]
    assert metric["resource"]["name"] == "cpu"
    assert metric["resource"]["target"]["type"] == "Utilization"
    assert 2 <= hpa["spec"]["minReplicas"] < hpa["spec"]["maxReplicas"]


def _ports(rule: Resource) -> set[tuple[Any, str]]:
    return {(p["port"], p.get("protocol", "TCP")) for p in rule.get("ports", [])}


def test_network_policies_name_every_flow(rendered: tuple[Resource, ...]) -> None:
    gateway = _one(rendered, "NetworkPolicy", "gagiteck-gateway")["spec"]
    assert (
        gateway["podSelector"]["matchLabels"]
        == _gateway(rendered)["spec"]["selector"]["matchLabels"]
    )
    assert set(gateway["policyTypes"]) == {"Ingress", "Egress"}
    ingress = set().union(*(_ports(rule) for rule in gateway["ingress"]))
    assert ingress == {("grpc", "TCP"), ("admin", "TCP")}
    egress = set().union(*(_ports(rule) for rule in gateway["egress"]))
    assert {(53, "UDP"), (53, "TCP"), (6379, "TCP"), (4317, "TCP"), (443, "TCP")} <= egress

    redis = _one(rendered, "NetworkPolicy", "gagiteck-redis")["spec"]
    assert set(redis["policyTypes"]) == {"Ingress", "Egress"}
    assert redis["egress"] == []
    (rule,) = redis["ingress"]
    (source,) = rule["from"]
    assert source == {
        "podSelector": {"matchLabels": _gateway(rendered)["spec"]["selector"]["matchLabels"]}
    }


def test_secrets_come_from_the_secret_made_out_of_band(rendered: tuple[Resource, ...]) -> None:
    assert _of_kind(rendered, "Secret") == []  # never a value in the repository
    refs = {
        variable["valueFrom"]["secretKeyRef"]["key"]: variable["valueFrom"]["secretKeyRef"]
        for variable in _container(_gateway(rendered), "gateway")["env"]
        if "secretKeyRef" in variable.get("valueFrom", {})
    }
    assert set(refs) == set(SECRET)
    assert refs["upstream-api-key"].get("optional") is True
    assert refs["webhook-secret"].get("optional") is True
    example = (DEPLOY / "base" / "secret.example.yaml").read_text()
    assert all(f"  {key}:" in example for key in SECRET)


def test_apply_k_deploy_renders_the_base() -> None:
    assert _render(DEPLOY) == _render(RENDERS["base"])


def test_production_pins_the_image_to_a_registry() -> None:
    gateway = _container(_gateway(_render(RENDERS["production"])), "gateway")
    assert gateway["image"].startswith("registry.example.com/")
    assert gateway["imagePullPolicy"] == "Always" or "@sha256:" in gateway["image"]
