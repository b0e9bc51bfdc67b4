"""An asyncio gRPC server with the standard health service, shaped for the service lifecycle.

Every server also answers gRPC server reflection, so `grpcurl -plaintext host:port list` works without .proto files.
Health is the protocol (`grpc.health.v1.Health`), not a method on our business servicers: kubelet's native `grpc:`
probes and `grpc_health_probe` speak it. Every registered service name reports SERVING once the server is
listening and NOT_SERVING from the moment shutdown begins, so load balancers drain before the socket closes.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any, NoReturn

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1._async import HealthServicer
from grpc_reflection.v1alpha import reflection

logger = logging.getLogger(__name__)

# Registers a servicer on a server, e.g. `lambda s: add_MarketDataServiceServicer_to_server(servicer, s)`.
Registrar = Callable[[grpc.aio.Server], None]

# The empty name is the server's overall health, as grpc_health_probe asks by default.
OVERALL = ""


class GrpcServer:
    def __init__(
        self,
        *,
        host: str,
        port: int,
        registrars: Sequence[Registrar],
        service_names: Sequence[str],
        max_message_bytes: int | None = None,
    ) -> None:
        self._address = f"{host}:{port}"
        self._registrars = list(registrars)
        self._service_names = [OVERALL, *service_names]
        self._server: grpc.aio.Server | None = None
        self._health = HealthServicer()
        self._bound_port = 0
        self._options: list[tuple[str, int]] = (
            []
            if max_message_bytes is None
            else [
                ("grpc.max_send_message_length", max_message_bytes),
                ("grpc.max_receive_message_length", max_message_bytes),
            ]
        )

    @property
    def port(self) -> int:
        if not self._bound_port:
            raise RuntimeError("gRPC server is not running")
        return self._bound_port

    @property
    def serving(self) -> bool:
        return self._server is not None

    async def start(self) -> None:
        server = grpc.aio.server(options=self._options)
        for register in self._registrars:
            register(server)
        health_pb2_grpc.add_HealthServicer_to_server(self._health, server)
        # Reflection: grpcurl, Postman and IDEs discover the services and messages without our .proto files.
        health_service = health_pb2.DESCRIPTOR.services_by_name["Health"].full_name
        served = [name for name in self._service_names if name]
        reflection.enable_server_reflection([*served, health_service, reflection.SERVICE_NAME], server)
        self._bound_port = server.add_insecure_port(self._address)
        if not self._bound_port:
            raise OSError(f"could not bind gRPC server to {self._address}")
        await server.start()
        self._server = server
        for name in self._service_names:
            await self._health.set(name, health_pb2.HealthCheckResponse.SERVING)
        logger.info("gRPC server listening", extra={"grpc_port": self._bound_port})

    async def stop(self, *, grace_secs: float) -> None:
        """Report NOT_SERVING, then let in-flight calls finish for up to `grace_secs` before cancelling them."""
        server, self._server = self._server, None
        if server is None:
            return
        await self._health.enter_graceful_shutdown()
        await server.stop(grace_secs)


async def abort_unimplemented(context: grpc.aio.ServicerContext[Any, Any], rpc: str) -> NoReturn:
    """End an RPC whose service skeleton exists but whose behaviour has not landed yet, saying which RPC."""
    await context.abort(grpc.StatusCode.UNIMPLEMENTED, f"{rpc} is not implemented yet in this version of tickstrata")
    raise AssertionError("context.abort always raises")  # for type checkers: abort never returns


async def unimplemented_stream(context: grpc.aio.ServicerContext[Any, Any], rpc: str) -> AsyncIterator[Any]:
    """The streaming twin of `abort_unimplemented`; use as `async for item in unimplemented_stream(...): yield item`."""
    nothing: tuple[Any, ...] = ()
    for item in nothing:  # the yield makes this an async generator, so the caller can delegate to it
        yield item
    await abort_unimplemented(context, rpc)
