"""Running the operator against the test API server as its real ServiceAccount, and reading what it made.

The operator's RBAC is not restated here: it is rendered from the Helm chart (`helm template`), applied, and the
operator process runs with a token of the chart's ServiceAccount, so the tests exercise exactly the permissions a
cluster would grant.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Final, TypeVar

import yaml

from tickstrata.localstack.kube import KubeCluster
from tickstrata.localstack.process import free_port
from tickstrata_operator.children import desired_children
from tickstrata_operator.diff import matches
from tickstrata_operator.feed import parse_feed
from tickstrata_operator.settings import OperatorSettings

ROOT: Final = Path(__file__).resolve().parents[2]
CHART: Final = ROOT / "charts" / "tickstrata"
HELM: Final = ROOT / ".cache" / "kube" / "bin" / "helm"
GROUP, VERSION, PLURAL = "tickstrata.io", "v1alpha1", "exchangefeeds"
RBAC_KINDS: Final = {"ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding"}
READY_TIMEOUT_SECS: Final = 60.0
TEST_IMAGE: Final = "registry.test/tickstrata:test"
SETTINGS: Final = OperatorSettings(image=TEST_IMAGE)
"""What the operator processes here run with: expected children are built with the same settings."""

T = TypeVar("T")


def wait_until(
    probe: Callable[[], T | None], what: str, *, timeout_secs: float = 60.0, interval_secs: float = 0.2
) -> T:
    """Poll `probe` until it returns something truthy; fail naming `what` and the last value seen."""
    deadline = time.monotonic() + timeout_secs
    last: T | None = None
    while time.monotonic() < deadline:
        last = probe()
        if last:
            return last
        time.sleep(interval_secs)
    raise AssertionError(f"timed out after {timeout_secs:.0f} s waiting for {what}; last seen: {last!r:.2000}")


def kubectl(cluster: KubeCluster, *args: str, stdin: str | None = None, kubeconfig: Path | None = None) -> str:
    env = {**os.environ, "KUBECONFIG": str(kubeconfig or cluster.kubeconfig_path)}
    done = subprocess.run(
        ["kubectl", *args], input=stdin, env=env, capture_output=True, text=True, timeout=60, check=False
    )
    if done.returncode != 0:
        raise AssertionError(f"kubectl {' '.join(args)} failed ({done.returncode}): {done.stderr}")
    return done.stdout


def render_chart(release: str, namespace: str, *values: str) -> list[dict[str, Any]]:
    """`helm template` of the chart: every rendered object."""
    argv = [str(HELM), "template", release, str(CHART), "--namespace", namespace, "--include-crds"]
    for value in values:
        argv += ["--set", value]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)
    if done.returncode != 0:
        raise AssertionError(f"helm template failed: {done.stderr}")
    return [doc for doc in yaml.safe_load_all(done.stdout) if doc]


def install_operator_rbac(cluster: KubeCluster, namespace: str, release: str) -> str:
    """Apply the chart's CRD and the operator's ServiceAccount and RBAC for watching `namespace` only (as the
    operator process here does); return the ServiceAccount's name."""
    objects = render_chart(release, namespace, f"operator.watchNamespace={namespace}")
    picked = [
        obj
        for obj in objects
        if obj["kind"] == "CustomResourceDefinition"
        or (
            obj["kind"] in RBAC_KINDS
            and obj["metadata"].get("labels", {}).get("app.kubernetes.io/component") == "operator"
        )
    ]
    accounts = [obj["metadata"]["name"] for obj in picked if obj["kind"] == "ServiceAccount"]
    assert len(accounts) == 1, f"the chart should render one operator ServiceAccount, got {accounts}"
    kubectl(cluster, "apply", "--server-side", "-n", namespace, "-f", "-", stdin=yaml.safe_dump_all(picked))
    kubectl(cluster, "wait", "--for=condition=Established", "--timeout=30s", f"crd/{PLURAL}.{GROUP}")
    return str(accounts[0])


class OperatorProcess:
    """`python -m tickstrata operator` as a child process, with its own kubeconfig and a bounded stop."""

    def __init__(self, kubeconfig: Path, log_path: Path, namespace: str, **settings: str) -> None:
        self.kubeconfig = kubeconfig
        self.log_path = log_path
        self.health_port = free_port()
        self.env = {
            **os.environ,
            "KUBECONFIG": str(kubeconfig),
            "OPERATOR_NAMESPACE": namespace,
            "OPERATOR_HEALTH_HOST": "127.0.0.1",
            "OPERATOR_HEALTH_PORT": str(self.health_port),
            "OPERATOR_RESYNC_INTERVAL_SECS": "3",
            "OPERATOR_LOG_JSON": "false",
            "PYTHONFAULTHANDLER": "1",  # a hung operator can be made to print every thread's stack (SIGABRT)
            "OPERATOR_IMAGE": TEST_IMAGE,
            "OPERATOR_STATS_REDIS_URL": "off",  # tests of the statistics pass their own Redis
            **{f"OPERATOR_{key.upper()}": value for key, value in settings.items()},
        }
        self.process: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def start(self, *, wait_ready: bool = True) -> None:
        self.starts += 1
        with self.log_path.open("ab") as log:
            log.write(f"\n===== start {self.starts}\n".encode())
            log.flush()
            self.process = subprocess.Popen(
                [sys.executable, "-m", "tickstrata", "operator"],
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        if wait_ready:
            wait_until(self._ready, f"the operator's /readyz (log: {self.log_path})", timeout_secs=READY_TIMEOUT_SECS)

    def _ready(self) -> bool:
        import urllib.request  # noqa: PLC0415

        if self.process is not None and self.process.poll() is not None:
            raise AssertionError(f"the operator exited with {self.process.returncode}:\n{self.log_tail()}")
        url = f"http://127.0.0.1:{self.health_port}/readyz"
        with contextlib.suppress(OSError), urllib.request.urlopen(url, timeout=1) as response:
            return bool(response.status == 200)
        return False

    def kill(self) -> None:
        """SIGKILL: no chance to finish anything."""
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)

    def stop(self) -> int:
        """SIGTERM and wait; the exit code (a clean stop is 0)."""
        if self.process is None or self.process.poll() is not None:
            return self.process.returncode if self.process else 0
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(f"the operator did not stop within 30 s:\n{self.log_tail()}") from None

    def log_tail(self, lines: int = 60) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])


@contextlib.contextmanager
def running_operator(
    cluster: KubeCluster, namespace: str, work_dir: Path, **settings: str
) -> Iterator[OperatorProcess]:
    """The chart's RBAC applied, and the operator running as its ServiceAccount until the block ends."""
    release = f"op-{namespace}"[:40]
    account = install_operator_rbac(cluster, namespace, release)
    token = cluster.service_account_token(namespace, account)
    kubeconfig = cluster.kubeconfig_for_token(token, work_dir / f"{namespace}-operator.kubeconfig")
    operator = OperatorProcess(kubeconfig, work_dir / f"{namespace}-operator.log", namespace, **settings)
    operator.start()
    try:
        yield operator
    finally:
        operator.stop()


@contextlib.contextmanager
def fresh_namespace(cluster: KubeCluster, prefix: str) -> Iterator[str]:
    """A namespace of its own, deleted afterwards without waiting for its contents to go."""
    name = f"{prefix}-{uuid.uuid4().hex[:8]}"
    kubectl(cluster, "create", "namespace", name)
    try:
        yield name
    finally:
        kubectl(cluster, "delete", "namespace", name, "--wait=false")


def children_of(cluster: KubeCluster, namespace: str, feed: str) -> dict[tuple[str, str], dict[str, Any]]:
    """Every ConfigMap, Deployment, Service and CronJob labelled as the feed's child, by (kind, name)."""
    listed = json.loads(
        kubectl(
            cluster,
            "get",
            "configmaps,deployments,services,cronjobs",
            "-n",
            namespace,
            "-l",
            f"tickstrata.io/feed={feed}",
            "-o",
            "json",
        )
    )
    return {(item["kind"], item["metadata"]["name"]): item for item in listed["items"]}


def get_feed(cluster: KubeCluster, namespace: str, name: str) -> dict[str, Any] | None:
    out = kubectl(cluster, "get", f"{PLURAL}.{GROUP}", name, "-n", namespace, "-o", "json", "--ignore-not-found")
    return json.loads(out) if out.strip() else None


def printer_columns(table: str) -> list[dict[str, str]]:
    """The rows of a `kubectl get` table by column name, read by the columns' positions in the header, so an empty
    cell (a column the status does not fill yet) is an empty string instead of shifting the cells after it."""
    header, *rows = table.splitlines()
    starts = [(match.start(), match.group()) for match in re.finditer(r"\S+(?: \S+)*", header)]
    bounds = [
        (name, start, starts[i + 1][0] if i + 1 < len(starts) else None) for i, (start, name) in enumerate(starts)
    ]
    return [{name: row[start:end].strip() for name, start, end in bounds} for row in rows]


def apply_feed(cluster: KubeCluster, namespace: str, body: dict[str, Any]) -> None:
    kubectl(cluster, "apply", "--server-side", "--force-conflicts", "-n", namespace, "-f", "-", stdin=json.dumps(body))


def reconciled(cluster: KubeCluster, namespace: str, name: str) -> dict[str, Any] | None:
    """The feed once its status says its current generation was reconciled, else None."""
    feed = get_feed(cluster, namespace, name)
    if not feed:
        return None
    status = feed.get("status") or {}
    return feed if status.get("observedGeneration") == feed["metadata"]["generation"] else None


def feed_body(name: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "tickstrata.io/v1alpha1",
        "kind": "ExchangeFeed",
        "metadata": {"name": name},
        "spec": {"exchange": "binance", "market": "spot", "symbols": ["BTC-USDT", "ETH-USDT"], **spec},
    }


def expected_children(feed: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    return {(child.kind, child.name): child.body for child in desired_children(parse_feed(feed), SETTINGS)}


def convergence_gap(cluster: KubeCluster, namespace: str, name: str) -> str | None:
    """What still keeps the feed from having converged (for the failure message), or None once it has."""
    feed = get_feed(cluster, namespace, name)
    if feed is None:
        return "the feed does not exist"
    status = feed.get("status") or {}
    if status.get("observedGeneration") != feed["metadata"]["generation"]:
        return f"status generation {status.get('observedGeneration')} != {feed['metadata']['generation']}; {status}"
    expected = expected_children(feed)
    actual = children_of(cluster, namespace, name)
    if set(actual) != set(expected):
        return f"children {sorted(actual)} != expected {sorted(expected)}"
    differing = [key for key, body in expected.items() if not matches(actual[key], body)]
    return f"children differ from their desired form: {differing}" if differing else None


def converged(cluster: KubeCluster, namespace: str, name: str) -> dict[str, Any] | None:
    """The feed when its status is current and its children are exactly the expected ones, matching."""
    feed = reconciled(cluster, namespace, name)
    if feed is None:
        return None
    expected = expected_children(feed)
    actual = children_of(cluster, namespace, name)
    if set(actual) != set(expected):
        return None
    if not all(matches(actual[key], body) for key, body in expected.items()):
        return None
    return feed


def wait_converged(cluster: KubeCluster, namespace: str, name: str, timeout_secs: float = 60.0) -> dict[str, Any]:
    return wait_until(
        lambda: converged(cluster, namespace, name), f"feed {name} to converge", timeout_secs=timeout_secs
    )
