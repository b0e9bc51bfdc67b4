"""Kubernetes fixtures: one control plane (etcd, kube-apiserver, kube-controller-manager) for the whole session,
and a fresh namespace per test. Imported into `tests/integration/conftest.py`; binaries from `scripts/setup_kube.sh`.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from tests.integration.servers import missing_tool
from tickstrata.localstack.kube import KubeCluster
from tickstrata.localstack.paths import ToolNotInstalledError


@pytest.fixture(scope="session")
def kube_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KubeCluster]:
    cluster = KubeCluster(tmp_path_factory.mktemp("kube"))
    try:
        cluster.start()
    except ToolNotInstalledError as error:
        missing_tool(error)
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def kube_namespace(kube_cluster: KubeCluster) -> Iterator[str]:
    """A namespace of its own for one test; deleted afterwards (without waiting for its contents to go)."""
    name = f"t-{uuid.uuid4().hex[:10]}"
    status, answer = kube_cluster.request("POST", "/api/v1/namespaces", {"metadata": {"name": name}})
    assert status == 201, answer
    yield name
    kube_cluster.request("DELETE", f"/api/v1/namespaces/{name}")


def admin_api(cluster: KubeCluster) -> Any:
    """A `kubernetes` client as the cluster admin (tests may use the package; the services may not)."""
    from kubernetes import client, config  # noqa: PLC0415 - only the tests that talk Kubernetes pay for it

    configuration = client.Configuration()
    config.load_kube_config(config_file=str(cluster.kubeconfig_path), client_configuration=configuration)  # type: ignore[no-untyped-call]
    return client.ApiClient(configuration)
