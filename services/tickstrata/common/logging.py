"""Structured logs that carry the OpenTelemetry trace and span ids.

Call `configure_logging` once from a service's `main`; everything else keeps the convention
`logger = logging.getLogger(__name__)` with lazy `%s` arguments and per-object context as structured fields:

    logger.info("subscribed to %s", channel, extra={"exchange": "binance", "symbol": "BTC-USDT"})

In JSON mode (the default; what log shippers such as Grafana Alloy expect) every record is one line:

    {"ts": "2025-01-02T03:04:05.678901Z", "level": "INFO", "logger": "tickstrata.collector.app",
     "message": "subscribed to trades", "service": "collector", "trace_id": "4bf9…", "span_id": "00f0…",
     "exchange": "binance", "symbol": "BTC-USDT"}

`trace_id`/`span_id` are present only while a valid span is current, so a line can be joined to its trace
in Tempo. `extra` fields become top-level keys, except that they never replace a reserved key: a colliding
field is kept under `extra_<key>` instead, so a careless `extra={"level": …}` cannot forge a record's level
or trace.
"""

from __future__ import annotations

# This module is `tickstrata.common.logging`; with absolute imports (the only kind in Python 3) the
# `import logging` below is the standard library's, not this file.
import json
import logging
import sys
from datetime import UTC, datetime
from typing import Any, Final, TextIO

from opentelemetry import trace

__all__ = ["RESERVED_KEYS", "JsonFormatter", "TextFormatter", "configure_logging"]

RESERVED_KEYS: Final = frozenset(
    {"ts", "level", "logger", "message", "service", "trace_id", "span_id", "exception", "stack"}
)

# Attributes every LogRecord has; anything else on a record came from `extra={...}`. Computed from a real
# record so attributes added by newer Pythons (3.12 added `taskName`) are never mistaken for extras.
_RECORD_ATTRIBUTES: Final = frozenset(
    vars(logging.LogRecord("", logging.INFO, "", 0, "", None, None)).keys()
    | {"message", "asctime", "taskName", "_otel_trace_id", "_otel_span_id"}
)

# Libraries that are chatty below WARNING. They are pinned at WARNING (or the root level, if higher) so
# that running our own code at DEBUG does not bury it:
#   urllib3 / botocore / boto3 / s3transfer: a line per HTTP request and credential lookup (S3, ClickHouse);
#   websockets: INFO per connection on the simulator's servers and DEBUG per *frame* on every client,
#               which at market-data rates would cost more than the parsing.
# Deliberately not listed: `grpc` (its Python logger only reports exceptions raised in servicers, which we
# want; the chatty gRPC core logs are C-level, controlled by GRPC_VERBOSITY, not by Python logging) and
# `opentelemetry` (it logs export failures at WARNING/ERROR: the only sign that telemetry is not arriving).
_NOISY_LOGGERS: Final = ("urllib3", "botocore", "boto3", "s3transfer", "websockets")

# Marks the handler we install, so a second `configure_logging` replaces it instead of adding another.
_HANDLER_NAME: Final = "tickstrata"


class _TraceContextFilter(logging.Filter):
    """Stamp the current span's ids on the record.

    This runs in `Handler.handle`, i.e. in the thread (and asyncio task context) that logged, so the ids
    stay right even if formatting is later moved to another thread (a QueueHandler).
    """

    def filter(self, record: logging.LogRecord) -> bool:
        span_context = trace.get_current_span().get_span_context()
        valid = span_context.is_valid
        # setattr, not attribute syntax: LogRecord declares no such fields, and extras are set the same way.
        setattr(record, "_otel_trace_id", trace.format_trace_id(span_context.trace_id) if valid else "")  # noqa: B010
        setattr(record, "_otel_span_id", trace.format_span_id(span_context.span_id) if valid else "")  # noqa: B010
        return True


def _timestamp(record: logging.LogRecord) -> str:
    """RFC 3339 in UTC with microseconds and a `Z` suffix."""
    moment = datetime.fromtimestamp(record.created, tz=UTC)
    return moment.isoformat(timespec="microseconds").replace("+00:00", "Z")


def _extras(record: logging.LogRecord) -> dict[str, Any]:
    return {key: value for key, value in vars(record).items() if key not in _RECORD_ATTRIBUTES}


def _json_default(value: object) -> str:
    # Decimal prices, datetimes, enums, paths: their str() is the exact, readable form. Never lose a record
    # because one field is not JSON-native.
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="backslashreplace")
    return str(value)


class JsonFormatter(logging.Formatter):
    """One JSON object per line; see the module docstring for the keys."""

    def __init__(self, *, service_name: str) -> None:
        super().__init__()
        self._service_name = service_name

    def format(self, record: logging.LogRecord) -> str:
        payload: dict[str, Any] = {
            "ts": _timestamp(record),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "service": self._service_name,
        }
        trace_id = getattr(record, "_otel_trace_id", "")
        if trace_id:
            payload["trace_id"] = trace_id
            payload["span_id"] = getattr(record, "_otel_span_id", "")
        # Formatter caches the text in exc_text; reuse it so several handlers format a traceback only once.
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            payload["exception"] = record.exc_text
        if record.stack_info:
            payload["stack"] = self.formatStack(record.stack_info)
        for key, value in _extras(record).items():
            payload.setdefault(f"extra_{key}" if key in RESERVED_KEYS else key, value)
        try:
            return json.dumps(payload, default=_json_default, ensure_ascii=False, separators=(",", ":"))
        except (TypeError, ValueError):
            # A circular structure or a key json cannot encode: keep the record, degrade only the extras.
            safe = {key: value if key in RESERVED_KEYS else repr(value) for key, value in payload.items()}
            return json.dumps(safe, ensure_ascii=False, separators=(",", ":"))


class TextFormatter(logging.Formatter):
    """Human-readable lines for a terminal; still shows the trace id (shortened span) and the extra fields."""

    def __init__(self, *, service_name: str) -> None:
        super().__init__()
        self._service_name = service_name

    def format(self, record: logging.LogRecord) -> str:
        parts = [_timestamp(record), f"{record.levelname:<8}", f"{self._service_name}:{record.name}"]
        trace_id = getattr(record, "_otel_trace_id", "")
        if trace_id:
            parts.append(f"[trace={trace_id} span={getattr(record, '_otel_span_id', '')}]")
        parts.append(record.getMessage())
        extras = _extras(record)
        if extras:
            parts.append(" ".join(f"{key}={value!r}" for key, value in extras.items()))
        line = " ".join(parts)
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            line = f"{line}\n{record.exc_text}"
        if record.stack_info:
            line = f"{line}\n{self.formatStack(record.stack_info)}"
        return line


def configure_logging(
    *,
    service_name: str,
    level: str = "INFO",
    json_format: bool = True,
    stream: TextIO | None = None,
) -> None:
    """Route every logger through one handler that writes structured lines to `stream` (default: stderr).

    Idempotent: a second call replaces the handler installed by the first (so it may change level, format or
    stream) and never adds a duplicate. Handlers installed by others (pytest's log capture, for one) are left
    alone.
    """
    numeric_level = logging.getLevelNamesMapping().get(level.upper())
    if numeric_level is None:
        raise ValueError(f"unknown log level {level!r}; use DEBUG, INFO, WARNING, ERROR or CRITICAL")

    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    handler.set_name(_HANDLER_NAME)
    handler.addFilter(_TraceContextFilter())
    formatter: logging.Formatter = (
        JsonFormatter(service_name=service_name) if json_format else TextFormatter(service_name=service_name)
    )
    handler.setFormatter(formatter)

    root = logging.getLogger()
    for existing in list(root.handlers):
        if existing.get_name() == _HANDLER_NAME:
            root.removeHandler(existing)
            existing.close()
    root.addHandler(handler)
    root.setLevel(numeric_level)

    # A logger's own level decides what it emits; ancestors' levels are not consulted again on propagation. So
    # pin noisy libraries to the stricter of WARNING and the root level, or ERROR at the root would still let
    # their warnings through.
    for name in _NOISY_LOGGERS:
        logging.getLogger(name).setLevel(max(logging.WARNING, numeric_level))
