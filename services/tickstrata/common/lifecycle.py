"""The one way every service starts and stops.

    signal (SIGTERM/SIGINT) → not ready → stop intake → drain → close → flush telemetry → exit

The whole shutdown is bounded by the service's `shutdown_timeout_secs`, which the chart keeps below the pod's
termination grace period, so kubelet never has to SIGKILL us in the middle of an acknowledgement. A background
task that crashes stops the service the same orderly way, and the exit code says it failed.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import logging
import signal
import time
from collections.abc import Callable, Coroutine
from typing import Any, ClassVar, Generic, TypeVar

from tickstrata.common.health import HealthServer, HealthState
from tickstrata.common.logging import configure_logging
from tickstrata.common.settings import ServiceSettings
from tickstrata.common.telemetry import Telemetry, setup_telemetry

logger = logging.getLogger(__name__)

SettingsT = TypeVar("SettingsT", bound=ServiceSettings)

EXIT_OK = 0
EXIT_FAILED = 1


class ServiceContext:
    """What a running service gets from the lifecycle: readiness checks, telemetry and supervised tasks."""

    def __init__(self, *, health: HealthState, telemetry: Telemetry, stop_event: asyncio.Event) -> None:
        self.health = health
        self.telemetry = telemetry
        self.stop_event = stop_event
        self.failures: list[str] = []
        self._tasks: set[asyncio.Task[Any]] = set()

    def spawn(self, coro: Coroutine[Any, Any, Any], *, name: str) -> asyncio.Task[Any]:
        """Run `coro` in the background; if it fails, record why and begin the orderly shutdown."""
        task = asyncio.create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._on_task_done)
        return task

    def _on_task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if task.cancelled():
            return
        error = task.exception()
        if error is not None:
            logger.error("background task failed", exc_info=error, extra={"task": task.get_name()})
            self.failures.append(f"{task.get_name()}: {type(error).__name__}: {error}")
            self.stop_event.set()

    async def cancel_tasks(self) -> None:
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


class ServiceApp(abc.ABC, Generic[SettingsT]):
    """A service's I/O edge. Logic lives in pure modules; this class only wires connections and tasks."""

    name: ClassVar[str]

    def __init__(self, settings: SettingsT) -> None:
        self.settings = settings

    @abc.abstractmethod
    async def start(self, context: ServiceContext) -> None:
        """Open connections, register readiness checks and spawn intake tasks. Return once serving."""

    async def stop_intake(self) -> None:
        """Stop taking new work: close exchange sockets, stop reading streams, refuse new RPCs."""

    async def drain(self) -> None:
        """Finish work already taken: flush buffers to their sink and acknowledge what was written."""

    async def close(self) -> None:
        """Close clients and servers."""


def run_service(app: ServiceApp[SettingsT]) -> int:
    """Run `app` until SIGTERM/SIGINT or a task failure; return the process exit code."""
    return run_with_telemetry(app.name, app.settings, lambda telemetry: _run(app, telemetry))


def run_with_telemetry(
    name: str, settings: ServiceSettings, main: Callable[[Telemetry], Coroutine[Any, Any, int]]
) -> int:
    """Logging and telemetry set up for `name`, `main` run on a new event loop, telemetry flushed whatever happened
    (the process ends right after: spans and metrics not exported now never are)."""
    configure_logging(service_name=name, level=settings.log_level.upper(), json_format=settings.log_json)
    telemetry = setup_telemetry(name)
    try:
        return asyncio.run(main(telemetry))
    finally:
        telemetry.shutdown(timeout_secs=min(5.0, settings.shutdown_timeout_secs))


async def _run(app: ServiceApp[Any], telemetry: Telemetry) -> int:
    settings: ServiceSettings = app.settings
    stop_event = asyncio.Event()
    loop = asyncio.get_running_loop()
    received: list[str] = []

    def on_signal(signum: signal.Signals) -> None:
        received.append(signum.name)
        stop_event.set()

    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, on_signal, signum)

    health = HealthState()
    context = ServiceContext(health=health, telemetry=telemetry, stop_event=stop_event)
    health_server = HealthServer(health, host=settings.health_host, port=settings.health_port)
    await health_server.start()
    try:
        if not await _start_unless_stopped(app, context, stop_event):
            logger.info("stopped before start-up finished", extra={"signals": received})
        else:
            health.accepting = True
            logger.info("service ready", extra={"health_port": health_server.port})
            await stop_event.wait()
        health.accepting = False
        logger.info("shutting down", extra={"signals": received, "failures": context.failures})
        clean = await _shutdown(app, context, timeout_secs=settings.shutdown_timeout_secs)
    except Exception:
        logger.exception("service failed during start-up")
        with contextlib.suppress(Exception):
            await _shutdown(app, context, timeout_secs=settings.shutdown_timeout_secs)
        return EXIT_FAILED
    finally:
        await health_server.close()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(signum)
    return EXIT_OK if clean and not context.failures else EXIT_FAILED


async def _start_unless_stopped(app: ServiceApp[Any], context: ServiceContext, stop_event: asyncio.Event) -> bool:
    """Run `app.start`, abandoning it if a stop signal arrives first (a pod killed while still starting)."""
    start = asyncio.create_task(app.start(context), name=f"{app.name}-start")
    stopped = asyncio.create_task(stop_event.wait())
    done, _ = await asyncio.wait({start, stopped}, return_when=asyncio.FIRST_COMPLETED)
    if start in done:
        stopped.cancel()
        start.result()  # re-raise a start-up failure
        return True
    start.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await start
    return False


async def _shutdown(app: ServiceApp[Any], context: ServiceContext, *, timeout_secs: float) -> bool:
    started = time.monotonic()
    try:
        async with asyncio.timeout(timeout_secs):
            await app.stop_intake()
            await app.drain()
            await context.cancel_tasks()
            await app.close()
    except TimeoutError:
        logger.error("shutdown exceeded its bound", extra={"shutdown_timeout_secs": timeout_secs})
        await context.cancel_tasks()
        return False
    logger.info("shutdown complete", extra={"shutdown_secs": round(time.monotonic() - started, 3)})
    return True
