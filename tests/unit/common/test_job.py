"""The run-to-completion lifecycle: exit codes for done, failed and stopped, and a stop honoured at a safe point."""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Mapping
from typing import Any, ClassVar

from tickstrata.common.job import EXIT_DONE, EXIT_FAILED, EXIT_STOPPED, JobApp, JobContext, run_job
from tickstrata.common.settings import load_settings
from tickstrata.tierer.settings import TiererSettings


def _settings(**overrides: str) -> TiererSettings:
    env = {"TIERER_LOG_JSON": "false", **{f"TIERER_{k.upper()}": v for k, v in overrides.items()}}
    return load_settings(TiererSettings, env)


class Steps(JobApp[TiererSettings]):
    """Three steps; `signal_after` sends this process SIGTERM after that many steps."""

    name: ClassVar[str] = "steps"

    def __init__(self, settings: TiererSettings, *, signal_after: int | None = None, fail_at: int | None = None):
        super().__init__(settings)
        self.signal_after = signal_after
        self.fail_at = fail_at
        self.steps_done = 0

    async def run(self, context: JobContext) -> Mapping[str, Any]:
        for step in range(3):
            context.raise_if_stopping()
            if step == self.fail_at:
                raise RuntimeError("the copy did not verify")
            await asyncio.sleep(0)
            self.steps_done += 1
            if self.steps_done == self.signal_after:
                os.kill(os.getpid(), signal.SIGTERM)
                await asyncio.sleep(0.05)  # the handler runs on the loop
        return {"steps": self.steps_done}


class IgnoresStop(JobApp[TiererSettings]):
    name: ClassVar[str] = "stubborn"

    async def run(self, context: JobContext) -> Mapping[str, Any]:
        os.kill(os.getpid(), signal.SIGTERM)
        await asyncio.sleep(3600)
        return {}


def test_work_that_finishes_exits_zero() -> None:
    job = Steps(_settings())
    assert run_job(job) == EXIT_DONE
    assert job.steps_done == 3


def test_work_that_raises_exits_one() -> None:
    job = Steps(_settings(), fail_at=1)
    assert run_job(job) == EXIT_FAILED
    assert job.steps_done == 1


def test_sigterm_stops_the_work_at_its_next_safe_point_and_exits_three() -> None:
    job = Steps(_settings(), signal_after=1)
    assert run_job(job) == EXIT_STOPPED
    assert job.steps_done == 1  # the step under way finished; no further step began


def test_work_that_ignores_the_stop_is_cancelled_after_the_grace_period() -> None:
    assert run_job(IgnoresStop(_settings(shutdown_timeout_secs="0.2"))) == EXIT_STOPPED
