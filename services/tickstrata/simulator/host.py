"""One venue "host": an aiohttp server on its own port serving the venue's WebSocket paths, REST and `/_sim/*`.

Spot serves `/ws`, `/ws/<streams>` and `/stream?streams=`; USD-M adds the routed `/public/...` and `/market/...`
forms (unrouted paths behave as `/public`). `/_sim/faults` and `/_sim/state` are the test-facing control plane.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import ssl
import time
from collections.abc import Callable
from typing import Any, Final

from aiohttp import web
from pydantic import ValidationError

from tickstrata.common.clock import market_time_ms
from tickstrata.simulator.engine import VenueEngine
from tickstrata.simulator.faults import FaultRecord, FaultSpec, parse_faults
from tickstrata.simulator.instruments import Venue
from tickstrata.simulator.rest import RestApi
from tickstrata.simulator.streams import Route
from tickstrata.simulator.ws import WsConnection, WsPolicy

logger = logging.getLogger(__name__)

_conn_ids = itertools.count(1)
_MAX_MSG_BYTES: Final = 1 << 20
FaultSink = Callable[[FaultSpec, str], list[FaultRecord]]  # (spec, venue of the host asked) -> records applied


def wall_clock_ms() -> int:
    return time.time_ns() // 1_000_000


class VenueHost:
    def __init__(
        self,
        engine: VenueEngine,
        *,
        policy: WsPolicy,
        host: str,
        port: int,
        tick_ms: int,
        fault_sink: FaultSink,
        ssl_context: ssl.SSLContext | None = None,
        clock: Callable[[], int] = market_time_ms,
    ) -> None:
        self.engine = engine
        self._policy = policy
        self._host = host
        self._requested_port = port
        self._tick_ms = tick_ms
        self._fault_sink = fault_sink
        self._ssl = ssl_context
        self._clock = clock
        self._runner: web.AppRunner | None = None
        self._ticker: asyncio.Task[None] | None = None
        self._connections: set[WsConnection] = set()
        self.port = 0

    @property
    def venue(self) -> Venue:
        return self.engine.venue

    def build_app(self) -> web.Application:
        app = web.Application()
        routes = [
            web.get("/ws", self._ws_handler(None, combined=False)),
            web.get("/ws/{streams:.+}", self._ws_handler(None, combined=False)),
            web.get("/stream", self._ws_handler(None, combined=True)),
        ]
        if self.venue is Venue.USDM:
            for route in ("public", "market"):
                routes += [
                    web.get(f"/{route}/ws", self._ws_handler(route, combined=False)),
                    web.get(f"/{route}/ws/{{streams:.+}}", self._ws_handler(route, combined=False)),
                    web.get(f"/{route}/stream", self._ws_handler(route, combined=True)),
                ]
        routes += RestApi(self.engine, self._clock, wall_clock_ms).routes()
        routes += [
            web.post("/_sim/faults", self._post_faults),
            web.get("/_sim/faults", self._get_faults),
            web.get("/_sim/state", self._get_state),
        ]
        app.add_routes(routes)
        return app

    async def start(self) -> None:
        # A short shutdown bound: open streaming sockets would otherwise hold the shutdown for aiohttp's 60 s.
        self._runner = web.AppRunner(self.build_app(), access_log=None, handle_signals=False, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self._host, self._requested_port, ssl_context=self._ssl)
        await site.start()
        self.port = int(self._runner.addresses[0][1])
        self._ticker = asyncio.create_task(self._tick_loop(), name=f"sim-{self.venue.value}-ticker")

    async def _tick_loop(self) -> None:
        while True:
            self.engine.tick(self._clock())
            await asyncio.sleep(self._tick_ms / 1000)

    async def stop_intake(self) -> None:
        if self._ticker is not None:
            self._ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._ticker
            self._ticker = None

    async def close(self) -> None:
        await self.stop_intake()
        for conn in list(self._connections):
            conn.shutdown(send_event=False)
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    # --------------------------------------------------------------------------------------------- websocket

    def _ws_handler(self, route: Route | None, *, combined: bool) -> Callable[[web.Request], Any]:
        async def handler(request: web.Request) -> web.StreamResponse:
            text = request.query.get("streams", "") if combined else request.match_info.get("streams", "")
            streams = [s for s in text.split("/") if s]
            if len(streams) > self._policy.max_streams:
                return web.json_response({"code": -1, "msg": "Too many streams requested."}, status=400)
            ws = web.WebSocketResponse(autoping=False, max_msg_size=_MAX_MSG_BYTES)
            await ws.prepare(request)
            conn = WsConnection(
                next(_conn_ids),
                self.engine,
                ws,
                request,
                route=route,
                combined=combined,
                policy=self._policy,
                clock=self._clock,
                wall_clock=wall_clock_ms,
            )
            self._connections.add(conn)
            try:
                await conn.run(streams)
            finally:
                self._connections.discard(conn)
            return ws

        return handler

    # ------------------------------------------------------------------------------------------------ control

    async def _post_faults(self, request: web.Request) -> web.Response:
        try:
            payload = await request.json()
            if isinstance(payload, dict) and "venue" not in payload:
                payload = {**payload, "venue": self.venue.value}
            elif isinstance(payload, list):
                payload = [
                    {**p, "venue": self.venue.value} if isinstance(p, dict) and "venue" not in p else p for p in payload
                ]
            specs = parse_faults(payload)
            records: list[FaultRecord] = []
            for spec in specs:
                records.extend(self._fault_sink(spec, self.venue.value))
        except (ValidationError, ValueError, json.JSONDecodeError) as error:
            return web.json_response({"error": str(error)}, status=400)
        return web.json_response({"applied": [record.as_json() for record in records]})

    async def _get_faults(self, _request: web.Request) -> web.Response:
        return web.json_response({"faults": [record.as_json() for record in self.engine.faults]})

    async def _get_state(self, _request: web.Request) -> web.Response:
        return web.json_response(self.engine.state(self._clock(), wall_ms=wall_clock_ms()))
