"""OpenTelemetry traces and metrics, configured only by the standard `OTEL_*` variables.

Call `setup_telemetry(name)` once from a service's `main` and `Telemetry.shutdown(timeout_secs)` on its
shutdown path. docs/telemetry.md lists every variable. `OTEL_SERVICE_NAME` / `OTEL_RESOURCE_ATTRIBUTES` win
over the name given in code; `OTEL_SDK_DISABLED=true` makes tracer and meter no-ops; `OTEL_TRACES_EXPORTER` /
`OTEL_METRICS_EXPORTER` choose `otlp`, `console` or `none`; the OTLP exporter reads `OTEL_EXPORTER_OTLP_*`.

**Default exporter: OTLP only when an endpoint is configured.** With `OTEL_{TRACES,METRICS}_EXPORTER` unset,
a signal goes out over OTLP/gRPC if `OTEL_EXPORTER_OTLP_ENDPOINT` or its signal-specific variable is set, and
nowhere otherwise. (The SDK's own default, `otlp` to localhost:4317, gives a laptop without a collector an
export error and retry back-off every few seconds and a slow shutdown.) Spans still get real ids, so log lines
carry `trace_id`/`span_id` and correlate once an endpoint is set. An explicit `otlp` keeps the SDK behaviour.
Only OTLP over gRPC is shipped: `OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf` is refused with a clear error
rather than sending gRPC to an HTTP port.

Redis Stream entries carry the W3C trace context (`traceparent`, `tracestate`; `tickstrata.common.streams`
owns the field names): `producer_span` injects it on the way in, `consumer_span` / `consumer_batch_span`
extract and link to it on the way out.
"""

from __future__ import annotations

import atexit
import contextlib
import importlib.metadata
import logging
import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, MutableMapping, Sequence
from contextlib import AbstractContextManager
from typing import Final

from opentelemetry import context as otel_context
from opentelemetry import metrics, propagate, trace
from opentelemetry.environment_variables import OTEL_METRICS_EXPORTER, OTEL_TRACES_EXPORTER
from opentelemetry.sdk.environment_variables import (
    OTEL_EXPORTER_OTLP_ENDPOINT,
    OTEL_EXPORTER_OTLP_METRICS_ENDPOINT,
    OTEL_EXPORTER_OTLP_METRICS_PROTOCOL,
    OTEL_EXPORTER_OTLP_PROTOCOL,
    OTEL_EXPORTER_OTLP_TRACES_ENDPOINT,
    OTEL_EXPORTER_OTLP_TRACES_PROTOCOL,
    OTEL_SDK_DISABLED,
)
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import (
    ConsoleMetricExporter,
    MetricExporter,
    MetricReader,
    PeriodicExportingMetricReader,
)
from opentelemetry.sdk.resources import SERVICE_NAME, SERVICE_VERSION, OTELResourceDetector, Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SpanExporter
from opentelemetry.util.types import AttributeValue

logger = logging.getLogger(__name__)

# Our attribute registry (docs/telemetry.md); dotted, lower case, prefixed by the application namespace.
ATTR_EXCHANGE: Final = "tickstrata.exchange"
ATTR_SYMBOL: Final = "tickstrata.symbol"
ATTR_DATATYPE: Final = "tickstrata.datatype"

# Messaging semantic conventions. Spelled out rather than imported from the semconv package's `_incubating`
# module, whose names may move between pre-releases.
MESSAGING_SYSTEM: Final = "messaging.system"
MESSAGING_DESTINATION_NAME: Final = "messaging.destination.name"
MESSAGING_OPERATION_TYPE: Final = "messaging.operation.type"
MESSAGING_OPERATION_NAME: Final = "messaging.operation.name"
MESSAGING_MESSAGE_ID: Final = "messaging.message.id"
MESSAGING_CONSUMER_GROUP_NAME: Final = "messaging.consumer.group.name"
MESSAGING_BATCH_MESSAGE_COUNT: Final = "messaging.batch.message_count"

_INSTRUMENTATION_SCOPE: Final = "tickstrata"
_SERVICE_NAMESPACE: Final = "service.namespace"
_SUPPORTED_EXPORTERS: Final = frozenset({"otlp", "console", "none"})

# Trace-context fields keyed by their W3C names, bytes (raw redis-py replies) or str, None meaning absent (a
# decoded `tickstrata.common.streams.StreamEntry` has `traceparent=None` when the producer did not trace).
# A union of mappings because Mapping is invariant in its key type: dict[bytes, bytes] is no Mapping[bytes | str].
_Value = bytes | str | None
StreamFields = Mapping[bytes, _Value] | Mapping[str, _Value] | Mapping[bytes | str, _Value]


class TelemetryConfigError(ValueError):
    """An `OTEL_*` variable asks for something this build cannot do; the service must not start."""


def _env(name: str) -> str:
    return os.environ.get(name, "").strip()


def _exporter_names(variable: str, endpoint_variable: str) -> list[str]:
    raw = _env(variable)
    if not raw:
        # Our default (module docstring): export only where something is listening.
        return ["otlp"] if _env(OTEL_EXPORTER_OTLP_ENDPOINT) or _env(endpoint_variable) else []
    names = [name.strip().lower() for name in raw.split(",") if name.strip()]
    unknown = sorted(set(names) - _SUPPORTED_EXPORTERS)
    if unknown:
        raise TelemetryConfigError(f"{variable}={raw!r}: unsupported {unknown}; use otlp, console or none")
    return [] if "none" in names else list(dict.fromkeys(names))


def _require_grpc_protocol(signal_variable: str) -> None:
    # The signal-specific variable takes precedence over the general one, as in the specification.
    for variable in (signal_variable, OTEL_EXPORTER_OTLP_PROTOCOL):
        value = _env(variable)
        if value:
            if value.lower() != "grpc":
                raise TelemetryConfigError(
                    f"{variable}={value!r} is not supported: tickstrata exports OTLP over gRPC only. Unset it "
                    "or set it to 'grpc', and point the endpoint at the collector's gRPC port (usually 4317)."
                )
            return


# The OTLP exporters are imported only when chosen, so processes that export nothing never load them.
def _otlp_span_exporter() -> SpanExporter:
    _require_grpc_protocol(OTEL_EXPORTER_OTLP_TRACES_PROTOCOL)
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter  # noqa: PLC0415

    return OTLPSpanExporter()


def _otlp_metric_exporter() -> MetricExporter:
    _require_grpc_protocol(OTEL_EXPORTER_OTLP_METRICS_PROTOCOL)
    from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter  # noqa: PLC0415

    return OTLPMetricExporter()


def _resource(service_name: str, service_version: str | None) -> Resource:
    # Resource.create lets attributes passed in code override OTEL_SERVICE_NAME / OTEL_RESOURCE_ATTRIBUTES.
    # We want the opposite (the deployment decides), so our values are only defaults for keys the
    # environment leaves unset.
    from_environment = OTELResourceDetector().detect().attributes
    defaults: dict[str, AttributeValue] = {SERVICE_NAME: service_name, _SERVICE_NAMESPACE: "tickstrata"}
    if service_version:
        defaults[SERVICE_VERSION] = service_version
    return Resource.create({key: value for key, value in defaults.items() if key not in from_environment})


def _package_version() -> str | None:
    try:
        return importlib.metadata.version("tickstrata")
    except importlib.metadata.PackageNotFoundError:
        return None


class Telemetry:
    """What `setup_telemetry` returns: a tracer, a meter, and the one way to flush and stop them."""

    def __init__(
        self,
        *,
        tracer: trace.Tracer,
        meter: metrics.Meter,
        tracer_provider: TracerProvider | None = None,
        meter_provider: MeterProvider | None = None,
        span_exporters: Sequence[SpanExporter] = (),
        metric_exporters: Sequence[MetricExporter] = (),
    ) -> None:
        self.tracer = tracer
        self.meter = meter
        #: None when the SDK is disabled (`OTEL_SDK_DISABLED=true`).
        self.tracer_provider = tracer_provider
        self.meter_provider = meter_provider
        #: The exporters chosen from the environment; empty means nothing leaves the process.
        self.span_exporters = tuple(span_exporters)
        self.metric_exporters = tuple(metric_exporters)
        self._lock = threading.Lock()
        self._result: bool | None = None
        if tracer_provider is not None or meter_provider is not None:
            # A safety net for code paths that forget to shut down (a crashing CLI): still bounded, unlike the
            # SDK's own exit hooks, which we disable because they may wait 30 s for an unreachable collector.
            atexit.register(self.shutdown)

    @property
    def enabled(self) -> bool:
        return self.tracer_provider is not None

    def shutdown(self, timeout_secs: float = 5.0) -> bool:
        """Flush pending spans and metrics and stop exporting, returning within about `timeout_secs`.

        Returns True when everything was flushed. Idempotent: later calls return the first call's result.
        Never raises: a telemetry failure must not derail the service's own shutdown.
        """
        with self._lock:
            if self._result is None:
                atexit.unregister(self.shutdown)
                self._result = self._shutdown(max(timeout_secs, 0.0))
            return self._result

    def _shutdown(self, timeout_secs: float) -> bool:
        # signal -> (shutdown step, the exporters it drives)
        steps: dict[str, tuple[Callable[[], object], Sequence[SpanExporter | MetricExporter]]] = {}
        if self.tracer_provider is not None:
            # TracerProvider.shutdown makes the BatchSpanProcessor export everything still queued.
            steps["traces"] = (self.tracer_provider.shutdown, self.span_exporters)
        if self.meter_provider is not None:
            provider = self.meter_provider
            steps["metrics"] = (lambda: provider.shutdown(timeout_millis=timeout_secs * 1000), self.metric_exporters)
        failed: list[str] = []

        def run(signal: str, step: Callable[[], object]) -> None:
            try:
                step()
            except Exception:
                logger.warning("telemetry %s shutdown failed", signal, exc_info=True)
                failed.append(signal)

        # The SDK does not bound every step (BatchSpanProcessor waits up to 30 s whatever it is told), so each
        # signal shuts down in its own daemon thread, in parallel, and we wait only until the deadline.
        deadline = time.monotonic() + timeout_secs
        threads = {
            signal: threading.Thread(target=run, args=(signal, step), name=f"telemetry-{signal}", daemon=True)
            for signal, (step, _) in steps.items()
        }
        for thread in threads.values():
            thread.start()
        for thread in threads.values():
            thread.join(max(deadline - time.monotonic(), 0.0))
        stuck = [signal for signal, thread in threads.items() if thread.is_alive()]
        if stuck:
            logger.warning(
                "telemetry not flushed within %.1f s; dropping what is unsent",
                timeout_secs,
                extra={"signals": stuck},
            )
            # Shutting a stuck signal's exporters down wakes their retry back-off and closes their gRPC
            # channels, which cancels the export in flight, so the abandoned thread ends promptly instead of
            # racing interpreter teardown.
            for signal in stuck:
                for exporter in steps[signal][1]:
                    with contextlib.suppress(Exception):
                        exporter.shutdown()
        return not stuck and not failed


def setup_telemetry(
    service_name: str,
    *,
    service_version: str | None = None,
    set_global: bool = True,
    span_processors: Sequence[SpanProcessor] = (),
    metric_readers: Sequence[MetricReader] = (),
) -> Telemetry:
    """Build tracer and meter providers from the `OTEL_*` environment (see the module docstring).

    `service_name` is the default for `service.name`; `service_version` defaults to the installed package
    version. With `set_global` (what services want) the providers become the process-wide ones that
    `trace.get_tracer(__name__)` and instrumentations use; the OpenTelemetry API allows that only once per
    process, so tests pass `set_global=False` and use the returned handle. `span_processors` and
    `metric_readers` are added alongside the configured exporters (tests use in-memory ones).

    Raises TelemetryConfigError for an exporter or protocol this build does not support.
    """
    if _env(OTEL_SDK_DISABLED).lower() == "true":
        return Telemetry(tracer=trace.NoOpTracer(), meter=metrics.NoOpMeter(_INSTRUMENTATION_SCOPE))

    # Read and validate all configuration before starting any exporter thread or channel.
    version = service_version or _package_version()
    resource = _resource(service_name, version)
    span_exporters = [
        _otlp_span_exporter() if name == "otlp" else ConsoleSpanExporter()
        for name in _exporter_names(OTEL_TRACES_EXPORTER, OTEL_EXPORTER_OTLP_TRACES_ENDPOINT)
    ]
    metric_exporters = [
        _otlp_metric_exporter() if name == "otlp" else ConsoleMetricExporter()
        for name in _exporter_names(OTEL_METRICS_EXPORTER, OTEL_EXPORTER_OTLP_METRICS_ENDPOINT)
    ]

    readers: list[MetricReader] = [PeriodicExportingMetricReader(exporter) for exporter in metric_exporters]
    readers.extend(metric_readers)
    meter_provider = MeterProvider(resource=resource, metric_readers=readers, shutdown_on_exit=False)
    tracer_provider = TracerProvider(resource=resource, shutdown_on_exit=False, meter_provider=meter_provider)
    for span_exporter in span_exporters:
        tracer_provider.add_span_processor(BatchSpanProcessor(span_exporter, meter_provider=meter_provider))
    for processor in span_processors:
        tracer_provider.add_span_processor(processor)

    if set_global:
        trace.set_tracer_provider(tracer_provider)
        metrics.set_meter_provider(meter_provider)
    telemetry = Telemetry(
        tracer=tracer_provider.get_tracer(_INSTRUMENTATION_SCOPE, version),
        meter=meter_provider.get_meter(_INSTRUMENTATION_SCOPE, version),
        tracer_provider=tracer_provider,
        meter_provider=meter_provider,
        span_exporters=span_exporters,
        metric_exporters=metric_exporters,
    )
    # One line at start-up that says where telemetry goes: the first thing to check when Grafana shows nothing.
    span_names = [type(exporter).__name__ for exporter in span_exporters]
    metric_names = [type(exporter).__name__ for exporter in metric_exporters]
    logger.info("telemetry configured", extra={"traces_exporters": span_names, "metrics_exporters": metric_names})
    return telemetry


# --- Trace context across Redis Streams ---------------------------------------------------------------------


def inject_trace_context(carrier: MutableMapping[str, str], context: otel_context.Context | None = None) -> None:
    """Write the current (or given) trace context into `carrier` under the W3C names `traceparent`, `tracestate`.

    Uses the global propagator, so `OTEL_PROPAGATORS` applies (the default also carries W3C baggage, if any).
    Writes nothing when there is no valid span. The stream codec stores these two values under its own short
    field names: `xadd_args(events, traceparent=carrier.get("traceparent"), tracestate=carrier.get("tracestate"))`.
    """
    propagate.inject(carrier, context=context)


def extract_trace_context(fields: StreamFields) -> otel_context.Context:
    """Read the trace context from fields keyed by the W3C names (bytes or str values; None means absent).

    From a decoded entry: `{"traceparent": entry.traceparent, "tracestate": entry.tracestate}`. An entry
    without (or with a malformed) `traceparent` yields a context without a span, never an error.
    """
    wanted = propagate.get_global_textmap().fields
    carrier: dict[str, str] = {}
    for key, value in fields.items():
        name = key.decode("ascii", errors="replace") if isinstance(key, bytes) else key
        if value is not None and name in wanted:
            # Invalid bytes become U+FFFD, which the W3C parser rejects: a bad header is ignored, not raised.
            carrier[name] = value.decode("ascii", errors="replace") if isinstance(value, bytes) else value
    return propagate.extract(carrier)


def _messaging_span(
    tracer: trace.Tracer,
    stream: str,
    *,
    operation: str,
    kind: trace.SpanKind,
    attributes: Mapping[str, AttributeValue] | None,
    messaging: Mapping[str, AttributeValue | None] = {},
    links: Sequence[trace.Link] = (),
) -> AbstractContextManager[trace.Span]:
    merged: dict[str, AttributeValue] = {
        MESSAGING_SYSTEM: "redis",
        MESSAGING_DESTINATION_NAME: stream,
        MESSAGING_OPERATION_TYPE: "send" if operation == "publish" else operation,
        MESSAGING_OPERATION_NAME: operation,
    }
    merged.update({key: value for key, value in messaging.items() if value is not None})
    merged.update(attributes or {})
    return tracer.start_as_current_span(f"{stream} {operation}", kind=kind, attributes=merged, links=links)


@contextlib.contextmanager
def producer_span(
    tracer: trace.Tracer,
    stream: str,
    *,
    carrier: MutableMapping[str, str] | None = None,
    attributes: Mapping[str, AttributeValue] | None = None,
) -> Iterator[trace.Span]:
    """A PRODUCER span `"<stream> publish"` around an XADD; injects its context into `carrier` if given.

    Without `carrier`, call `inject_trace_context(fields)` inside the block so the entry carries this span.
    Exceptions are recorded on the span and re-raised.
    """
    with _messaging_span(
        tracer, stream, operation="publish", kind=trace.SpanKind.PRODUCER, attributes=attributes
    ) as span:
        if carrier is not None:
            inject_trace_context(carrier)
        yield span


def _link_to(fields: StreamFields) -> trace.Link | None:
    span_context = trace.get_current_span(extract_trace_context(fields)).get_span_context()
    return trace.Link(span_context) if span_context.is_valid else None


# Why a link and not a child of the producer span: the writer handles entries in batches, one operation for
# entries from many producer traces, and only links can express that; single entries use the same shape so
# there is one way to query. Entries can also wait in a stream for a long time (a backlog after an outage, or
# pending entries of a dead consumer claimed hours later): as children they would stretch or re-open old
# traces. The process span therefore belongs to the consumer's current trace (or starts one) and links to the
# producer, as the messaging semantic conventions recommend; Tempo shows the link as a jump to the producer.
def consumer_span(
    tracer: trace.Tracer,
    stream: str,
    fields: StreamFields,
    *,
    message_id: str | None = None,
    group: str | None = None,
    attributes: Mapping[str, AttributeValue] | None = None,
) -> AbstractContextManager[trace.Span]:
    """A CONSUMER span `"<stream> process"` for one entry, linked to the span that published it."""
    link = _link_to(fields)
    return _messaging_span(
        tracer,
        stream,
        operation="process",
        kind=trace.SpanKind.CONSUMER,
        attributes=attributes,
        messaging={MESSAGING_MESSAGE_ID: message_id, MESSAGING_CONSUMER_GROUP_NAME: group},
        links=[link] if link is not None else [],
    )


def consumer_batch_span(
    tracer: trace.Tracer,
    stream: str,
    entries: Iterable[StreamFields],
    *,
    group: str | None = None,
    attributes: Mapping[str, AttributeValue] | None = None,
) -> AbstractContextManager[trace.Span]:
    """A CONSUMER span `"<stream> process"` for a batch, linked to each entry's producer.

    The SDK keeps at most `OTEL_SPAN_LINK_COUNT_LIMIT` links (default 128) per span; the message count
    attribute still gives the full batch size.
    """
    batch = list(entries)
    return _messaging_span(
        tracer,
        stream,
        operation="process",
        kind=trace.SpanKind.CONSUMER,
        attributes=attributes,
        messaging={MESSAGING_BATCH_MESSAGE_COUNT: len(batch), MESSAGING_CONSUMER_GROUP_NAME: group},
        links=[link for fields in batch if (link := _link_to(fields)) is not None],
    )
