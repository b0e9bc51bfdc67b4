"""The writer continues the collector's trace: publish → process (child) → questdb.write (grandchild)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, ParentBased
from opentelemetry.trace import Span, SpanKind, StatusCode

from tests.unit.common import _samples
from tickstrata.common.streams import xadd_args
from tickstrata.common.telemetry import producer_span
from tickstrata.writer.questdb_sink import TableWrite
from tickstrata.writer.tracing import BatchSpans
from tickstrata.writer.wire import decode_wire_entry

STREAM = "md:binance:trades"
ENTRY_ID = b"1717000000000-0"


@pytest.fixture
def exporter() -> InMemorySpanExporter:
    return InMemorySpanExporter()


@pytest.fixture
def provider(exporter: InMemorySpanExporter) -> Iterator[TracerProvider]:
    provider = TracerProvider(shutdown_on_exit=False)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    yield provider
    provider.shutdown()


def published_entry(provider: TracerProvider, events: int = 3) -> tuple[dict[bytes, bytes], Span]:
    """An entry as the collector's publisher makes it: encoded inside its PRODUCER span, with its context."""
    carrier: dict[str, str] = {}
    with producer_span(provider.get_tracer("collector"), STREAM, carrier=carrier) as span:
        trades = [_samples.trade(trade_id=str(i)) for i in range(events)]
        fields = xadd_args(trades, traceparent=carrier["traceparent"]).fields
    return {bytes(key): bytes(value) for key, value in fields.items()}, span  # type: ignore[arg-type]


def named(exporter: InMemorySpanExporter, name: str) -> ReadableSpan:
    [span] = [span for span in exporter.get_finished_spans() if span.name == name]
    return span


def test_process_is_a_child_of_the_publish_and_the_write_a_child_of_the_process(
    provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    fields, producer = published_entry(provider, events=3)
    spans = BatchSpans(provider.get_tracer("writer"))
    spans.start(STREAM, ENTRY_ID, fields, decode_wire_entry(fields))
    spans.record_writes([TableWrite("trades", rows=500, start_ns=1_000, end_ns=2_000)])
    spans.finish()

    process = named(exporter, f"{STREAM} process")
    write = named(exporter, "questdb.write trades")
    producer_context = producer.get_span_context()
    assert process.context is not None
    assert write.context is not None
    assert process.context.trace_id == producer_context.trace_id == write.context.trace_id
    assert process.parent is not None
    assert process.parent.span_id == producer_context.span_id
    assert write.parent is not None
    assert write.parent.span_id == process.context.span_id
    assert process.kind is SpanKind.CONSUMER
    assert write.kind is SpanKind.CLIENT
    assert (write.start_time, write.end_time) == (1_000, 2_000)  # the transaction's real times
    assert write.attributes is not None
    assert process.attributes is not None
    assert write.attributes["db.operation.batch.size"] == 500
    assert write.attributes["tickstrata.writer.entry_rows"] == 3
    assert write.attributes["db.collection.name"] == "trades"
    assert process.attributes["messaging.message.id"] == ENTRY_ID.decode()
    assert process.attributes["messaging.consumer.group.name"] == "writer"
    assert process.attributes["tickstrata.writer.entry_events"] == 3
    assert process.status.status_code is StatusCode.UNSET


def test_only_the_tables_an_entry_wrote_to_become_its_children(
    provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    fields, _ = published_entry(provider)
    spans = BatchSpans(provider.get_tracer("writer"))
    spans.start(STREAM, ENTRY_ID, fields, decode_wire_entry(fields))
    spans.record_writes([TableWrite("candles", 10, 1, 2), TableWrite("trades", 10, 3, 4)])
    spans.finish()
    assert sorted(span.name for span in exporter.get_finished_spans() if span.name.startswith("questdb")) == [
        "questdb.write trades"
    ]


def test_entries_without_trace_context_get_no_spans(provider: TracerProvider, exporter: InMemorySpanExporter) -> None:
    fields = {bytes(k): bytes(v) for k, v in xadd_args([_samples.trade()]).fields.items()}  # type: ignore[arg-type]
    malformed = {**fields, b"tp": b"00-not-a-traceparent"}
    spans = BatchSpans(provider.get_tracer("writer"))
    for entry in (fields, malformed):
        spans.start(STREAM, ENTRY_ID, entry, decode_wire_entry(entry))
    spans.record_writes([TableWrite("trades", 1, 1, 2)])
    spans.finish()
    assert exporter.get_finished_spans() == ()


def test_unsampled_traces_stay_unrecorded(exporter: InMemorySpanExporter) -> None:
    provider = TracerProvider(sampler=ParentBased(ALWAYS_OFF), shutdown_on_exit=False)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    fields, _ = published_entry(provider)  # the collector decided not to sample: flags 00
    assert int(fields[b"tp"][-2:], 16) & 0x01 == 0  # the sampled flag is off
    spans = BatchSpans(provider.get_tracer("writer"))
    spans.start(STREAM, ENTRY_ID, fields, decode_wire_entry(fields))
    spans.record_writes([TableWrite("trades", 1, 1, 2)])
    spans.finish()
    assert exporter.get_finished_spans() == ()
    provider.shutdown()


def test_a_dead_lettered_entry_ends_as_an_error_and_an_abandoned_batch_too(
    provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    first, _ = published_entry(provider)
    second, _ = published_entry(provider)
    spans = BatchSpans(provider.get_tracer("writer"))
    spans.start(STREAM, b"1-0", first, decode_wire_entry(first))
    spans.start(STREAM, b"2-0", second, decode_wire_entry(second))
    spans.fail(STREAM, b"1-0", "dead-lettered: bad_events: ...")
    spans.record_retry(ConnectionError("QuestDB away"))
    spans.finish(RuntimeError("stopping"))

    by_id = {
        span.attributes["messaging.message.id"]: span
        for span in exporter.get_finished_spans()
        if span.attributes is not None and span.kind is SpanKind.CONSUMER
    }
    assert by_id["1-0"].status.status_code is StatusCode.ERROR
    assert by_id["1-0"].status.description == "dead-lettered: bad_events: ..."
    assert by_id["2-0"].status.status_code is StatusCode.ERROR
    assert [event.name for event in by_id["2-0"].events] == ["exception"]
