"""The shutdown path, in process: order of the hooks, task failures, start-up failures and the time bound."""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Iterator
from typing import ClassVar

import pytest

from tickstrata.common.lifecycle import EXIT_FAILED, EXIT_OK, ServiceApp, ServiceContext, _run
from tickstrata.common.settings import ServiceSettings, load_settings
from tickstrata.common.telemetry import Telemetry, setup_telemetry


class RecordingApp(ServiceApp[ServiceSettings]):
    name: ClassVar[str] = "recording"

    def __init__(self, settings: ServiceSettings, *, drain_secs: float = 0.0, fail_start: bool = False) -> None:
        super().__init__(settings)
        self.calls: list[str] = []
        self.context: ServiceContext | None = None
        self.drain_secs = drain_secs
        self.fail_start = fail_start

    async def start(self, context: ServiceContext) -> None:
        self.calls.append("start")
        self.context = context
        if self.fail_start:
            raise ConnectionRefusedError("redis is down")

    async def stop_intake(self) -> None:
        self.calls.append("stop_intake")

    async def drain(self) -> None:
        self.calls.append("drain")
        await asyncio.sleep(self.drain_secs)

    async def close(self) -> None:
        self.calls.append("close")


@pytest.fixture
def telemetry() -> Iterator[Telemetry]:
    handle = setup_telemetry("lifecycle-test", set_global=False)
    yield handle
    handle.shutdown(timeout_secs=1.0)


def settings(**overrides: str) -> ServiceSettings:
    return load_settings(ServiceSettings, {"health_host": "127.0.0.1", "health_port": "0", **overrides})


async def wait_until_ready(app: RecordingApp) -> ServiceContext:
    for _ in range(500):
        if app.context is not None and app.context.health.accepting:
            return app.context
        await asyncio.sleep(0.01)
    raise AssertionError("service never became ready")


async def test_sigterm_runs_stop_intake_drain_close_in_order(telemetry: Telemetry) -> None:
    app = RecordingApp(settings())
    running = asyncio.create_task(_run(app, telemetry))
    await wait_until_ready(app)
    os.kill(os.getpid(), signal.SIGTERM)  # handled by the lifecycle's loop signal handler
    assert await asyncio.wait_for(running, timeout=5) == EXIT_OK
    assert app.calls == ["start", "stop_intake", "drain", "close"]


async def test_failed_background_task_stops_the_service_with_failure(telemetry: Telemetry) -> None:
    app = RecordingApp(settings())
    running = asyncio.create_task(_run(app, telemetry))
    context = await wait_until_ready(app)

    async def crash() -> None:
        raise RuntimeError("stream reader died")

    context.spawn(crash(), name="reader")
    assert await asyncio.wait_for(running, timeout=5) == EXIT_FAILED
    assert context.failures == ["reader: RuntimeError: stream reader died"]
    assert app.calls[-1] == "close"


async def test_start_up_failure_still_closes_and_fails(telemetry: Telemetry) -> None:
    app = RecordingApp(settings(), fail_start=True)
    assert await asyncio.wait_for(_run(app, telemetry), timeout=5) == EXIT_FAILED
    assert app.calls == ["start", "stop_intake", "drain", "close"]


async def test_shutdown_is_bounded_even_when_drain_hangs(telemetry: Telemetry) -> None:
    app = RecordingApp(settings(shutdown_timeout_secs="0.3"), drain_secs=60)
    running = asyncio.create_task(_run(app, telemetry))
    context = await wait_until_ready(app)
    loop = asyncio.get_running_loop()
    started = loop.time()
    context.stop_event.set()
    assert await asyncio.wait_for(running, timeout=5) == EXIT_FAILED
    assert loop.time() - started < 2.0
    assert app.calls == ["start", "stop_intake", "drain"]


async def test_spawned_tasks_are_cancelled_on_shutdown(telemetry: Telemetry) -> None:
    app = RecordingApp(settings())
    running = asyncio.create_task(_run(app, telemetry))
    context = await wait_until_ready(app)
    forever = context.spawn(asyncio.sleep(3600), name="intake")
    context.stop_event.set()
    assert await asyncio.wait_for(running, timeout=5) == EXIT_OK
    assert forever.cancelled()
