"""The latest-price RPCs: `GetLatestPrice` from the Redis cache and the live `SubscribeLatest` stream."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Any, Final

import grpc
import redis.asyncio as aioredis
from redis.exceptions import RedisError

from tickstrata.common.grpc_server import unimplemented_stream
from tickstrata.marketdata.v1 import market_data_service_pb2 as pb
from tickstrata.query.latest import (
    InvalidLatestPriceRequestError,
    build_response,
    cache_keys,
    exchanges_from_keys,
    parse_request,
    venue_scan_pattern,
)
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

    async def start(self) -> None:
        """Start background work (none yet); called before the gRPC server accepts calls."""

    async def close(self) -> None:
        """Stop background work; called after the gRPC server has stopped."""

    async def get_latest_price(self, request: pb.GetLatestPriceRequest, context: Context) -> pb.GetLatestPriceResponse:
        try:
            query = parse_request(request)
        except InvalidLatestPriceRequestError as exc:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
            raise AssertionError("context.abort always raises") from None
        try:
            if query.all_venues:
                keys = [
                    key async for key in self._redis.scan_iter(match=venue_scan_pattern(query.symbol), count=SCAN_COUNT)
                ]
                exchanges = exchanges_from_keys(keys, query.symbol)
            else:
                exchanges = list(query.exchanges)
            raw_values: list[bytes | str | None] = (
                await self._redis.mget(cache_keys(query.symbol, exchanges)) if exchanges else []
            )
        except (RedisError, OSError) as exc:
            logger.warning("latest-price cache unreachable", extra={"error": repr(exc)})
            await context.abort(grpc.StatusCode.UNAVAILABLE, f"latest-price cache unreachable: {exc}")
            raise AssertionError("context.abort always raises") from None
        response, corrupt = build_response(query, exchanges, raw_values)
        for item in corrupt:
            logger.warning(
                "undecodable latest-price cache value",
                extra={"exchange": item.exchange, "symbol": query.symbol, "reason": item.reason},
            )
        return response

    async def subscribe_latest(
        self, request: pb.SubscribeLatestRequest, context: Context
    ) -> AsyncIterator[pb.SubscribeLatestResponse]:
        async for item in unimplemented_stream(context, "SubscribeLatest"):
            yield item
