"""HTTP `/healthz` and `/readyz` for every service, on a tiny asyncio server (no web framework needed).

`/healthz` answers 200 while the event loop is responsive: a wedged loop stops answering and kubelet restarts the
pod. `/readyz` answers 200 only when every readiness check passes, and 503 with the failing checks' reasons
otherwise, so a pod that lost Redis leaves the Service's endpoints until it is back.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Final

logger = logging.getLogger(__name__)

MAX_REQUEST_LINE_BYTES: Final = 4096
REQUEST_READ_TIMEOUT_SECS: Final = 5.0


@dataclass(frozen=True, slots=True)
class CheckResult:
    ok: bool
    detail: str = ""


ReadinessCheck = Callable[[], Awaitable[CheckResult]]


class HealthState:
    """Readiness as named checks plus one switch the lifecycle flips (not ready before start, after stop)."""

    def __init__(self) -> None:
        self._checks: dict[str, ReadinessCheck] = {}
        self.accepting = False

    def add_check(self, name: str, check: ReadinessCheck) -> None:
        self._checks[name] = check

    async def evaluate(self, *, timeout_secs: float = 2.0) -> tuple[bool, dict[str, CheckResult]]:
        results: dict[str, CheckResult] = {
            "lifecycle": CheckResult(self.accepting, "serving" if self.accepting else "starting or stopping")
        }
        for name, check in list(self._checks.items()):  # checks may still be added while a probe runs
            try:
                results[name] = await asyncio.wait_for(check(), timeout=timeout_secs)
            except TimeoutError:
                results[name] = CheckResult(False, f"check timed out after {timeout_secs:.1f} s")
            except Exception as error:  # a failing check means "not ready", never a crashed probe server
                results[name] = CheckResult(False, f"{type(error).__name__}: {error}")
        return all(result.ok for result in results.values()), results


class HealthServer:
    """Serves `/healthz` and `/readyz` from a `HealthState` on host:port (port 0 picks a free port)."""

    def __init__(self, state: HealthState, *, host: str, port: int) -> None:
        self._state = state
        self._host = host
        self._requested_port = port
        self._server: asyncio.Server | None = None

    @property
    def port(self) -> int:
        if self._server is None or not self._server.sockets:
            raise RuntimeError("health server is not running")
        port: int = self._server.sockets[0].getsockname()[1]
        return port

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, self._host, self._requested_port)
        logger.info("health server listening", extra={"health_host": self._host, "health_port": self.port})

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            request_line = await asyncio.wait_for(reader.readline(), REQUEST_READ_TIMEOUT_SECS)
            # Drain the headers; probes send a handful of short lines.
            while True:
                line = await asyncio.wait_for(reader.readline(), REQUEST_READ_TIMEOUT_SECS)
                if line in (b"\r\n", b"\n", b""):
                    break
            status, body = await self._respond(request_line[:MAX_REQUEST_LINE_BYTES])
            payload = json.dumps(body).encode()
            writer.write(
                f"HTTP/1.1 {status}\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(payload)}\r\nConnection: close\r\n\r\n".encode()
                + payload
            )
            await writer.drain()
        except (TimeoutError, ConnectionError):
            pass  # a probe that hung up or stalled: nothing to answer
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    async def _respond(self, request_line: bytes) -> tuple[str, dict[str, object]]:
        parts = request_line.decode("latin-1").split()
        if len(parts) < 2 or parts[0] not in ("GET", "HEAD"):
            return "405 Method Not Allowed", {"error": "only GET /healthz and GET /readyz"}
        path = parts[1].split("?", 1)[0]
        if path == "/healthz":
            return "200 OK", {"status": "ok"}
        if path == "/readyz":
            ready, results = await self._state.evaluate()
            checks = {name: {"ok": r.ok, "detail": r.detail} for name, r in results.items()}
            return ("200 OK" if ready else "503 Service Unavailable"), {"ready": ready, "checks": checks}
        return "404 Not Found", {"error": f"no such path {path}"}
