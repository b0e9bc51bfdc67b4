"""Writer settings: environment variables prefixed `WRITER_`."""

from __future__ import annotations

from pydantic import Field

from tickstrata.common.settings import RedisSettingsMixin, ServiceSettings, service_config


class WriterSettings(RedisSettingsMixin, ServiceSettings):
    model_config = service_config("WRITER_")

    health_port: int = Field(default=8082, ge=0, le=65535)
    """Port of the HTTP health server."""

    questdb_http_url: str = Field(default="http://127.0.0.1:9000", pattern=r"^https?://")
    """QuestDB's HTTP endpoint: ILP/HTTP ingestion and `/exec`."""
