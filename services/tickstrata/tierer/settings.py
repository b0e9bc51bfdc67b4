"""Tierer settings: environment variables prefixed `TIERER_`.

The tierer is a job: one run does one stage for one feed and exits (a CronJob per stage and feed, see
docs/operator.md). Every variable the operator sets on those CronJobs is declared here, and any other `TIERER_`
variable is refused at start-up, so the two cannot drift apart silently.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any, Self

from pydantic import Field, field_validator, model_validator
from pydantic_settings import NoDecode

from tickstrata.common.settings import ServiceSettings, service_config, split_csv


class Stage(StrEnum):
    """What one run does; the operator schedules each as its own CronJob."""

    HOT_TO_WARM = "hot-to-warm"
    """Copy the feed's whole days older than `hot_days` from QuestDB to ClickHouse; drop a day partition once
    every exchange in it is safely warm."""
    WARM_TO_COLD = "warm-to-cold"
    """Copy the feed's whole months older than `warm_days` from ClickHouse to Parquet; then drop them warm."""
    EXPIRE_COLD = "expire-cold"
    """Delete the feed's cold months older than `cold_days` (never when `cold_days` is 0)."""
    ALL = "all"
    """Every stage in order (what `tickstrata up` schedules locally)."""


class TiererSettings(ServiceSettings):
    model_config = service_config("TIERER_")

    stage: Stage = Stage.ALL
    """Which move this run makes: hot-to-warm, warm-to-cold, expire-cold, or all of them in order."""

    exchange: str = ""
    """The feed's venue (`binance`, `binance-usdm`); empty: every exchange found in the hot tables."""

    symbols: Annotated[list[str], NoDecode] = Field(default_factory=list)
    """Comma-separated canonical symbols of the feed; empty: every symbol of the exchange."""

    hot_days: int = Field(default=7, ge=1, le=90)
    """Whole days a row stays in QuestDB (counted from the newest row, never from a clock ahead of it)."""

    warm_days: int = Field(default=365, ge=2, le=3650)
    """Days a row stays in ClickHouse before it moves to Parquet."""

    cold_days: int = Field(default=0, ge=0, le=36500)
    """Days a row stays in the cold tier; 0 keeps it forever."""

    questdb_http_url: str = Field(default="http://127.0.0.1:9000", pattern=r"^https?://")
    """The hot tier's REST endpoint (partition listing, SQL, bulk export)."""

    clickhouse_dsn: str = Field(default="chdb:///var/lib/tickstrata/warm", pattern=r"^(chdb:///|https?://)")
    """Warm tier: `chdb:///abs/dir` (embedded engine) or `http(s)://user:pass@host:8123/db` (a server). The embedded
    engine is for one machine (`tickstrata up`, tests): in a pod its directory must be a persistent volume, or the
    moved days would leave QuestDB for a disk that goes with the pod."""

    cold_store_url: str = "file:///var/lib/tickstrata/cold"
    """Cold tier: `s3://bucket/prefix` or `file:///abs/dir` (the embedded default)."""

    @field_validator("symbols", mode="before")
    @classmethod
    def _csv(cls, value: Any) -> Any:
        return split_csv(value)

    @model_validator(mode="after")
    def _retention_in_order(self) -> Self:
        # The CRD enforces the same order; a hand-run job must not be able to move data backwards either.
        if self.warm_days <= self.hot_days:
            raise ValueError("TIERER_WARM_DAYS must be greater than TIERER_HOT_DAYS")
        if self.cold_days and self.cold_days <= self.warm_days:
            raise ValueError("TIERER_COLD_DAYS must be 0 (keep forever) or greater than TIERER_WARM_DAYS")
        return self
