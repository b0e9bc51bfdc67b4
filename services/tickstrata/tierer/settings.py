"""Tierer settings: environment variables prefixed `TIERER_`."""

from __future__ import annotations

from pydantic import Field

from tickstrata.common.settings import ServiceSettings, service_config


class TiererSettings(ServiceSettings):
    model_config = service_config("TIERER_")

    health_port: int = Field(default=8084, ge=0, le=65535)
    """Port of the HTTP health server."""

    clickhouse_dsn: str = "chdb:///var/lib/tickstrata/warm"
    """Warm tier: `chdb:///abs/dir` (embedded engine) or `http(s)://user:pass@host:8123/db` (a server)."""

    cold_store_url: str = "file:///var/lib/tickstrata/cold"
    """Cold tier: `s3://bucket/prefix` or `file:///abs/dir` (the embedded default)."""
