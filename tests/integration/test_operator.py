"""The operator against a real API server (etcd + kube-apiserver + kube-controller-manager, no kubelet).

It runs as the chart's ServiceAccount with the chart's RBAC. Children are compared with what the pure builders
say they should be (`children.py`), through the same `matches` the operator uses, plus direct checks of the
fields that matter, so a builder bug and an apply bug both fail here.
"""

from __future__ import annotations

import copy
import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.operator_harness import (
    OperatorProcess,
    apply_feed,
    children_of,
    feed_body,
    fresh_namespace,
    get_feed,
    kubectl,
    printer_columns,
    running_operator,
    wait_converged,
    wait_until,
)
from tests.pod_security import restricted_violations
from tickstrata.localstack.kube import KubeCluster
from tickstrata_operator.children import CHECKSUM_ANNOTATION, COLLECTOR_GRPC_PORT

RESTORE_SECS = 60.0


@pytest.fixture(scope="module")
def namespace(kube_cluster: KubeCluster) -> Iterator[str]:
    with fresh_namespace(kube_cluster, "op") as name:
        yield name


@pytest.fixture(scope="module")
def operator(
    kube_cluster: KubeCluster, namespace: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[OperatorProcess]:
    with running_operator(kube_cluster, namespace, tmp_path_factory.mktemp("operator")) as process:
        yield process
    assert process.process is not None
    assert process.process.returncode == 0, process.log_tail()


def test_a_feed_gets_exactly_its_children(kube_cluster: KubeCluster, namespace: str, operator: OperatorProcess) -> None:
    apply_feed(kube_cluster, namespace, feed_body("spot"))
    feed = wait_converged(kube_cluster, namespace, "spot")
    children = children_of(kube_cluster, namespace, "spot")
    assert sorted(children) == [
        ("ConfigMap", "spot-collector"),
        ("CronJob", "spot-tier-cold"),
        ("CronJob", "spot-tier-warm"),
        ("Deployment", "spot-collector"),
        ("Service", "spot-collector"),
    ]
    pods = {
        "Deployment/spot-collector": children[("Deployment", "spot-collector")]["spec"]["template"]["spec"],
        "CronJob/spot-tier-warm": children[("CronJob", "spot-tier-warm")]["spec"]["jobTemplate"]["spec"]["template"][
            "spec"
        ],
        "CronJob/spot-tier-cold": children[("CronJob", "spot-tier-cold")]["spec"]["jobTemplate"]["spec"]["template"][
            "spec"
        ],
    }
    for where, pod in pods.items():  # as the API server stored them, defaults included
        assert restricted_violations(where, pod) == []
    deployment = children[("Deployment", "spot-collector")]
    assert deployment["spec"]["strategy"]["type"] == "Recreate"
    assert deployment["spec"]["replicas"] == 1
    # The BackfillService's Service, as the API server stored it: a cluster IP, the collector's pods selected by the
    # Deployment's own selector (which its pod template carries), the gRPC port on the container's named port.
    service = children[("Service", "spot-collector")]["spec"]
    assert service["type"] == "ClusterIP"
    assert service["clusterIP"] not in ("", "None")
    assert service["selector"] == deployment["spec"]["selector"]["matchLabels"]
    assert service["selector"].items() <= deployment["spec"]["template"]["metadata"]["labels"].items()
    assert service["selector"]["app.kubernetes.io/instance"] == "spot"
    (port,) = service["ports"]
    assert (port["name"], port["protocol"], port["port"], port["targetPort"]) == (
        "grpc",
        "TCP",
        COLLECTOR_GRPC_PORT,
        "grpc",
    )
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    assert {"name": "grpc", "containerPort": COLLECTOR_GRPC_PORT, "protocol": "TCP"} in container["ports"]
    for child in children.values():
        (owner,) = child["metadata"]["ownerReferences"]
        assert (owner["kind"], owner["name"], owner["uid"]) == ("ExchangeFeed", "spot", feed["metadata"]["uid"])
    # No finalizer: a feed stays deletable while the operator is down (the garbage collector owns deletion).
    assert not feed["metadata"].get("finalizers")
    status = feed["status"]
    assert status["children"] == {
        "configMap": "spot-collector",
        "deployment": "spot-collector",
        "service": "spot-collector",
        "cronJobs": ["spot-tier-warm", "spot-tier-cold"],
    }
    assert status["backfillAddress"] == f"spot-collector.{namespace}.svc:{COLLECTOR_GRPC_PORT}"
    # No kubelet: the Deployment never gets a pod, and the status says so rather than claiming readiness. The
    # reconcile that created the children reports them (Progressing/ChildrenUpdated); the next one, which their
    # watch events trigger, settles on waiting for the collector.
    settled = {
        "Ready": ("False", "CollectorUnavailable"),
        "Progressing": ("True", "WaitingForCollector"),
        "Degraded": ("False", "Reconciled"),
    }

    def conditions() -> dict[str, tuple[str, str]] | None:
        current = (get_feed(kube_cluster, namespace, "spot") or {}).get("status", {}).get("conditions", [])
        found = {c["type"]: (c["status"], c["reason"]) for c in current}
        return found if found == settled else None

    wait_until(conditions, "the settled conditions", timeout_secs=30)
    table = kubectl(kube_cluster, "get", "exchangefeeds", "spot", "-n", namespace)
    header, row = table.splitlines()[:2]
    assert header.split()[:5] == ["NAME", "EXCHANGE", "MARKET", "SYMBOLS", "READY"]
    assert row.split()[:5] == ["spot", "binance", "spot", "BTC-USDT,ETH-USDT", "False"]
    (wide,) = printer_columns(kubectl(kube_cluster, "get", "exchangefeeds", "spot", "-n", namespace, "-o", "wide"))
    assert wide["BACKFILL"] == status["backfillAddress"]
    assert wide["COMPLETENESS"] == ""  # no validator counts in this test's (absent) Redis: empty, not 0%


def test_updates_change_exactly_what_they_should(
    kube_cluster: KubeCluster, namespace: str, operator: OperatorProcess
) -> None:
    apply_feed(kube_cluster, namespace, feed_body("upd"))
    before = children_of(kube_cluster, namespace, "upd") if wait_converged(kube_cluster, namespace, "upd") else {}
    checksum_before = before[("Deployment", "upd-collector")]["spec"]["template"]["metadata"]["annotations"][
        CHECKSUM_ANNOTATION
    ]

    # Symbols: the ConfigMap and the pod template's checksum change (the pod rolls); the CronJobs follow.
    apply_feed(kube_cluster, namespace, feed_body("upd", symbols=["SOL-USDT"]))
    wait_converged(kube_cluster, namespace, "upd")
    after = children_of(kube_cluster, namespace, "upd")
    assert "SOL-USDT" in after[("ConfigMap", "upd-collector")]["data"]["feed.yaml"]
    assert "BTC-USDT" not in after[("ConfigMap", "upd-collector")]["data"]["feed.yaml"]
    assert (
        after[("Deployment", "upd-collector")]["spec"]["template"]["metadata"]["annotations"][CHECKSUM_ANNOTATION]
        != checksum_before
    )
    # Unchanged children were not rewritten.
    assert after[("CronJob", "upd-tier-cold")]["metadata"]["generation"] == 2  # its env holds the symbols
    # Retention with a cold limit adds the expiry job; back to 0 removes it.
    apply_feed(
        kube_cluster,
        namespace,
        feed_body("upd", symbols=["SOL-USDT"], retention={"hotDays": 3, "warmDays": 30, "coldDays": 400}),
    )
    wait_converged(kube_cluster, namespace, "upd")
    assert ("CronJob", "upd-expire-cold") in children_of(kube_cluster, namespace, "upd")
    apply_feed(
        kube_cluster,
        namespace,
        feed_body("upd", symbols=["SOL-USDT"], retention={"hotDays": 3, "warmDays": 30, "coldDays": 0}),
    )
    wait_converged(kube_cluster, namespace, "upd")
    assert ("CronJob", "upd-expire-cold") not in children_of(kube_cluster, namespace, "upd")
    # Suspend: no collector pod, CronJobs suspended, Ready says why.
    apply_feed(kube_cluster, namespace, feed_body("upd", symbols=["SOL-USDT"], suspend=True))
    feed = wait_converged(kube_cluster, namespace, "upd")
    suspended = children_of(kube_cluster, namespace, "upd")
    assert suspended[("Deployment", "upd-collector")]["spec"]["replicas"] == 0
    assert all(item["spec"]["suspend"] for (kind, _), item in suspended.items() if kind == "CronJob")
    ready = next(c for c in feed["status"]["conditions"] if c["type"] == "Ready")
    assert (ready["status"], ready["reason"]) == ("False", "Suspended")


def test_deleting_a_feed_deletes_its_children(
    kube_cluster: KubeCluster, namespace: str, operator: OperatorProcess
) -> None:
    apply_feed(kube_cluster, namespace, feed_body("gone"))
    wait_converged(kube_cluster, namespace, "gone")
    kubectl(kube_cluster, "delete", "exchangefeeds.tickstrata.io", "gone", "-n", namespace)
    wait_until(lambda: not children_of(kube_cluster, namespace, "gone"), "the garbage collector to delete the children")
    assert get_feed(kube_cluster, namespace, "gone") is None


def _patch(kube_cluster: KubeCluster, namespace: str, target: str, patch: dict[str, Any]) -> None:
    kubectl(kube_cluster, "patch", target, "-n", namespace, "--type", "merge", "-p", json.dumps(patch))


def test_a_deleted_or_edited_child_is_restored(
    kube_cluster: KubeCluster, namespace: str, operator: OperatorProcess
) -> None:
    apply_feed(kube_cluster, namespace, feed_body("drift"))
    wait_converged(kube_cluster, namespace, "drift")
    uid_before = children_of(kube_cluster, namespace, "drift")[("Deployment", "drift-collector")]["metadata"]["uid"]
    kubectl(kube_cluster, "delete", "deployment", "drift-collector", "-n", namespace)
    wait_converged(kube_cluster, namespace, "drift", timeout_secs=RESTORE_SECS)
    assert (
        children_of(kube_cluster, namespace, "drift")[("Deployment", "drift-collector")]["metadata"]["uid"]
        != uid_before
    )
    # The Service: deleted, it comes back (a new object, owned by the feed); pointed elsewhere, it is put back.
    service_before = children_of(kube_cluster, namespace, "drift")[("Service", "drift-collector")]
    kubectl(kube_cluster, "delete", "service", "drift-collector", "-n", namespace)
    wait_converged(kube_cluster, namespace, "drift", timeout_secs=RESTORE_SECS)
    service_after = children_of(kube_cluster, namespace, "drift")[("Service", "drift-collector")]
    assert service_after["metadata"]["uid"] != service_before["metadata"]["uid"]
    assert service_after["metadata"]["ownerReferences"] == service_before["metadata"]["ownerReferences"]
    assert service_after["spec"]["selector"] == service_before["spec"]["selector"]
    _patch(
        kube_cluster,
        namespace,
        "service/drift-collector",
        {"spec": {"selector": {"app.kubernetes.io/component": "writer"}, "ports": [{"name": "x", "port": 80}]}},
    )

    _patch(kube_cluster, namespace, "cronjob/drift-tier-warm", {"spec": {"schedule": "0 0 1 1 *", "suspend": True}})
    _patch(
        kube_cluster,
        namespace,
        "configmap/drift-collector",
        {"data": {"feed.yaml": "exchange: binance\nsymbols: [DOGE-USDT]\n"}},
    )
    container = children_of(kube_cluster, namespace, "drift")[("Deployment", "drift-collector")]["spec"]["template"][
        "spec"
    ]["containers"][0]
    hacked = copy.deepcopy(container)
    hacked["env"].append({"name": "HACK", "value": "1"})
    _patch(
        kube_cluster,
        namespace,
        "deployment/drift-collector",
        {"spec": {"template": {"spec": {"containers": [hacked]}}}},
    )
    wait_converged(kube_cluster, namespace, "drift", timeout_secs=RESTORE_SECS)
    restored = children_of(kube_cluster, namespace, "drift")
    assert restored[("CronJob", "drift-tier-warm")]["spec"]["schedule"] == "17 * * * *"
    assert restored[("CronJob", "drift-tier-warm")]["spec"]["suspend"] is False
    assert "DOGE-USDT" not in restored[("ConfigMap", "drift-collector")]["data"]["feed.yaml"]
    env_names = [
        e["name"]
        for e in restored[("Deployment", "drift-collector")]["spec"]["template"]["spec"]["containers"][0]["env"]
    ]
    assert "HACK" not in env_names
    restored_service = restored[("Service", "drift-collector")]["spec"]
    assert restored_service["selector"] == service_before["spec"]["selector"]
    assert [(p["name"], p["port"]) for p in restored_service["ports"]] == [("grpc", COLLECTOR_GRPC_PORT)]


def test_a_child_name_taken_by_a_foreign_object_is_a_permanent_error(
    kube_cluster: KubeCluster, namespace: str, operator: OperatorProcess
) -> None:
    kubectl(
        kube_cluster, "create", "configmap", "taken-collector", "-n", namespace, "--from-literal=owner=someone-else"
    )
    apply_feed(kube_cluster, namespace, feed_body("taken"))

    def degraded() -> dict[str, Any] | None:
        feed = get_feed(kube_cluster, namespace, "taken") or {}
        conditions = {c["type"]: c for c in (feed.get("status") or {}).get("conditions", [])}
        condition = conditions.get("Degraded")
        return condition if condition and condition["status"] == "True" else None

    condition = wait_until(degraded, "the Degraded condition")
    assert condition["reason"] == "InvalidSpec"
    assert condition["message"].startswith("ConfigMap/taken-collector.metadata.ownerReferences: ")
    assert ("ConfigMap", "taken-collector") not in children_of(kube_cluster, namespace, "taken")  # left alone
    kubectl(kube_cluster, "delete", "configmap", "taken-collector", "-n", namespace)
    wait_converged(kube_cluster, namespace, "taken")  # the resync timer recovers once the name is free


def _can(kubeconfig: Path, namespace: str, verb: str, resource: str) -> bool:
    """`kubectl auth can-i` as the operator's ServiceAccount (the API server's own authorizer answers)."""
    done = subprocess.run(
        ["kubectl", "auth", "can-i", verb, resource, "-n", namespace],
        env={**os.environ, "KUBECONFIG": str(kubeconfig)},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    answer = done.stdout.strip()
    assert answer in ("yes", "no"), f"kubectl auth can-i failed: {done.stderr}"
    return answer == "yes"


@pytest.mark.parametrize(
    ("verb", "resource", "allowed"),
    [
        ("watch", "exchangefeeds.tickstrata.io", True),
        ("patch", "exchangefeeds.tickstrata.io/status", True),
        ("create", "deployments.apps", True),
        ("delete", "cronjobs.batch", True),
        ("update", "configmaps", True),
        ("create", "services", True),
        ("delete", "services", True),
        ("watch", "services", True),
        ("create", "events", True),
        ("list", "customresourcedefinitions.apiextensions.k8s.io", True),
        ("get", "secrets", False),
        ("list", "secrets", False),
        ("list", "pods", False),
        ("create", "pods", False),
        ("delete", "exchangefeeds.tickstrata.io", False),
        ("create", "exchangefeeds.tickstrata.io", False),
        ("create", "clusterroles.rbac.authorization.k8s.io", False),
        ("create", "rolebindings.rbac.authorization.k8s.io", False),
        ("delete", "namespaces", False),
        ("create", "serviceaccounts/token", False),
        ("create", "customresourcedefinitions.apiextensions.k8s.io", False),
    ],
)
def test_the_operator_service_account_can_do_only_what_it_needs(
    kube_cluster: KubeCluster, namespace: str, operator: OperatorProcess, verb: str, resource: str, allowed: bool
) -> None:
    assert _can(operator.kubeconfig, namespace, verb, resource) is allowed
