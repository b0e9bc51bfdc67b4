"""Collector settings: environment variables prefixed `COLLECTOR_`."""

from __future__ import annotations

from pydantic import Field

from tickstrata.common.grpc_app import GrpcRedisSettings
from tickstrata.common.settings import service_config


class CollectorSettings(GrpcRedisSettings):
    model_config = service_config("COLLECTOR_")

    health_port: int = Field(default=8081, ge=0, le=65535)
    """Port of the HTTP health server."""

    grpc_port: int = Field(default=50051, ge=0, le=65535)
    """Port of the BackfillService gRPC server."""
