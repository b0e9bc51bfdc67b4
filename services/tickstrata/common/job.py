"""The one way every run-to-completion job (a Kubernetes CronJob's pod, a `tickstrata up` schedule) runs.

    start → run the work → flush telemetry → exit 0 (done) or non-zero (failed, or stopped before it finished)

A job is the batch sibling of `lifecycle.ServiceApp`: no readiness, no intake, one piece of work. SIGTERM (a pod
deleted, `concurrencyPolicy: Replace`, Ctrl-C) asks the work to stop at its next safe point through
`JobContext.stop_requested`; work that does not stop within `shutdown_timeout_secs` is cancelled. Either way the
job exits non-zero so the scheduler sees it did not finish, and, because every job is idempotent, the next run
picks up where it stopped.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import logging
import signal
import time
from collections.abc import Mapping
from typing import Any, ClassVar, Final, Generic, TypeVar

from tickstrata.common.lifecycle import run_with_telemetry
from tickstrata.common.settings import ServiceSettings
from tickstrata.common.telemetry import Telemetry

logger = logging.getLogger(__name__)

SettingsT = TypeVar("SettingsT", bound=ServiceSettings)

EXIT_DONE: Final = 0
EXIT_FAILED: Final = 1
EXIT_STOPPED: Final = 3  # stopped by a signal before the work was done: not a failure of the work, not success


class JobStopped(Exception):  # noqa: N818 - it is an outcome, not an error
    """Raised by a job's work at a safe point after `JobContext.stop_requested` was set."""


class JobContext:
    """What running work gets from the lifecycle: telemetry, and a stop request to honour between steps."""

    def __init__(self, *, telemetry: Telemetry) -> None:
        self.telemetry = telemetry
        self.stop_requested = asyncio.Event()

    def raise_if_stopping(self) -> None:
        """Call between steps that must not be interrupted half-way (a copy and its verification, say)."""
        if self.stop_requested.is_set():
            raise JobStopped("stop requested")


class JobApp(abc.ABC, Generic[SettingsT]):
    """A job's I/O edge: `run` does the work and returns a summary for the final log line; it raises on failure."""

    name: ClassVar[str]

    def __init__(self, settings: SettingsT) -> None:
        self.settings = settings

    @abc.abstractmethod
    async def run(self, context: JobContext) -> Mapping[str, Any]:
        """Do the whole piece of work once; return what it did (counts, bytes) for the closing log line."""


def run_job(app: JobApp[SettingsT]) -> int:
    """Run `app` once; return the process exit code (`EXIT_DONE`, `EXIT_FAILED` or `EXIT_STOPPED`)."""
    return run_with_telemetry(app.name, app.settings, lambda telemetry: _run(app, telemetry))


async def _run(app: JobApp[Any], telemetry: Telemetry) -> int:
    settings: ServiceSettings = app.settings
    context = JobContext(telemetry=telemetry)
    loop = asyncio.get_running_loop()
    received: list[str] = []

    def on_signal(signum: signal.Signals) -> None:
        received.append(signum.name)
        context.stop_requested.set()

    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, on_signal, signum)
    started = time.monotonic()
    work = asyncio.create_task(app.run(context), name=f"{app.name}-run")
    try:
        logger.info("job started")
        summary = await _until_done_or_stopped(work, context, grace_secs=settings.shutdown_timeout_secs)
    except JobStopped:
        logger.warning("job stopped before it finished", extra={"signals": received, **_elapsed(started)})
        return EXIT_STOPPED
    except Exception:
        logger.exception("job failed", extra=_elapsed(started))
        return EXIT_FAILED
    finally:
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(signum)
    logger.info("job done", extra={**dict(summary), **_elapsed(started)})
    return EXIT_DONE


async def _until_done_or_stopped(
    work: asyncio.Task[Mapping[str, Any]], context: JobContext, *, grace_secs: float
) -> Mapping[str, Any]:
    """The work's result; after a stop request it gets `grace_secs` to reach a safe point, then it is cancelled."""
    stopping = asyncio.create_task(context.stop_requested.wait())
    try:
        await asyncio.wait({work, stopping}, return_when=asyncio.FIRST_COMPLETED)
        if not work.done():
            done, _ = await asyncio.wait({work}, timeout=grace_secs)
            if not done:
                logger.error("job did not stop within its bound; cancelled", extra={"grace_secs": grace_secs})
                work.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await work
                raise JobStopped("cancelled after the grace period")
        return work.result()
    finally:
        stopping.cancel()


def _elapsed(started: float) -> dict[str, float]:
    return {"elapsed_secs": round(time.monotonic() - started, 3)}
