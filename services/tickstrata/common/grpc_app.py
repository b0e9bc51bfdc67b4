"""The shape shared by the collector, validator and query services: a gRPC server plus a Redis client.

The servicers stay in each service; this class only opens and closes the two edges in lifecycle order: gRPC stops
taking calls at `stop_intake` (health flips to NOT_SERVING first), Redis closes last so in-flight calls finish.
"""

from __future__ import annotations

import abc
from collections.abc import Sequence
from typing import ClassVar, TypeVar

import redis.asyncio as aioredis

from tickstrata.common.grpc_server import GrpcServer, Registrar
from tickstrata.common.health import CheckResult
from tickstrata.common.lifecycle import ServiceApp, ServiceContext
from tickstrata.common.redis_connection import connect_redis, enforce_memory_policy, redis_ready_check
from tickstrata.common.settings import GrpcSettingsMixin, RedisSettingsMixin, ServiceSettings


class GrpcRedisSettings(RedisSettingsMixin, GrpcSettingsMixin, ServiceSettings):
    """Fields of a service that serves gRPC and uses Redis."""


GrpcRedisSettingsT = TypeVar("GrpcRedisSettingsT", bound=GrpcRedisSettings)


class GrpcRedisApp(ServiceApp[GrpcRedisSettingsT], abc.ABC):
    grpc_service_names: ClassVar[Sequence[str]]
    """Fully qualified gRPC service names reported by the health service."""

    def __init__(self, settings: GrpcRedisSettingsT) -> None:
        super().__init__(settings)
        self._redis: aioredis.Redis | None = None
        self._grpc: GrpcServer | None = None

    @property
    def redis(self) -> aioredis.Redis:
        if self._redis is None:
            raise RuntimeError(f"{self.name} has not started")
        return self._redis

    @property
    def grpc_port(self) -> int:
        if self._grpc is None:
            raise RuntimeError(f"{self.name} has not started")
        return self._grpc.port

    def max_message_bytes(self) -> int | None:
        """The largest gRPC message sent or received; None keeps gRPC's defaults (4 MiB received)."""
        return None

    @abc.abstractmethod
    def registrars(self) -> Sequence[Registrar]:
        """Return the functions that add this service's servicers to the gRPC server."""

    def _open_redis(self, context: ServiceContext) -> aioredis.Redis:
        """The Redis client, opened on first use (a subclass may need it before the gRPC server starts)."""
        if self._redis is None:
            self._redis = connect_redis(self.settings.redis_url)
            context.health.add_check("redis", redis_ready_check(self._redis))
            # The stream contract's memory policy, checked once Redis answers; a wrong one stops the service.
            context.spawn(enforce_memory_policy(self._redis), name="redis-memory-policy")
        return self._redis

    async def start(self, context: ServiceContext) -> None:
        self._open_redis(context)
        self._grpc = GrpcServer(
            host=self.settings.grpc_host,
            port=self.settings.grpc_port,
            registrars=self.registrars(),
            service_names=self.grpc_service_names,
            max_message_bytes=self.max_message_bytes(),
        )
        await self._grpc.start()
        grpc_server = self._grpc

        async def grpc_check() -> CheckResult:
            return CheckResult(grpc_server.serving, f"port {grpc_server.port}" if grpc_server.serving else "stopped")

        context.health.add_check("grpc", grpc_check)

    async def stop_intake(self) -> None:
        if self._grpc is not None:
            await self._grpc.stop(grace_secs=self.settings.grpc_grace_secs)

    async def close(self) -> None:
        if self._redis is not None:
            await self._redis.aclose()
