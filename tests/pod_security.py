"""The Kubernetes Pod Security Standards' restricted profile as a check on a pod spec (shared by the chart and
operator tests), plus our own stricter rule: a read-only root filesystem."""

from __future__ import annotations

from typing import Any

RESTRICTED_VOLUME_TYPES = {
    "configMap",
    "csi",
    "downwardAPI",
    "emptyDir",
    "ephemeral",
    "persistentVolumeClaim",
    "projected",
    "secret",
}


def restricted_violations(where: str, pod: dict[str, Any]) -> list[str]:
    """The Pod Security Standards' restricted profile (v1.36), check by check."""
    found = []
    pod_context = pod.get("securityContext", {})
    for key in ("hostNetwork", "hostPID", "hostIPC"):
        if pod.get(key):
            found.append(f"{where}: {key}")
    for volume in pod.get("volumes", []):
        kinds = set(volume) - {"name"}
        if not kinds <= RESTRICTED_VOLUME_TYPES:
            found.append(f"{where}: volume {volume['name']} of type {kinds - RESTRICTED_VOLUME_TYPES}")
    if pod_context.get("seccompProfile", {}).get("type") not in ("RuntimeDefault", "Localhost"):
        found.append(f"{where}: pod seccompProfile")
    for container in pod.get("initContainers", []) + pod["containers"]:
        found.extend(container_violations(f"{where}/{container['name']}", container, pod_context))
    return found


def container_violations(name: str, container: dict[str, Any], pod_context: dict[str, Any]) -> list[str]:
    found = []
    context = container.get("securityContext", {})
    if context.get("privileged"):
        found.append(f"{name}: privileged")
    if context.get("allowPrivilegeEscalation") is not False:
        found.append(f"{name}: allowPrivilegeEscalation must be false")
    if not (context.get("runAsNonRoot") or pod_context.get("runAsNonRoot")):
        found.append(f"{name}: runAsNonRoot")
    if context.get("runAsUser", pod_context.get("runAsUser")) == 0:
        found.append(f"{name}: runAsUser 0")
    capabilities = context.get("capabilities", {})
    if "ALL" not in capabilities.get("drop", []):
        found.append(f"{name}: capabilities must drop ALL")
    if set(capabilities.get("add", [])) - {"NET_BIND_SERVICE"}:
        found.append(f"{name}: adds capabilities {capabilities['add']}")
    if context.get("seccompProfile", {}).get("type", "RuntimeDefault") not in ("RuntimeDefault", "Localhost"):
        found.append(f"{name}: container seccompProfile")
    if any(port.get("hostPort") for port in container.get("ports", [])):
        found.append(f"{name}: hostPort")
    if context.get("readOnlyRootFilesystem") is not True:  # ours, stricter than the profile
        found.append(f"{name}: readOnlyRootFilesystem")
    return found
