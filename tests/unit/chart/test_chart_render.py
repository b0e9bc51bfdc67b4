"""The chart as `helm template` renders it, for every values file: lint, the restricted Pod Security profile on
every pod, default-deny network policies, least-privilege RBAC, OpenTelemetry wiring, and a strict schema.

Needs `.cache/kube/bin/helm` (`make setup-kube`); skipped without it except under CI, where it must be there.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.declared_env import undeclared
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
    validator = next(
        obj for obj in objects if obj["kind"] == "ConfigMap" and obj["metadata"]["name"] == "rel-tickstrata-validator"
    )
    # The validator keeps its ledger in QuestDB: without the address its readiness never comes.
    assert set(validator["data"]) >= {"VALIDATOR_REDIS_URL", "VALIDATOR_QUESTDB_HTTP_URL", "VALIDATOR_GRPC_PORT"}
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
    # Only the query service (on its gRPC port) and the collectors (from the validator) take connections.
    ingress = {name for name, spec in policies.items() if spec.get("ingress")}
    assert ingress <= {
        "rel-tickstrata-query",
        "rel-tickstrata-collector-from-validator",
        "rel-tickstrata-redis-ingress",
        "rel-tickstrata-questdb-ingress",
    }


def _selects(selector: dict[str, Any], pod_labels: dict[str, str]) -> bool:
    assert set(selector) <= {"matchLabels"}, selector  # no matchExpressions in this chart: keep the check exact
    return dict(selector.get("matchLabels") or {}).items() <= pod_labels.items()


def _collector_pod_labels() -> dict[str, str]:
    """The labels the operator gives a collector pod, from its own builder."""
    from tickstrata_operator.children import desired_children  # noqa: PLC0415
    from tickstrata_operator.feed import parse_feed  # noqa: PLC0415
    from tickstrata_operator.settings import OperatorSettings  # noqa: PLC0415

    feed = parse_feed(
        {
            "metadata": {"name": "btc", "namespace": "md", "uid": "u"},
            "spec": {"exchange": "binance", "market": "spot", "symbols": ["BTC-USDT"]},
        }
    )
    deployment = next(c for c in desired_children(feed, OperatorSettings()) if c.kind == "Deployment")
    return dict(deployment.body["spec"]["template"]["metadata"]["labels"])


@pytest.mark.parametrize("values_file", VALUES_FILES)
def test_the_validator_reaches_the_collectors_backfill_port_and_nothing_wider(values_file: str) -> None:
    from tickstrata_operator.children import COLLECTOR_GRPC_PORT  # noqa: PLC0415

    objects = render(values_file)
    policies = {obj["metadata"]["name"]: obj["spec"] for obj in objects if obj["kind"] == "NetworkPolicy"}
    pod_labels = {
        obj["metadata"]["labels"]["app.kubernetes.io/component"]: obj["spec"]["template"]["metadata"]["labels"]
        for obj in objects
        if obj["kind"] == "Deployment"
    }
    validator, collector = pod_labels["validator"], _collector_pod_labels()
    only_port = [{"protocol": "TCP", "port": COLLECTOR_GRPC_PORT}]
    collector_peer = {
        "podSelector": {
            "matchLabels": {"app.kubernetes.io/name": "tickstrata", "app.kubernetes.io/component": "collector"}
        }
    }
    validator_peer = {
        "podSelector": {
            "matchLabels": {"app.kubernetes.io/name": "tickstrata", "app.kubernetes.io/component": "validator"}
        }
    }

    # Into a collector pod: exactly one rule, from the validator's pods (this namespace), on the gRPC port.
    ingress_to_collector = [
        rule
        for spec in policies.values()
        if _selects(spec["podSelector"], collector) and "Ingress" in spec["policyTypes"]
        for rule in spec.get("ingress", [])
    ]
    assert ingress_to_collector == [{"from": [validator_peer], "ports": only_port}]
    assert _selects(validator_peer["podSelector"], validator)
    assert not any(
        _selects(validator_peer["podSelector"], labels) for c, labels in pod_labels.items() if c != "validator"
    )

    # Out of the validator: the gRPC port only towards collector pods; its other rules do not carry that port.
    egress = [
        rule
        for spec in policies.values()
        if _selects(spec["podSelector"], validator)
        for rule in spec.get("egress", [])
    ]
    to_grpc = [rule for rule in egress if any(p.get("port") == COLLECTOR_GRPC_PORT for p in rule.get("ports", []))]
    assert to_grpc == [{"to": [collector_peer], "ports": only_port}]
    assert _selects(collector_peer["podSelector"], collector)
    assert not any(_selects(collector_peer["podSelector"], labels) for labels in pod_labels.values())

    # No other pod got an egress on that port (the collectors' own egress included).
    for name, spec in policies.items():
        if _selects(spec["podSelector"], validator):
            continue
        for rule in spec.get("egress", []):
            assert all(p.get("port") != COLLECTOR_GRPC_PORT for p in rule.get("ports", [])), name


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
    assert granted[("", "services")] == {"get", "list", "watch", "create", "update", "patch", "delete"}
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
        "clickhouse.dsn=chdb:///tmp/warm",  # an embedded warm tier would live (and die) in a tierer pod
    ):
        done = helm("template", "rel", str(CHART), "--set", bad)
        assert done.returncode != 0, bad
        assert "values don't meet the specifications of the schema" in done.stderr, done.stderr


def test_the_crd_is_shipped_with_the_chart() -> None:
    crds = [obj for obj in render("values.yaml") if obj["kind"] == "CustomResourceDefinition"]
    assert [crd["metadata"]["name"] for crd in crds] == ["exchangefeeds.tickstrata.io"]


# ---- stream lag and losses: alert rules, the streams dashboard, a bounded in-chart Redis ------------------------

ALERTS = {
    "TickstrataStreamLagHigh": "tickstrata_stream_oldest_pending_age_seconds",
    "TickstrataStreamBacklogHigh": "tickstrata_stream_behind_entries",
    "TickstrataStreamEntriesLost": "tickstrata_stream_lost_entries_total",
    "TickstrataDeadLetters": "tickstrata_consumer_dead_lettered_total",
    "TickstrataCollectorDroppingEvents": "tickstrata_collector_events_dropped_total",
}
STREAM_METRICS = (
    "tickstrata_stream_pending_entries",
    "tickstrata_stream_behind_entries",
    "tickstrata_stream_oldest_pending_age_seconds",
    "tickstrata_stream_lost_entries_total",
    "tickstrata_consumer_dead_lettered_total",
    "tickstrata_collector_events_dropped_total",
)


def _rules(objects: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    [rule] = [obj for obj in objects if obj["kind"] == "PrometheusRule"]
    assert rule["apiVersion"] == "monitoring.coreos.com/v1"
    return {r["alert"]: r for group in rule["spec"]["groups"] for r in group["rules"]}


@pytest.mark.parametrize("values_file", VALUES_FILES)
def test_alert_rules_are_rendered_only_when_enabled(values_file: str) -> None:
    assert not [obj for obj in render(values_file) if obj["kind"] == "PrometheusRule"]
    rules = _rules(render(values_file, "alerts.enabled=true"))
    assert set(rules) == set(ALERTS)
    for name, metric in ALERTS.items():
        assert metric in rules[name]["expr"], name
        # Scoped to this release's services by default: OTLP metrics carry job="<service.namespace>/<service>".
        assert 'job=~"md/.*"' in rules[name]["expr"], name
        assert rules[name]["labels"]["severity"] in {"critical", "warning", "info"}
        assert rules[name]["annotations"]["summary"]
    assert rules["TickstrataStreamLagHigh"]["for"] == "5m"
    assert rules["TickstrataStreamEntriesLost"]["labels"]["severity"] == "critical"


def test_alert_thresholds_windows_and_selector_come_from_values() -> None:
    objects = render(
        "values.yaml",
        "alerts.enabled=true",
        "alerts.streamLag.oldestPendingAgeSecs=123",
        "alerts.streamLag.behindEntries=4567",
        "alerts.streamLag.for=7m",
        "alerts.deadLetters.threshold=9",
        "alerts.deadLetters.window=2h",
        "alerts.entriesLost.window=30m",
        "alerts.labels.release=kube-prometheus-stack",
        'alerts.selector=env="prod"',
    )
    [rule] = [obj for obj in objects if obj["kind"] == "PrometheusRule"]
    assert rule["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    rules = _rules(objects)
    lag = rules["TickstrataStreamLagHigh"]
    assert lag["expr"] == 'max by (stream, group) (tickstrata_stream_oldest_pending_age_seconds{env="prod"}) > 123'
    assert lag["for"] == "7m"
    assert rules["TickstrataStreamBacklogHigh"]["expr"].endswith("> 4567")
    assert rules["TickstrataStreamBacklogHigh"]["for"] == "7m"
    dead = rules["TickstrataDeadLetters"]["expr"]
    assert "[2h]" in dead
    assert "offset 2h" in dead
    assert dead.count("> 9") == 2
    assert "[30m]" in rules["TickstrataStreamEntriesLost"]["expr"]
    assert all('{env="prod"}' in r["expr"] and "job=" not in r["expr"] for r in rules.values())


def test_a_loss_alert_also_sees_a_counter_series_that_starts_above_zero() -> None:
    # A counter is exported from its first increment: increase() alone would miss a pod's first loss.
    expr = _rules(render("values.yaml", "alerts.enabled=true"))["TickstrataStreamEntriesLost"]["expr"]
    increased, appeared = expr.split("\nor\n")
    assert increased.startswith("sum by (stream, group, cause) (increase(tickstrata_stream_lost_entries_total")
    assert "unless tickstrata_stream_lost_entries_total" in appeared
    assert "offset 15m" in appeared


def test_the_schema_refuses_a_bad_alert_threshold() -> None:
    good = helm("template", "rel", str(CHART), "--set", "alerts.streamLag.oldestPendingAgeSecs=600")
    assert good.returncode == 0, good.stderr
    for bad in (
        "alerts.streamLag.oldestPendingAgeSecs=0",
        "alerts.streamLag.oldestPendingAgeSecs=ten",
        "alerts.streamLag.behindEntries=-1",
        "alerts.streamLag.for=5min",
        "alerts.deadLetters.threshold=-1",
        "alerts.entriesLost.severity=page-everyone",
        'alerts.selector=job="x"} or vector(1)',
        "alerts.streamLag.oldestPendingAge=300",
        "redis.inChart.maxmemory=lots",
    ):
        done = helm("template", "rel", str(CHART), "--set", bad)
        assert done.returncode != 0, bad
        assert "values don't meet the specifications of the schema" in done.stderr, (bad, done.stderr)


def _dashboards(objects: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    found = {}
    for obj in objects:
        if obj["kind"] == "ConfigMap" and obj["metadata"]["labels"].get("grafana_dashboard") == "1":
            for key, text in obj["data"].items():
                found[key] = json.loads(text)
    return found


def test_the_streams_dashboard_shows_lag_and_losses_per_stream_and_group() -> None:
    dashboards = _dashboards(render("values.yaml"))
    assert {"collection.json", "streams.json"} <= set(dashboards)
    for name, dashboard in dashboards.items():
        ids = [panel["id"] for panel in dashboard["panels"]]
        assert len(ids) == len(set(ids)), name
    assert len({dashboard["uid"] for dashboard in dashboards.values()}) == len(dashboards)
    panels = dashboards["streams.json"]["panels"]
    exprs = {target["expr"] for panel in panels for target in panel["targets"]}
    for metric in STREAM_METRICS:
        assert any(metric in expr for expr in exprs), metric
    per_group = [expr for expr in exprs if "by (stream, group" in expr]
    for metric in STREAM_METRICS[:4]:
        assert any(metric in expr for expr in per_group), metric
    assert any(panel["fieldConfig"]["defaults"]["unit"] == "s" for panel in panels if "age" in panel["title"])


def _args_after(args: list[str], flag: str) -> str:
    return args[args.index(flag) + 1]


def _mebibytes(quantity: str) -> int:
    units = {"Mi": 1, "Gi": 1024, "mb": 1, "gb": 1024}
    return int(quantity[:-2]) * units[quantity[-2:]]


@pytest.mark.parametrize("sets", [(), ("redis.inChart.maxmemory=512mb",)])
def test_the_in_chart_redis_is_bounded_refuses_writes_when_full_and_keeps_an_aof(sets: tuple[str, ...]) -> None:
    [redis] = [
        obj
        for obj in render("values-dev.yaml", *sets)
        if obj["kind"] == "StatefulSet" and obj["metadata"]["name"].endswith("-redis")
    ]
    (container,) = redis["spec"]["template"]["spec"]["containers"]
    args = container["args"]
    assert args[0] == "redis-server"
    assert _args_after(args, "--maxmemory-policy") == "noeviction"
    assert _args_after(args, "--appendonly") == "yes"
    assert _args_after(args, "--appendfsync") == "everysec"
    maxmemory = _args_after(args, "--maxmemory")
    assert maxmemory == ("512mb" if sets else "768mb")
    limit = container["resources"]["limits"]["memory"]
    assert _mebibytes(maxmemory) <= 0.9 * _mebibytes(limit)


def test_a_redis_maxmemory_without_headroom_under_the_pod_limit_is_refused() -> None:
    base = ["template", "rel", str(CHART), "-f", str(CHART / "values-dev.yaml")]
    done = helm(*base, "--set", "redis.inChart.maxmemory=1gb")
    assert done.returncode != 0
    assert "over 90% of the pod's memory limit 1Gi" in done.stderr
    done = helm(*base, "--set", "redis.inChart.resources.limits.memory=3Gi", "--set", "redis.inChart.maxmemory=2gb")
    assert done.returncode == 0, done.stderr
    done = helm(*base, "--set", "redis.inChart.resources.limits.memory=1G")
    assert done.returncode != 0
    assert "limits.memory must be set in Mi, Gi or Ti" in done.stderr


VALIDATOR_METRICS = (
    "tickstrata_validator_completeness_percent",
    "tickstrata_validator_buckets",
    "tickstrata_validator_open_gaps",
)


def test_the_quality_dashboard_shows_completeness_missing_minutes_and_open_gaps_per_exchange() -> None:
    dashboards = _dashboards(render("values.yaml"))
    panels = dashboards["quality.json"]["panels"]
    exprs = {target["expr"] for panel in panels for target in panel["targets"]}
    for metric in VALIDATOR_METRICS:
        assert any(metric in expr and "exchange" in expr for expr in exprs), metric
    assert any('state="missing"' in expr for expr in exprs)
    [completeness] = [panel for panel in panels if panel["title"] == "Completeness per exchange"]
    assert completeness["fieldConfig"]["defaults"]["unit"] == "percent"
    assert completeness["fieldConfig"]["defaults"]["decimals"] == 6  # one missing minute in a year must show


@pytest.mark.parametrize("values_file", VALUES_FILES)
def test_every_variable_the_chart_sets_is_a_setting_of_its_role(values_file: str) -> None:
    """A role refuses an undeclared variable with its prefix at start-up: the chart must never set one."""
    objects = render(values_file)
    names = [key for obj in objects if obj["kind"] == "ConfigMap" for key in (obj.get("data") or {})]
    for _, spec in pod_specs(objects):
        for container in spec["containers"]:
            names += [item["name"] for item in container.get("env", [])]
    assert any(name.startswith("WRITER_") for name in names)  # the check reaches the services' ConfigMaps
    assert undeclared(names) == []
