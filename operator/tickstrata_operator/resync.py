"""The periodic resync: every feed reconciled every `OPERATOR_RESYNC_INTERVAL_SECS`, whatever the watches saw.

Why not a kopf timer: kopf protects timers with a finalizer on every feed, and a finalizer makes a feed
undeletable while the operator is down. This loop lists the feeds itself (one call), so deletion stays with the
garbage collector and the bound on drift the watches missed stays the interval.
"""

from __future__ import annotations

import asyncio
import logging

from tickstrata_operator.kube_io import Kube, KubeApiError
from tickstrata_operator.reconcile import PermanentReconcileError, Reconciler, TemporaryReconcileError

logger = logging.getLogger(__name__)


async def resync_once(kube: Kube, reconciler: Reconciler, namespace: str) -> int:
    """Reconcile every feed once; return how many were reconciled without error."""
    try:
        feeds = await asyncio.to_thread(kube.list_feeds, namespace)
    except KubeApiError as error:
        logger.warning("resync: cannot list ExchangeFeeds; next interval retries", extra={"error": str(error)})
        return 0
    done = 0
    for body in feeds:
        metadata = body.get("metadata") or {}
        if metadata.get("deletionTimestamp"):
            continue
        try:
            await asyncio.to_thread(reconciler.reconcile, body)
        except (TemporaryReconcileError, PermanentReconcileError) as error:
            logger.warning("resync failed", extra={"feed": metadata.get("name"), "error": str(error)})
        else:
            done += 1
    return done


async def resync_forever(
    kube: Kube, reconciler: Reconciler, namespace: str, *, interval_secs: float, stop: asyncio.Event
) -> None:
    while True:
        try:
            await asyncio.wait_for(stop.wait(), timeout=interval_secs)
        except TimeoutError:
            await resync_once(kube, reconciler, namespace)
        else:
            return
