"""Kubernetes fixtures: one control plane (etcd, kube-apiserver, kube-controller-manager) for the whole session,
and a fresh namespace per test. Imported into `tests/integration/conftest.py`; binaries from `scripts/setup_kube.sh`.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.integration.servers import missing_tool
from tickstrata.localstack.kube import KubeCluster
from tickstrata.localstack.paths import ToolNotInstalledError

CRD_PATH = Path(__file__).resolve().parents[3] / "charts" / "tickstrata" / "crds" / "exchangefeeds.tickstrata.io.yaml"


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


def install_crd(cluster: KubeCluster) -> None:
    """Apply the chart's CRD (server-side, idempotent) and wait until it is served."""
    from kubernetes import client  # noqa: PLC0415

    api = admin_api(cluster)
    crd = yaml.safe_load(CRD_PATH.read_text())
    extensions: Any = client.ApiextensionsV1Api(api)  # the generated models are loosely typed
    try:
        extensions.create_custom_resource_definition(crd)
    except client.exceptions.ApiException as error:
        if error.status != 409:
            raise
        existing = extensions.read_custom_resource_definition(crd["metadata"]["name"])
        crd["metadata"]["resourceVersion"] = existing.metadata.resource_version
        extensions.replace_custom_resource_definition(crd["metadata"]["name"], crd)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        conditions = extensions.read_custom_resource_definition(crd["metadata"]["name"]).status.conditions or []
        if any(c.type == "Established" and c.status == "True" for c in conditions):
            return
        time.sleep(0.2)
    raise AssertionError("the ExchangeFeed CRD was not established within 30 s")
