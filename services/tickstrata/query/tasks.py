"""Stopping the query service's background tasks for sure.

Why not just ``task.cancel(); await task``: on Python 3.11, ``asyncio.wait_for`` drops a cancellation that lands
in the same loop iteration as the awaited operation completes, and redis-py wraps every command's send in
``wait_for`` (when the client has a socket timeout, as ours does). One ``cancel()`` can therefore be lost, and a
``while True`` reader then runs on while its owner waits for it forever: seen in bench_query_latest.py, where a
`LatestRpcs.close()` hung after a few hundred start/close cycles.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Final

RECANCEL_SECS: Final = 0.05
"""How long a cancelled task may take to end before it is cancelled again."""

logger = logging.getLogger(__name__)


async def stop_task(task: asyncio.Task[Any], *, recancel_secs: float = RECANCEL_SECS) -> None:
    """Cancel `task` and wait until it has ended, cancelling it again while it runs on.

    A cancellation of the caller itself propagates (``asyncio.wait`` never swallows it), unlike
    ``suppress(CancelledError): await task``. An exception the task ended with is logged, not raised: the
    caller is shutting it down and has nothing better to do with it.
    """
    while not task.done():
        task.cancel()
        await asyncio.wait({task}, timeout=recancel_secs)
    if not task.cancelled() and (error := task.exception()) is not None:
        logger.warning("background task failed before its stop", exc_info=error, extra={"task": task.get_name()})
