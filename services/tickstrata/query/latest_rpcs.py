"""The latest-price RPCs: `GetLatestPrice` from the Redis cache and the live `SubscribeLatest` stream."""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import AsyncIterator, Sequence
from typing import Any, Final

import grpc
import redis.asyncio as aioredis
from redis.exceptions import RedisError

from tickstrata.common.streams import CacheValueDecodeError, decode_latest_price
from tickstrata.marketdata.v1 import market_data_service_pb2 as pb
from tickstrata.query.latest import (
    InvalidLatestPriceRequestError,
    build_response,
    cache_keys,
    exchanges_from_keys,
    parse_request,
    price_message,
    venue_scan_pattern,
)
from tickstrata.query.live import LivePrices, updates
from tickstrata.query.settings import QuerySettings

Context = grpc.aio.ServicerContext[Any, Any]

logger = logging.getLogger(__name__)

SCAN_COUNT: Final = 1000
"""Keys Redis examines per SCAN step when looking for every venue of a symbol."""


class LatestRpcs:
    """Owns everything the latest-price RPCs need (the Redis client is the app's; this class never closes it)."""

    def __init__(self, redis: aioredis.Redis, settings: QuerySettings) -> None:
        self._redis = redis
        self._settings = settings
        self._live = LivePrices(redis, block_ms=settings.live_block_ms)

    async def start(self) -> None:
        """Start the shared reader of the trade streams; called before the gRPC server accepts calls."""
        await self._live.start()

    async def close(self) -> None:
        """End every subscription and the reader; called once the gRPC server stops taking calls."""
        await self._live.close()

    async def _cached(self, symbol: str, exchanges: Sequence[str]) -> tuple[list[str], list[bytes | str | None]]:
        if not exchanges:
            keys = [key async for key in self._redis.scan_iter(match=venue_scan_pattern(symbol), count=SCAN_COUNT)]
            exchanges = exchanges_from_keys(keys, symbol)
        values: list[bytes | str | None] = await self._redis.mget(cache_keys(symbol, exchanges)) if exchanges else []
        return list(exchanges), values

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
            logger.warning(
                "undecodable latest-price cache value",
                extra={"exchange": item.exchange, "symbol": query.symbol, "reason": item.reason},
            )
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
        subscription = self._live.subscribe(symbols, exchanges, request.min_interval_ns)
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
                    with contextlib.suppress(CacheValueDecodeError):
                        value = decode_latest_price(raw if isinstance(raw, bytes) else raw.encode())
                        subscription.conflator.last_sent_ns[(exchange, symbol)] = time.time_ns()
                        message = price_message(
                            exchange, symbol, value, now_ns=time.time_ns(), stale_after_ms=stale_after_ms
                        )
                        yield pb.SubscribeLatestResponse(price=message)
            async for (exchange, symbol), value in updates(subscription, clock_ns=time.time_ns):
                message = price_message(exchange, symbol, value, now_ns=time.time_ns(), stale_after_ms=stale_after_ms)
                yield pb.SubscribeLatestResponse(price=message)
        finally:
            self._live.unsubscribe(subscription)
