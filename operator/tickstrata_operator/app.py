"""Operator: runs kopf with the ExchangeFeed handlers inside the common service lifecycle.

`/healthz` (the liveness probe) answers while the process runs; if kopf's loop ends or fails, the supervised task
stops the service and the process exits non-zero, so the pod is restarted. `/readyz` is ready once kopf has
started its watches.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from typing import ClassVar, Final

import kopf
import urllib3

from tickstrata.common.health import CheckResult
from tickstrata.common.lifecycle import ServiceApp, ServiceContext
from tickstrata_operator.feed_stats import StatsReader
from tickstrata_operator.handlers import build_registry
from tickstrata_operator.kube_io import Kube, load_api_client
from tickstrata_operator.reconcile import Reconciler
from tickstrata_operator.resync import StatsTracker, resync_forever
from tickstrata_operator.settings import OperatorSettings

logger = logging.getLogger(__name__)

KOPF_STOP_SECS: Final = 2.0
"""How long kopf may take to stop before it is cancelled. Its graceful stop waits up to 5 s for requests still in
flight (discovery retrying on a closed connection, seen right after start-up); everything the operator does is
level-based and idempotent, so cutting that short loses nothing, and the pod stops well inside its grace period."""


class _KopfRecordFilter(logging.Filter):
    """Drop what kopf attaches to each record for its own event posting (its whole settings object, a flag), so
    our formatters do not print it as fields; keep `k8s_ref`, which says which object the line is about."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.name.startswith("kopf"):
            record.__dict__.pop("settings", None)
            record.__dict__.pop("k8s_skip", None)
        return True


def _quiet_kopf() -> None:
    # kopf logs every handler run at INFO; the reconciler logs what changed instead.
    logging.getLogger("kopf.objects").setLevel(logging.WARNING)
    for handler in logging.getLogger().handlers:
        handler.addFilter(_KopfRecordFilter())


class OperatorApp(ServiceApp[OperatorSettings]):
    name: ClassVar[str] = "operator"

    def __init__(self, settings: OperatorSettings) -> None:
        super().__init__(settings)
        self._stop_flag = asyncio.Event()
        self._ready_flag = asyncio.Event()
        self._signals_reclaimed = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def start(self, context: ServiceContext) -> None:
        _quiet_kopf()
        api = await asyncio.to_thread(load_api_client)
        if not api.configuration.verify_ssl:
            # Told so by the kubeconfig (`insecure-skip-tls-verify`): say it once, not on every request.
            logger.warning("the Kubernetes API server's certificate is not verified (insecure-skip-tls-verify)")
            urllib3.disable_warnings(urllib3.exceptions.InsecureRequestWarning)
        kube = Kube(api)
        reconciler = Reconciler(kube, self.settings)
        registry = build_registry(reconciler, self.settings)
        namespace = self.settings.namespace
        stats_url = self.settings.stats_redis_url or self.settings.redis_url
        # Routes outlive three missed resyncs, so a slow API server does not cut the validator off.
        routes_ttl_secs = int(3 * self.settings.resync_interval_secs) + 1
        stats = None if stats_url == "off" else StatsTracker(StatsReader(stats_url), routes_ttl_secs=routes_ttl_secs)
        resync = resync_forever(
            kube,
            reconciler,
            namespace,
            interval_secs=self.settings.resync_interval_secs,
            stop=self._stop_flag,
            stats=stats,
        )
        # Before kopf starts: kopf waits on stopping for every task that appeared after it started (up to 5 s).
        context.spawn(resync, name="resync")
        self._task = context.spawn(
            kopf.operator(
                registry=registry,
                standalone=True,
                clusterwide=not namespace,
                namespaces=[namespace] if namespace else (),
                stop_flag=self._stop_flag,
                ready_flag=self._ready_flag,
            ),
            name="kopf",
        )
        # If kopf ends on its own (a fatal error, or a signal before the handlers below are back), the service stops.
        self._task.add_done_callback(lambda _: context.stop_event.set())
        context.spawn(self._reclaim_signals(context), name="reclaim-signals")

        async def watching() -> CheckResult:
            # Ready once kopf watches and SIGTERM is the lifecycle's again (a stop then takes well under a second).
            ready = self._signals_reclaimed.is_set()
            return CheckResult(ready, "watching ExchangeFeeds" if ready else "kopf is starting")

        context.health.add_check("kopf", watching)
        logger.info("operator started", extra={"namespace": namespace or "(all)"})

    async def _reclaim_signals(self, context: ServiceContext) -> None:
        """kopf installs its own SIGTERM/SIGINT handlers when it starts; once it has, hand them back to the service
        lifecycle, whose orderly stop then stops kopf through its stop flag (signal → not ready → stop → exit)."""
        await self._ready_flag.wait()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, context.stop_event.set)
        self._signals_reclaimed.set()

    async def stop_intake(self) -> None:
        self._stop_flag.set()
        if self._task is not None:
            done, _ = await asyncio.wait({self._task}, timeout=KOPF_STOP_SECS)
            if not done:
                self._task.cancel()
