"""The launcher under every local server: failures carry the server's own words, and stop() always stops.

The "servers" here are real processes: redis-server, and small Python programs that misbehave on purpose.
"""

from __future__ import annotations

import os
import signal
import socket
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tickstrata.localstack import redis as redis_launcher
from tickstrata.localstack.paths import ToolNotInstalledError, redis_server_bin
from tickstrata.localstack.process import ManagedServer, ServerStartError, free_port, tcp_port_open
from tickstrata.localstack.redis import RedisServer, redis_ping

pytestmark = pytest.mark.integration

# Prints "ready" only once SIGTERM is ignored, so the test cannot signal it before the handler is in place.
IGNORES_SIGTERM = (
    "import signal, time\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\nprint('ready', flush=True)\ntime.sleep(600)\n"
)
SLEEPS = "import time\nprint('ready', flush=True)\ntime.sleep(600)\n"


def _pid_gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def _python_server(tmp_path: Path, code: str) -> ManagedServer:
    return ManagedServer(name="python-server", argv=[sys.executable, "-c", code], log_path=tmp_path / "server.log")


def _says_ready(server: ManagedServer) -> bool:
    return server.log_path.exists() and "ready" in server.log_path.read_text()


@pytest.fixture
def redis_installed() -> None:
    try:
        redis_server_bin()
    except ToolNotInstalledError as exc:
        pytest.skip(str(exc))


@pytest.fixture
def occupied_port() -> Iterator[int]:
    """A loopback port with a listener on it, as another program holding the port would look."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


@pytest.mark.usefixtures("redis_installed")
def test_bad_argument_raises_start_error_with_log_tail(tmp_path: Path) -> None:
    server = RedisServer(tmp_path / "redis", extra_args=["--no-such-directive", "yes"])

    with pytest.raises(ServerStartError) as caught:
        server.start()

    message = str(caught.value)
    assert "exited with code 1 during start-up" in message
    assert "Bad directive or wrong number of arguments" in message  # Redis's own words, from the log tail
    assert "no-such-directive" in message
    assert not server.running


def test_missing_binary_raises_start_error(tmp_path: Path) -> None:
    server = ManagedServer(name="ghost", argv=[str(tmp_path / "no-such-server")], log_path=tmp_path / "ghost.log")

    with pytest.raises(ServerStartError, match=r"ghost could not be executed .*no-such-server"):
        server.start()

    assert server.pid is None


@pytest.mark.usefixtures("redis_installed")
def test_stop_after_start_returns_promptly_and_leaves_no_process(tmp_path: Path) -> None:
    server = RedisServer(tmp_path / "redis").start()
    pid, port = server.pid, server.port
    assert pid is not None
    assert redis_ping(port)

    started = time.monotonic()
    code = server.stop()
    elapsed_secs = time.monotonic() - started

    assert code == 0  # Redis shuts down cleanly on SIGTERM
    assert elapsed_secs < 3.0
    assert _pid_gone(pid)
    assert not tcp_port_open(port)
    assert server.stop() is None  # a second stop is a no-op


def test_server_ignoring_sigterm_is_killed_within_bound(tmp_path: Path) -> None:
    server = _python_server(tmp_path, IGNORES_SIGTERM)
    server.start()
    server.wait_ready(lambda: _says_ready(server), timeout_secs=30)
    pid = server.pid
    assert pid is not None

    started = time.monotonic()
    code = server.stop(timeout_secs=1.0)
    elapsed_secs = time.monotonic() - started

    assert code == -signal.SIGKILL
    assert 1.0 <= elapsed_secs < 4.0  # it waited out the SIGTERM grace, then killed without further delay
    assert _pid_gone(pid)


def test_server_never_ready_is_stopped_and_reported(tmp_path: Path) -> None:
    server = _python_server(tmp_path, SLEEPS)
    server.start()
    pid = server.pid
    assert pid is not None

    with pytest.raises(ServerStartError, match=r"(?s)python-server not ready after 1 s.*\nready"):
        server.wait_ready(lambda: False, timeout_secs=1.0)

    assert _pid_gone(pid)
    assert server.pid is None


@pytest.mark.usefixtures("redis_installed")
def test_explicit_port_taken_fails_without_retry(tmp_path: Path, occupied_port: int) -> None:
    server = RedisServer(tmp_path / "redis", port=occupied_port)

    with pytest.raises(ServerStartError, match="Address already in use"):
        server.start()

    assert server.log_path.read_text().count("Address already in use") == 1


@pytest.mark.usefixtures("redis_installed")
def test_auto_port_taken_between_pick_and_bind_retries_on_another(
    tmp_path: Path, occupied_port: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    free = free_port()
    offered = iter([occupied_port, free])
    monkeypatch.setattr(redis_launcher, "free_port", lambda: next(offered))

    with RedisServer(tmp_path / "redis") as server:
        assert server.port == free
        assert redis_ping(free)
    assert "Address already in use" in server.log_path.read_text()


def test_free_port_stays_out_of_the_range_outgoing_connections_use() -> None:
    """CI lost a validator to "address already in use": a picked port had meanwhile become a client's local port."""
    ephemeral_low, ephemeral_high = (int(v) for v in Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split())
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        clients = [socket.create_connection(listener.getsockname()) for _ in range(20)]
        try:
            client_ports = {client.getsockname()[1] for client in clients}
            picked = [free_port() for _ in range(200)]
        finally:
            for client in clients:
                client.close()
    assert len(set(picked)) == len(picked), "a port was handed out twice"
    assert not client_ports & set(picked)
    assert all(not ephemeral_low <= port <= ephemeral_high for port in picked)
    assert all(port >= 1024 for port in picked)
    for port in picked[:20]:  # each one really is bindable right now
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind(("127.0.0.1", port))
