"""A real OTLP/gRPC receiver on 127.0.0.1: a grpcio server implementing the collector's trace and metrics services.

It records every export request, so a test can follow one trace across several real service processes that were
configured only by `OTEL_EXPORTER_OTLP_ENDPOINT`.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import grpc
import pytest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
    ExportMetricsServiceResponse,
)
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2_grpc import (
    MetricsServiceServicer,
    add_MetricsServiceServicer_to_server,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2_grpc import (
    TraceServiceServicer,
    add_TraceServiceServicer_to_server,
)
from opentelemetry.proto.common.v1.common_pb2 import KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span

__all__ = ["Receiver", "Span", "attributes", "otlp_receiver"]


class Receiver:
    """What the OTLP receiver was sent. With `hang` set, exports block until the test ends."""

    def __init__(self) -> None:
        self.port = 0
        self.hang = False
        self.released = threading.Event()
        self.traces: list[ExportTraceServiceRequest] = []
        self.metrics: list[ExportMetricsServiceRequest] = []

    def spans(self) -> list[tuple[dict[str, Any], Span]]:
        """Every received span with its resource attributes."""
        return [
            (attributes(resource_spans.resource.attributes), span)
            for request in self.traces
            for resource_spans in request.resource_spans
            for scope_spans in resource_spans.scope_spans
            for span in scope_spans.spans
        ]


class _TraceService(TraceServiceServicer):
    def __init__(self, receiver: Receiver) -> None:
        self._receiver = receiver

    def Export(  # noqa: N802 - the generated servicer's method name
        self, request: ExportTraceServiceRequest, context: grpc.ServicerContext
    ) -> ExportTraceServiceResponse:
        if self._receiver.hang:
            self._receiver.released.wait(30)
        self._receiver.traces.append(request)
        return ExportTraceServiceResponse()


class _MetricsService(MetricsServiceServicer):
    def __init__(self, receiver: Receiver) -> None:
        self._receiver = receiver

    def Export(  # noqa: N802
        self, request: ExportMetricsServiceRequest, context: grpc.ServicerContext
    ) -> ExportMetricsServiceResponse:
        self._receiver.metrics.append(request)
        return ExportMetricsServiceResponse()


def attributes(pairs: Any) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for pair in pairs:
        assert isinstance(pair, KeyValue)
        kind = pair.value.WhichOneof("value")
        result[pair.key] = getattr(pair.value, kind) if kind else None
    return result


@pytest.fixture
def otlp_receiver() -> Iterator[Receiver]:
    """A receiver on a free loopback port; `port` is where `OTEL_EXPORTER_OTLP_ENDPOINT` should point."""
    recorder = Receiver()
    with ThreadPoolExecutor(max_workers=4, thread_name_prefix="otlp-receiver") as pool:
        server = grpc.server(pool)
        # The generated registration helpers carry no annotations.
        add_TraceServiceServicer_to_server(_TraceService(recorder), server)  # type: ignore[no-untyped-call]
        add_MetricsServiceServicer_to_server(_MetricsService(recorder), server)  # type: ignore[no-untyped-call]
        recorder.port = server.add_insecure_port("127.0.0.1:0")
        server.start()
        try:
            yield recorder
        finally:
            recorder.released.set()
            server.stop(grace=None).wait()
