"""Writer: consumer group over the market-data streams into QuestDB."""

from __future__ import annotations

import asyncio
import logging
from typing import Any, ClassVar, Final

import redis.asyncio as aioredis

from tickstrata.common.health import CheckResult
from tickstrata.common.lifecycle import ServiceApp, ServiceContext
from tickstrata.common.questdb_rest import QuestDBError
from tickstrata.common.redis_connection import connect_redis, enforce_memory_policy, redis_ready_check
from tickstrata.writer.consumer import ConsumerConfig, StreamConsumer
from tickstrata.writer.questdb_sink import QuestDBSink
from tickstrata.writer.settings import WriterSettings

logger = logging.getLogger(__name__)

CREATE_TABLES_RETRY_SECS: Final = 1.0


class WriterApp(ServiceApp[WriterSettings]):
    name: ClassVar[str] = "writer"

    def __init__(self, settings: WriterSettings) -> None:
        super().__init__(settings)
        self._redis: aioredis.Redis | None = None
        self._sink = QuestDBSink(settings.questdb_http_url)
        self._consumer: StreamConsumer | None = None
        self._task: asyncio.Task[Any] | None = None

    async def start(self, context: ServiceContext) -> None:
        self._redis = connect_redis(self.settings.redis_url)
        context.health.add_check("redis", redis_ready_check(self._redis))
        context.health.add_check("questdb", self._questdb_ready)
        context.spawn(enforce_memory_policy(self._redis), name="redis-memory-policy")
        config = ConsumerConfig(
            consumer_name=self.settings.consumer_name,
            batch_entries=self.settings.batch_entries,
            block_ms=self.settings.block_ms,
            claim_idle_ms=self.settings.claim_idle_ms,
            max_deliveries=self.settings.max_deliveries,
            janitor_interval_secs=self.settings.janitor_interval_secs,
            dead_letter_max_entries=self.settings.dead_letter_max_entries,
            future_tolerance_ns=self.settings.future_tolerance_ms * 1_000_000,
            max_entry_bytes=self.settings.max_entry_bytes,
        )
        self._consumer = StreamConsumer(
            self._redis,
            self._sink.write,
            config,
            tracer=context.telemetry.tracer,
            meter=context.telemetry.meter,
        )
        self._task = context.spawn(self._run(self._consumer), name="writer-consumer")

    async def _run(self, consumer: StreamConsumer) -> None:
        # Tables come from code before the first row; QuestDB may still be starting, so keep trying (bounded by
        # the stop request, which `run` then honours at once).
        while not consumer.stop_requested:
            try:
                await self._sink.create_tables()
            except (TimeoutError, OSError, QuestDBError) as error:
                logger.warning("cannot create tables yet", extra={"error": f"{type(error).__name__}: {error}"})
                await consumer.sleep(CREATE_TABLES_RETRY_SECS)
            else:
                await consumer.run()
                return

    async def _questdb_ready(self) -> CheckResult:
        ok = await self._sink.rest.ping()
        return CheckResult(ok, "ping 204" if ok else "ping failed")

    async def stop_intake(self) -> None:
        if self._consumer is not None:
            self._consumer.request_stop()

    async def drain(self) -> None:
        # The loop finishes the batch in hand (write + ack) and returns; the lifecycle bounds how long.
        if self._task is not None:
            await asyncio.gather(self._task, return_exceptions=True)

    async def close(self) -> None:
        await self._sink.close()
        if self._redis is not None:
            await self._redis.aclose()
