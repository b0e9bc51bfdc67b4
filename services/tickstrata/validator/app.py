"""Validator: completeness ledger and QualityService (the skeleton holds the edges)."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import ClassVar

from tickstrata.common.grpc_app import GrpcRedisApp
from tickstrata.common.grpc_server import Registrar
from tickstrata.quality.v1 import quality_service_pb2_grpc
from tickstrata.validator.servicer import QualityService
from tickstrata.validator.settings import ValidatorSettings


class ValidatorApp(GrpcRedisApp[ValidatorSettings]):
    name: ClassVar[str] = "validator"
    grpc_service_names: ClassVar[Sequence[str]] = ("tickstrata.quality.v1.QualityService",)

    def registrars(self) -> Sequence[Registrar]:
        return [functools.partial(quality_service_pb2_grpc.add_QualityServiceServicer_to_server, QualityService())]
