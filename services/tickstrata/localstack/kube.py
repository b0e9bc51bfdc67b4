"""A real Kubernetes control plane on loopback for the operator and chart tests: etcd, kube-apiserver and
kube-controller-manager, the envtest way (no kubelet: pods never run, everything else is real: CRDs and CEL,
admission, RBAC, server-side apply and dry-run, watches, garbage collection of owned objects).

The binaries come from `scripts/setup_kube.sh` (built from the Go module proxy into `.cache/kube/bin`). Speaks
HTTPS with the standard library only: the `kubernetes` package belongs to the operator (import contract).
"""

from __future__ import annotations

import json
import secrets
import ssl
import subprocess
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Final, Self

from tickstrata.localstack.paths import ToolNotInstalledError, cache_dir
from tickstrata.localstack.process import ManagedServer, free_port

HOST: Final = "127.0.0.1"
START_TIMEOUT_SECS: Final = 90.0
STOP_TIMEOUT_SECS: Final = 15.0
SERVICE_ACCOUNT_ISSUER: Final = "https://kubernetes.default.svc.cluster.local"
TOKEN_LIFETIME_SECS: Final = 3600 * 6


def kube_bin_dir() -> Path:
    return cache_dir() / "kube" / "bin"


class KubeCluster:
    """etcd + kube-apiserver + kube-controller-manager under `work_dir`, started by `start()`, stopped by `stop()`."""

    def __init__(self, work_dir: Path) -> None:
        self.work_dir = Path(work_dir)
        self.admin_token = secrets.token_hex(16)
        self.secure_port = 0
        self._servers: list[ManagedServer] = []
        # The API server makes its own serving certificate and CA at start-up (`certs/apiserver.crt` holds both):
        # until it exists the readiness probe cannot verify it; every call after that, and every kubeconfig, does.
        self._tls = ssl.create_default_context()
        self._tls.check_hostname = False
        self._tls.verify_mode = ssl.CERT_NONE

    @property
    def url(self) -> str:
        return f"https://{HOST}:{self.secure_port}"

    @property
    def ca_path(self) -> Path:
        """The API server's certificate bundle (serving certificate and its CA), to verify it."""
        return self.work_dir / "certs" / "apiserver.crt"

    @property
    def kubeconfig_path(self) -> Path:
        """The cluster-admin kubeconfig (token of a `system:masters` user)."""
        return self.work_dir / "admin.kubeconfig"

    def _binary(self, name: str) -> str:
        path = kube_bin_dir() / name
        if not path.exists():
            raise ToolNotInstalledError(f"{path} is missing: run `bash scripts/setup_kube.sh` (or `make setup-kube`)")
        return str(path)

    def start(self) -> Self:
        try:
            self._start()
        except BaseException:
            self.stop()
            raise
        return self

    def _start(self) -> None:
        self.work_dir.mkdir(parents=True, exist_ok=True)
        key, public = self.work_dir / "sa.key", self.work_dir / "sa.pub"
        if not key.exists():
            subprocess.run(["openssl", "genrsa", "-out", str(key), "2048"], check=True, capture_output=True)
            subprocess.run(
                ["openssl", "rsa", "-in", str(key), "-pubout", "-out", str(public)], check=True, capture_output=True
            )
        tokens = self.work_dir / "tokens.csv"
        tokens.write_text(f"{self.admin_token},admin,admin-uid,system:masters\n")

        etcd_port, etcd_peer_port = free_port(), free_port()
        etcd = ManagedServer(
            name="etcd",
            argv=[
                self._binary("etcd"),
                "--data-dir",
                str(self.work_dir / "etcd"),
                "--listen-client-urls",
                f"http://{HOST}:{etcd_port}",
                "--advertise-client-urls",
                f"http://{HOST}:{etcd_port}",
                "--listen-peer-urls",
                f"http://{HOST}:{etcd_peer_port}",
                "--initial-advertise-peer-urls",
                f"http://{HOST}:{etcd_peer_port}",
                "--initial-cluster",
                f"default=http://{HOST}:{etcd_peer_port}",
                "--unsafe-no-fsync",  # throw-away data: durability buys nothing and costs seconds per test
                "--log-level",
                "warn",
            ],
            log_path=self.work_dir / "etcd.log",
        )
        self._servers.append(etcd)
        etcd.start()
        etcd.wait_ready(lambda: self._http_ok(f"http://{HOST}:{etcd_port}/health"), timeout_secs=30)

        self.secure_port = free_port()
        apiserver = ManagedServer(
            name="kube-apiserver",
            argv=[
                self._binary("kube-apiserver"),
                f"--etcd-servers=http://{HOST}:{etcd_port}",
                f"--secure-port={self.secure_port}",
                f"--bind-address={HOST}",
                f"--advertise-address={HOST}",
                "--service-cluster-ip-range=10.0.0.0/24",
                "--authorization-mode=RBAC",
                f"--token-auth-file={tokens}",
                f"--service-account-issuer={SERVICE_ACCOUNT_ISSUER}",
                f"--service-account-key-file={public}",
                f"--service-account-signing-key-file={key}",
                f"--cert-dir={self.work_dir / 'certs'}",
                "--enable-priority-and-fairness=false",
                "--v=0",
            ],
            log_path=self.work_dir / "kube-apiserver.log",
        )
        self._servers.append(apiserver)
        apiserver.start()
        apiserver.wait_ready(
            lambda: self._get("/readyz")[0] == 200, timeout_secs=START_TIMEOUT_SECS, interval_secs=0.25
        )
        self._tls = ssl.create_default_context(cafile=str(self.ca_path))
        self._write_kubeconfig(self.kubeconfig_path, self.admin_token)

        # Garbage collection of owned objects, namespace deletion and default ServiceAccounts; no workload
        # controllers: without a kubelet their pods would only pile up.
        manager = ManagedServer(
            name="kube-controller-manager",
            argv=[
                self._binary("kube-controller-manager"),
                f"--kubeconfig={self.kubeconfig_path}",
                "--controllers=garbagecollector,namespace,serviceaccount",
                f"--service-account-private-key-file={key}",
                "--use-service-account-credentials=false",
                "--leader-elect=false",
                f"--bind-address={HOST}",
                f"--secure-port={free_port()}",
                "--v=0",
            ],
            log_path=self.work_dir / "kube-controller-manager.log",
        )
        self._servers.append(manager)
        manager.start()
        # Ready once it has made the default ServiceAccount of `default` (its controllers are running).
        manager.wait_ready(
            lambda: self._get("/api/v1/namespaces/default/serviceaccounts/default")[0] == 200,
            timeout_secs=START_TIMEOUT_SECS,
            interval_secs=0.25,
        )

    def stop(self) -> None:
        """Stop all three, the controllers first (they would log errors for a vanished API server)."""
        for server in reversed(self._servers):
            server.stop(timeout_secs=STOP_TIMEOUT_SECS)
        self._servers = []

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()

    # ---- HTTP, as the admin (or a given token) -----------------------------------------------------------

    def _http_ok(self, url: str) -> bool:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310 - an http URL we built
                return bool(response.status == 200)
        except (OSError, urllib.error.URLError):
            return False

    def request(self, method: str, path: str, body: Any = None, *, token: str | None = None) -> tuple[int, Any]:
        """One API call; returns (HTTP status, parsed JSON body or text). Never raises for an HTTP status."""
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(f"{self.url}{path}", data=data, method=method)  # noqa: S310 - https, ours
        request.add_header("Authorization", f"Bearer {token or self.admin_token}")
        request.add_header("Accept", "application/json")
        if data is not None:
            request.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(request, timeout=30, context=self._tls) as response:  # noqa: S310
                status, raw = response.status, response.read()
        except urllib.error.HTTPError as error:
            status, raw = error.code, error.read()
        try:
            return status, json.loads(raw) if raw else None
        except ValueError:
            return status, raw.decode(errors="replace")

    def _get(self, path: str) -> tuple[int, Any]:
        try:
            return self.request("GET", path)
        except OSError:
            return 0, None

    # ---- identities ------------------------------------------------------------------------------------------

    def service_account_token(self, namespace: str, name: str) -> str:
        """A bound token of the ServiceAccount (TokenRequest API), to act exactly as that account."""
        body = {
            "apiVersion": "authentication.k8s.io/v1",
            "kind": "TokenRequest",
            "spec": {"expirationSeconds": TOKEN_LIFETIME_SECS},
        }
        status, answer = self.request("POST", f"/api/v1/namespaces/{namespace}/serviceaccounts/{name}/token", body)
        if status != 201:
            raise RuntimeError(f"TokenRequest for {namespace}/{name} failed: {status} {answer}")
        return str(answer["status"]["token"])

    def kubeconfig_for_token(self, token: str, path: Path) -> Path:
        """A kubeconfig that authenticates with `token` (for `kubectl` or a process run as that identity)."""
        self._write_kubeconfig(path, token)
        return path

    def _write_kubeconfig(self, path: Path, token: str) -> None:
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "test", "cluster": {"server": self.url, "certificate-authority": str(self.ca_path)}}],
            "users": [{"name": "user", "user": {"token": token}}],
            "contexts": [{"name": "test", "context": {"cluster": "test", "user": "user", "namespace": "default"}}],
            "current-context": "test",
        }
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(config, indent=2))  # JSON is YAML: kubectl and the client read it
        path.chmod(0o600)
