"""One client WebSocket connection, behaving as Binance's market-stream servers do.

Control messages (`SUBSCRIBE`, `UNSUBSCRIBE`, `LIST_SUBSCRIPTIONS`, `SET_PROPERTY`, `GET_PROPERTY`) with Binance's
acks and error shapes; at most `max_streams` streams; more than `max_incoming_per_sec` incoming messages (text,
ping and pong frames all count) within one second closes the connection; server ping frames on a timer, closing
when no pong came back in time; the 24-hour cut. Outgoing frames go through a bounded queue: a client too slow to
keep up is disconnected rather than buffered without limit.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

import msgspec
from aiohttp import WSCloseCode, WSMsgType, web

from tickstrata.simulator import frames
from tickstrata.simulator.engine import VenueEngine
from tickstrata.simulator.streams import Route, deliverable, parse_stream

logger = logging.getLogger(__name__)

_ID_RE: Final = re.compile(r"^[A-Za-z0-9-]{1,36}$")
_METHODS: Final = ("SUBSCRIBE", "UNSUBSCRIBE", "LIST_SUBSCRIPTIONS", "SET_PROPERTY", "GET_PROPERTY")
_KEEPER_PERIOD_SECS: Final = 0.05
CLOSE_TOO_MANY_MESSAGES: Final = WSCloseCode.POLICY_VIOLATION
CLOSE_PONG_TIMEOUT: Final = WSCloseCode.POLICY_VIOLATION
CLOSE_SLOW_CONSUMER: Final = WSCloseCode.POLICY_VIOLATION


@dataclass(frozen=True)
class WsPolicy:
    max_streams: int
    max_incoming_per_sec: int
    ping_interval_secs: float
    pong_timeout_secs: float
    max_connection_secs: float
    send_server_shutdown: bool
    queue_limit: int = 100_000


class RequestError(Exception):
    def __init__(self, code: int, msg: str) -> None:
        super().__init__(msg)
        self.code = code
        self.msg = msg


class WsConnection:
    def __init__(
        self,
        conn_id: int,
        engine: VenueEngine,
        ws: web.WebSocketResponse,
        request: web.Request,
        *,
        route: Route | None,
        combined: bool,
        policy: WsPolicy,
        clock: Callable[[], int],
        wall_clock: Callable[[], int],
    ) -> None:
        self.id = conn_id
        self.combined = combined
        self._engine = engine
        self._ws = ws
        self._request = request
        self._route = route
        self._policy = policy
        self._clock = clock  # market time: event stamps and silent spells
        self._wall_clock = wall_clock  # pings, pong deadlines, message rates, lifetime: real seconds, always
        self.path = request.path_qs
        self.opened_ms = wall_clock()
        self.streams: list[str] = []
        self._queue: asyncio.Queue[bytes] = asyncio.Queue(maxsize=policy.queue_limit)
        self._incoming: deque[int] = deque()
        self.silent = False
        self._silent_until_ms: int | None = None
        self.messages_sent = 0
        self.pings_sent = 0
        self.pongs_received = 0
        self._unanswered_ping_ms: int | None = None
        self._last_ping_ms = self.opened_ms
        self.closing_reason: str | None = None
        self._tasks: list[asyncio.Task[None]] = []

    # ------------------------------------------------------------------------------ Subscriber (engine side)

    def deliver(self, data: bytes) -> None:
        if self.silent or self.closing_reason is not None:
            return
        try:
            self._queue.put_nowait(data)
        except asyncio.QueueFull:
            self._close_soon(CLOSE_SLOW_CONSUMER, "slow consumer")

    def backlog(self) -> int:
        return self._queue.qsize()

    def describe(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "path": self.path,
            "route": self._route,
            "combined": self.combined,
            "streams": list(self.streams),
            "opened_ms": self.opened_ms,
            "messages_sent": self.messages_sent,
            "queued": self._queue.qsize(),
            "pings_sent": self.pings_sent,
            "pongs_received": self.pongs_received,
            "silent": self.silent,
        }

    def go_silent(self, until_ms: int | None) -> None:
        self.silent = True
        self._silent_until_ms = until_ms
        while not self._queue.empty():  # frames not yet written are lost too: the socket went quiet at once
            self._queue.get_nowait()

    def abort(self) -> None:
        """Drop the TCP connection without a close frame (the client sees 1006)."""
        self.closing_reason = "aborted"
        transport = self._request.transport
        if transport is not None:
            transport.abort()

    def shutdown(self, send_event: bool) -> None:
        """The 24-hour cut: optionally announce `serverShutdown`, then close normally."""
        if send_event and not self.silent:
            self.deliver(frames.encode({"e": "serverShutdown", "E": self._clock()}))
        self._close_soon(WSCloseCode.OK, "server shutdown", after_queue=True)

    def flood(self, data: bytes, count: int, interval_secs: float) -> None:
        """Send `data` `count` times, one every `interval_secs` (the garbage fault); stops with the connection."""

        async def send() -> None:
            for _ in range(count):
                self.deliver(data)
                await asyncio.sleep(interval_secs)

        self._tasks.append(asyncio.create_task(send(), name=f"ws-{self.id}-flood"))

    # -------------------------------------------------------------------------------------------- lifecycle

    async def run(self, initial_streams: list[str]) -> None:
        self._engine.register(self)
        for stream in initial_streams:
            self._add_stream(stream)
        self._tasks = [
            asyncio.create_task(self._writer(), name=f"ws-{self.id}-writer"),
            asyncio.create_task(self._keeper(), name=f"ws-{self.id}-keeper"),
        ]
        try:
            await self._reader()
        finally:
            self._engine.unregister(self)
            for task in self._tasks:
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
            if not self._ws.closed and self.closing_reason != "aborted":
                with contextlib.suppress(Exception):
                    await self._ws.close()

    async def _reader(self) -> None:
        while not self._ws.closed:
            msg = await self._ws.receive()
            if msg.type in (WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED, WSMsgType.ERROR):
                return
            if not self._count_incoming():
                self.closing_reason = "too many messages"
                await self._ws.close(code=CLOSE_TOO_MANY_MESSAGES, message=b"Too many messages")
                return
            if msg.type is WSMsgType.PING:
                if not self.silent:
                    await self._ws.pong(msg.data)
            elif msg.type is WSMsgType.PONG:
                self.pongs_received += 1
                self._unanswered_ping_ms = None
            elif msg.type is WSMsgType.TEXT:
                reply = self._handle_text(str(msg.data))
                if reply is not None:
                    self.deliver(frames.encode(reply))

    def _count_incoming(self) -> bool:
        now = self._wall_clock()
        self._incoming.append(now)
        while self._incoming and self._incoming[0] <= now - 1000:
            self._incoming.popleft()
        return len(self._incoming) <= self._policy.max_incoming_per_sec

    async def _writer(self) -> None:
        while True:
            data = await self._queue.get()
            if self.silent:
                continue
            await self._ws.send_frame(data, WSMsgType.TEXT)
            self.messages_sent += 1

    async def _keeper(self) -> None:
        """Server pings, the pong deadline, the end of a silent spell and the connection's maximum lifetime."""
        policy = self._policy
        while not self._ws.closed:
            await asyncio.sleep(_KEEPER_PERIOD_SECS)
            now = self._wall_clock()
            if self._silent_until_ms is not None and self._clock() >= self._silent_until_ms:
                self.silent, self._silent_until_ms = False, None
            if self.silent:
                continue
            if now - self._last_ping_ms >= policy.ping_interval_secs * 1000:
                self._last_ping_ms = now
                self.pings_sent += 1
                if self._unanswered_ping_ms is None:
                    self._unanswered_ping_ms = now
                await self._ws.ping(str(now).encode())
            if (
                self._unanswered_ping_ms is not None
                and now - self._unanswered_ping_ms > policy.pong_timeout_secs * 1000
            ):
                self.closing_reason = "pong timeout"
                await self._ws.close(code=CLOSE_PONG_TIMEOUT, message=b"Pong timeout")
                return
            if now - self.opened_ms >= policy.max_connection_secs * 1000 and self.closing_reason is None:
                self.shutdown(policy.send_server_shutdown)

    def _close_soon(self, code: int, reason: str, *, after_queue: bool = False) -> None:
        if self.closing_reason is not None:
            return
        self.closing_reason = reason

        async def close() -> None:
            if after_queue:
                # Let the frames already queued (the serverShutdown notice) go out first.
                for _ in range(200):
                    if self._queue.empty():
                        break
                    await asyncio.sleep(0.005)
            await self._ws.close(code=code, message=reason.encode())

        self._tasks.append(asyncio.create_task(close(), name=f"ws-{self.id}-close"))

    # ------------------------------------------------------------------------------------- control messages

    def _add_stream(self, stream: str) -> None:
        if stream in self.streams:
            return
        self.streams.append(stream)
        parsed = parse_stream(stream)
        if parsed is not None and deliverable(self._engine.venue, self._route, parsed, self._engine.stream_symbols):
            self._engine.subscribe(self, stream)

    def _handle_text(self, text: str) -> dict[str, Any] | None:
        try:
            request = msgspec.json.decode(text)
        except msgspec.DecodeError as error:
            return {"error": {"code": 3, "msg": f"Invalid JSON: {error}"}, "id": None}
        if not isinstance(request, dict):
            return {"error": {"code": 2, "msg": "Invalid request: request must be a JSON object"}, "id": None}
        request_id = request.get("id")
        try:
            if not _valid_id(request_id):
                request_id = None
                raise RequestError(2, "Invalid request: request ID must be an unsigned integer")
            return {"result": self._dispatch(request), "id": request_id}
        except RequestError as error:
            return {"error": {"code": error.code, "msg": error.msg}, "id": request_id}

    def _dispatch(self, request: dict[str, Any]) -> Any:
        for key in request:
            if key not in ("method", "params", "id"):
                raise RequestError(2, f"Invalid request: unknown field `{key}`")
        method = request.get("method")
        if method is None:
            raise RequestError(2, "Invalid request: missing field `method`")
        if method not in _METHODS:
            expected = ", ".join(f"`{m}`" for m in _METHODS)
            raise RequestError(2, f"Invalid request: unknown variant `{method}`, expected one of {expected}")
        params = request.get("params", [])
        if not isinstance(params, list):
            raise RequestError(2, "Invalid request: params must be an array")
        if method in ("SUBSCRIBE", "UNSUBSCRIBE"):
            return self._subscribe(method, params)
        if method == "LIST_SUBSCRIPTIONS":
            return list(self.streams)
        if not params or params[0] != "combined":
            raise RequestError(0, "Unknown property")
        if method == "GET_PROPERTY":
            return self.combined
        if len(params) != 2 or not isinstance(params[1], bool):
            raise RequestError(1, "Invalid value type: expected Boolean")
        self.combined = params[1]
        return None

    def _subscribe(self, method: str, params: list[Any]) -> None:
        if not all(isinstance(p, str) for p in params):
            raise RequestError(2, "Invalid request: property name must be a string")
        for name in params:
            if parse_stream(name) is None:
                raise RequestError(2, f"Invalid request: invalid stream name `{name}`")
        if method == "SUBSCRIBE":
            new = [name for name in dict.fromkeys(params) if name not in self.streams]
            if len(self.streams) + len(new) > self._policy.max_streams:
                raise RequestError(2, f"Invalid request: too many streams (max {self._policy.max_streams})")
            for name in new:
                self._add_stream(name)
        else:
            for name in params:
                if name in self.streams:
                    self.streams.remove(name)
                    self._engine.unsubscribe(self, name)


def _valid_id(value: object) -> bool:
    if value is None:
        return True
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        return 0 <= value < 2**63
    return isinstance(value, str) and _ID_RE.match(value) is not None
