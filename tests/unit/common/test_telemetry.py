"""Telemetry set-up from OTEL_* variables, and W3C trace context across Redis Stream entries."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator

import pytest
from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.metrics.export import InMemoryMetricReader, MetricReader, Sum
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import ConsoleSpanExporter, SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from tickstrata.common.telemetry import (
    ATTR_EXCHANGE,
    StreamFields,
    Telemetry,
    TelemetryConfigError,
    consumer_batch_span,
    consumer_span,
    extract_trace_context,
    inject_trace_context,
    producer_span,
    setup_telemetry,
)

STREAM = "md:binance:trades"

Setup = Callable[..., Telemetry]


@pytest.fixture(autouse=True)
def clean_otel_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test states the OTEL_* variables it depends on; none leak in from the shell or CI."""
    for name in list(os.environ):
        if name.startswith("OTEL_"):
            monkeypatch.delenv(name)


@pytest.fixture
def spans() -> InMemorySpanExporter:
    return InMemorySpanExporter()


@pytest.fixture
def setup(spans: InMemorySpanExporter) -> Iterator[Setup]:
    """setup_telemetry without touching the process-wide providers; everything it built is shut down after."""
    created: list[Telemetry] = []

    def make(service_name: str = "collector", *, metric_readers: tuple[MetricReader, ...] = ()) -> Telemetry:
        telemetry = setup_telemetry(
            service_name,
            set_global=False,
            span_processors=[SimpleSpanProcessor(spans)],
            metric_readers=metric_readers,
        )
        created.append(telemetry)
        return telemetry

    yield make
    for telemetry in created:
        telemetry.shutdown(timeout_secs=5.0)


def by_name(spans: InMemorySpanExporter, name: str) -> ReadableSpan:
    [span] = [span for span in spans.get_finished_spans() if span.name == name]
    return span


def test_default_without_endpoint_exports_nothing_but_spans_have_real_ids(
    setup: Setup, spans: InMemorySpanExporter
) -> None:
    telemetry = setup("collector")
    assert telemetry.enabled
    assert telemetry.span_exporters == ()
    assert telemetry.metric_exporters == ()

    with telemetry.tracer.start_as_current_span("connect") as span:
        assert span.get_span_context().is_valid
        assert span.is_recording()
    assert by_name(spans, "connect").context.trace_id == span.get_span_context().trace_id


def test_resource_defaults_to_our_service_name(setup: Setup) -> None:
    telemetry = setup("collector")
    assert telemetry.tracer_provider is not None
    attributes = telemetry.tracer_provider.resource.attributes
    assert attributes["service.name"] == "collector"
    assert attributes["service.namespace"] == "tickstrata"
    assert attributes["service.version"] == "0.1.0"


def test_resource_environment_wins_over_code(monkeypatch: pytest.MonkeyPatch, setup: Setup) -> None:
    monkeypatch.setenv("OTEL_SERVICE_NAME", "collector-binance")
    monkeypatch.setenv("OTEL_RESOURCE_ATTRIBUTES", "deployment.environment.name=staging,service.version=9.9.9")
    telemetry = setup("collector")
    assert telemetry.tracer_provider is not None
    attributes = telemetry.tracer_provider.resource.attributes
    assert attributes["service.name"] == "collector-binance"
    assert attributes["service.version"] == "9.9.9"
    assert attributes["deployment.environment.name"] == "staging"


def test_service_name_in_resource_attributes_wins_when_otel_service_name_is_unset(
    monkeypatch: pytest.MonkeyPatch, setup: Setup
) -> None:
    monkeypatch.setenv("OTEL_RESOURCE_ATTRIBUTES", "service.name=from-attributes")
    telemetry = setup("collector")
    assert telemetry.tracer_provider is not None
    assert telemetry.tracer_provider.resource.attributes["service.name"] == "from-attributes"


def test_general_endpoint_selects_otlp_for_both_signals(monkeypatch: pytest.MonkeyPatch, setup: Setup) -> None:
    # Nothing is recorded, so shutting down sends nothing to this closed port.
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:9")
    telemetry = setup()
    assert [type(exporter) for exporter in telemetry.span_exporters] == [OTLPSpanExporter]
    assert [type(exporter) for exporter in telemetry.metric_exporters] == [OTLPMetricExporter]


def test_signal_specific_endpoint_selects_otlp_for_that_signal_only(
    monkeypatch: pytest.MonkeyPatch, setup: Setup
) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://127.0.0.1:9")
    telemetry = setup()
    assert [type(exporter) for exporter in telemetry.span_exporters] == [OTLPSpanExporter]
    assert telemetry.metric_exporters == ()


def test_explicit_exporter_choice_wins_over_the_endpoint_default(monkeypatch: pytest.MonkeyPatch, setup: Setup) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:9")
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "console")
    monkeypatch.setenv("OTEL_METRICS_EXPORTER", "none")
    telemetry = setup()
    assert [type(exporter) for exporter in telemetry.span_exporters] == [ConsoleSpanExporter]
    assert telemetry.metric_exporters == ()


def test_unsupported_exporter_is_refused(monkeypatch: pytest.MonkeyPatch, setup: Setup) -> None:
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "zipkin")
    with pytest.raises(TelemetryConfigError, match="OTEL_TRACES_EXPORTER='zipkin'"):
        setup()


def test_otlp_over_http_is_refused_with_a_clear_error(monkeypatch: pytest.MonkeyPatch, setup: Setup) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4318")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")
    with pytest.raises(TelemetryConfigError, match="gRPC only"):
        setup()


def test_signal_specific_grpc_protocol_overrides_the_general_one(monkeypatch: pytest.MonkeyPatch, setup: Setup) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://127.0.0.1:9")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "grpc")
    telemetry = setup()
    assert [type(exporter) for exporter in telemetry.span_exporters] == [OTLPSpanExporter]


def test_sdk_disabled_gives_no_op_tracer_and_meter(monkeypatch: pytest.MonkeyPatch, setup: Setup) -> None:
    monkeypatch.setenv("OTEL_SDK_DISABLED", "true")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:9")
    telemetry = setup()
    assert not telemetry.enabled
    assert telemetry.tracer_provider is None
    assert telemetry.span_exporters == ()
    with telemetry.tracer.start_as_current_span("ignored") as span:
        assert not span.get_span_context().is_valid
        carrier: dict[str, str] = {}
        inject_trace_context(carrier)
        assert carrier == {}
    telemetry.meter.create_counter("tickstrata.test.things").add(1)
    assert telemetry.shutdown(timeout_secs=1.0)


def test_meter_records_into_configured_readers(setup: Setup) -> None:
    reader = InMemoryMetricReader()
    telemetry = setup(metric_readers=(reader,))
    telemetry.meter.create_counter("tickstrata.collector.trades", unit="{trade}").add(3, {ATTR_EXCHANGE: "okx"})

    data = reader.get_metrics_data()
    assert data is not None
    [metric] = [
        metric
        for resource_metrics in data.resource_metrics
        for scope_metrics in resource_metrics.scope_metrics
        for metric in scope_metrics.metrics
    ]
    assert metric.name == "tickstrata.collector.trades"
    assert metric.unit == "{trade}"
    assert isinstance(metric.data, Sum)
    assert metric.data.is_monotonic
    [point] = metric.data.data_points
    assert point.attributes == {ATTR_EXCHANGE: "okx"}
    assert point.value == 3


def test_shutdown_is_idempotent(setup: Setup) -> None:
    telemetry = setup()
    assert telemetry.shutdown(timeout_secs=2.0)
    assert telemetry.shutdown(timeout_secs=2.0)


def test_inject_extract_round_trip_links_the_consumer_to_the_producer(
    setup: Setup, spans: InMemorySpanExporter
) -> None:
    telemetry = setup()
    fields: dict[str, str] = {"v": "1"}
    with producer_span(telemetry.tracer, STREAM, carrier=fields, attributes={ATTR_EXCHANGE: "binance"}):
        pass
    assert set(fields) == {"v", "traceparent"}
    # What redis-py hands back without decode_responses: bytes keys and values.
    entry = {key.encode(): value.encode() for key, value in fields.items()}

    with consumer_span(telemetry.tracer, STREAM, entry, message_id="1700000000000-0", group="writer"):
        pass

    producer = by_name(spans, f"{STREAM} publish")
    consumer = by_name(spans, f"{STREAM} process")
    assert producer.kind is SpanKind.PRODUCER
    assert consumer.kind is SpanKind.CONSUMER
    assert producer.context is not None
    assert consumer.context is not None
    [link] = consumer.links
    assert link.context.trace_id == producer.context.trace_id
    assert link.context.span_id == producer.context.span_id
    assert link.context.is_remote
    # Linked, not parented: the consumer is the root of its own trace when nothing else is current.
    assert consumer.parent is None
    assert consumer.context.trace_id != producer.context.trace_id

    assert producer.attributes == {
        "messaging.system": "redis",
        "messaging.destination.name": STREAM,
        "messaging.operation.type": "send",
        "messaging.operation.name": "publish",
        ATTR_EXCHANGE: "binance",
    }
    assert consumer.attributes == {
        "messaging.system": "redis",
        "messaging.destination.name": STREAM,
        "messaging.operation.type": "process",
        "messaging.operation.name": "process",
        "messaging.message.id": "1700000000000-0",
        "messaging.consumer.group.name": "writer",
    }


def test_decoded_entry_shape_round_trips(setup: Setup, spans: InMemorySpanExporter) -> None:
    """The stream codec stores the two W3C values under short field names and hands them back decoded."""
    telemetry = setup()
    carrier: dict[str, str] = {}
    with producer_span(telemetry.tracer, STREAM, carrier=carrier) as producer:
        traceparent, tracestate = carrier.get("traceparent"), carrier.get("tracestate")
    decoded: dict[str, str | None] = {"traceparent": traceparent, "tracestate": tracestate}

    with consumer_span(telemetry.tracer, STREAM, decoded):
        pass
    [link] = by_name(spans, f"{STREAM} process").links
    assert link.context.span_id == producer.get_span_context().span_id


def test_consumer_span_joins_the_current_trace(setup: Setup, spans: InMemorySpanExporter) -> None:
    telemetry = setup()
    fields: dict[str, str] = {}
    with producer_span(telemetry.tracer, STREAM):
        inject_trace_context(fields)
    with (
        telemetry.tracer.start_as_current_span("read batch") as outer,
        consumer_span(telemetry.tracer, STREAM, fields),
    ):
        pass

    consumer = by_name(spans, f"{STREAM} process")
    assert consumer.parent is not None
    assert consumer.parent.span_id == outer.get_span_context().span_id
    assert consumer.links[0].context.trace_id == by_name(spans, f"{STREAM} publish").context.trace_id


def test_extract_keeps_tracestate_and_ignores_other_fields() -> None:
    traceparent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    context = extract_trace_context({b"traceparent": traceparent.encode(), b"tracestate": b"vendor=x", b"p": b"1"})
    span_context = trace.get_current_span(context).get_span_context()
    assert span_context.trace_id == 0x0AF7651916CD43DD8448EB211C80319C
    assert span_context.span_id == 0xB7AD6B7169203331
    assert span_context.trace_state.get("vendor") == "x"


@pytest.mark.parametrize(
    "fields",
    [
        {},
        {"traceparent": None, "tracestate": None},  # a decoded entry from a producer that did not trace
        {b"traceparent": b"garbage"},
        {b"traceparent": b"\xff\xfe"},
        {"traceparent": "00-" + "0" * 32 + "-1-01"},
    ],
)
def test_missing_or_malformed_context_gives_an_unlinked_consumer_span(
    setup: Setup, spans: InMemorySpanExporter, fields: StreamFields
) -> None:
    assert not trace.get_current_span(extract_trace_context(fields)).get_span_context().is_valid
    telemetry = setup()
    with consumer_span(telemetry.tracer, STREAM, fields):
        pass
    assert by_name(spans, f"{STREAM} process").links == ()


def test_inject_without_a_span_writes_nothing() -> None:
    carrier: dict[str, str] = {}
    inject_trace_context(carrier)
    assert carrier == {}


def test_batch_consumer_span_links_every_producer(setup: Setup, spans: InMemorySpanExporter) -> None:
    telemetry = setup()
    entries: list[dict[str, str]] = []
    for _ in range(3):
        fields: dict[str, str] = {}
        with producer_span(telemetry.tracer, STREAM, carrier=fields):
            pass
        entries.append(fields)
    entries.append({})  # an entry written by something that does not trace

    with consumer_batch_span(telemetry.tracer, STREAM, entries, group="writer"):
        pass

    producers = [span for span in spans.get_finished_spans() if span.kind is SpanKind.PRODUCER]
    batch = by_name(spans, f"{STREAM} process")
    assert batch.attributes is not None
    assert batch.attributes["messaging.batch.message_count"] == 4
    assert [link.context.span_id for link in batch.links] == [
        span.context.span_id for span in producers if span.context is not None
    ]


def test_producer_span_records_the_error_and_reraises(setup: Setup, spans: InMemorySpanExporter) -> None:
    telemetry = setup()
    with pytest.raises(ConnectionError), producer_span(telemetry.tracer, STREAM):
        raise ConnectionError("redis went away")
    producer = by_name(spans, f"{STREAM} publish")
    assert producer.status.status_code is StatusCode.ERROR
    assert [event.name for event in producer.events] == ["exception"]
