"""Spans and metrics reach a real OTLP/gRPC receiver, configured only by OTEL_* variables.

The receiver is a grpcio server on 127.0.0.1 implementing the OTLP collector services and recording what it is
sent. The service side runs in a subprocess, exactly as a service's `main` would: OpenTelemetry lets a process
install its global providers only once, and the subprocess also proves the environment alone configures it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from tests.integration.servers.otlp_fixtures import Receiver, Span, attributes
from tickstrata.common.telemetry import setup_telemetry

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
STREAM = "md:binance:trades"


SERVICE_SCRIPT = textwrap.dedent(
    f"""
    import json
    import logging

    from tickstrata.common.logging import configure_logging
    from tickstrata.common.telemetry import ATTR_EXCHANGE, consumer_span, producer_span, setup_telemetry

    configure_logging(service_name="collector")
    telemetry = setup_telemetry("collector")
    fields = {{}}
    with producer_span(telemetry.tracer, "{STREAM}", carrier=fields, attributes={{ATTR_EXCHANGE: "binance"}}):
        logging.getLogger("tickstrata.collector").info("published", extra={{"exchange": "binance"}})
    with consumer_span(telemetry.tracer, "{STREAM}", {{k.encode(): v.encode() for k, v in fields.items()}}):
        pass
    trades = telemetry.meter.create_counter("tickstrata.collector.trades", unit="{{trade}}")
    trades.add(5, {{ATTR_EXCHANGE: "binance"}})
    flushed = telemetry.shutdown(timeout_secs=20.0)
    print(json.dumps({{"traceparent": fields["traceparent"], "flushed": flushed}}))
    """
)


def otel_free_environment() -> dict[str, str]:
    return {key: value for key, value in os.environ.items() if not key.startswith("OTEL_")}


def test_spans_and_metrics_reach_the_otlp_receiver(otlp_receiver: Receiver) -> None:
    environment = otel_free_environment() | {
        "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{otlp_receiver.port}",
        "OTEL_EXPORTER_OTLP_INSECURE": "true",
        "OTEL_RESOURCE_ATTRIBUTES": "deployment.environment.name=ci",
    }
    finished = subprocess.run(
        [sys.executable, "-c", SERVICE_SCRIPT],
        env=environment,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert finished.returncode == 0, finished.stderr
    outcome = json.loads(finished.stdout.strip().splitlines()[-1])
    assert outcome["flushed"] is True
    trace_id = outcome["traceparent"].split("-")[1]

    # The log line written inside the producer span names the same trace.
    logs = [json.loads(line) for line in finished.stderr.splitlines() if line.startswith("{")]
    [published] = [record for record in logs if record["message"] == "published"]
    assert published["trace_id"] == trace_id
    assert published["service"] == "collector"

    spans = {span.name: (resource, span) for resource, span in otlp_receiver.spans()}
    assert set(spans) == {f"{STREAM} publish", f"{STREAM} process"}
    resource, producer = spans[f"{STREAM} publish"]
    assert resource["service.name"] == "collector"
    assert resource["service.namespace"] == "tickstrata"
    assert resource["deployment.environment.name"] == "ci"
    assert producer.trace_id.hex() == trace_id
    assert producer.kind == Span.SpanKind.SPAN_KIND_PRODUCER
    assert attributes(producer.attributes)["messaging.destination.name"] == STREAM
    _, consumer = spans[f"{STREAM} process"]
    assert consumer.kind == Span.SpanKind.SPAN_KIND_CONSUMER
    [link] = consumer.links
    assert link.trace_id == producer.trace_id
    assert link.span_id == producer.span_id

    points = [
        (attributes(resource_metrics.resource.attributes), metric)
        for request in otlp_receiver.metrics
        for resource_metrics in request.resource_metrics
        for scope_metrics in resource_metrics.scope_metrics
        for metric in scope_metrics.metrics
        if metric.name == "tickstrata.collector.trades"
    ]
    assert points, "the counter was not exported"
    metric_resource, metric = points[-1]
    assert metric_resource["service.name"] == "collector"
    assert metric.unit == "{trade}"
    [point] = metric.sum.data_points
    assert point.as_int == 5
    assert attributes(point.attributes) == {"tickstrata.exchange": "binance"}


def test_shutdown_stays_within_its_bound_when_the_receiver_hangs(
    otlp_receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in list(os.environ):
        if name.startswith("OTEL_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", f"http://127.0.0.1:{otlp_receiver.port}")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_INSECURE", "true")
    otlp_receiver.hang = True
    # In-process, so the process-wide providers stay untouched.
    telemetry = setup_telemetry("collector", set_global=False)
    with telemetry.tracer.start_as_current_span("never acknowledged"):
        pass

    started = time.monotonic()
    flushed = telemetry.shutdown(timeout_secs=1.0)
    elapsed = time.monotonic() - started

    assert flushed is False
    assert 0.9 <= elapsed < 3.0
    assert telemetry.shutdown(timeout_secs=1.0) is False  # idempotent, and immediate
    assert time.monotonic() - started < 3.5
