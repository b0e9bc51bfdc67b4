"""One frozen settings object per service, read once from the environment, failing fast with the variable's name.

Every service subclasses `ServiceSettings` with its own `env_prefix` (`WRITER_`, `COLLECTOR_`, ...). Fields carry
their unit in the name (`_secs`, `_ms`, `_bytes`) and a docstring; `load_settings` turns pydantic's validation
report into one message that names each offending environment variable, so a typo in a Helm value is a one-line
fix rather than a stack trace.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Mapping
from typing import Any, TypeVar

from pydantic import Field, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

SettingsT = TypeVar("SettingsT", bound="ServiceSettings")


class SettingsError(ValueError):
    """The environment does not describe a valid configuration; the message names each variable."""


class ServiceSettings(BaseSettings):
    """Fields every service has. Subclasses set `model_config = service_config("WRITER_")`."""

    model_config = SettingsConfigDict(frozen=True, extra="ignore", case_sensitive=False, use_attribute_docstrings=True)

    health_host: str = "0.0.0.0"
    """Address the HTTP health server (`/healthz`, `/readyz`) binds; 0.0.0.0 so kubelet probes reach it."""

    health_port: int = Field(default=8080, ge=0, le=65535)
    """Port of the HTTP health server; 0 picks a free one (tests)."""

    log_level: str = Field(default="INFO", pattern=r"(?i)^(DEBUG|INFO|WARNING|ERROR|CRITICAL)$")
    """Root log level."""

    log_json: bool = True
    """JSON lines (for log shippers) or human-readable text."""

    shutdown_timeout_secs: float = Field(default=20.0, gt=0, le=600)
    """Upper bound for stop intake → drain → flush → close; keep it below the pod's grace period (30 s)."""


class RedisSettingsMixin(BaseSettings):
    redis_url: str = Field(default="redis://127.0.0.1:6379/0", pattern=r"^rediss?://")
    """The Streams bus and latest-price cache (redis:// or rediss:// for TLS)."""


class GrpcSettingsMixin(BaseSettings):
    grpc_host: str = "0.0.0.0"
    """Address the gRPC server binds."""

    grpc_port: int = Field(default=50051, ge=0, le=65535)
    """Port of the gRPC server; 0 picks a free one (tests)."""

    grpc_grace_secs: float = Field(default=5.0, ge=0, le=60)
    """How long in-flight calls may finish after shutdown begins."""


def split_csv(value: Any) -> Any:
    """A comma-separated variable (`BTC-USDT, ETH-USDT`) as a list; anything else unchanged, for pydantic to judge."""
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


def service_config(env_prefix: str) -> SettingsConfigDict:
    """Return the model config for a service whose variables start with `env_prefix` (e.g. `WRITER_`)."""
    if not env_prefix.isupper() or not env_prefix.endswith("_"):
        raise ValueError(f"env_prefix must be upper case and end with '_': {env_prefix!r}")
    return SettingsConfigDict(
        env_prefix=env_prefix,
        frozen=True,
        extra="ignore",
        case_sensitive=False,
        use_attribute_docstrings=True,
    )


def env_var_name(settings_cls: type[ServiceSettings], field: str) -> str:
    prefix = str(settings_cls.model_config.get("env_prefix", ""))
    return f"{prefix}{field}".upper()


def load_settings(settings_cls: type[SettingsT], environ: Mapping[str, str] | None = None) -> SettingsT:
    """Read `settings_cls` from `environ` (default: the process environment) once; raise `SettingsError` on bad input.

    A variable with the service's prefix that names no setting is an error, not ignored: whatever the operator, the
    chart or a person sets is either used or refused, never silently dropped (a misspelt `WRITER_BATCH_MAXROWS`
    would otherwise leave the default in force). Passing `environ` keeps tests hermetic: only the given mapping is
    read, never the process environment.
    """
    source = os.environ if environ is None else environ
    problems = unknown_variables(settings_cls, source)
    try:
        if environ is None:
            settings = settings_cls()
        else:
            prefix = _prefix(settings_cls)
            values: dict[str, Any] = {}
            for name, value in environ.items():
                field = name.upper()[len(prefix) :].lower()
                if name.upper().startswith(prefix) and field in settings_cls.model_fields:
                    values[field] = value
            # Validation from a dict of strings coerces exactly as the environment source does.
            settings = settings_cls.model_validate(values)
    except ValidationError as error:
        raise SettingsError(_describe(settings_cls, error, problems)) from None
    if problems:
        raise SettingsError(_describe(settings_cls, None, problems))
    return settings


def unknown_variables(settings_cls: type[ServiceSettings], environ: Mapping[str, str]) -> list[str]:
    """One line per variable in `environ` with the service's prefix that is not one of its settings, with the
    nearest setting's name when the variable looks like a misspelling of it. Values are never shown: a
    misplaced DSN or password must not reach the log."""
    prefix = _prefix(settings_cls)
    known = [env_var_name(settings_cls, field) for field in settings_cls.model_fields]
    lines = []
    for name in sorted(environ):
        upper = name.upper()
        if not upper.startswith(prefix) or upper[len(prefix) :].lower() in settings_cls.model_fields:
            continue
        nearest = difflib.get_close_matches(upper, known, n=1, cutoff=0.8)
        hint = f"; did you mean {nearest[0]}?" if nearest else f"; `tickstrata {_role(prefix)} --help` lists them"
        lines.append(f"  {name}: not a setting of this service{hint}")
    return lines


def _prefix(settings_cls: type[ServiceSettings]) -> str:
    return str(settings_cls.model_config.get("env_prefix", "")).upper()


def _role(prefix: str) -> str:
    return prefix.rstrip("_").lower()


def _describe(settings_cls: type[ServiceSettings], error: ValidationError | None, unknown: list[str]) -> str:
    lines = [f"invalid {settings_cls.__name__} configuration:"]
    for item in error.errors() if error is not None else []:
        # A rule that spans fields (a model validator) has no location: name the settings class instead.
        variable = env_var_name(settings_cls, str(item["loc"][0])) if item["loc"] else settings_cls.__name__
        given = item.get("input")
        shown = "" if item["type"] == "missing" or isinstance(given, dict) else f" (got {given!r})"
        lines.append(f"  {variable}: {item['msg']}{shown}")
    return "\n".join([*lines, *unknown])
