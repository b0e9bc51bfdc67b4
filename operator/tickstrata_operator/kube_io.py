"""The operator's API calls, in plain JSON over the `kubernetes` client's connection. The only I/O module.

Why not the typed API classes: the children are built as plain mappings (`children.py`) and compared as such
(`diff.py`); the generated models would convert back and forth and drop unknown fields. The client still owns
the connection: kubeconfig or in-cluster configuration, TLS, the bearer token and its refresh.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import urlencode

from kubernetes import client, config
from kubernetes.client.exceptions import ApiException
from kubernetes.config.config_exception import ConfigException

from tickstrata_operator.feed import API_GROUP, API_VERSION, PLURAL

REQUEST_TIMEOUT_SECS: Final = 15.0
FIELD_MANAGER: Final = "tickstrata-operator"

_COLLECTIONS: Final[Mapping[str, str]] = {
    "ConfigMap": "/api/v1/namespaces/{namespace}/configmaps",
    "Deployment": "/apis/apps/v1/namespaces/{namespace}/deployments",
    "Service": "/api/v1/namespaces/{namespace}/services",
    "CronJob": "/apis/batch/v1/namespaces/{namespace}/cronjobs",
    "ExchangeFeed": f"/apis/{API_GROUP}/{API_VERSION}/namespaces/{{namespace}}/{PLURAL}",
}
CHILD_KINDS: Final = ("ConfigMap", "Deployment", "Service", "CronJob")


@dataclass(frozen=True, slots=True)
class KubeApiError(Exception):
    """A refused or failed call: `status` 0 means no HTTP answer (connection refused, timeout)."""

    status: int
    reason: str
    body: Mapping[str, Any]

    def __str__(self) -> str:
        message = self.body.get("message") if self.body else None
        return f"{self.status} {self.reason}: {message or ''}".strip()

    @property
    def causes(self) -> list[Mapping[str, Any]]:
        """The API server's field-level causes (`{"field": "spec.template...", "message": ...}`) of a 422."""
        details = self.body.get("details") if self.body else None
        return list(details.get("causes") or []) if isinstance(details, Mapping) else []


class KubeConfigMissingError(RuntimeError):
    """Neither the in-cluster service account nor a kubeconfig is available."""


def load_api_client() -> client.ApiClient:
    """In a pod: the service account; elsewhere: `$KUBECONFIG` or ~/.kube/config."""
    load_incluster: Callable[[], None] = config.load_incluster_config  # untyped in the kubernetes package
    load_kubeconfig: Callable[[], None] = config.load_kube_config
    try:
        load_incluster()
    except ConfigException:
        try:
            load_kubeconfig()
        except ConfigException as error:
            raise KubeConfigMissingError(
                f"no Kubernetes API to talk to: not in a pod (no service account) and no usable kubeconfig "
                f"($KUBECONFIG or ~/.kube/config): {error}"
            ) from None
    return client.ApiClient()


class Kube:
    """Create, read, patch, list and delete the kinds the operator touches, as JSON mappings."""

    def __init__(self, api: client.ApiClient) -> None:
        self._api = api

    def _call(self, method: str, path: str, *, body: Any = None, content_type: str = "application/json") -> Any:
        headers = {"Accept": "application/json", "Content-Type": content_type}
        _, url, headers, serialized, _ = self._api.param_serialize(
            method, path, header_params=headers, body=body, auth_settings=["BearerToken"]
        )
        try:
            response = self._api.call_api(
                method, url, header_params=headers, body=serialized, _request_timeout=REQUEST_TIMEOUT_SECS
            )
            data: bytes | None = response.read()  # type: ignore[no-untyped-call]
        except ApiException as error:
            raise _api_error(error.status or 0, error.reason or "", error.body) from None
        except OSError as error:  # urllib3 connection errors derive from OSError
            raise KubeApiError(0, type(error).__name__, {"message": str(error)}) from None
        if response.status >= 400:
            raise _api_error(response.status, response.reason or "", data)
        return json.loads(data) if data else None

    @staticmethod
    def _path(kind: str, namespace: str, name: str | None = None, query: Mapping[str, str] | None = None) -> str:
        path = _COLLECTIONS[kind].format(namespace=namespace)
        if name is not None:
            path += f"/{name}"
        return f"{path}?{urlencode(query)}" if query else path

    def get(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        """The object, or None when it does not exist."""
        try:
            found: dict[str, Any] = self._call("GET", self._path(kind, namespace, name))
        except KubeApiError as error:
            if error.status == 404:
                return None
            raise
        return found

    def create(self, kind: str, namespace: str, body: Mapping[str, Any]) -> dict[str, Any]:
        query = {"fieldManager": FIELD_MANAGER, "fieldValidation": "Strict"}
        created: dict[str, Any] = self._call("POST", self._path(kind, namespace, query=query), body=body)
        return created

    def merge_patch(
        self, kind: str, namespace: str, name: str, patch: Mapping[str, Any], *, status: bool = False
    ) -> None:
        path = self._path(kind, namespace, name) + ("/status" if status else "")
        self._call(
            "PATCH",
            f"{path}?{urlencode({'fieldManager': FIELD_MANAGER})}",
            body=patch,
            content_type="application/merge-patch+json",
        )

    def delete(self, kind: str, namespace: str, name: str) -> None:
        """Delete with foreground-free background propagation; a missing object is fine."""
        try:
            self._call("DELETE", self._path(kind, namespace, name), body={"propagationPolicy": "Background"})
        except KubeApiError as error:
            if error.status != 404:
                raise

    def list_feeds(self, namespace: str) -> list[dict[str, Any]]:
        """Every ExchangeFeed in `namespace`, or in the whole cluster when it is empty."""
        path = self._path("ExchangeFeed", namespace) if namespace else f"/apis/{API_GROUP}/{API_VERSION}/{PLURAL}"
        listed = self._call("GET", path)
        return list(listed.get("items") or [])

    def list_owned(self, kind: str, namespace: str, feed_name: str, feed_label: str) -> list[dict[str, Any]]:
        """Every `kind` object labelled as a child of the feed `feed_name`."""
        listed = self._call("GET", self._path(kind, namespace, query={"labelSelector": f"{feed_label}={feed_name}"}))
        return list(listed.get("items") or [])


def _api_error(status: int, reason: str, raw: Any) -> KubeApiError:
    body: Mapping[str, Any]
    try:
        parsed = json.loads(raw) if raw else {}
        body = parsed if isinstance(parsed, Mapping) else {"message": str(parsed)}
    except (ValueError, TypeError):
        body = {"message": raw.decode(errors="replace") if isinstance(raw, bytes) else str(raw)}
    return KubeApiError(status, reason, body)
