"""The periodic resync: every feed reconciled every `OPERATOR_RESYNC_INTERVAL_SECS`, whatever the watches saw.

Why not a kopf timer: kopf protects timers with a finalizer on every feed, and a finalizer makes a feed
undeletable while the operator is down. This loop lists the feeds itself (one call), so deletion stays with the
garbage collector and the bound on drift the watches missed stays the interval.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping
from typing import Any

from redis.exceptions import RedisError

from tickstrata_operator.feed import VENUES
from tickstrata_operator.feed_stats import Sample, StatsReader, completeness_text, stats_feed_name, status_fields
from tickstrata_operator.kube_io import Kube, KubeApiError
from tickstrata_operator.reconcile import PermanentReconcileError, Reconciler, TemporaryReconcileError
from tickstrata_operator.routes import backfill_routes

logger = logging.getLogger(__name__)


def _venue_and_symbols(feed: Mapping[str, Any]) -> tuple[str, list[str]] | None:
    """The exchange id whose completeness hash holds the feed's counts, and its symbols; None for a spec the
    reconciler refuses anyway."""
    spec = feed.get("spec") or {}
    venue = VENUES.get((str(spec.get("exchange")), str(spec.get("market"))))
    symbols = spec.get("symbols")
    if venue is None or not isinstance(symbols, list):
        return None
    return venue, [str(symbol) for symbol in symbols]


class StatsTracker:
    """The previous sample of every feed, and the status fields written from them and from the validator's
    completeness counts."""

    def __init__(self, reader: StatsReader, *, routes_ttl_secs: int = 90) -> None:
        self._reader = reader
        self._routes_ttl_secs = routes_ttl_secs
        self._previous: dict[str, Sample | None] = {}
        self._warned = False
        self._malformed: set[str] = set()
        """Feeds whose completeness counts were malformed at the last reading (warned once, until they heal)."""

    def _completeness(
        self, name: str, feed: Mapping[str, Any], hashes: Mapping[str, Mapping[bytes, bytes] | RedisError]
    ) -> dict[str, Any]:
        """`{"completeness": "99.9%"}`, `{"completeness": None}` (nothing counted: the field is removed) or `{}`
        (malformed counts: the previous value stays)."""
        found = _venue_and_symbols(feed)
        if found is None:
            return {}
        venue, symbols = found
        fields = hashes.get(venue)
        try:
            if isinstance(fields, RedisError):
                raise ValueError(f"the completeness hash of {venue} cannot be read as a hash: {fields}")
            text = completeness_text(fields or {}, symbols)
        except ValueError as error:
            if name not in self._malformed:
                logger.warning(
                    "completeness counts malformed; the feed's completeness keeps its previous value",
                    extra={"feed": name, "exchange": venue, "error": str(error)},
                )
                self._malformed.add(name)
            return {}
        self._malformed.discard(name)
        return {"completeness": text}

    async def update(self, kube: Kube, feeds: list[Mapping[str, Any]]) -> None:
        names = {stats_feed_name(f["metadata"]["namespace"], f["metadata"]["name"]): f for f in feeds}
        exchanges = sorted({found[0] for f in feeds if (found := _venue_and_symbols(f)) is not None})
        try:
            reading = await asyncio.to_thread(self._reader.read, list(names), exchanges, time.monotonic_ns())
        except (RedisError, OSError) as error:
            if not self._warned:  # once per outage: every interval would repeat it
                logger.warning("feed statistics unavailable: Redis unreachable", extra={"error": repr(error)})
                self._warned = True
            return
        self._warned = False
        try:
            await asyncio.to_thread(self._reader.write_routes, backfill_routes(feeds), self._routes_ttl_secs)
        except (RedisError, OSError) as error:
            logger.warning("backfill routes not published", extra={"error": repr(error)})
        samples = reading.samples
        now_wall_ns = time.time_ns()
        for name, feed in names.items():
            fields = status_fields(self._previous.get(name), samples[name], now_wall_ns)
            fields.update(self._completeness(name, feed, reading.completeness))
            self._previous[name] = samples[name]
            old = feed.get("status") or {}
            if not fields or all(old.get(key) == value for key, value in fields.items()):
                continue
            metadata = feed["metadata"]
            try:
                await asyncio.to_thread(
                    kube.merge_patch,
                    "ExchangeFeed",
                    metadata["namespace"],
                    metadata["name"],
                    {"status": fields},
                    status=True,
                )
            except KubeApiError as error:
                logger.debug("feed statistics not written", extra={"feed": name, "error": str(error)})
        self._previous = {name: self._previous[name] for name in names}  # forget deleted feeds
        self._malformed &= set(names)

    def close(self) -> None:
        self._reader.close()


async def resync_once(kube: Kube, reconciler: Reconciler, namespace: str, stats: StatsTracker | None = None) -> int:
    """Reconcile every feed once, then refresh their statistics; return how many reconciled without error."""
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
    if stats is not None:
        await stats.update(kube, [body for body in feeds if not (body.get("metadata") or {}).get("deletionTimestamp")])
    return done


async def resync_forever(
    kube: Kube,
    reconciler: Reconciler,
    namespace: str,
    *,
    interval_secs: float,
    stop: asyncio.Event,
    stats: StatsTracker | None = None,
) -> None:
    # One waiter for the whole life, made on this task's first step, which runs before kopf's (the app spawns this
    # task first). Not `wait_for(stop.wait())` per interval: that makes a new task each time, and kopf, when it stops
    # on its own, waits up to 5 s for every task created after it started.
    stopper = asyncio.ensure_future(stop.wait())
    try:
        while True:
            await asyncio.wait({stopper}, timeout=interval_secs)
            if stopper.done():
                return
            await resync_once(kube, reconciler, namespace, stats)
    finally:
        stopper.cancel()
        if stats is not None:
            stats.close()
