"""Opening Redis the same way in every service, with its readiness check."""

from __future__ import annotations

from typing import Any

import redis.asyncio as aioredis

from tickstrata.common.health import CheckResult, ReadinessCheck

# A dead Redis must fail a readiness probe quickly, not hang it.
REDIS_SOCKET_TIMEOUT_SECS = 2.0


def connect_redis(url: str) -> aioredis.Redis:
    """Return a client for `url` (redis://host:port/db); the connection opens lazily on first command."""
    client: aioredis.Redis = aioredis.Redis.from_url(
        url,
        socket_connect_timeout=REDIS_SOCKET_TIMEOUT_SECS,
        socket_timeout=REDIS_SOCKET_TIMEOUT_SECS,
        health_check_interval=30,
    )
    return client


def redis_ready_check(client: aioredis.Redis) -> ReadinessCheck:
    async def check() -> CheckResult:
        reply: Any = await client.ping()
        return CheckResult(bool(reply), "PONG" if reply else "no reply")

    return check
