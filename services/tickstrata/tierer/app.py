"""Tierer: hot → warm → cold retention and archival (the skeleton runs the lifecycle; moves come later)."""

from __future__ import annotations

from typing import ClassVar

from tickstrata.common.lifecycle import ServiceApp, ServiceContext
from tickstrata.tierer.settings import TiererSettings


class TiererApp(ServiceApp[TiererSettings]):
    name: ClassVar[str] = "tierer"

    async def start(self, context: ServiceContext) -> None:
        """Nothing to open yet: the tier moves arrive with the tiering issue."""
