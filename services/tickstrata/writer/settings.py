"""Writer settings: environment variables prefixed `WRITER_`."""

from __future__ import annotations

import socket

from pydantic import Field

from tickstrata.common.settings import RedisSettingsMixin, ServiceSettings, service_config


class WriterSettings(RedisSettingsMixin, ServiceSettings):
    model_config = service_config("WRITER_")

    health_port: int = Field(default=8082, ge=0, le=65535)
    """Port of the HTTP health server."""

    questdb_http_url: str = Field(default="http://127.0.0.1:9000", pattern=r"^https?://")
    """QuestDB's HTTP endpoint: ILP/HTTP ingestion and `/exec`."""

    consumer_name: str = Field(default_factory=socket.gethostname, min_length=1, max_length=200)
    """This writer's name in the consumer group; stable across restarts (a StatefulSet pod name) so a restarted
    writer re-reads its own pending entries instead of waiting for another to claim them."""

    batch_entries: int = Field(default=500, ge=1, le=100_000)
    """COUNT per XREADGROUP per stream: bounds memory (an entry holds at most 1000 events)."""

    block_ms: int = Field(default=1000, ge=1, le=60_000)
    """How long a read waits for new entries; also bounds how late a stop request is noticed."""

    claim_idle_ms: int = Field(default=60_000, ge=1)
    """Pending entries idle this long belong to a dead consumer and are claimed (XAUTOCLAIM)."""

    max_deliveries: int = Field(default=5, ge=1)
    """An entry delivered more times than this (crashes, claims) is dead-lettered to `dlq:writer`."""

    janitor_interval_secs: float = Field(default=10.0, gt=0)
    """How often streams are discovered, dead consumers' entries claimed and streams trimmed."""

    dead_letter_max_entries: int = Field(default=100_000, ge=1000)
    """`dlq:writer` is trimmed to about this many entries (oldest first), so poison input cannot fill Redis; every
    dead letter is also counted (`tickstrata.consumer.dead_lettered`) and logged at ERROR."""

    future_tolerance_ms: int = Field(default=5_000, ge=0, le=86_400_000)
    """An event stamped further than this past the writer's clock is refused (dead-lettered), never stored."""

    max_entry_bytes: int = Field(default=4 * 1024 * 1024, ge=1024)
    """A stream entry larger than this is dead-lettered unread (a collector's entry of 1000 events is < 1 MiB)."""
