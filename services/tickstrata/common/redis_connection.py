"""Opening Redis the same way in every service, with its readiness check."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import OutOfMemoryError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from tickstrata.common.health import CheckResult, ReadinessCheck

logger = logging.getLogger(__name__)

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


class RedisPolicyError(RuntimeError):
    """Redis is configured against the stream contract: it could evict stream history or cache keys."""


REQUIRED_MAXMEMORY_POLICY = "noeviction"


async def check_memory_policy(client: aioredis.Redis) -> str:
    """Check the stream contract's memory policy at start-up; return a one-line description of what was found.

    Raises `RedisPolicyError` when Redis may evict keys (any ``maxmemory-policy`` but ``noeviction``): under
    memory pressure it would silently drop streams or the latest-price cache. An unbounded Redis (``maxmemory 0``)
    is allowed with a warning, since it fails on the host's memory instead. A Redis that refuses ``CONFIG GET``
    (managed services often do) cannot be checked: that is a warning too, and the operator's duty to configure.
    """
    try:
        reply: Any = await client.config_get("maxmemory*")
    except ResponseError as error:
        logger.warning("cannot check Redis's memory policy", extra={"error": str(error)})
        return f"memory policy unchecked ({error})"
    config = {_text(key): _text(value) for key, value in reply.items()}
    policy = config.get("maxmemory-policy", "")
    maxmemory_bytes = int(config.get("maxmemory", "0") or 0)
    if policy != REQUIRED_MAXMEMORY_POLICY:
        raise RedisPolicyError(
            f"Redis maxmemory-policy is {policy!r}; the stream contract needs {REQUIRED_MAXMEMORY_POLICY!r} "
            "(an evicting Redis can drop stream entries nobody has consumed). Set it with "
            f"'CONFIG SET maxmemory-policy {REQUIRED_MAXMEMORY_POLICY}' or in redis.conf"
        )
    if maxmemory_bytes == 0:
        logger.warning("Redis has no maxmemory: a long consumer outage grows it until the host runs out of memory")
        return "maxmemory unbounded, noeviction"
    return f"maxmemory {maxmemory_bytes} bytes, noeviction"


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


async def enforce_memory_policy(client: aioredis.Redis, *, retry_secs: float = 1.0) -> None:
    """Check the memory policy as soon as Redis answers (it may start after us); raise `RedisPolicyError` if wrong.

    Spawned as a supervised background task at start-up: a wrong policy stops the service with the reason.
    """
    while True:
        try:
            found = await check_memory_policy(client)
        except (ConnectionError, TimeoutError, RedisConnectionError, RedisTimeoutError) as error:
            logger.info("Redis not reachable yet; memory policy check postponed", extra={"error": repr(error)})
            await asyncio.sleep(retry_secs)
            continue
        logger.info("Redis memory policy checked", extra={"redis_memory": found})
        return


def is_redis_full(error: BaseException) -> bool:
    """Redis at its `maxmemory` under `noeviction` refuses commands that could grow it, with an OOM error (also when
    the command ran in a pipeline, whose error names the command first)."""
    if isinstance(error, OutOfMemoryError):  # redis-py's class for a bare OOM reply (its message drops "OOM")
        return True
    return isinstance(error, ResponseError) and "used memory > 'maxmemory'" in str(error)
