"""Where `scripts/setup.sh` put each server binary, with a clear error when it has not run."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Final

SETUP_HINT: Final = "run `bash scripts/setup.sh` (or `make setup`) to install it"


class ToolNotInstalledError(RuntimeError):
    """A server binary the local stack needs is not in the cache."""


def cache_dir() -> Path:
    """Return the setup cache: `$TICKSTRATA_CACHE_DIR`, else `.cache/` at the repository root."""
    configured = os.environ.get("TICKSTRATA_CACHE_DIR")
    if configured:
        return Path(configured).resolve()
    # services/tickstrata/localstack/paths.py -> repository root is three folders up from the package.
    return Path(__file__).resolve().parents[3] / ".cache"


def _require(path: Path, what: str) -> Path:
    if not path.exists():
        raise ToolNotInstalledError(f"{what} not found at {path}: {SETUP_HINT}")
    return path


def redis_server_bin() -> Path:
    return _require(cache_dir() / "bin" / "redis-server", "redis-server")


def java_bin() -> Path:
    return _require(cache_dir() / "bin" / "java", "java")


def questdb_jar() -> Path:
    jars = sorted((cache_dir() / "questdb").glob("questdb-*.jar"))
    if not jars:
        raise ToolNotInstalledError(f"QuestDB jar not found in {cache_dir() / 'questdb'}: {SETUP_HINT}")
    return jars[-1]


def versitygw_bin() -> Path | None:
    """Return the versitygw binary, or None when setup fell back to S3Proxy."""
    path = cache_dir() / "bin" / "versitygw"
    return path if path.exists() else None


def s3proxy_jar() -> Path:
    jars = sorted((cache_dir() / "s3proxy").glob("s3proxy-*.jar"))
    if not jars:
        raise ToolNotInstalledError(f"neither versitygw nor S3Proxy is in {cache_dir()}: {SETUP_HINT}")
    return jars[-1]
