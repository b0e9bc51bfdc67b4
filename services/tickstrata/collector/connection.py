"""One WebSocket connection to a venue, kept alive forever.

- Reconnects with the capped, jittered exponential backoff of ``common.backoff`` (so a fleet of collectors does
  not reconnect in lockstep after a venue hiccup and trip the venue's connection-rate limit); the delay resets once
  a connection delivers data again.
- A watchdog replaces a socket that stays open but silent (venues do this under load; TCP alone never notices).
- The venue's server pings are answered by the websockets library; we send no pings of our own, because Binance
  counts every incoming frame against its 5-per-second limit.
- Buffers are bounded: the library refuses a frame over ``validation.MAX_FRAME_BYTES`` (it fails the connection
  with 1009, reported as ``DisconnectKind.OVERSIZED``: a gap, a quarantine record, a reconnect) and holds at most
  ``MAX_QUEUE_FRAMES`` frames before it stops reading the socket, so one connection buffers a few MiB at most.
- Before the venue's 24-hour cut, a second connection is opened and the first one is closed only once the second
  delivers data: the overlap yields duplicates (dropped downstream by trade id and update id), never a hole.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import websockets
from websockets.asyncio.client import ClientConnection
from websockets.frames import CloseCode

from tickstrata.collector.validation import MAX_FRAME_BYTES
from tickstrata.common.backoff import backoff_delay_secs
from tickstrata.common.clock import market_time_ns

logger = logging.getLogger(__name__)

# Frames the library may hold before it stops reading the socket: with the 1 MiB frame cap, at most 4 MiB of
# frames (plus one partly read) per connection. Venue frames are small, so this never throttles real traffic: the
# library parses whole socket reads regardless and only pauses further reads.
MAX_QUEUE_FRAMES = 4
OPEN_TIMEOUT_SECS = 10.0
CLOSE_TIMEOUT_SECS = 2.0


class DisconnectKind(enum.Enum):
    CLOSED = "disconnect"  # the venue or the network closed the socket, or it failed to open
    STALE = "stale"  # our watchdog gave up on a silent socket
    OVERSIZED = "oversized_frame"  # the venue sent a frame over MAX_FRAME_BYTES: the library closed with 1009


MessageHandler = Callable[[str | bytes, int], Awaitable[None]]
DisconnectHandler = Callable[[DisconnectKind, str, int], Awaitable[None]]


@dataclass
class ConnectionStats:
    messages: int = 0
    connects: int = 0
    reconnects: int = 0
    overlap_switches: int = 0
    last_message_monotonic: float = 0.0


async def _reap(task: asyncio.Task[Any]) -> None:
    """Cancel and await a helper task, without swallowing a cancellation aimed at the caller itself."""
    task.cancel()
    try:
        await task
    except asyncio.CancelledError:
        current = asyncio.current_task()
        if current is not None and current.cancelling():
            raise
    except websockets.exceptions.WebSocketException:
        pass  # the socket closed while we stopped listening to it: nothing left to read


_KIND_BY_REASON = {"stale": DisconnectKind.STALE, "oversized_frame": DisconnectKind.OVERSIZED}


def _closed_reason(closed: websockets.exceptions.ConnectionClosed) -> str:
    """Why the socket closed: ``oversized_frame`` when we refused a frame (we sent 1009), else the close code."""
    if closed.sent is not None and closed.sent.code == CloseCode.MESSAGE_TOO_BIG:
        return "oversized_frame"
    if closed.rcvd is not None:
        return f"closed: code={closed.rcvd.code}"
    # No close frame from the venue: our own failure code when we failed the connection, else abnormal (1006).
    return f"closed: code={closed.sent.code if closed.sent is not None else 1006}"


class VenueConnection:
    def __init__(
        self,
        *,
        name: str,
        url: str,
        on_message: MessageHandler,
        on_disconnect: DisconnectHandler,
        watchdog_timeout_secs: float,
        backoff_initial_secs: float,
        backoff_max_secs: float,
        max_age_secs: float,
        subscribe_frames: tuple[bytes, ...] = (),
        rng: random.Random | None = None,
    ) -> None:
        self.name = name
        self.url = url
        self._on_message = on_message
        self._on_disconnect = on_disconnect
        self._watchdog_timeout_secs = watchdog_timeout_secs
        self._backoff_initial_secs = backoff_initial_secs
        self._backoff_max_secs = backoff_max_secs
        self._max_age_secs = max_age_secs
        self._subscribe_frames = subscribe_frames
        self._rng = rng or random.Random()
        self._socket: ClientConnection | None = None
        self.stats = ConnectionStats()

    @property
    def connected(self) -> bool:
        return self._socket is not None

    def seconds_since_last_message(self) -> float:
        if not self.stats.last_message_monotonic:
            return float("inf")
        return time.monotonic() - self.stats.last_message_monotonic

    async def run(self) -> None:
        """Connect, read, and reconnect until cancelled."""
        attempt = 0
        socket: ClientConnection | None = None
        while True:
            try:
                if socket is None:
                    socket = await self._open()
                opened_at = time.monotonic()
                received_any, reason = await self._read_until_done(socket, opened_at)
                if reason == "max_age":
                    # Overlap: the replacement must be delivering before the old one goes.
                    socket = await self._switch(socket)
                    attempt = 0
                    continue
                await self._close(socket)
                socket = None
                kind = _KIND_BY_REASON.get(reason, DisconnectKind.CLOSED)
                await self._on_disconnect(kind, reason, market_time_ns())
                attempt = 0 if received_any else attempt + 1
            except (OSError, websockets.exceptions.WebSocketException, TimeoutError) as error:
                if socket is not None:
                    await self._close(socket)
                    socket = None
                await self._on_disconnect(DisconnectKind.CLOSED, f"connect failed: {error!r}", market_time_ns())
                attempt += 1
            except asyncio.CancelledError:
                if socket is not None:
                    await self._close(socket)
                raise
            self.stats.reconnects += 1
            delay_secs = backoff_delay_secs(
                attempt, initial_secs=self._backoff_initial_secs, max_secs=self._backoff_max_secs, rng=self._rng
            )
            logger.info(
                "reconnecting", extra={"connection": self.name, "attempt": attempt, "delay_secs": round(delay_secs, 3)}
            )
            await asyncio.sleep(delay_secs)

    async def _open(self) -> ClientConnection:
        socket = await websockets.connect(
            self.url,
            open_timeout=OPEN_TIMEOUT_SECS,
            close_timeout=CLOSE_TIMEOUT_SECS,
            ping_interval=None,  # the venue pings us; our pings would count against its message-rate limit
            max_size=MAX_FRAME_BYTES,
            max_queue=MAX_QUEUE_FRAMES,
            compression=None,
        )
        for frame in self._subscribe_frames:
            await socket.send(frame.decode())
        self._socket = socket
        self.stats.connects += 1
        logger.info("connected", extra={"connection": self.name, "url": self.url})
        return socket

    async def _read_until_done(self, socket: ClientConnection, opened_at: float) -> tuple[bool, str]:
        """Deliver messages until the socket closes, goes silent, or reaches its maximum age."""
        received_any = False
        while True:
            remaining_age_secs = self._max_age_secs - (time.monotonic() - opened_at)
            if remaining_age_secs <= 0:
                return received_any, "max_age"
            try:
                # asyncio.timeout, not wait_for: on Python 3.11 wait_for drops a cancellation that lands as recv
                # completes, which under load left a stopping collector reading forever.
                async with asyncio.timeout(min(self._watchdog_timeout_secs, remaining_age_secs)):
                    raw = await socket.recv()
            except TimeoutError:
                if time.monotonic() - opened_at >= self._max_age_secs:
                    return received_any, "max_age"
                logger.warning(
                    "no message within the watchdog timeout; replacing the connection",
                    extra={"connection": self.name, "watchdog_timeout_secs": self._watchdog_timeout_secs},
                )
                return received_any, "stale"
            except websockets.exceptions.ConnectionClosed as closed:
                return received_any, _closed_reason(closed)
            received_any = True
            await self._deliver(raw)

    async def _deliver(self, raw: str | bytes) -> None:
        ts_recv_ns = market_time_ns()
        self.stats.messages += 1
        self.stats.last_message_monotonic = time.monotonic()
        await self._on_message(raw, ts_recv_ns)

    async def _switch(self, old: ClientConnection) -> ClientConnection:
        """Open a replacement, keep reading the old socket until the new one delivers, then close the old one."""
        new = await self._open()
        first_new = asyncio.create_task(new.recv())
        try:
            while not first_new.done():
                old_message = asyncio.create_task(old.recv())
                done, _ = await asyncio.wait(
                    {first_new, old_message}, timeout=self._watchdog_timeout_secs, return_when=asyncio.FIRST_COMPLETED
                )
                if old_message in done and old_message.exception() is None:
                    await self._deliver(old_message.result())
                    continue
                await _reap(old_message)
                if not done:
                    break  # neither spoke within the watchdog: let the normal read loop judge the new socket
                if old_message in done:
                    break  # the old one closed first: fine, the new one is open
            if first_new.done() and first_new.exception() is None:
                await self._deliver(first_new.result())
            elif not first_new.done():
                await _reap(first_new)
        finally:
            await self._close(old)
            self._socket = new
        self.stats.overlap_switches += 1
        logger.info("replaced an aging connection without a gap", extra={"connection": self.name})
        return new

    async def _close(self, socket: ClientConnection) -> None:
        if self._socket is socket:
            self._socket = None
        with contextlib.suppress(Exception):
            async with asyncio.timeout(CLOSE_TIMEOUT_SECS):
                await socket.close()
