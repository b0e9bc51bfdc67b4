"""The kopf handlers: thin triggers of `Reconciler.reconcile`, nothing else.

Three ways a feed gets reconciled, so no drift outlives the resync interval:
- its own create, update (spec or metadata) and the operator's resume;
- any watch event of a child (labelled `app.kubernetes.io/managed-by: tickstrata-operator`): a child deleted or
  hand-edited is restored right away;
- the resync loop (`resync.py`), every `OPERATOR_RESYNC_INTERVAL_SECS`, for anything a watch missed (an event
  lost while the watch reconnected, the operator down).

No delete handler and no kopf timer (kopf guards both with a finalizer), hence no finalizer: children carry owner
references and the garbage collector deletes them with the feed, even while the operator is down.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any, Final

import kopf

from tickstrata_operator.children import FEED_LABEL, MANAGED_BY
from tickstrata_operator.feed import API_GROUP, API_VERSION, PLURAL
from tickstrata_operator.reconcile import PermanentReconcileError, Reconciler, TemporaryReconcileError
from tickstrata_operator.settings import OperatorSettings

logger = logging.getLogger(__name__)

ANNOTATION_PREFIX: Final = "tickstrata.io"
MAX_BACKOFF_SECS: Final = 60.0
CHILD_RESOURCES: Final = (
    ("", "v1", "configmaps"),
    ("apps", "v1", "deployments"),
    ("", "v1", "services"),
    ("batch", "v1", "cronjobs"),
)


def backoff_secs(retry: int) -> float:
    """1, 2, 4 ... 60 s: the delay before the `retry`-th retry of a temporary failure."""
    return min(MAX_BACKOFF_SECS, float(2 ** min(retry, 6)))


def _run(reconciler: Reconciler, body: Mapping[str, Any], retry: int) -> None:
    """Returns nothing: kopf would store a result in the status, which our schema does not hold."""
    try:
        reconciler.reconcile(body)
    except TemporaryReconcileError as error:
        raise kopf.TemporaryError(str(error), delay=backoff_secs(retry)) from None
    except PermanentReconcileError as error:
        raise kopf.PermanentError(str(error)) from None


def build_registry(reconciler: Reconciler, settings: OperatorSettings) -> kopf.OperatorRegistry:
    """A registry holding every handler, bound to `reconciler` (no module-level state: tests build their own)."""
    registry = kopf.OperatorRegistry()
    feeds = (API_GROUP, API_VERSION, PLURAL)

    @kopf.on.startup(registry=registry)
    def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
        settings.peering.standalone = True  # one replica (Recreate): no peering objects, no RBAC for them
        settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=ANNOTATION_PREFIX)
        settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
            prefix=ANNOTATION_PREFIX, key="last-handled-configuration"
        )
        settings.posting.level = logging.WARNING  # Kubernetes events for problems only, not every handler run
        settings.watching.server_timeout = 300
        settings.watching.client_timeout = 330
        settings.networking.request_timeout = 30

    @kopf.on.login(registry=registry)
    def login(**kwargs: Any) -> kopf.ConnectionInfo | None:
        # A registry of our own has none of kopf's default login handlers: use the same sources as
        # `kube_io.load_api_client` (in-cluster service account, else $KUBECONFIG).
        return kopf.login_via_client(**kwargs)

    @kopf.on.resume(*feeds, registry=registry)
    @kopf.on.create(*feeds, registry=registry)
    @kopf.on.update(*feeds, registry=registry)
    def feed_changed(body: kopf.Body, retry: int, **_: Any) -> None:
        _run(reconciler, body, retry)

    def child_event(body: kopf.Body, type: str | None, **_: Any) -> None:
        metadata = body.get("metadata") or {}
        feed_name = (metadata.get("labels") or {}).get(FEED_LABEL)
        if not feed_name or type is None:  # type None: the initial listing, which the feed's resume covers
            return
        try:
            reconciler.reconcile_by_name(str(metadata.get("namespace")), str(feed_name))
        except (TemporaryReconcileError, PermanentReconcileError) as error:
            logger.warning("reconcile after a child's change failed; the resync retries", extra={"error": str(error)})

    for group, version, plural in CHILD_RESOURCES:
        kopf.on.event(group, version, plural, labels={"app.kubernetes.io/managed-by": MANAGED_BY}, registry=registry)(
            child_event
        )

    return registry
