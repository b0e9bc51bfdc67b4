"""BackfillService: fetch a window from the venue's REST API and publish it through the normal path.

Status codes as the proto promises: INVALID_ARGUMENT for a malformed request (no or an unbackfillable data type, an
empty, inverted or over-long window, a field too long), NOT_FOUND for an instrument outside this collector's feed or
a job id not (or no longer) kept, RESOURCE_EXHAUSTED when the job queue is full.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any, Final

import grpc

from tickstrata.backfill.v1 import backfill_service_pb2 as pb
from tickstrata.backfill.v1 import backfill_service_pb2_grpc as pb_grpc
from tickstrata.collector.backfill import BackfillJob, BackfillJobs, JobStatus
from tickstrata.collector.backfill_evidence import BucketFinding, EvidenceRun
from tickstrata.collector.backfill_table import BackfillNotFoundError, BackfillRequestError, QueueFullError
from tickstrata.common.events import DataType
from tickstrata.marketdata.v1 import market_data_pb2

Context = grpc.aio.ServicerContext[Any, Any]

WAIT_CAP_SECS: Final = 300.0

DATA_TYPES: Final = {
    market_data_pb2.DATA_TYPE_TRADES: DataType.TRADES,
    market_data_pb2.DATA_TYPE_CANDLES: DataType.CANDLES,
    market_data_pb2.DATA_TYPE_QUOTES: DataType.QUOTES,
    market_data_pb2.DATA_TYPE_BOOKS: DataType.BOOKS,
    market_data_pb2.DATA_TYPE_FUNDING: DataType.FUNDING,
}
PROTO_DATA_TYPES: Final = {value: key for key, value in DATA_TYPES.items()}
STATUSES: Final = {
    JobStatus.QUEUED: pb.BACKFILL_STATUS_QUEUED,
    JobStatus.RUNNING: pb.BACKFILL_STATUS_RUNNING,
    JobStatus.SUCCEEDED: pb.BACKFILL_STATUS_SUCCEEDED,
    JobStatus.FAILED: pb.BACKFILL_STATUS_FAILED,
}
FINDINGS: Final = {
    BucketFinding.DATA: pb.BUCKET_FINDING_DATA,
    BucketFinding.EMPTY: pb.BUCKET_FINDING_EMPTY,
    BucketFinding.NO_RECORD: pb.BUCKET_FINDING_NO_RECORD,
}


def evidence_message(run: EvidenceRun) -> pb.BucketEvidence:
    return pb.BucketEvidence(start_ns=run.start_ns, end_ns=run.end_ns, finding=FINDINGS[run.finding], rows=run.rows)


def job_message(job: BackfillJob) -> pb.BackfillJob:
    return pb.BackfillJob(
        job_id=job.job_id,
        exchange=job.exchange,
        symbol=job.symbol,
        data_type=PROTO_DATA_TYPES[job.data_type],
        start_ns=job.start_ns,
        end_ns=job.end_ns,
        reason=job.reason,
        status=STATUSES[job.status],
        rows_published=job.rows_published,
        covered_until_ns=job.covered_until_ns,
        ts_created_ns=job.ts_created_ns,
        ts_finished_ns=job.ts_finished_ns,
        error_message=job.error_message,
        retryable=job.retryable,
        buckets=[evidence_message(run) for run in job.buckets],
    )


class BackfillService(pb_grpc.BackfillServiceServicer):
    def __init__(self, jobs: BackfillJobs) -> None:
        self._jobs = jobs

    async def Backfill(self, request: pb.BackfillRequest, context: Context) -> pb.BackfillResponse:
        data_type = DATA_TYPES.get(request.data_type)
        if data_type is None:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "data_type must be set (trades or candles)")
            raise AssertionError("unreachable")
        try:
            job = self._jobs.submit(
                exchange=request.exchange,
                symbol=request.symbol,
                data_type=data_type,
                start_ns=request.start_ns,
                end_ns=request.end_ns,
                reason=request.reason,
                request_id=request.request_id,
            )
        except BackfillNotFoundError as error:
            await context.abort(grpc.StatusCode.NOT_FOUND, str(error))
            raise AssertionError("unreachable") from error
        except BackfillRequestError as error:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(error))
            raise AssertionError("unreachable") from error
        except QueueFullError as error:
            await context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, str(error))
            raise AssertionError("unreachable") from error
        if request.wait:
            # Bounded by the caller's deadline (or ours, without one): then answer with the progress so far.
            remaining_secs = context.time_remaining()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(job.done.wait(), timeout=min(remaining_secs or WAIT_CAP_SECS, WAIT_CAP_SECS))
        return pb.BackfillResponse(job=job_message(job))

    async def GetBackfillStatus(
        self, request: pb.GetBackfillStatusRequest, context: Context
    ) -> pb.GetBackfillStatusResponse:
        job = self._jobs.get(request.job_id)
        if job is None:
            await context.abort(
                grpc.StatusCode.NOT_FOUND,
                f"no backfill job {request.job_id!r} (unknown, or finished and no longer kept)",
            )
            raise AssertionError("unreachable")
        return pb.GetBackfillStatusResponse(job=job_message(job))
