"""The validator's Redis side beyond the streams: completeness out (the hash per exchange for the ExchangeFeed column
and the `up` view, plus OpenTelemetry gauges for Grafana; counts over a rolling window ending now), and the
operator's backfill routes in."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import redis.asyncio as aioredis
from opentelemetry import metrics

from tickstrata.common.backfill_routes import BACKFILL_ROUTES_PREFIX, parse_address
from tickstrata.common.clock import market_time_ns
from tickstrata.common.completeness import (
    FIELD_UPDATED_NS,
    FIELD_WINDOW_SECS,
    BucketCounts,
    BucketState,
    completeness_key,
    completeness_percent,
)
from tickstrata.validator.book import LedgerBook

NS_PER_SEC = 1_000_000_000


class CompletenessPublisher:
    def __init__(
        self,
        redis: aioredis.Redis,
        book: LedgerBook,
        *,
        window_secs: int,
        meter: metrics.Meter | None = None,
        clock_ns: Callable[[], int] = market_time_ns,
    ) -> None:
        self._redis = redis
        self._book = book
        self._window_secs = window_secs
        self._clock_ns = clock_ns
        self.latest: dict[str, BucketCounts] = {}
        """The last published counts per exchange (the gauges read them)."""
        meter = meter or metrics.get_meter(__name__)
        meter.create_observable_gauge(
            "tickstrata.validator.completeness",
            [self._observe_percent],
            unit="%",
            description="Accounted 1-minute buckets over classified ones, per exchange, over the rolling window",
        )
        meter.create_observable_gauge(
            "tickstrata.validator.buckets",
            [self._observe_buckets],
            unit="{bucket}",
            description="1-minute buckets per exchange and state over the rolling window",
        )
        meter.create_observable_gauge(
            "tickstrata.validator.open_gaps",
            [self._observe_gaps],
            unit="{gap}",
            description="Gaps not yet resolved or given up, per exchange",
        )

    def _observe_percent(self, _options: metrics.CallbackOptions) -> Iterable[metrics.Observation]:
        for exchange, counts in list(self.latest.items()):
            yield metrics.Observation(float(completeness_percent(counts)), {"exchange": exchange})

    def _observe_buckets(self, _options: metrics.CallbackOptions) -> Iterable[metrics.Observation]:
        for exchange, counts in list(self.latest.items()):
            for state in BucketState:
                yield metrics.Observation(getattr(counts, state.value), {"exchange": exchange, "state": str(state)})

    def _observe_gaps(self, _options: metrics.CallbackOptions) -> Iterable[metrics.Observation]:
        for exchange in list(self.latest):
            yield metrics.Observation(sum(1 for _ in self._book.gaps.open_gaps(exchange)), {"exchange": exchange})

    async def publish(self) -> None:
        now_ns = self._clock_ns()
        start_ns = now_ns - self._window_secs * NS_PER_SEC
        pipe: Any = self._redis.pipeline(transaction=False)
        for exchange in self._book.exchanges():
            fields: dict[str, str] = {FIELD_WINDOW_SECS: str(self._window_secs), FIELD_UPDATED_NS: str(now_ns)}
            total = BucketCounts()
            for symbol in self._book.symbols(exchange):
                counts = self._book.counts(exchange, symbol, start_ns, now_ns, now_ns)
                fields[symbol] = counts.encode()
                total += counts
            self.latest[exchange] = total
            pipe.hset(completeness_key(exchange), mapping=fields)
        await pipe.execute()


async def read_backfill_routes(redis: aioredis.Redis) -> dict[tuple[str, str], str]:
    """Every (exchange, symbol) → BackfillService address the operator published; malformed entries skipped."""
    routes: dict[tuple[str, str], str] = {}
    async for raw in redis.scan_iter(match=f"{BACKFILL_ROUTES_PREFIX}*", _type="hash"):
        key = raw.decode() if isinstance(raw, bytes) else str(raw)
        exchange = key.removeprefix(BACKFILL_ROUTES_PREFIX)
        fields: Any = await redis.hgetall(key)
        for symbol, address in fields.items():
            try:
                routes[(exchange, symbol.decode() if isinstance(symbol, bytes) else symbol)] = parse_address(address)
            except ValueError:
                continue
    return routes
