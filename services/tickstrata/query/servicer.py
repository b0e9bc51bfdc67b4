"""MarketDataService: latest prices, candles, trades, replay and live subscriptions."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Any, Final

import grpc
import redis.asyncio as aioredis
from redis.exceptions import RedisError

from tickstrata.common.grpc_server import unimplemented_stream
from tickstrata.marketdata.v1 import market_data_service_pb2 as pb
from tickstrata.marketdata.v1 import market_data_service_pb2_grpc as pb_grpc
from tickstrata.query.latest import (
    InvalidLatestPriceRequestError,
    build_response,
    cache_keys,
    exchanges_from_keys,
    parse_request,
    venue_scan_pattern,
)

Context = grpc.aio.ServicerContext[Any, Any]

logger = logging.getLogger(__name__)

SCAN_COUNT: Final = 1000
"""Keys Redis examines per SCAN step when looking for every venue of a symbol."""


class MarketDataService(pb_grpc.MarketDataServiceServicer):
    """GetLatestPrice reads the latest-price cache; the bulk and streaming RPCs answer UNIMPLEMENTED for now."""

    def __init__(self, redis: aioredis.Redis) -> None:
        self._redis = redis

    async def GetLatestPrice(self, request: pb.GetLatestPriceRequest, context: Context) -> pb.GetLatestPriceResponse:
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

    async def GetCandles(self, request: pb.GetCandlesRequest, context: Context) -> AsyncIterator[pb.GetCandlesResponse]:
        async for item in unimplemented_stream(context, "GetCandles"):
            yield item

    async def GetTrades(self, request: pb.GetTradesRequest, context: Context) -> AsyncIterator[pb.GetTradesResponse]:
        async for item in unimplemented_stream(context, "GetTrades"):
            yield item

    async def Replay(self, request: pb.ReplayRequest, context: Context) -> AsyncIterator[pb.ReplayResponse]:
        async for item in unimplemented_stream(context, "Replay"):
            yield item

    async def SubscribeLatest(
        self, request: pb.SubscribeLatestRequest, context: Context
    ) -> AsyncIterator[pb.SubscribeLatestResponse]:
        async for item in unimplemented_stream(context, "SubscribeLatest"):
            yield item
