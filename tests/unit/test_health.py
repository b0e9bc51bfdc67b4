"""The HTTP health server over a real loopback socket."""

from __future__ import annotations

import asyncio
import json

from tickstrata.common.health import CheckResult, HealthServer, HealthState


async def http_get(port: int, path: str, method: str = "GET") -> tuple[int, dict[str, object]]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"{method} {path} HTTP/1.1\r\nHost: probe\r\n\r\n".encode())
    await writer.drain()
    raw = await reader.read()
    writer.close()
    await writer.wait_closed()
    head, _, body = raw.partition(b"\r\n\r\n")
    status = int(head.split()[1])
    return status, json.loads(body)


async def test_healthz_is_ok_and_readyz_follows_the_lifecycle_switch() -> None:
    state = HealthState()
    server = HealthServer(state, host="127.0.0.1", port=0)
    await server.start()
    try:
        assert await http_get(server.port, "/healthz") == (200, {"status": "ok"})
        status, body = await http_get(server.port, "/readyz")
        assert status == 503
        assert body["ready"] is False
        state.accepting = True
        status, body = await http_get(server.port, "/readyz?verbose=1")
        assert (status, body["ready"]) == (200, True)
    finally:
        await server.close()


async def test_readyz_reports_each_failing_check_with_its_reason() -> None:
    state = HealthState()
    state.accepting = True

    async def ok() -> CheckResult:
        return CheckResult(True, "PONG")

    async def broken() -> CheckResult:
        raise ConnectionRefusedError("redis down")

    async def slow() -> CheckResult:
        await asyncio.sleep(10)
        return CheckResult(True)

    state.add_check("redis", ok)
    state.add_check("questdb", broken)
    state.add_check("clickhouse", slow)
    ready, results = await state.evaluate(timeout_secs=0.2)
    assert ready is False
    assert results["redis"] == CheckResult(True, "PONG")
    assert results["questdb"] == CheckResult(False, "ConnectionRefusedError: redis down")
    assert results["clickhouse"] == CheckResult(False, "check timed out after 0.2 s")


async def test_unknown_paths_and_methods_are_refused() -> None:
    server = HealthServer(HealthState(), host="127.0.0.1", port=0)
    await server.start()
    try:
        status, body = await http_get(server.port, "/metrics")
        assert status == 404
        assert "/metrics" in str(body["error"])
        status, _ = await http_get(server.port, "/healthz", method="POST")
        assert status == 405
    finally:
        await server.close()
