"""MarketDataService: a thin gRPC face over the latest-price RPCs and the bulk history RPCs.

The two halves share nothing but the service definition: latest prices come from the Redis cache, history from
the storage tiers. Each half owns its resources and its start/close; this class only routes calls.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import grpc

from tickstrata.marketdata.v1 import market_data_service_pb2 as pb
from tickstrata.marketdata.v1 import market_data_service_pb2_grpc as pb_grpc
from tickstrata.query.history_rpcs import HistoryRpcs
from tickstrata.query.latest_rpcs import LatestRpcs

Context = grpc.aio.ServicerContext[Any, Any]


class MarketDataService(pb_grpc.MarketDataServiceServicer):
    def __init__(self, latest: LatestRpcs, history: HistoryRpcs) -> None:
        self._latest = latest
        self._history = history

    async def GetLatestPrice(self, request: pb.GetLatestPriceRequest, context: Context) -> pb.GetLatestPriceResponse:
        return await self._latest.get_latest_price(request, context)

    async def SubscribeLatest(
        self, request: pb.SubscribeLatestRequest, context: Context
    ) -> AsyncIterator[pb.SubscribeLatestResponse]:
        async for item in self._latest.subscribe_latest(request, context):
            yield item

    async def GetCandles(self, request: pb.GetCandlesRequest, context: Context) -> AsyncIterator[pb.GetCandlesResponse]:
        async for item in self._history.get_candles(request, context):
            yield item

    async def GetTrades(self, request: pb.GetTradesRequest, context: Context) -> AsyncIterator[pb.GetTradesResponse]:
        async for item in self._history.get_trades(request, context):
            yield item

    async def Replay(self, request: pb.ReplayRequest, context: Context) -> AsyncIterator[pb.ReplayResponse]:
        async for item in self._history.replay(request, context):
            yield item
