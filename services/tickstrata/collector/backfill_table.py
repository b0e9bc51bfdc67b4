"""Backfill job bookkeeping: which jobs run, which wait, which request id names which job. Pure, clocked from outside.

At most `max_running_jobs` jobs run at once: they share the venue's request-weight budget, so running more would only
slice it thinner. Up to `max_queued_jobs` more wait, first come first served, and start as running ones finish.
Beyond that a new job is refused (`QueueFullError`, RESOURCE_EXHAUSTED): every waiting job holds memory, and a queue
longer than the venue can work through only moves the refusal later. Finished jobs stay answerable for the
retention and at most `max_finished_jobs` of them are kept, oldest forgotten first, together with their request ids.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final, Generic, TypeVar

if TYPE_CHECKING:
    from tickstrata.collector.settings import CollectorSettings

NS_PER_SEC: Final = 1_000_000_000

JobT = TypeVar("JobT")


class BackfillRequestError(ValueError):
    """The request is malformed (empty or inverted window, a data type the venue cannot backfill, a field too long):
    INVALID_ARGUMENT, not retryable."""


class BackfillNotFoundError(LookupError):
    """The instrument is not in this collector's feed (another exchange, an unknown symbol): NOT_FOUND."""


class QueueFullError(Exception):
    """Every running slot and every queue place is taken: RESOURCE_EXHAUSTED; retry once jobs finish."""

    def __init__(self, queued: int, limit: int) -> None:
        super().__init__(
            f"{queued} backfill jobs queued, the limit is {limit} (COLLECTOR_BACKFILL_MAX_QUEUED_JOBS): "
            "retry when jobs finish (poll GetBackfillStatus)"
        )
        self.queued = queued
        self.limit = limit


@dataclass(frozen=True, slots=True)
class JobLimits:
    """The bounds of `JobTable`. The defaults repeat `CollectorSettings.backfill_*` (a unit test holds them equal)
    for callers that pass no settings; the collector passes `JobLimits.from_settings(settings)`."""

    max_running_jobs: int = 2
    max_queued_jobs: int = 256
    finished_retention_ns: int = 3600 * NS_PER_SEC
    max_finished_jobs: int = 1000

    def __post_init__(self) -> None:
        if (
            self.max_running_jobs < 1
            or self.max_queued_jobs < 0
            or self.max_finished_jobs < 1
            or self.finished_retention_ns <= 0
        ):
            raise ValueError(f"job limits must be positive (the queue may be 0): {self}")

    @classmethod
    def from_settings(cls, settings: CollectorSettings) -> JobLimits:
        return cls(
            max_running_jobs=settings.backfill_max_running_jobs,
            max_queued_jobs=settings.backfill_max_queued_jobs,
            finished_retention_ns=round(settings.backfill_finished_retention_secs * NS_PER_SEC),
            max_finished_jobs=settings.backfill_max_finished_jobs,
        )


class JobTable(Generic[JobT]):
    """Running, queued and finished jobs and their request ids. Pure: every call takes the time.

    `admit` runs a job at once if a running slot is free, else queues it; `finish` ends a running or queued job and
    returns the queued job that takes the freed slot, if any. Forgetting a finished job forgets its request id, so
    the memory held is bounded by `max_running_jobs + max_queued_jobs + max_finished_jobs` jobs whatever the callers
    send.
    """

    def __init__(self, limits: JobLimits) -> None:
        self.limits = limits
        self._running: dict[str, JobT] = {}
        self._queued: OrderedDict[str, JobT] = OrderedDict()  # FIFO
        self._finished: OrderedDict[str, tuple[int, JobT]] = OrderedDict()  # job id → (finished at, job)
        self._job_by_request: dict[str, str] = {}
        self._request_by_job: dict[str, str] = {}

    @property
    def running(self) -> int:
        return len(self._running)

    @property
    def queued(self) -> int:
        return len(self._queued)

    @property
    def finished(self) -> int:
        return len(self._finished)

    def queued_jobs(self) -> list[JobT]:
        """The waiting jobs, first in line first."""
        return list(self._queued.values())

    def get(self, job_id: str, now_ns: int) -> JobT | None:
        self.prune(now_ns)
        job = self._running.get(job_id)
        if job is None:
            job = self._queued.get(job_id)
        if job is not None:
            return job
        kept = self._finished.get(job_id)
        return kept[1] if kept is not None else None

    def by_request(self, request_id: str, now_ns: int) -> JobT | None:
        """The job an earlier call with this idempotency key started, while it is still kept."""
        self.prune(now_ns)
        job_id = self._job_by_request.get(request_id)
        return None if job_id is None else self.get(job_id, now_ns)

    def admit(self, job_id: str, job: JobT, request_id: str, now_ns: int) -> bool:
        """Take `job` in: True if it runs now, False if it waits in the queue. Raise `QueueFullError` if the queue
        is full too (nothing is recorded then)."""
        self.prune(now_ns)
        if job_id in self._running or job_id in self._queued or job_id in self._finished:
            raise ValueError(f"job id {job_id!r} already used")
        runs_now = len(self._running) < self.limits.max_running_jobs
        if runs_now:
            self._running[job_id] = job
        elif len(self._queued) < self.limits.max_queued_jobs:
            self._queued[job_id] = job
        else:
            raise QueueFullError(len(self._queued), self.limits.max_queued_jobs)
        if request_id:
            self._job_by_request[request_id] = job_id
            self._request_by_job[job_id] = request_id
        return runs_now

    def finish(self, job_id: str, now_ns: int) -> tuple[str, JobT] | None:
        """End a running or queued job and keep it, answerable, for the retention. Return the queued job (id, job)
        that now runs in the freed slot, or None."""
        job = self._running.pop(job_id, None)
        if job is None:
            job = self._queued.pop(job_id, None)
        if job is not None:
            self._finished[job_id] = (now_ns, job)
        promoted: tuple[str, JobT] | None = None
        if self._queued and len(self._running) < self.limits.max_running_jobs:
            promoted = self._queued.popitem(last=False)
            self._running[promoted[0]] = promoted[1]
        self.prune(now_ns)
        return promoted

    def prune(self, now_ns: int) -> int:
        """Forget finished jobs past the retention or beyond the count, oldest first; return how many."""
        cutoff_ns = now_ns - self.limits.finished_retention_ns
        pruned = 0
        while self._finished:
            job_id, (finished_ns, _job) = next(iter(self._finished.items()))
            if len(self._finished) <= self.limits.max_finished_jobs and finished_ns > cutoff_ns:
                break
            del self._finished[job_id]
            request_id = self._request_by_job.pop(job_id, None)
            if request_id is not None:
                del self._job_by_request[request_id]
            pruned += 1
        return pruned
