"""The writer's spans: each traced entry continues the trace its collector started.

    <stream> publish (collector, PRODUCER)
      └─ <stream> process (writer, CONSUMER): from the read to the XACK (or dead letter)
           └─ questdb.write <table> (CLIENT): the ILP/HTTP transaction that carried the entry's rows

Why children and not links (``tickstrata.common.telemetry.consumer_span`` links): the requirement is one trace
from the publish to the QuestDB write, and a link is a jump between traces. The writer's batching is expressed
by giving every entry of a batch its own ``process`` span, and by recording the one shared write as a child span
of each (same start and end, ``db.operation.batch.size`` the whole transaction). A backlog drained hours later
stretches the producer's trace; that is what happened to those events, and the spans show it.

Cost: two spans per traced entry, none per event (an entry carries up to 1000 events), and nothing for entries
without a trace context. Parent-based sampling (the default, ``OTEL_TRACES_SAMPLER``) follows the collector's
decision: entries of unsampled traces get non-recording spans, which cost almost nothing.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final

from opentelemetry import trace
from opentelemetry.trace import Span, SpanKind, Status, StatusCode

from tickstrata.common.streams import FIELD_TRACEPARENT, FIELD_TRACESTATE, WRITER_GROUP, EntryFields
from tickstrata.common.telemetry import (
    MESSAGING_CONSUMER_GROUP_NAME,
    MESSAGING_DESTINATION_NAME,
    MESSAGING_MESSAGE_ID,
    MESSAGING_OPERATION_NAME,
    MESSAGING_OPERATION_TYPE,
    MESSAGING_SYSTEM,
    extract_trace_context,
)
from tickstrata.writer.frames import rows_by_table
from tickstrata.writer.questdb_sink import TableWrite
from tickstrata.writer.wire import WireEvent

# Database semantic conventions (spelled out, as telemetry.py does for messaging).
DB_SYSTEM_NAME: Final = "db.system.name"
DB_COLLECTION_NAME: Final = "db.collection.name"
DB_OPERATION_NAME: Final = "db.operation.name"
DB_OPERATION_BATCH_SIZE: Final = "db.operation.batch.size"
ATTR_ENTRY_EVENTS: Final = "tickstrata.writer.entry_events"
ATTR_ENTRY_ROWS: Final = "tickstrata.writer.entry_rows"
"""Rows of this entry in the transaction (``db.operation.batch.size`` counts the whole transaction)."""


def write_span_name(table: str) -> str:
    return f"questdb.write {table}"


@dataclass(slots=True)
class _EntrySpan:
    span: Span
    rows_by_table: Mapping[str, int]


@dataclass(slots=True)
class BatchSpans:
    """The open ``process`` spans of one batch, by entry id; ended by ``finish``."""

    tracer: trace.Tracer
    entries: dict[tuple[str, bytes], _EntrySpan] = field(default_factory=dict)

    def start(self, stream: str, entry_id: bytes, fields: EntryFields, events: Sequence[WireEvent]) -> None:
        """Open the entry's span if it carries a trace context (a no-op otherwise)."""
        traceparent = fields.get(FIELD_TRACEPARENT)
        if traceparent is None:
            return
        parent = extract_trace_context({"traceparent": traceparent, "tracestate": fields.get(FIELD_TRACESTATE)})
        if not trace.get_current_span(parent).get_span_context().is_valid:
            return  # a malformed traceparent: nothing to continue
        span = self.tracer.start_span(
            f"{stream} process",
            context=parent,
            kind=SpanKind.CONSUMER,
            attributes={
                MESSAGING_SYSTEM: "redis",
                MESSAGING_DESTINATION_NAME: stream,
                MESSAGING_OPERATION_TYPE: "process",
                MESSAGING_OPERATION_NAME: "process",
                MESSAGING_MESSAGE_ID: entry_id.decode("ascii", "replace"),
                MESSAGING_CONSUMER_GROUP_NAME: WRITER_GROUP,
                ATTR_ENTRY_EVENTS: len(events),
            },
        )
        if span.is_recording():
            self.entries[(stream, entry_id)] = _EntrySpan(span, rows_by_table(events))

    def record_writes(self, writes: Sequence[TableWrite]) -> None:
        """Add the transactions that carried each traced entry's rows, as its children with their real times."""
        if not self.entries:
            return
        for entry in self.entries.values():
            parent = trace.set_span_in_context(entry.span)
            for write in writes:
                rows = entry.rows_by_table.get(write.table)
                if not rows:
                    continue
                child = self.tracer.start_span(
                    write_span_name(write.table),
                    context=parent,
                    kind=SpanKind.CLIENT,
                    start_time=write.start_ns,
                    attributes={
                        DB_SYSTEM_NAME: "questdb",
                        DB_COLLECTION_NAME: write.table,
                        DB_OPERATION_NAME: "ilp.flush",
                        DB_OPERATION_BATCH_SIZE: write.rows,
                        ATTR_ENTRY_ROWS: rows,
                    },
                )
                child.end(end_time=write.end_ns)

    def record_retry(self, error: BaseException) -> None:
        """A write attempt failed (QuestDB away, a table suspended): every open span shows it."""
        for entry in self.entries.values():
            entry.span.record_exception(error, attributes={"tickstrata.writer.retry": True})

    def fail(self, stream: str, entry_id: bytes, reason: str) -> None:
        """End the entry's span as failed (dead-lettered, or left pending)."""
        entry = self.entries.pop((stream, entry_id), None)
        if entry is not None:
            entry.span.set_status(Status(StatusCode.ERROR, reason))
            entry.span.end()

    def finish(self, error: BaseException | None = None) -> None:
        """End every open span: acknowledged, or (with `error`) given up on for now, still pending."""
        for entry in self.entries.values():
            if error is not None:
                entry.span.set_status(Status(StatusCode.ERROR, f"left pending: {type(error).__name__}"))
            entry.span.end()
        self.entries.clear()
