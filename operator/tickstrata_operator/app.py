"""Operator: reconciles ExchangeFeed resources (the skeleton runs the lifecycle; kopf handlers come later)."""

from __future__ import annotations

from typing import ClassVar

from tickstrata.common.lifecycle import ServiceApp, ServiceContext
from tickstrata_operator.settings import OperatorSettings


class OperatorApp(ServiceApp[OperatorSettings]):
    name: ClassVar[str] = "operator"

    async def start(self, context: ServiceContext) -> None:
        """Nothing to watch yet: the ExchangeFeed handlers arrive with the Kubernetes issue."""
