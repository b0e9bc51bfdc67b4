"""Keeps a `PriceMirror` coherent: the Redis invalidation connection, its liveness pings and value refreshes.

One dedicated connection (RESP2, so it works with any Redis >= 6 and redis-py's asyncio client, which has no
client-side caching of its own) does, in order:

    CLIENT ID                                     -> its own id
    CLIENT TRACKING on REDIRECT <id> BCAST PREFIX px:
    SUBSCRIBE __redis__:invalidate

Redirecting to itself keeps tracking and the subscription on one connection, so they live and die together:
there is no state in which tracking is off but the mirror believes it is on. Then a SCAN seeds the venue index
and the mirror goes live. The loop reads invalidation messages and sends a PING every `ping_interval_secs`; each
pong confirms the mirror (see `mirror.py` for why that bounds staleness). Any error, or too many unanswered
pings, resets the mirror (reads go to Redis) and reconnects with backoff.

A dropped key that was in the copy is refreshed in the background (coalesced: at most one MGET in flight, for
every key dropped meanwhile), so a hot key's next read is usually local again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any, Final, cast

import redis.asyncio as aioredis
from redis.asyncio.connection import AbstractConnection
from redis.exceptions import RedisError, ResponseError

from tickstrata.query.mirror import KEY_PREFIX, PriceMirror
from tickstrata.query.tasks import stop_task

INVALIDATE_CHANNEL: Final = "__redis__:invalidate"
SCAN_COUNT: Final = 1000
RETRY_MIN_SECS: Final = 0.05
RETRY_MAX_SECS: Final = 2.0
REFRESH_GAP_SECS: Final = 0.002
"""Pause after each refresh: bounds the refresh rate (a key written 1000 times a second costs <= 500 MGETs/s)."""
MAX_UNANSWERED_PINGS: Final = 20
"""More pings than this without a pong: the connection is presumed dead (a silent network), and is replaced."""

logger = logging.getLogger(__name__)


class TrackingUnsupportedError(RuntimeError):
    """The Redis server refuses CLIENT TRACKING (older than 6.0, or ACL): the mirror stays off."""


class MirrorTracker:
    """Runs the invalidation connection and the refresher for one mirror; `start()`/`close()` own both tasks."""

    def __init__(self, redis: aioredis.Redis, mirror: PriceMirror, *, ping_interval_secs: float) -> None:
        self._redis = redis
        self._mirror = mirror
        self._ping_interval_secs = ping_interval_secs
        self._to_refresh: set[str] = set()
        self._refresh_wanted = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        self._tasks = [
            asyncio.create_task(self._run(), name="latest-mirror-tracking"),
            asyncio.create_task(self._refresh_loop(), name="latest-mirror-refresh"),
        ]

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            await stop_task(task)
        self._tasks = []
        self._mirror.reset()

    def _connection(self) -> AbstractConnection:
        pool = self._redis.connection_pool
        # Same address, credentials and timeouts as the app's client, but RESP2 (redis-py 8 defaults to RESP3,
        # whose push messages its asyncio parser hands to callbacks instead of returning them) and no redis-py
        # health check, whose PING expects a plain PONG that a subscribed connection does not send.
        kwargs = {**pool.connection_kwargs, "protocol": 2, "health_check_interval": 0}
        return pool.connection_class(**kwargs)

    async def _run(self) -> None:
        delay_secs = RETRY_MIN_SECS
        while True:
            self._mirror.reset()
            connection = self._connection()
            try:
                await self._track(connection)
            except TrackingUnsupportedError as error:
                logger.warning("latest-price mirror off: reads go to Redis", extra={"error": str(error)})
                return
            except (RedisError, OSError) as error:
                logger.warning(
                    "latest-price mirror: tracking connection lost; reads go to Redis until it is back",
                    extra={"error": repr(error)},
                )
            finally:
                self._mirror.reset()
                with contextlib.suppress(Exception):
                    await connection.disconnect(nowait=True)
            await asyncio.sleep(delay_secs)
            delay_secs = min(RETRY_MAX_SECS, delay_secs * 2)

    async def _command(self, connection: AbstractConnection, *args: str | int) -> Any:
        await connection.send_command(*args)
        return await connection.read_response()

    async def _track(self, connection: AbstractConnection) -> None:
        connect = cast("Callable[[], Awaitable[None]]", connection.connect)  # untyped in redis-py
        await connect()
        client_id = await self._command(connection, "CLIENT", "ID")
        try:
            await self._command(
                connection, "CLIENT", "TRACKING", "on", "REDIRECT", client_id, "BCAST", "PREFIX", KEY_PREFIX
            )
        except ResponseError as error:
            raise TrackingUnsupportedError(str(error)) from None
        await self._command(connection, "SUBSCRIBE", INVALIDATE_CHANNEL)
        # Tracking is on before the SCAN, so a key created meanwhile is in the SCAN or in a message (or both).
        keys = [key async for key in self._redis.scan_iter(match=f"{KEY_PREFIX}*", count=SCAN_COUNT)]
        self._mirror.go_live(keys)
        logger.info("latest-price mirror live", extra={"keys": len(keys)})
        await self._follow(connection)

    async def _follow(self, connection: AbstractConnection) -> None:
        loop = asyncio.get_running_loop()
        pings_sent_ns: deque[int] = deque()
        next_ping = loop.time()
        while True:
            if loop.time() >= next_ping:
                if len(pings_sent_ns) > MAX_UNANSWERED_PINGS:
                    raise ConnectionError(f"{len(pings_sent_ns)} pings unanswered on the invalidation connection")
                pings_sent_ns.append(time.monotonic_ns())
                await connection.send_command("PING")
                next_ping = loop.time() + self._ping_interval_secs
            # A timeout returns None and leaves a partly read reply buffered for the next read.
            message = await connection.read_response(timeout=max(0.001, next_ping - loop.time()))
            if message is None:
                continue
            self._handle(message, pings_sent_ns)

    def _handle(self, message: Any, pings_sent_ns: deque[int]) -> None:
        if not isinstance(message, list) or not message:
            raise ConnectionError(f"unexpected reply on the invalidation connection: {message!r:.200}")
        kind = message[0]
        if kind == b"message" and len(message) == 3:
            dropped = self._mirror.invalidate(message[2])
            if dropped:
                self._to_refresh.update(dropped)
                self._refresh_wanted.set()
        elif kind == b"pong":
            if not pings_sent_ns:
                raise ConnectionError("a pong without a ping on the invalidation connection")
            self._mirror.confirm(pings_sent_ns.popleft())
        elif kind != b"subscribe":
            raise ConnectionError(f"unexpected reply on the invalidation connection: {message!r:.200}")

    async def _refresh_loop(self) -> None:
        while True:
            await self._refresh_wanted.wait()
            self._refresh_wanted.clear()
            keys = list(self._to_refresh)
            self._to_refresh.clear()
            started = self._mirror.read_started()
            try:
                values: list[bytes | str | None] = await self._redis.mget(keys)
            except (RedisError, OSError) as error:
                logger.debug("latest-price mirror: refresh failed", extra={"error": repr(error)})
            else:
                self._mirror.read_done(started, keys, values)
            # On failure the keys stay out of the copy: the next read of each goes to Redis.
            await asyncio.sleep(REFRESH_GAP_SECS)
