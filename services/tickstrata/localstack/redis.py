"""A throw-away Redis server on loopback: tests, benchmarks and `tickstrata up`.

Persistence is off by default (no RDB snapshots, no AOF) because these servers live for one session; tests
that need durability pass `extra_args` such as `("--appendonly", "yes", "--appendfsync", "always")`.

Every server runs with the stream contract's memory policy (`docs/architecture.md`): a `maxmemory` budget and
`noeviction`, so a full Redis refuses writes (producers back off) instead of evicting keys or stream history.
"""

from __future__ import annotations

import contextlib
import functools
import socket
from collections.abc import Sequence
from pathlib import Path
from typing import Final

from tickstrata.localstack.paths import redis_server_bin
from tickstrata.localstack.process import LocalServer, ManagedServer, free_port

HOST: Final = "127.0.0.1"
DEFAULT_START_TIMEOUT_SECS: Final = 15.0
DEFAULT_STOP_TIMEOUT_SECS: Final = 10.0
DEFAULT_MAXMEMORY_BYTES: Final = 1024 * 1024 * 1024
"""1 GiB: at ~60 bytes per buffered event (docs/architecture.md) about 17 million events of writer downtime."""
_PING: Final = b"*1\r\n$4\r\nPING\r\n"
_PONG: Final = b"+PONG\r\n"


def redis_ping(port: int, host: str = HOST, *, timeout_secs: float = 0.5) -> bool:
    """Return True when a Redis server on `host:port` answers PING with PONG.

    Speaks the protocol on a raw socket so the launcher needs no client library. A server still loading its
    data answers `-LOADING`, which is correctly "not ready".
    """
    with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=timeout_secs) as sock:
        sock.sendall(_PING)
        reply = b""
        while len(reply) < len(_PONG):
            chunk = sock.recv(64)
            if not chunk:
                break
            reply += chunk
        return reply == _PONG
    return False


class RedisServer(LocalServer[int]):
    """A `redis-server` child process bound to 127.0.0.1, with its data directory and log under `data_dir`.

    Use as a context manager (`with RedisServer(path) as redis: ...`) or call `start()` and `stop()`.
    """

    stop_timeout_secs = DEFAULT_STOP_TIMEOUT_SECS

    def __init__(
        self,
        data_dir: Path,
        *,
        port: int | None = None,
        extra_args: Sequence[str] = (),
        maxmemory_bytes: int = DEFAULT_MAXMEMORY_BYTES,
        start_timeout_secs: float = DEFAULT_START_TIMEOUT_SECS,
    ) -> None:
        if maxmemory_bytes <= 0:
            raise ValueError(
                f"maxmemory_bytes must be positive (a bounded Redis is the contract), got {maxmemory_bytes}"
            )
        self.data_dir = Path(data_dir)
        self.maxmemory_bytes = maxmemory_bytes
        super().__init__(log_path=self.data_dir / "redis.log", address=port, start_timeout_secs=start_timeout_secs)
        self.extra_args = list(extra_args)

    @property
    def port(self) -> int:
        if self._address is None:
            raise RuntimeError("RedisServer has no port before start()")
        return self._address

    @property
    def url(self) -> str:
        return f"redis://{HOST}:{self.port}/0"

    def argv(self, port: int) -> list[str]:
        return [
            str(redis_server_bin()),
            "--port", str(port),
            "--bind", HOST,
            # ManagedServer owns the process: a daemonizing server would fork away from it.
            "--daemonize", "no",
            "--save", "",
            "--appendonly", "no",
            "--dir", str(self.data_dir),
            "--maxmemory", str(self.maxmemory_bytes),
            "--maxmemory-policy", "noeviction",
            *self.extra_args,
        ]  # fmt: skip

    def _already_running_message(self) -> str:
        return f"redis-server already running on port {self._address}"

    def _prepare(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)

    def _pick_address(self) -> int:
        return free_port()

    def _launch(self, port: int) -> ManagedServer:
        return ManagedServer(name=f"redis-server:{port}", argv=self.argv(port), log_path=self.log_path)

    def _wait_ready(self, server: ManagedServer, port: int) -> None:
        server.wait_ready(functools.partial(redis_ping, port), timeout_secs=self.start_timeout_secs)
