"""Validator settings: environment variables prefixed `VALIDATOR_`."""

from __future__ import annotations

from pydantic import Field

from tickstrata.common.grpc_app import GrpcRedisSettings
from tickstrata.common.settings import service_config


class ValidatorSettings(GrpcRedisSettings):
    model_config = service_config("VALIDATOR_")

    health_port: int = Field(default=8083, ge=0, le=65535)
    """Port of the HTTP health server."""

    grpc_port: int = Field(default=50053, ge=0, le=65535)
    """Port of the QualityService gRPC server."""
