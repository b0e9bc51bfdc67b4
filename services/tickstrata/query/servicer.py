"""MarketDataService: latest prices, candles, trades, replay and live subscriptions."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import grpc

from tickstrata.common.grpc_server import abort_unimplemented, unimplemented_stream
from tickstrata.marketdata.v1 import market_data_service_pb2 as pb
from tickstrata.marketdata.v1 import market_data_service_pb2_grpc as pb_grpc

Context = grpc.aio.ServicerContext[Any, Any]


class MarketDataService(pb_grpc.MarketDataServiceServicer):
    """Skeleton: every RPC answers UNIMPLEMENTED, naming itself, until the query issue lands."""

    async def GetLatestPrice(self, request: pb.GetLatestPriceRequest, context: Context) -> pb.GetLatestPriceResponse:
        await abort_unimplemented(context, "GetLatestPrice")

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
