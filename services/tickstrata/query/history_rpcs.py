"""The bulk history RPCs: candles, trades and replay as Arrow record batches, read through the tier router."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import grpc

from tickstrata.common.grpc_server import unimplemented_stream
from tickstrata.marketdata.v1 import market_data_service_pb2 as pb
from tickstrata.query.settings import QuerySettings

Context = grpc.aio.ServicerContext[Any, Any]


class HistoryRpcs:
    """Owns everything the bulk RPCs need (storage connections, the tier router)."""

    def __init__(self, settings: QuerySettings) -> None:
        self._settings = settings

    async def start(self) -> None:
        """Open storage connections; called before the gRPC server accepts calls."""

    async def close(self) -> None:
        """Close storage connections; called after the gRPC server has stopped."""

    async def get_candles(
        self, request: pb.GetCandlesRequest, context: Context
    ) -> AsyncIterator[pb.GetCandlesResponse]:
        async for item in unimplemented_stream(context, "GetCandles"):
            yield item

    async def get_trades(self, request: pb.GetTradesRequest, context: Context) -> AsyncIterator[pb.GetTradesResponse]:
        async for item in unimplemented_stream(context, "GetTrades"):
            yield item

    async def replay(self, request: pb.ReplayRequest, context: Context) -> AsyncIterator[pb.ReplayResponse]:
        async for item in unimplemented_stream(context, "Replay"):
            yield item
