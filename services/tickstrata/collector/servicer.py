"""BackfillService: fetch a window from the venue's REST API and publish it through the normal path."""

from __future__ import annotations

from typing import Any

import grpc

from tickstrata.backfill.v1 import backfill_service_pb2 as pb
from tickstrata.backfill.v1 import backfill_service_pb2_grpc as pb_grpc
from tickstrata.common.grpc_server import abort_unimplemented


class BackfillService(pb_grpc.BackfillServiceServicer):
    """Skeleton: every RPC answers UNIMPLEMENTED, naming itself, until the collector issue lands."""

    async def Backfill(
        self, request: pb.BackfillRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.BackfillResponse:
        await abort_unimplemented(context, "Backfill")

    async def GetBackfillStatus(
        self, request: pb.GetBackfillStatusRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.GetBackfillStatusResponse:
        await abort_unimplemented(context, "GetBackfillStatus")
