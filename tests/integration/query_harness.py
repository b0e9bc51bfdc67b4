"""`python -m tickstrata query` as a real process for the integration tests: free ports, ready, clean exit asserted."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tickstrata.localstack.process import free_port

READY_TIMEOUT_SECS = 60.0


def _ready(health_port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{health_port}/readyz", timeout=2) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, ConnectionError):
        return False


@dataclass(frozen=True)
class QueryProcess:
    """A running query process: where to call it, probe it and read its log, and its pid (for /proc)."""

    address: str
    health_port: int
    pid: int
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def readyz_status(self) -> int:
        """The HTTP status of /readyz (200 ready, 503 not ready)."""
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.health_port}/readyz", timeout=5) as response:
                return int(response.status)
        except urllib.error.HTTPError as error:
            return int(error.code)

    def status_kib(self, field: str) -> int:
        """A memory figure of /proc/<pid>/status in KiB, e.g. `VmHWM` (peak RSS) or `VmRSS`."""
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith(f"{field}:"):
                return int(line.split()[1])
        raise KeyError(field)

    def reset_peak_rss(self) -> None:
        """Set VmHWM back to the current RSS (Linux `clear_refs` 5), so a peak can be measured per phase."""
        Path(f"/proc/{self.pid}/clear_refs").write_text("5")


@contextmanager
def query_process(
    log_dir: Path, redis_url: str, *, env: Mapping[str, str] | None = None, **settings: str
) -> Iterator[QueryProcess]:
    """A ready query process; SIGTERM it after, and assert it exited 0.

    `settings` become `QUERY_<NAME>` variables, e.g. `questdb_pg_dsn=...`, `max_candle_buckets="100000"`; `env`
    replaces the inherited environment (e.g. without `OTEL_*`) before those are added.
    """
    health_port, grpc_port = free_port(), free_port()
    env = {
        **(os.environ if env is None else env),
        "QUERY_REDIS_URL": redis_url,
        "QUERY_HEALTH_HOST": "127.0.0.1",
        "QUERY_HEALTH_PORT": str(health_port),
        "QUERY_GRPC_HOST": "127.0.0.1",
        "QUERY_GRPC_PORT": str(grpc_port),
        **{f"QUERY_{name.upper()}": value for name, value in settings.items()},
    }
    log_path = log_dir / "query.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "tickstrata", "query"], env=env, stdout=log, stderr=log, stdin=subprocess.DEVNULL
        )
    try:
        deadline = time.monotonic() + READY_TIMEOUT_SECS
        while not _ready(health_port):
            assert process.poll() is None, f"query exited early:\n{log_path.read_text()[-3000:]}"
            assert time.monotonic() < deadline, "query never became ready"
            time.sleep(0.1)
        yield QueryProcess(f"127.0.0.1:{grpc_port}", health_port, process.pid, log_path)
        process.terminate()
        assert process.wait(timeout=30) == 0, log_path.read_text()[-3000:]
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=10)


@contextmanager
def running_query(log_dir: Path, redis_url: str, **settings: str) -> Iterator[str]:
    """Yield the gRPC address of a ready query process; SIGTERM it after, and assert it exited 0.

    `settings` become `QUERY_<NAME>` variables, e.g. `questdb_pg_dsn=...`, `max_candle_buckets="100000"`.
    """
    with query_process(log_dir, redis_url, env=None, **settings) as process:
        yield process.address
