"""The latest-price RPCs: `GetLatestPrice` from the Redis cache and the live `SubscribeLatest` stream."""

from __future__ import annotations

import gc
import logging
import time
from collections.abc import AsyncIterator, Sequence
from typing import Any, Final

import grpc
import redis.asyncio as aioredis
from opentelemetry.metrics import Meter
from redis.exceptions import RedisError

from tickstrata.common.health import CheckResult
from tickstrata.marketdata.v1 import market_data_service_pb2 as pb
from tickstrata.query.bad_values import BadValues
from tickstrata.query.latest import (
    InvalidLatestPriceRequestError,
    RawValue,
    Rejected,
    build_response,
    cache_keys,
    cache_value_problem,
    checked_value,
    exchanges_from_keys,
    parse_request,
    price_message,
    venue_scan_pattern,
)
from tickstrata.query.live import LivePrices, LiveReaderFailedError, updates
from tickstrata.query.mirror import PriceMirror
from tickstrata.query.mirror_tracker import MirrorTracker
from tickstrata.query.settings import QuerySettings

Context = grpc.aio.ServicerContext[Any, Any]

logger = logging.getLogger(__name__)

SCAN_COUNT: Final = 1000
"""Keys Redis examines per SCAN step when looking for every venue of a symbol (without the mirror)."""
PINGS_PER_MAX_LAG: Final = 4
"""Liveness pings per `latest_mirror_max_lag_ms`: a pong may be up to 3/4 of the bound late before the mirror
stops serving."""


class LatestRpcs:
    """Owns everything the latest-price RPCs need (the Redis client is the app's; this class never closes it)."""

    def __init__(self, redis: aioredis.Redis, settings: QuerySettings, meter: Meter) -> None:
        self._redis = redis
        self._settings = settings
        self.bad_values = BadValues(meter)
        self._live = LivePrices(redis, block_ms=settings.live_block_ms, bad_values=self.bad_values)
        self._mirror: PriceMirror | None = None
        self._tracker: MirrorTracker | None = None
        if settings.latest_mirror:
            max_lag_ms = settings.latest_mirror_max_lag_ms
            self._mirror = PriceMirror(max_lag_ns=max_lag_ms * 1_000_000, check=cache_value_problem)
            self._tracker = MirrorTracker(redis, self._mirror, ping_interval_secs=max_lag_ms / PINGS_PER_MAX_LAG / 1000)

    async def start(self) -> None:
        """Start the shared reader of the trade streams and the mirror's tracking; called before the gRPC server
        accepts calls (the mirror goes live in the background: until then reads go to Redis)."""
        # Move every object alive now (modules, protobuf descriptors, pandas, pyarrow, grpc: most of the heap)
        # out of the collector's reach: a full collection then scans only what the service made since, which
        # took gen-2 pauses from 20-45 ms to ~1 ms in bench_query_latest.py (the p99 of a ~1 ms call).
        gc.freeze()
        await self._live.start()
        if self._tracker is not None:
            await self._tracker.start()

    async def close(self) -> None:
        """End every subscription, the reader and the tracking; called once the gRPC server stops taking calls."""
        await self._live.close()
        if self._tracker is not None:
            await self._tracker.close()

    async def live_ready(self) -> CheckResult:
        """Readiness: false once SubscribeLatest's shared reader has died (its subscribers got UNAVAILABLE)."""
        return await self._live.ready()

    def mirror_serves(self) -> bool:
        """True when GetLatestPrice is answered from the in-process mirror right now (false: from Redis)."""
        return self._mirror is not None and self._mirror.serves(time.monotonic_ns())

    async def _cached(self, symbol: str, exchanges: Sequence[str]) -> tuple[list[str], list[RawValue]]:
        """The cache values of `symbol` on `exchanges` (every venue holding it when empty), same order."""
        mirror = self._mirror
        if mirror is not None and mirror.serves(time.monotonic_ns()):
            return await self._mirrored(mirror, symbol, exchanges)
        if not exchanges:
            keys = [key async for key in self._redis.scan_iter(match=venue_scan_pattern(symbol), count=SCAN_COUNT)]
            exchanges = exchanges_from_keys(keys, symbol)
        fetched: list[bytes | str | None] = await self._redis.mget(cache_keys(symbol, exchanges)) if exchanges else []
        return list(exchanges), list[RawValue](fetched)

    async def _mirrored(
        self, mirror: PriceMirror, symbol: str, exchanges: Sequence[str]
    ) -> tuple[list[str], list[RawValue]]:
        """From the copy; a key it lacks but Redis may hold is read (one MGET for all of them) and kept. A key
        the copy knows to be bad comes back as `Rejected` without a read."""
        named = list(exchanges) if exchanges else mirror.venues(symbol)
        keys = cache_keys(symbol, named)
        values: list[RawValue] = []
        for key in keys:
            reason = mirror.rejected(key)
            values.append(mirror.get(key) if reason is None else Rejected(reason))
        unknown = [i for i, value in enumerate(values) if value is None and mirror.holds(named[i], symbol)]
        if unknown:
            unknown_keys = [keys[i] for i in unknown]
            started = mirror.read_started()
            fetched: list[bytes | str | None] = await self._redis.mget(unknown_keys)
            mirror.read_done(started, unknown_keys, fetched)
            for i, value in zip(unknown, fetched, strict=True):
                values[i] = value
        return named, values

    async def get_latest_price(self, request: pb.GetLatestPriceRequest, context: Context) -> pb.GetLatestPriceResponse:
        try:
            query = parse_request(request)
        except InvalidLatestPriceRequestError as exc:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
            raise AssertionError("context.abort always raises") from None
        try:
            exchanges, raw_values = await self._cached(query.symbol, query.exchanges)
        except (RedisError, OSError) as exc:
            logger.warning("latest-price cache unreachable", extra={"error": repr(exc)})
            await context.abort(grpc.StatusCode.UNAVAILABLE, f"latest-price cache unreachable: {exc}")
            raise AssertionError("context.abort always raises") from None
        response, corrupt = build_response(
            query, exchanges, raw_values, now_ns=time.time_ns(), stale_after_ms=self._settings.stale_after_ms
        )
        for item in corrupt:
            self.bad_values.record("cache", f"{item.exchange}:{query.symbol}", item.reason)
        return response

    async def subscribe_latest(
        self, request: pb.SubscribeLatestRequest, context: Context
    ) -> AsyncIterator[pb.SubscribeLatestResponse]:
        symbols = [symbol.strip().upper() for symbol in request.symbols if symbol.strip()]
        if not symbols:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "symbols: name at least one symbol, e.g. BTC-USDT")
        if request.min_interval_ns < 0:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "min_interval_ns cannot be negative")
        exchanges = [exchange.strip().lower() for exchange in request.exchanges if exchange.strip()]
        # Subscribe before the snapshot: a trade landing between the two is then sent, not lost.
        try:
            subscription = self._live.subscribe(symbols, exchanges, request.min_interval_ns)
        except LiveReaderFailedError as exc:
            await context.abort(grpc.StatusCode.UNAVAILABLE, f"live prices unavailable: {exc}")
            raise AssertionError("context.abort always raises") from None
        stale_after_ms = self._settings.stale_after_ms
        try:
            for symbol in symbols:
                try:
                    named, values = await self._cached(symbol, exchanges)
                except (RedisError, OSError) as exc:
                    await context.abort(grpc.StatusCode.UNAVAILABLE, f"latest-price cache unreachable: {exc}")
                    raise AssertionError("context.abort always raises") from None
                for exchange, raw in zip(named, values, strict=True):
                    if raw is None:
                        continue
                    value = raw if isinstance(raw, Rejected) else checked_value(raw)
                    if isinstance(value, Rejected):
                        self.bad_values.record("cache", f"{exchange}:{symbol}", value.reason)
                        continue
                    subscription.conflator.last_sent_ns[(exchange, symbol)] = time.time_ns()
                    message = price_message(
                        exchange, symbol, value, now_ns=time.time_ns(), stale_after_ms=stale_after_ms
                    )
                    yield pb.SubscribeLatestResponse(price=message)
            try:
                async for (exchange, symbol), value in updates(subscription, clock_ns=time.time_ns):
                    message = price_message(
                        exchange, symbol, value, now_ns=time.time_ns(), stale_after_ms=stale_after_ms
                    )
                    yield pb.SubscribeLatestResponse(price=message)
            except LiveReaderFailedError as exc:
                await context.abort(grpc.StatusCode.UNAVAILABLE, f"live prices stopped: {exc}")
        finally:
            self._live.unsubscribe(subscription)
