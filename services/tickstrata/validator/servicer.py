"""QualityService: completeness per bucket state, the gap list and invariant violations."""

from __future__ import annotations

from typing import Any

import grpc

from tickstrata.common.grpc_server import abort_unimplemented
from tickstrata.quality.v1 import quality_service_pb2 as pb
from tickstrata.quality.v1 import quality_service_pb2_grpc as pb_grpc


class QualityService(pb_grpc.QualityServiceServicer):
    """Skeleton: every RPC answers UNIMPLEMENTED, naming itself, until the validator issue lands."""

    async def GetCompleteness(
        self, request: pb.GetCompletenessRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.GetCompletenessResponse:
        await abort_unimplemented(context, "GetCompleteness")

    async def ListGaps(
        self, request: pb.ListGapsRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.ListGapsResponse:
        await abort_unimplemented(context, "ListGaps")

    async def ListViolations(
        self, request: pb.ListViolationsRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.ListViolationsResponse:
        await abort_unimplemented(context, "ListViolations")
