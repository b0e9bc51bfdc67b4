"""Fixtures that start real servers; see `tests/integration/conftest.py`."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from typing import Any, NoReturn, TypeVar

import pytest

from tickstrata.localstack.paths import ToolNotInstalledError
from tickstrata.localstack.process import LocalServer

ServerT = TypeVar("ServerT", bound=LocalServer[Any])


def missing_tool(error: Exception) -> NoReturn:
    """Skip on a machine that has not run the setup yet; fail in CI, where a skip would hide a broken install."""
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        raise error
    pytest.skip(str(error))


@contextlib.contextmanager
def session_server(server: ServerT) -> Iterator[ServerT]:
    """Start `server` (a skip where setup has not installed it) and stop it on the way out, whatever happened."""
    try:
        server.start()
    except ToolNotInstalledError as exc:
        missing_tool(exc)
    try:
        yield server
    finally:
        server.stop()
