"""Every service's settings by prefix, to check that what a chart or the operator puts into a pod is declared.

The services refuse an undeclared variable with their prefix at start-up (`common/settings.py`); these checks catch
the drift before a pod ever starts.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final

from tickstrata.collector.settings import CollectorSettings
from tickstrata.common.settings import ServiceSettings, unknown_variables
from tickstrata.query.settings import QuerySettings
from tickstrata.simulator.settings import SimulatorSettings
from tickstrata.tierer.settings import TiererSettings
from tickstrata.validator.settings import ValidatorSettings
from tickstrata.writer.settings import WriterSettings
from tickstrata_operator.settings import OperatorSettings

SERVICE_SETTINGS: Final[tuple[type[ServiceSettings], ...]] = (
    CollectorSettings,
    WriterSettings,
    ValidatorSettings,
    QuerySettings,
    TiererSettings,
    SimulatorSettings,
    OperatorSettings,
)


def undeclared(names: Iterable[str]) -> list[str]:
    """The names among `names` that carry a service's prefix but name none of its settings."""
    environ = dict.fromkeys(names, "")
    return [line.strip() for settings_cls in SERVICE_SETTINGS for line in unknown_variables(settings_cls, environ)]
