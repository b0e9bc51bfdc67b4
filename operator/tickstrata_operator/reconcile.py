"""One reconciliation of one ExchangeFeed: make its children match the spec, prune the stale, write the status.

Level-based and idempotent: it reads what is there and changes only what differs, so the same call serves a new
feed, an edited feed, a child deleted or hand-edited (drift), and a restart of the operator. Calls for one feed
are serialized (a child's watch event and the feed's own handler may arrive together).

Errors are classified for the handlers (`handlers.py`): `TemporaryReconcileError` (conflicts, throttling, the
API server unreachable: retried with backoff) and `PermanentReconcileError` (the spec or a child built from it
refused, access forbidden: reported in the `Degraded` condition with the field path, not retried until the
feed changes or the resync loop (`resync.py`) comes round).
"""

from __future__ import annotations

import logging
import threading
from collections import defaultdict
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Final

from tickstrata_operator.children import FEED_LABEL, Child, backfill_address, desired_children
from tickstrata_operator.diff import merge_patch
from tickstrata_operator.feed import KIND, Feed, InvalidFeedError, parse_feed
from tickstrata_operator.kube_io import CHILD_KINDS, Kube, KubeApiError
from tickstrata_operator.settings import OperatorSettings
from tickstrata_operator.status import Outcome, status_differs, status_patch

logger = logging.getLogger(__name__)

TEMPORARY_STATUSES: Final = frozenset({0, 404, 408, 409, 429, 500, 502, 503, 504})
"""0: no answer. 404 on a write: the namespace is being re-created, or a child vanished between read and patch."""


class TemporaryReconcileError(RuntimeError):
    """Retry later: the cluster may well accept the same request then."""


class PermanentReconcileError(RuntimeError):
    """Retrying the same spec cannot help; `field` names what to fix."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


def classify(error: KubeApiError, what: str) -> Exception:
    """The handler-facing error for an API failure while working on `what` (`Deployment/btc-collector`)."""
    if error.status in TEMPORARY_STATUSES:
        return TemporaryReconcileError(f"{what}: {error}")
    causes = error.causes
    if causes:
        field = f"{what}.{causes[0].get('field', '')}".rstrip(".")
        return PermanentReconcileError(field, "; ".join(str(cause.get("message", "")) for cause in causes))
    return PermanentReconcileError(what, str(error))


def _controllers(actual: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    references = (actual.get("metadata") or {}).get("ownerReferences") or []
    return [ref for ref in references if ref.get("controller")]


def _is_owned_by(actual: Mapping[str, Any], feed: Feed) -> bool:
    return any(ref.get("uid") == feed.uid for ref in _controllers(actual))


def _is_owned_by_predecessor(actual: Mapping[str, Any], feed: Feed) -> bool:
    """Owned by an earlier ExchangeFeed of the same name (deleted and re-created): the child is adopted rather
    than left for the garbage collector and created again."""
    return any(ref.get("kind") == KIND and ref.get("name") == feed.name for ref in _controllers(actual))


class Reconciler:
    def __init__(self, kube: Kube, settings: OperatorSettings) -> None:
        self._kube = kube
        self._settings = settings
        self._locks: defaultdict[tuple[str, str], threading.Lock] = defaultdict(threading.Lock)
        self._locks_guard = threading.Lock()

    def _lock(self, namespace: str, name: str) -> threading.Lock:
        with self._locks_guard:
            return self._locks[(namespace, name)]

    def reconcile(self, body: Mapping[str, Any]) -> Outcome:
        metadata = body.get("metadata") or {}
        with self._lock(str(metadata.get("namespace")), str(metadata.get("name"))):
            return self._reconcile(body)

    def reconcile_by_name(self, namespace: str, name: str) -> Outcome | None:
        """Fetch the feed and reconcile it (for children's watch events); None when it is gone or going."""
        try:
            body = self._kube.get("ExchangeFeed", namespace, name)
        except KubeApiError as error:
            raise classify(error, f"ExchangeFeed/{name}") from None
        if body is None or (body.get("metadata") or {}).get("deletionTimestamp"):
            return None
        return self.reconcile(body)

    def _reconcile(self, body: Mapping[str, Any]) -> Outcome:
        metadata = body.get("metadata") or {}
        generation = int(metadata.get("generation", 0))
        try:
            feed = parse_feed(body)
        except InvalidFeedError as error:
            outcome = Outcome(generation, rejected_field=error.field, rejected_message=str(error).split(": ", 1)[-1])
            self._write_status(body, outcome)
            raise PermanentReconcileError(error.field, outcome.rejected_message) from None
        desired = desired_children(feed, self._settings)
        changed: list[str] = []
        deployment: Mapping[str, Any] | None = None
        try:
            for child in desired:
                actual, did = self._apply(feed, child)
                if did:
                    changed.append(f"{child.kind}/{child.name}")
                if child.kind == "Deployment":
                    deployment = actual
            changed.extend(self._prune(feed, {(child.kind, child.name) for child in desired}))
        except PermanentReconcileError as error:
            self._write_status(
                body, Outcome(generation, feed.symbols, rejected_field=error.field, rejected_message=error.message)
            )
            raise
        outcome = Outcome(
            generation=generation,
            symbols=feed.symbols,
            changed=changed,
            children=_children_names(desired),
            backfill_address=backfill_address(feed),
            suspended=feed.suspend,
            collector_available=_available(deployment),
        )
        self._write_status(body, outcome)
        if changed:
            logger.info("reconciled", extra={"feed": feed.name, "namespace": feed.namespace, "changed": changed})
        return outcome

    def _apply(self, feed: Feed, child: Child) -> tuple[Mapping[str, Any], bool]:
        """Make `child` exist as desired; return what is there now and whether anything was written."""
        what = f"{child.kind}/{child.name}"
        try:
            actual = self._kube.get(child.kind, feed.namespace, child.name)
            if actual is None:
                try:
                    return self._kube.create(child.kind, feed.namespace, child.body), True
                except KubeApiError as error:
                    if error.status != 409:
                        raise
                    actual = self._kube.get(child.kind, feed.namespace, child.name)  # created meanwhile
                    if actual is None:
                        raise
            if not _is_owned_by(actual, feed) and not _is_owned_by_predecessor(actual, feed):
                raise PermanentReconcileError(
                    f"{what}.metadata.ownerReferences",
                    f"{what} exists and is not owned by this feed: rename or delete it",
                )
            patch = merge_patch(
                actual, {key: value for key, value in child.body.items() if key not in ("apiVersion", "kind")}
            )
            if not patch:
                return actual, False
            self._kube.merge_patch(child.kind, feed.namespace, child.name, patch)
            return {**actual, **patch}, True
        except KubeApiError as error:
            raise classify(error, what) from None

    def _prune(self, feed: Feed, wanted: set[tuple[str, str]]) -> list[str]:
        """Delete children of this feed (or of its deleted predecessor of the same name, whose leftovers the
        garbage collector may not have reached yet) that the spec no longer asks for (the expiry CronJob when
        coldDays → 0)."""
        deleted = []
        for kind in CHILD_KINDS:
            try:
                for item in self._kube.list_owned(kind, feed.namespace, feed.name, FEED_LABEL):
                    name = str(item["metadata"]["name"])
                    if (kind, name) not in wanted and (
                        _is_owned_by(item, feed) or _is_owned_by_predecessor(item, feed)
                    ):
                        self._kube.delete(kind, feed.namespace, name)
                        deleted.append(f"{kind}/{name} (deleted)")
            except KubeApiError as error:
                raise classify(error, f"{kind} children") from None
        return deleted

    def _write_status(self, body: Mapping[str, Any], outcome: Outcome) -> None:
        metadata = body.get("metadata") or {}
        old = body.get("status") or {}
        now_iso = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        patch = status_patch(outcome, old, now_iso)
        if not status_differs(patch, old):
            return
        try:
            self._kube.merge_patch(
                "ExchangeFeed", str(metadata["namespace"]), str(metadata["name"]), {"status": patch}, status=True
            )
        except KubeApiError as error:
            if error.status == 404:
                return  # the feed was deleted meanwhile: nothing to report on
            raise classify(error, f"ExchangeFeed/{metadata.get('name')}/status") from None


def _children_names(desired: list[Child]) -> dict[str, Any]:
    return {
        "configMap": next(child.name for child in desired if child.kind == "ConfigMap"),
        "deployment": next(child.name for child in desired if child.kind == "Deployment"),
        "service": next(child.name for child in desired if child.kind == "Service"),
        "cronJobs": [child.name for child in desired if child.kind == "CronJob"],
    }


def _available(deployment: Mapping[str, Any] | None) -> bool:
    """The collector runs the current template: the Deployment controller saw it and a pod is available."""
    if not deployment:
        return False
    status = deployment.get("status") or {}
    generation = (deployment.get("metadata") or {}).get("generation", 0)
    return int(status.get("observedGeneration", -1)) >= int(generation) and int(status.get("availableReplicas", 0)) >= 1
