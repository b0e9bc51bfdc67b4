"""The front door of every `tickstrata <service>` or job command: help that lists the settings, fail-fast loading."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from typing import TypeVar

from tickstrata.common.job import JobApp, run_job
from tickstrata.common.lifecycle import ServiceApp, run_service
from tickstrata.common.settings import ServiceSettings, SettingsError, env_var_name, load_settings

SettingsT = TypeVar("SettingsT", bound=ServiceSettings)

EXIT_BAD_CONFIG = 2


def settings_help(settings_cls: type[ServiceSettings]) -> str:
    """Describe every environment variable of `settings_cls`, with its default, for `--help`."""
    lines = ["environment variables:"]
    for field_name, field in settings_cls.model_fields.items():
        default = "required" if field.is_required() else f"default {field.default!r}"
        lines.append(f"  {env_var_name(settings_cls, field_name):<34} {default}")
        if field.description:
            lines.append(f"      {field.description}")
    lines.append("  OTEL_*                             standard OpenTelemetry variables (see docs/telemetry.md)")
    return "\n".join(lines)


def run_from_cli(
    app_factory: Callable[[SettingsT], ServiceApp[SettingsT] | JobApp[SettingsT]],
    settings_cls: type[SettingsT],
    *,
    argv: Sequence[str] | None,
    description: str,
    prog: str | None = None,
) -> int:
    parser = argparse.ArgumentParser(
        prog=prog,
        description=description,
        epilog=settings_help(settings_cls),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.parse_args(argv)
    try:
        settings = load_settings(settings_cls)
    except SettingsError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_BAD_CONFIG
    app = app_factory(settings)
    # A service runs until it is stopped; a job (a CronJob's pod) runs its work once and exits.
    return run_job(app) if isinstance(app, JobApp) else run_service(app)
