"""Query: MarketDataService for live and backtest access (the skeleton holds the edges)."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import ClassVar

from tickstrata.common.grpc_app import GrpcRedisApp
from tickstrata.common.grpc_server import Registrar
from tickstrata.marketdata.v1 import market_data_service_pb2_grpc as pb_grpc
from tickstrata.query.servicer import MarketDataService
from tickstrata.query.settings import QuerySettings


class QueryApp(GrpcRedisApp[QuerySettings]):
    name: ClassVar[str] = "query"
    grpc_service_names: ClassVar[Sequence[str]] = ("tickstrata.marketdata.v1.MarketDataService",)

    def registrars(self) -> Sequence[Registrar]:
        return [functools.partial(pb_grpc.add_MarketDataServiceServicer_to_server, MarketDataService(self.redis))]
