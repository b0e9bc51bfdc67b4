"""The chart on the test API server: every values file's manifests pass server-side dry-run (the API server's own
schema validation, strict fields), and `helm install` + `kubectl apply` of the example feed yields the collector
Deployment and the CronJobs, with `kubectl get exchangefeeds` showing its columns.
"""

from __future__ import annotations

import json
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.integration.operator_harness import (
    CHART,
    HELM,
    OperatorProcess,
    children_of,
    fresh_namespace,
    kubectl,
    wait_converged,
)
from tickstrata.localstack.kube import KubeCluster

EXAMPLE = Path(__file__).resolve().parents[2] / "operator" / "examples" / "binance-spot.yaml"


@pytest.fixture
def namespace(kube_cluster: KubeCluster) -> Iterator[str]:
    with fresh_namespace(kube_cluster, "chart") as name:
        yield name


def helm(cluster: KubeCluster, *args: str) -> str:
    done = subprocess.run(
        [str(HELM), "--kubeconfig", str(cluster.kubeconfig_path), *args],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert done.returncode == 0, f"helm {' '.join(args)}: {done.stderr}"
    return done.stdout


@pytest.mark.parametrize("values_file", ["values.yaml", "values-dev.yaml", "values-prod.yaml"])
def test_rendered_manifests_pass_server_side_dry_run(
    kube_cluster: KubeCluster, namespace: str, values_file: str
) -> None:
    release = f"dry-{uuid.uuid4().hex[:6]}"
    rendered = helm(
        kube_cluster, "template", release, str(CHART), "-n", namespace, "--include-crds", "-f", str(CHART / values_file)
    )
    objects = [doc for doc in yaml.safe_load_all(rendered) if doc]
    out = kubectl(
        kube_cluster,
        "apply",
        "--dry-run=server",
        "--validate=strict",
        "--server-side",
        "-n",
        namespace,
        "-f",
        "-",
        stdin=rendered,
    )
    applied = [line for line in out.splitlines() if line.strip()]
    assert len(applied) == len(objects), out
    assert all("(server dry run)" in line for line in applied), out
    # A dry run creates nothing.
    assert json.loads(kubectl(kube_cluster, "get", "deployments", "-n", namespace, "-o", "json"))["items"] == []


def test_helm_install_then_an_example_feed_yields_its_children(
    kube_cluster: KubeCluster, namespace: str, tmp_path: Path
) -> None:
    release = f"ts-{uuid.uuid4().hex[:6]}"
    helm(
        kube_cluster, "install", release, str(CHART), "-n", namespace, "--wait=false",
        "--set", f"operator.watchNamespace={namespace}", "--set", "image.tag=test",
    )  # fmt: skip
    try:
        deployments = json.loads(kubectl(kube_cluster, "get", "deployments", "-n", namespace, "-o", "json"))["items"]
        names = sorted(item["metadata"]["name"] for item in deployments)
        assert names == sorted(f"{release}-tickstrata-{c}" for c in ("operator", "query", "validator", "writer"))
        # No kubelet runs the operator's pod here: run the same program as the chart's ServiceAccount instead.
        account = f"{release}-tickstrata-operator"
        token = kube_cluster.service_account_token(namespace, account)
        kubeconfig = kube_cluster.kubeconfig_for_token(token, tmp_path / "operator.kubeconfig")
        operator = OperatorProcess(kubeconfig, tmp_path / "operator.log", namespace)
        operator.start()
        try:
            kubectl(kube_cluster, "apply", "-n", namespace, "-f", str(EXAMPLE))
            wait_converged(kube_cluster, namespace, "binance-spot")
            assert sorted(children_of(kube_cluster, namespace, "binance-spot")) == [
                ("ConfigMap", "binance-spot-collector"),
                ("CronJob", "binance-spot-tier-cold"),
                ("CronJob", "binance-spot-tier-warm"),
                ("Deployment", "binance-spot-collector"),
                ("Service", "binance-spot-collector"),
            ]
            table = kubectl(kube_cluster, "get", "exchangefeeds", "-n", namespace)
            header, row = table.splitlines()
            assert header.split() == [
                "NAME",
                "EXCHANGE",
                "MARKET",
                "SYMBOLS",
                "READY",
                "EVENTS/S",
                "COMPLETENESS",
                "AGE",
            ]
            assert row.split()[:5] == ["binance-spot", "binance", "spot", "BTC-USDT,ETH-USDT", "False"]
            print(table)
        finally:
            assert operator.stop() == 0, operator.log_tail()
    finally:
        helm(kube_cluster, "uninstall", release, "-n", namespace)
