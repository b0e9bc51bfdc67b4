"""Structured logging: the exact JSON shape, trace correlation, extras, and idempotent configuration."""

from __future__ import annotations

import io
import json
import logging
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider

import tickstrata.common.logging as tickstrata_logging
from tickstrata.common.logging import configure_logging

NOISY = ("urllib3", "botocore", "boto3", "s3transfer", "websockets")


@pytest.fixture(autouse=True)
def restore_logging() -> Iterator[None]:
    """configure_logging changes the process-wide root logger; put it back for the next test."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    noisy_levels = {name: logging.getLogger(name).level for name in NOISY}
    yield
    for handler in list(root.handlers):
        if handler not in handlers:
            root.removeHandler(handler)
            handler.close()
    root.setLevel(level)
    for name, noisy_level in noisy_levels.items():
        logging.getLogger(name).setLevel(noisy_level)


@pytest.fixture
def tracer() -> trace.Tracer:
    # A private provider: nothing global, no processors needed, spans still get real ids.
    return TracerProvider(shutdown_on_exit=False).get_tracer("test")


@pytest.fixture
def stream() -> io.StringIO:
    return io.StringIO()


def records(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_json_record_without_span_has_exactly_the_base_fields(stream: io.StringIO) -> None:
    configure_logging(service_name="collector", stream=stream)
    logging.getLogger("tickstrata.collector.app").info("connected to %s", "binance")

    [record] = records(stream)
    assert set(record) == {"ts", "level", "logger", "message", "service"}
    assert record["level"] == "INFO"
    assert record["logger"] == "tickstrata.collector.app"
    assert record["message"] == "connected to binance"
    assert record["service"] == "collector"
    assert record["ts"].endswith("Z")
    moment = datetime.fromisoformat(record["ts"])
    assert moment.tzinfo == UTC
    assert abs((datetime.now(UTC) - moment).total_seconds()) < 60


def test_json_record_carries_the_active_span_ids(stream: io.StringIO, tracer: trace.Tracer) -> None:
    configure_logging(service_name="writer", stream=stream)
    with tracer.start_as_current_span("flush") as span:
        logging.getLogger("tickstrata.writer").info("flushed")
    logging.getLogger("tickstrata.writer").info("after the span")

    inside, outside = records(stream)
    context = span.get_span_context()
    assert inside["trace_id"] == f"{context.trace_id:032x}"
    assert inside["span_id"] == f"{context.span_id:016x}"
    assert len(inside["trace_id"]) == 32
    assert len(inside["span_id"]) == 16
    assert "trace_id" not in outside
    assert "span_id" not in outside


def test_extra_fields_become_top_level_keys(stream: io.StringIO) -> None:
    configure_logging(service_name="collector", stream=stream)
    logging.getLogger("tickstrata.collector").warning(
        "sequence gap",
        extra={"exchange": "binance", "symbol": "BTC-USDT", "price": Decimal("64000.10"), "missing": [7, 8]},
    )

    [record] = records(stream)
    assert record["exchange"] == "binance"
    assert record["symbol"] == "BTC-USDT"
    assert record["price"] == "64000.10"  # Decimal stays exact, as a string
    assert record["missing"] == [7, 8]


def test_extra_fields_never_overwrite_reserved_keys(stream: io.StringIO, tracer: trace.Tracer) -> None:
    configure_logging(service_name="collector", stream=stream)
    forged = {
        "ts": "1970",
        "level": "DEBUG",
        "logger": "other",
        "service": "impostor",
        "trace_id": "0" * 32,
        "span_id": "0" * 16,
        "exception": "none",
    }
    with tracer.start_as_current_span("work") as span:
        logging.getLogger("tickstrata.collector").error("real message", extra=forged)

    [record] = records(stream)
    assert record["level"] == "ERROR"
    assert record["logger"] == "tickstrata.collector"
    assert record["service"] == "collector"
    assert record["message"] == "real message"
    assert record["ts"] != "1970"
    assert record["trace_id"] == f"{span.get_span_context().trace_id:032x}"
    assert record["span_id"] == f"{span.get_span_context().span_id:016x}"
    assert "exception" not in record
    # The colliding values are kept, under a prefixed name, rather than silently dropped.
    assert record["extra_level"] == "DEBUG"
    assert record["extra_trace_id"] == "0" * 32
    assert record["extra_service"] == "impostor"


def test_exception_text_is_included(stream: io.StringIO) -> None:
    configure_logging(service_name="writer", stream=stream)
    try:
        raise RuntimeError("questdb refused the batch")
    except RuntimeError:
        logging.getLogger("tickstrata.writer").exception("flush failed")

    [record] = records(stream)
    assert record["level"] == "ERROR"
    assert record["message"] == "flush failed"
    assert record["exception"].startswith("Traceback (most recent call last):")
    assert "RuntimeError: questdb refused the batch" in record["exception"]


def test_configuring_twice_keeps_one_handler_and_applies_the_new_settings(stream: io.StringIO) -> None:
    first = io.StringIO()
    configure_logging(service_name="query", stream=first)
    configure_logging(service_name="query", stream=stream, level="WARNING")

    ours = [handler for handler in logging.getLogger().handlers if handler.get_name() == "tickstrata"]
    assert len(ours) == 1
    logging.getLogger("tickstrata.query").info("dropped by level")
    logging.getLogger("tickstrata.query").warning("kept")
    assert first.getvalue() == ""
    assert [record["message"] for record in records(stream)] == ["kept"]


def test_configure_leaves_foreign_handlers_alone(stream: io.StringIO) -> None:
    foreign = logging.NullHandler()
    logging.getLogger().addHandler(foreign)
    configure_logging(service_name="query", stream=stream)
    configure_logging(service_name="query", stream=stream)
    assert foreign in logging.getLogger().handlers


def test_text_format_is_readable_and_shows_trace_ids(stream: io.StringIO, tracer: trace.Tracer) -> None:
    configure_logging(service_name="collector", stream=stream, json_format=False)
    with tracer.start_as_current_span("connect") as span:
        logging.getLogger("tickstrata.collector").info("subscribed", extra={"exchange": "kraken"})

    line = stream.getvalue().rstrip("\n")
    context = span.get_span_context()
    assert "INFO" in line
    assert "collector:tickstrata.collector" in line
    assert f"trace={context.trace_id:032x}" in line
    assert f"span={context.span_id:016x}" in line
    assert line.split("] ", 1)[1] == "subscribed exchange='kraken'"


def test_noisy_libraries_are_pinned_at_warning_or_the_root_level(stream: io.StringIO) -> None:
    configure_logging(service_name="tierer", stream=stream, level="DEBUG")
    assert all(logging.getLogger(name).level == logging.WARNING for name in NOISY)
    logging.getLogger("urllib3.connectionpool").info("Starting new HTTPS connection")
    assert stream.getvalue() == ""

    configure_logging(service_name="tierer", stream=stream, level="ERROR")
    assert all(logging.getLogger(name).level == logging.ERROR for name in NOISY)


def test_unknown_level_is_rejected() -> None:
    with pytest.raises(ValueError, match="unknown log level"):
        configure_logging(service_name="query", level="LOUD")


def test_module_does_not_shadow_the_standard_library() -> None:
    assert vars(tickstrata_logging)["logging"] is sys.modules["logging"]
    assert logging.__file__ is not None
    assert "tickstrata" not in logging.__file__
