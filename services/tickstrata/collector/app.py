"""Collector: exchange WebSockets → Redis Streams; serves BackfillService (the skeleton holds the edges)."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import ClassVar

from tickstrata.backfill.v1 import backfill_service_pb2_grpc
from tickstrata.collector.servicer import BackfillService
from tickstrata.collector.settings import CollectorSettings
from tickstrata.common.grpc_app import GrpcRedisApp
from tickstrata.common.grpc_server import Registrar


class CollectorApp(GrpcRedisApp[CollectorSettings]):
    name: ClassVar[str] = "collector"
    grpc_service_names: ClassVar[Sequence[str]] = ("tickstrata.backfill.v1.BackfillService",)

    def registrars(self) -> Sequence[Registrar]:
        return [functools.partial(backfill_service_pb2_grpc.add_BackfillServiceServicer_to_server, BackfillService())]
