"""A server child process: start it, wait until a probe says it is ready, always stop it within a bound."""

from __future__ import annotations

import abc
import contextlib
import os
import random
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import IO, ClassVar, Final, Generic, Self, TypeVar

from tickstrata.localstack.paths import cache_dir

LOG_TAIL_LINES = 40
# How often an automatically chosen address may turn out to be taken between picking it and the server's bind.
PORT_RACE_ATTEMPTS: Final = 3

AddressT = TypeVar("AddressT")


class ServerStartError(RuntimeError):
    """The server exited or did not become ready in time; the message carries the tail of its log."""


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that nothing is bound to right now and this process has not handed out.

    The port comes from below the kernel's ephemeral range: a port the kernel picked (`bind(0)`) is in the range it
    also gives outgoing connections, so between this call and the server's bind any client socket (a test's HTTP
    request, the writer's QuestDB connection) could take it and the server dies with "address already in use".
    """
    low, high = _PICKABLE_PORTS
    for _ in range(_PORT_PICK_ATTEMPTS):
        port = _port_picker.randrange(low, high)
        if port not in _handed_out_ports and _bindable(port):
            _handed_out_ports.add(port)
            return port
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:  # a crowded range: let the kernel choose
        sock.bind(("127.0.0.1", 0))
        chosen: int = sock.getsockname()[1]
        return chosen


def _bindable(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def _pickable_ports() -> tuple[int, int]:
    """[low, high): from 10000 up to the start of the ephemeral range (32768 on Linux unless tuned)."""
    try:
        ephemeral_low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        ephemeral_low = 32768
    if ephemeral_low - _LOWEST_PICKED_PORT < 1000:  # an unusual kernel setting: keep a usable range anyway
        return 49152, 65536
    return _LOWEST_PICKED_PORT, ephemeral_low


_LOWEST_PICKED_PORT: Final = 10000
_PORT_PICK_ATTEMPTS: Final = 200
_PICKABLE_PORTS: Final = _pickable_ports()
_port_picker = random.Random(os.urandom(16))  # not the global `random`: tests seed that, and workers must differ
_handed_out_ports: set[int] = set()


def tcp_port_open(port: int, host: str = "127.0.0.1") -> bool:
    with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.5):
        return True
    return False


class ManagedServer:
    """One server process whose output goes to a log file, started in its own process group."""

    def __init__(
        self,
        *,
        name: str,
        argv: Sequence[str],
        log_path: Path,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
    ) -> None:
        self.name = name
        self.argv = list(argv)
        self.log_path = log_path
        self.env = dict(os.environ if env is None else env)
        # Child servers that run Java or Go may pick up our cache for temporary files; never the user's home.
        self.env.setdefault("TMPDIR", str(cache_dir() / "tmp"))
        self.cwd = cwd
        self._process: subprocess.Popen[bytes] | None = None
        self._log_file: IO[bytes] | None = None

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None

    def exited(self) -> bool:
        """True when the process was started and has since exited on its own."""
        return self._process is not None and self._process.poll() is not None

    def start(self) -> None:
        if self._process is not None:
            raise RuntimeError(f"{self.name} already started")
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        Path(self.env["TMPDIR"]).mkdir(parents=True, exist_ok=True)
        self._log_file = self.log_path.open("ab")
        try:
            self._process = subprocess.Popen(
                self.argv,
                stdout=self._log_file,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=self.env,
                cwd=self.cwd,
                # A Ctrl-C at the terminal reaches only us, and we stop the server in order.
                start_new_session=True,
            )
        except OSError as exc:
            # A missing or non-executable binary: close the log now, nobody will call stop() on us.
            self._log_file.close()
            self._log_file = None
            raise ServerStartError(f"{self.name} could not be executed ({self.argv[0]}): {exc}") from exc

    def wait_ready(self, probe: Callable[[], bool], *, timeout_secs: float, interval_secs: float = 0.1) -> None:
        """Poll `probe` until it returns True; raise with the log tail if the process dies or times out."""
        deadline = time.monotonic() + timeout_secs
        while True:
            if self._process is None:
                raise RuntimeError(f"{self.name} was not started")
            code = self._process.poll()
            if code is not None:
                # Reap it and close our end of its log so a failed start leaks nothing (ResourceWarning).
                self.stop()
                raise ServerStartError(f"{self.name} exited with code {code} during start-up\n{self.log_tail()}")
            with contextlib.suppress(Exception):
                if probe():
                    return
            if time.monotonic() > deadline:
                self.stop()
                raise ServerStartError(
                    f"{self.name} not ready after {timeout_secs:.0f} s ({' '.join(self.argv[:3])} ...)\n"
                    f"{self.log_tail()}"
                )
            time.sleep(interval_secs)

    def stop(self, *, timeout_secs: float = 10.0) -> int | None:
        """Send SIGTERM, wait up to `timeout_secs`, then SIGKILL the process group. Return the exit code."""
        process, self._process = self._process, None
        code: int | None = None
        if process is not None:
            if process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGTERM)
                try:
                    process.wait(timeout=timeout_secs)
                except subprocess.TimeoutExpired:
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(process.pid, signal.SIGKILL)
                    process.wait(timeout=timeout_secs)
            code = process.returncode
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None
        return code

    def log_tail(self, lines: int = LOG_TAIL_LINES) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return f"(no log at {self.log_path})"
        return "\n".join(text.splitlines()[-lines:])

    def __enter__(self) -> ManagedServer:
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()


class LocalServer(abc.ABC, Generic[AddressT]):
    """A server on loopback whose address (a port, or a set of ports) is picked at start unless one was given.

    The plumbing the Redis, QuestDB and S3 launchers share: the child process, `stop()`, the context manager,
    and a start that picks a fresh address when another process took the picked one before the server bound it.
    A subclass supplies the process for an address (`_launch`), its readiness wait (`_wait_ready`), how to pick
    an address (`_pick_address`) and the log words for "address in use" (`address_in_use_markers`).
    """

    # Substrings of a failed start's message (which carries the log tail) saying another process had the address.
    address_in_use_markers: ClassVar[tuple[str, ...]] = ("Address already in use",)
    # The SIGTERM grace of `stop()` and of the stop after a failed start.
    stop_timeout_secs: ClassVar[float] = 10.0

    def __init__(self, *, log_path: Path, address: AddressT | None, start_timeout_secs: float) -> None:
        self._log_path = log_path
        self._requested_address = address
        self._address = address
        self.start_timeout_secs = start_timeout_secs
        self._server: ManagedServer | None = None

    @property
    def log_path(self) -> Path:
        return self._log_path

    @property
    def pid(self) -> int | None:
        return self._server.pid if self._server else None

    @property
    def running(self) -> bool:
        return self._server is not None

    @abc.abstractmethod
    def _pick_address(self) -> AddressT:
        """A free address, for a start without a requested one."""

    @abc.abstractmethod
    def _launch(self, address: AddressT) -> ManagedServer:
        """The (not yet started) process serving on `address`, with whatever configuration it needs written."""

    @abc.abstractmethod
    def _wait_ready(self, server: ManagedServer, address: AddressT) -> None:
        """Return once the server answers on `address`; raise `ServerStartError` (via `wait_ready`) if not."""

    def _prepare(self) -> None:
        """Done once before the first attempt to start."""

    def _already_running_message(self) -> str:
        return f"{type(self).__name__} already running"

    def _lost_port_race(self, message: str) -> bool:
        return any(marker in message for marker in self.address_in_use_markers)

    def _explain_failure(self, error: ServerStartError) -> ServerStartError | None:
        """A more telling error than `error` for a start that failed for good, or None to raise `error` as is."""
        return None

    def start(self) -> Self:
        """Start the server and wait until it is ready; else raise `ServerStartError` with its log."""
        if self._server is not None:
            raise RuntimeError(self._already_running_message())
        self._prepare()
        requested = self._requested_address
        attempts = 1 if requested is not None else PORT_RACE_ATTEMPTS
        for attempt in range(1, attempts + 1):
            address = requested if requested is not None else self._pick_address()
            server = self._launch(address)
            try:
                server.start()
                self._wait_ready(server, address)
            except ServerStartError as exc:
                server.stop(timeout_secs=self.stop_timeout_secs)
                # Another process may grab the address between picking and binding it; pick another one then.
                if attempt < attempts and self._lost_port_race(str(exc)):
                    continue
                explained = self._explain_failure(exc)
                if explained is None:
                    raise
                raise explained from exc
            except BaseException:
                # e.g. KeyboardInterrupt while waiting: never leave an orphan server (or its open log) behind
                server.stop(timeout_secs=self.stop_timeout_secs)
                raise
            self._server, self._address = server, address
            break
        return self

    def stop(self, *, timeout_secs: float | None = None) -> int | None:
        """Stop the server (SIGTERM, SIGKILL after `timeout_secs`, by default `stop_timeout_secs`); return its
        exit code. Safe to repeat."""
        server, self._server = self._server, None
        if server is None:
            return None
        return server.stop(timeout_secs=self.stop_timeout_secs if timeout_secs is None else timeout_secs)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()
