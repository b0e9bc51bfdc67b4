"""The chart as `helm template` renders it, for every values file: lint, the restricted Pod Security profile on
every pod, default-deny network policies, least-privilege RBAC, OpenTelemetry wiring, and a strict schema.

Needs `.cache/kube/bin/helm` (`make setup-kube`); skipped without it except under CI, where it must be there.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.pod_security import restricted_violations

ROOT = Path(__file__).resolve().parents[3]
CHART = ROOT / "charts" / "tickstrata"
HELM = ROOT / ".cache" / "kube" / "bin" / "helm"
VALUES_FILES = ["values.yaml", "values-dev.yaml", "values-prod.yaml"]
POD_KINDS = {"Deployment", "StatefulSet", "DaemonSet", "Job", "CronJob"}


@pytest.fixture(scope="module", autouse=True)
def helm_present() -> None:
    if not HELM.exists():
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(f"{HELM} is missing: the setup (make setup-kube) should have built it")
        pytest.skip(f"{HELM} is missing: run make setup-kube")


def helm(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(HELM), *args], capture_output=True, text=True, timeout=120, check=False)


@cache
def render(values_file: str, *sets: str) -> list[dict[str, Any]]:
    argv = ["template", "rel", str(CHART), "--namespace", "md", "--include-crds", "-f", str(CHART / values_file)]
    for value in sets:
        argv += ["--set", value]
    done = helm(*argv)
    assert done.returncode == 0, done.stderr
    return [doc for doc in yaml.safe_load_all(done.stdout) if doc]


def pod_specs(objects: list[dict[str, Any]]) -> Iterator[tuple[str, dict[str, Any]]]:
    for obj in objects:
        if obj["kind"] not in POD_KINDS:
            continue
        spec = obj["spec"]
        if obj["kind"] == "CronJob":
            spec = spec["jobTemplate"]["spec"]
        yield f"{obj['kind']}/{obj['metadata']['name']}", spec["template"]["spec"]


@pytest.mark.parametrize("values_file", VALUES_FILES)
def test_lint_is_clean(values_file: str) -> None:
    done = helm("lint", "--strict", str(CHART), "-f", str(CHART / values_file))
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize("values_file", VALUES_FILES)
def test_every_pod_meets_the_restricted_profile(values_file: str) -> None:
    pods = list(pod_specs(render(values_file)))
    assert len(pods) >= 4  # writer, validator, query, operator (+ datastores in dev)
    violations = [found for where, pod in pods for found in restricted_violations(where, pod)]
    assert violations == []


def test_the_restricted_check_catches_violations() -> None:
    pod = {
        "containers": [{"name": "c", "securityContext": {"capabilities": {"add": ["SYS_ADMIN"]}}}],
        "hostNetwork": True,
        "volumes": [{"name": "h", "hostPath": {"path": "/"}}],
    }
    found = restricted_violations("Pod/x", pod)
    for fragment in (
        "hostNetwork",
        "hostPath",
        "seccompProfile",
        "allowPrivilegeEscalation",
        "runAsNonRoot",
        "drop ALL",
        "SYS_ADMIN",
        "readOnlyRootFilesystem",
    ):
        assert any(fragment in item for item in found), fragment


@pytest.mark.parametrize("values_file", VALUES_FILES)
def test_components_are_wired(values_file: str) -> None:
    objects = render(values_file)
    deployments = {
        obj["metadata"]["labels"]["app.kubernetes.io/component"]: obj for obj in objects if obj["kind"] == "Deployment"
    }
    assert set(deployments) == {"writer", "validator", "query", "operator"}
    assert deployments["operator"]["spec"]["strategy"]["type"] == "Recreate"
    assert deployments["operator"]["spec"]["replicas"] == 1
    for component, deployment in deployments.items():
        template = deployment["spec"]["template"]
        assert template["metadata"]["labels"]["app.kubernetes.io/component"] == component
        (container,) = template["spec"]["containers"]
        assert container["args"] == [component]
        env = {item["name"]: item for item in container.get("env", [])}
        field = env["OTEL_SERVICE_NAME"]["valueFrom"]["fieldRef"]["fieldPath"]
        assert field == "metadata.labels['app.kubernetes.io/component']"
        assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
        assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
        assert "resources" in container
    services = {obj["metadata"]["name"] for obj in objects if obj["kind"] == "Service"}
    assert {"rel-tickstrata-query", "rel-tickstrata-validator"} <= services
    config = next(
        obj for obj in objects if obj["kind"] == "ConfigMap" and obj["metadata"]["name"] == "rel-tickstrata-writer"
    )
    assert set(config["data"]) >= {"WRITER_REDIS_URL", "WRITER_QUESTDB_HTTP_URL", "WRITER_HEALTH_PORT"}
    dashboards = [
        obj
        for obj in objects
        if obj["kind"] == "ConfigMap" and obj["metadata"]["labels"].get("grafana_dashboard") == "1"
    ]
    assert bool(dashboards) is (values_file != "values-dev.yaml")


def test_the_otlp_endpoint_comes_from_values() -> None:
    objects = render("values-prod.yaml")
    query = next(obj for obj in objects if obj["kind"] == "Deployment" and obj["metadata"]["name"].endswith("-query"))
    env = {item["name"]: item.get("value") for item in query["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["OTEL_EXPORTER_OTLP_ENDPOINT"] == "http://otel-collector.observability:4317"
    assert "OTEL_EXPORTER_OTLP_ENDPOINT" not in {
        item["name"]
        for item in next(
            obj
            for obj in render("values.yaml")
            if obj["kind"] == "Deployment" and obj["metadata"]["name"].endswith("-query")
        )["spec"]["template"]["spec"]["containers"][0]["env"]
    }


@pytest.mark.parametrize("values_file", VALUES_FILES)
def test_network_policies_deny_by_default(values_file: str) -> None:
    policies = {obj["metadata"]["name"]: obj["spec"] for obj in render(values_file) if obj["kind"] == "NetworkPolicy"}
    deny = policies["rel-tickstrata-default-deny"]
    assert deny["podSelector"] == {"matchLabels": {"app.kubernetes.io/name": "tickstrata"}}
    assert sorted(deny["policyTypes"]) == ["Egress", "Ingress"]
    assert "ingress" not in deny
    assert "egress" not in deny
    for component in ("writer", "validator", "query", "collector", "tierer", "operator"):
        assert f"rel-tickstrata-{component}" in policies, component
    # Only the query service takes connections, and only on its gRPC port.
    ingress = {name for name, spec in policies.items() if spec.get("ingress")}
    assert ingress <= {"rel-tickstrata-query", "rel-tickstrata-redis-ingress", "rel-tickstrata-questdb-ingress"}


def test_operator_rbac_is_least_privilege() -> None:
    objects = render("values.yaml")
    rules = [rule for obj in objects if obj["kind"] in ("ClusterRole", "Role") for rule in obj["rules"]]
    granted = {
        (group, resource): set(rule["verbs"])
        for rule in rules
        for group in rule["apiGroups"]
        for resource in rule["resources"]
    }
    assert not any(resource in ("secrets", "pods", "*") for _, resource in granted)
    assert not any("*" in verbs for verbs in granted.values())
    assert granted[("tickstrata.io", "exchangefeeds")] == {"get", "list", "watch", "patch"}
    assert granted[("apps", "deployments")] == {"get", "list", "watch", "create", "update", "patch", "delete"}
    namespaced = render("values.yaml", "operator.watchNamespace=md")
    assert sorted(obj["kind"] for obj in namespaced if obj["kind"] in ("Role", "ClusterRole")) == [
        "ClusterRole",
        "Role",
    ]


def test_the_schema_rejects_unknown_and_bad_values() -> None:
    for bad in (
        "bogus=1",
        "components.writer.replicaz=2",
        "redis.url=http://wrong",
        "components.operator.replicas=2",
        "networkPolicy.ports.redis=70000",
    ):
        done = helm("template", "rel", str(CHART), "--set", bad)
        assert done.returncode != 0, bad
        assert "values don't meet the specifications of the schema" in done.stderr, done.stderr


def test_the_crd_is_shipped_with_the_chart() -> None:
    crds = [obj for obj in render("values.yaml") if obj["kind"] == "CustomResourceDefinition"]
    assert [crd["metadata"]["name"] for crd in crds] == ["exchangefeeds.tickstrata.io"]
