"""Operator settings: environment variables prefixed `OPERATOR_`."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from tickstrata.common.settings import ServiceSettings, service_config


class OperatorSettings(ServiceSettings):
    model_config = service_config("OPERATOR_")

    health_port: int = Field(default=8090, ge=0, le=65535)
    """Port of the HTTP health server (`/healthz` is the liveness probe; `/readyz` says the watches are up)."""

    namespace: str = ""
    """Namespace to watch for ExchangeFeed resources; empty watches the whole cluster."""

    resync_interval_secs: float = Field(default=30.0, ge=1.0, le=3600.0)
    """How often every feed is reconciled even without a change: the bound on how long drift the watches missed
    (an event lost in a reconnect) can last."""

    # ---- what the children are built with ------------------------------------------------------------------

    image: str = Field(default="ghcr.io/tickstrata/tickstrata:0.1.0", min_length=1)
    """Image of the collector and tierer pods (the chart passes its own image)."""

    image_pull_policy: Literal["Always", "IfNotPresent", "Never"] = "IfNotPresent"

    redis_url: str = Field(default="redis://tickstrata-redis:6379/0", pattern=r"^rediss?://")
    """Redis the collectors publish to."""

    questdb_http_url: str = Field(default="http://tickstrata-questdb:9000", pattern=r"^https?://")
    """The hot tier, for the tierer's moves."""

    clickhouse_dsn: str = Field(default="http://tickstrata-clickhouse:8123/tickstrata", pattern=r"^https?://")
    """The warm tier, for the tierer's moves: a ClickHouse server. Never the embedded `chdb://` engine: its directory
    would live in the tierer pod and go with it, after the moved days had left QuestDB."""

    cold_store_url: str = "s3://tickstrata-cold/market-data"
    """The cold tier, for the tierer's moves."""

    s3_secret_name: str = ""
    """A Secret in the feed's namespace with the S3 credentials (AWS_* keys) for the tierer pods, passed by
    reference: the operator never reads Secrets."""

    otel_exporter_otlp_endpoint: str = ""
    """OTLP endpoint given to the children (`OTEL_EXPORTER_OTLP_ENDPOINT`); empty: no export."""

    stats_redis_url: str = Field(default="", pattern=r"^(|off|rediss?://.*)$")
    """Redis holding the collectors' totals and the validator's completeness counts, for the status columns
    (events/s, last event age, completeness), read once per resync interval; empty: `redis_url`; `off`: none."""
