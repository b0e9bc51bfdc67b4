"""Collector: exchange WebSockets → Redis Streams; serves BackfillService (the skeleton holds the edges)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

import grpc

from tickstrata.backfill.v1 import backfill_service_pb2_grpc
from tickstrata.collector.servicer import BackfillService
from tickstrata.collector.settings import CollectorSettings
from tickstrata.common.grpc_app import GrpcRedisApp
from tickstrata.common.grpc_server import Registrar


class CollectorApp(GrpcRedisApp[CollectorSettings]):
    name: ClassVar[str] = "collector"
    grpc_service_names: ClassVar[Sequence[str]] = ("tickstrata.backfill.v1.BackfillService",)

    def registrars(self) -> Sequence[Registrar]:
        servicer = BackfillService()

        def register(server: grpc.aio.Server) -> None:
            backfill_service_pb2_grpc.add_BackfillServiceServicer_to_server(servicer, server)

        return [register]
