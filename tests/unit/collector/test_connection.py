"""The connection manager against a scripted local WebSocket server: reconnects, watchdog, overlap at max age."""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import pytest
from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed

from tickstrata.collector.connection import DisconnectKind, VenueConnection
from tickstrata.common.backoff import backoff_delay_secs


@dataclass
class Script:
    """What the server does on each accepted connection, numbered from 0."""

    behaviours: list[Callable[[ServerConnection, int], object]]
    accepted: int = 0
    counter: int = 0


@asynccontextmanager
async def scripted_server(script: Script) -> AsyncIterator[str]:
    async def handler(socket: ServerConnection) -> None:
        index = script.accepted
        script.accepted += 1
        behaviour = script.behaviours[min(index, len(script.behaviours) - 1)]
        await behaviour(socket, index)  # type: ignore[misc]

    async with serve(handler, "127.0.0.1", 0) as server:
        port = next(iter(server.sockets)).getsockname()[1]
        yield f"ws://127.0.0.1:{port}/stream"


@dataclass
class Recorder:
    messages: list[str] = field(default_factory=list)
    disconnects: list[tuple[DisconnectKind, str]] = field(default_factory=list)

    async def on_message(self, raw: str | bytes, ts_recv_ns: int) -> None:
        assert ts_recv_ns > 0
        self.messages.append(raw if isinstance(raw, str) else raw.decode())

    async def on_disconnect(self, kind: DisconnectKind, cause: str, at_ns: int) -> None:
        self.disconnects.append((kind, cause))


def connection(
    url: str, recorder: Recorder, *, watchdog_timeout_secs: float = 5.0, max_age_secs: float = 3600.0
) -> VenueConnection:
    return VenueConnection(
        name="test",
        url=url,
        on_message=recorder.on_message,
        on_disconnect=recorder.on_disconnect,
        watchdog_timeout_secs=watchdog_timeout_secs,
        backoff_initial_secs=0.01,
        backoff_max_secs=0.05,
        max_age_secs=max_age_secs,
        rng=random.Random(7),
    )


async def wait_for(predicate: Callable[[], bool], timeout_secs: float = 5.0) -> None:
    async with asyncio.timeout(timeout_secs):
        while not predicate():  # noqa: ASYNC110 - polling state another task mutates is the point
            await asyncio.sleep(0.005)


@asynccontextmanager
async def broadcasting_server(interval_secs: float = 0.002) -> AsyncIterator[tuple[str, list[int]]]:
    """Like a venue: one sequence of events, each sent to every open connection."""
    sockets: set[ServerConnection] = set()
    accepted: list[int] = [0]

    async def handler(socket: ServerConnection) -> None:
        accepted[0] += 1
        sockets.add(socket)
        try:
            await socket.wait_closed()
        finally:
            sockets.discard(socket)

    async def ticker() -> None:
        number = 0
        while True:
            number += 1
            for socket in list(sockets):
                with contextlib.suppress(ConnectionClosed):
                    await socket.send(str(number))
            await asyncio.sleep(interval_secs)

    async with serve(handler, "127.0.0.1", 0) as server:
        port = next(iter(server.sockets)).getsockname()[1]
        task = asyncio.create_task(ticker())
        try:
            yield f"ws://127.0.0.1:{port}/stream", accepted
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


async def test_reconnects_after_the_server_closes_and_reports_each_disconnect() -> None:
    async def send_three_then_close(socket: ServerConnection, index: int) -> None:
        for number in range(3):
            await socket.send(f"c{index}-{number}")
        await socket.close()

    recorder = Recorder()
    async with scripted_server(Script([send_three_then_close])) as url:
        task = asyncio.create_task(connection(url, recorder).run())
        await wait_for(lambda: len(recorder.messages) >= 9)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    assert recorder.messages[:9] == [f"c{c}-{n}" for c in range(3) for n in range(3)]
    assert len(recorder.disconnects) >= 2
    assert all(kind is DisconnectKind.CLOSED for kind, _ in recorder.disconnects)
    assert recorder.disconnects[0][1].startswith("closed: code=1000")


async def test_watchdog_replaces_a_silent_socket() -> None:
    async def one_then_silence(socket: ServerConnection, index: int) -> None:
        await socket.send(f"hello-{index}")
        await socket.wait_closed()  # silent until the client gives up on us

    recorder = Recorder()
    async with scripted_server(Script([one_then_silence])) as url:
        task = asyncio.create_task(connection(url, recorder, watchdog_timeout_secs=0.2).run())
        await wait_for(lambda: len(recorder.messages) >= 2)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    assert recorder.messages[:2] == ["hello-0", "hello-1"]
    assert recorder.disconnects[0] == (DisconnectKind.STALE, "stale")


async def test_connect_failures_back_off_and_are_reported() -> None:
    recorder = Recorder()
    conn = connection("ws://127.0.0.1:9/nothing-listens-here", recorder)
    task = asyncio.create_task(conn.run())
    await wait_for(lambda: len(recorder.disconnects) >= 3)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert all(cause.startswith("connect failed") for _, cause in recorder.disconnects)
    assert conn.stats.connects == 0


async def test_aging_connection_is_replaced_with_overlap_and_no_missing_message() -> None:
    recorder = Recorder()
    async with broadcasting_server() as (url, accepted):
        conn = connection(url, recorder, max_age_secs=0.15)
        task = asyncio.create_task(conn.run())
        await wait_for(lambda: conn.stats.overlap_switches >= 3)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    assert recorder.disconnects == []  # a planned switch is not a disconnect
    assert accepted[0] >= 4
    # The overlap may deliver a number twice (both sockets), never skip one.
    seen = sorted({int(message) for message in recorder.messages})
    assert seen == list(range(seen[0], seen[-1] + 1))
    assert len(recorder.messages) >= len(seen)


def test_backoff_is_capped_and_jittered() -> None:
    rng = random.Random(1)
    delays = [backoff_delay_secs(attempt, initial_secs=0.5, max_secs=30, rng=rng) for attempt in range(40)]
    assert all(0 <= delay <= 30 for delay in delays)
    assert max(delays[:3]) <= 2.0
    assert len(set(delays)) == len(delays)  # jittered, not lockstep


async def test_cancellation_stops_a_busy_connection_every_time() -> None:
    # Regression: asyncio.wait_for (Python 3.11) dropped a cancel that landed as recv() completed, so a collector
    # under load could keep reading after SIGTERM. Cancel many times mid-stream; each must stop promptly.
    async with broadcasting_server(interval_secs=0) as (url, _accepted):
        for _ in range(30):
            recorder = Recorder()
            task = asyncio.create_task(connection(url, recorder).run())
            await wait_for(lambda: len(recorder.messages) >= 20)  # noqa: B023 - awaited within this iteration
            task.cancel()
            async with asyncio.timeout(2):
                with pytest.raises(asyncio.CancelledError):
                    await task
