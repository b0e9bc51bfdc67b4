"""A throw-away Redis server on loopback: tests, benchmarks and `tickstrata up`.

Persistence is off by default (no RDB snapshots, no AOF) because these servers live for one session; tests
that need durability pass `extra_args` such as `("--appendonly", "yes", "--appendfsync", "always")`.
"""

from __future__ import annotations

import contextlib
import functools
import socket
from collections.abc import Sequence
from pathlib import Path
from typing import Final

from tickstrata.localstack.paths import redis_server_bin
from tickstrata.localstack.process import ManagedServer, ServerStartError, free_port

HOST: Final = "127.0.0.1"
DEFAULT_START_TIMEOUT_SECS: Final = 15.0
DEFAULT_STOP_TIMEOUT_SECS: Final = 10.0
# How often an automatically chosen port may turn out to be taken between `free_port()` and the bind.
PORT_RACE_ATTEMPTS: Final = 3
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


class RedisServer:
    """A `redis-server` child process bound to 127.0.0.1, with its data directory and log under `data_dir`.

    Use as a context manager (`with RedisServer(path) as redis: ...`) or call `start()` and `stop()`.
    """

    def __init__(
        self,
        data_dir: Path,
        *,
        port: int | None = None,
        extra_args: Sequence[str] = (),
        start_timeout_secs: float = DEFAULT_START_TIMEOUT_SECS,
    ) -> None:
        self.data_dir = Path(data_dir)
        self._requested_port = port
        self._port: int | None = port
        self.extra_args = list(extra_args)
        self.start_timeout_secs = start_timeout_secs
        self._server: ManagedServer | None = None

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("RedisServer has no port before start()")
        return self._port

    @property
    def url(self) -> str:
        return f"redis://{HOST}:{self.port}/0"

    @property
    def log_path(self) -> Path:
        return self.data_dir / "redis.log"

    @property
    def pid(self) -> int | None:
        return self._server.pid if self._server else None

    @property
    def running(self) -> bool:
        return self._server is not None

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
            *self.extra_args,
        ]  # fmt: skip

    def start(self) -> RedisServer:
        """Start the server and wait until it answers PING; else raise `ServerStartError` with its log."""
        if self._server is not None:
            raise RuntimeError(f"redis-server already running on port {self._port}")
        self.data_dir.mkdir(parents=True, exist_ok=True)
        attempts = 1 if self._requested_port is not None else PORT_RACE_ATTEMPTS
        for attempt in range(1, attempts + 1):
            port = self._requested_port if self._requested_port is not None else free_port()
            server = ManagedServer(name=f"redis-server:{port}", argv=self.argv(port), log_path=self.log_path)
            server.start()
            try:
                server.wait_ready(functools.partial(redis_ping, port), timeout_secs=self.start_timeout_secs)
            except ServerStartError as exc:
                server.stop()
                # Another process may grab the port between free_port() and our bind; pick another one then.
                if attempt < attempts and "Address already in use" in str(exc):
                    continue
                raise
            except BaseException:
                server.stop()  # e.g. KeyboardInterrupt while waiting: never leave an orphan server behind
                raise
            self._server, self._port = server, port
            break
        return self

    def stop(self, *, timeout_secs: float = DEFAULT_STOP_TIMEOUT_SECS) -> int | None:
        """Stop the server (SIGTERM, SIGKILL after `timeout_secs`); return its exit code. Safe to repeat."""
        server, self._server = self._server, None
        if server is None:
            return None
        return server.stop(timeout_secs=timeout_secs)

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()
