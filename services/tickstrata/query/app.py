"""Query: MarketDataService for live and backtest access."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import ClassVar

from tickstrata.common.grpc_app import GrpcRedisApp
from tickstrata.common.grpc_server import Registrar
from tickstrata.common.lifecycle import ServiceContext
from tickstrata.marketdata.v1 import market_data_service_pb2_grpc as pb_grpc
from tickstrata.query.history_rpcs import HistoryRpcs
from tickstrata.query.latest_rpcs import LatestRpcs
from tickstrata.query.servicer import MarketDataService
from tickstrata.query.settings import QuerySettings


class QueryApp(GrpcRedisApp[QuerySettings]):
    name: ClassVar[str] = "query"
    grpc_service_names: ClassVar[Sequence[str]] = ("tickstrata.marketdata.v1.MarketDataService",)

    def __init__(self, settings: QuerySettings) -> None:
        super().__init__(settings)
        self._latest: LatestRpcs | None = None
        self._history: HistoryRpcs | None = None

    async def start(self, context: ServiceContext) -> None:
        # Both halves are ready before the server takes its first call.
        meter = context.telemetry.meter
        self._latest = LatestRpcs(self._open_redis(context), self.settings, meter)
        self._history = HistoryRpcs(self.settings, meter, bad_values=self._latest.bad_values)
        await self._latest.start()
        await self._history.start()
        # SubscribeLatest's shared reader: if it dies, subscribers get UNAVAILABLE and the pod leaves the Service.
        context.health.add_check("live-prices", self._latest.live_ready)
        await super().start(context)

    def max_message_bytes(self) -> int | None:
        return self.settings.grpc_max_message_bytes

    def registrars(self) -> Sequence[Registrar]:
        if self._latest is None or self._history is None:
            raise RuntimeError("query has not started")
        service = MarketDataService(self._latest, self._history)
        return [functools.partial(pb_grpc.add_MarketDataServiceServicer_to_server, service)]

    async def close(self) -> None:
        if self._history is not None:
            await self._history.close()
        if self._latest is not None:
            await self._latest.close()
        await super().close()
