"""Query settings: environment variables prefixed `QUERY_`."""

from __future__ import annotations

from pydantic import Field

from tickstrata.common.grpc_app import GrpcRedisSettings
from tickstrata.common.settings import service_config


class QuerySettings(GrpcRedisSettings):
    model_config = service_config("QUERY_")

    health_port: int = Field(default=8085, ge=0, le=65535)
    """Port of the HTTP health server."""

    grpc_port: int = Field(default=50055, ge=0, le=65535)
    """Port of the MarketDataService gRPC server."""
