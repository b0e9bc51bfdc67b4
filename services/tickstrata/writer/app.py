"""Writer: consumer group over the market-data streams into QuestDB (the skeleton holds the Redis edge)."""

from __future__ import annotations

from typing import ClassVar

import redis.asyncio as aioredis

from tickstrata.common.lifecycle import ServiceApp, ServiceContext
from tickstrata.common.redis_connection import connect_redis, redis_ready_check
from tickstrata.writer.settings import WriterSettings


class WriterApp(ServiceApp[WriterSettings]):
    name: ClassVar[str] = "writer"

    def __init__(self, settings: WriterSettings) -> None:
        super().__init__(settings)
        self._redis: aioredis.Redis | None = None

    async def start(self, context: ServiceContext) -> None:
        self._redis = connect_redis(self.settings.redis_url)
        context.health.add_check("redis", redis_ready_check(self._redis))

    async def close(self) -> None:
        if self._redis is not None:
            await self._redis.aclose()
