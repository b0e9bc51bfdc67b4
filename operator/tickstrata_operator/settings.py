"""Operator settings: environment variables prefixed `OPERATOR_`."""

from __future__ import annotations

from pydantic import Field

from tickstrata.common.settings import ServiceSettings, service_config


class OperatorSettings(ServiceSettings):
    model_config = service_config("OPERATOR_")

    health_port: int = Field(default=8090, ge=0, le=65535)
    """Port of the HTTP health server."""

    namespace: str = ""
    """Namespace to watch for ExchangeFeed resources; empty watches the whole cluster."""
