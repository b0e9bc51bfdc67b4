"""A gRPC servicer context for calling QualityService in-process: `abort` raises what it was given."""

from __future__ import annotations

from typing import NoReturn

import grpc


class AbortedError(Exception):
    def __init__(self, code: grpc.StatusCode, details: str) -> None:
        super().__init__(details)
        self.code = code


class FakeContext:
    async def abort(self, code: grpc.StatusCode, details: str) -> NoReturn:
        raise AbortedError(code, details)
