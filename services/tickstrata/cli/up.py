"""`tickstrata up`: the whole pipeline on this machine — real Redis and QuestDB on loopback, every service.

Servers come from `scripts/setup.sh` (`make demo` runs it first). Each service runs as its own process, exactly
the command a pod runs, configured through the same environment variables the Helm chart sets. Ctrl-C (or
`--duration-secs`) stops the services in reverse order through their SIGTERM path, then the servers.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Final

import redis

from tickstrata.common.streams import GAP_STREAM, LATEST_PRICE_KEY_PATTERN, QUARANTINE_STREAM
from tickstrata.localstack.paths import cache_dir
from tickstrata.localstack.process import ManagedServer, ServerStartError, free_port
from tickstrata.localstack.questdb import QuestDBServer
from tickstrata.localstack.redis import RedisServer

SERVICE_READY_TIMEOUT_SECS: Final = 60.0
SERVICE_STOP_TIMEOUT_SECS: Final = 30.0


@dataclass(frozen=True)
class RoleSpec:
    role: str  # the `tickstrata <role>` subcommand
    env_prefix: str
    grpc: bool = False
    needs_redis: bool = False
    needs_questdb: bool = False
    instance: str = ""  # several processes of one role (a collector per venue) need distinct names
    env: tuple[tuple[str, str], ...] = ()

    @property
    def name(self) -> str:
        return self.instance or self.role


# Start order: producers of data last, so every consumer is ready before anything flows. The collector entry
# stands for one collector per venue feed (DEMO_FEEDS).
ROLE_SPECS: Final = (
    RoleSpec("writer", "WRITER_", needs_redis=True, needs_questdb=True),
    RoleSpec("validator", "VALIDATOR_", grpc=True, needs_redis=True),
    RoleSpec("query", "QUERY_", grpc=True, needs_redis=True),
    RoleSpec("tierer", "TIERER_"),
    RoleSpec("simulate", "SIMULATOR_"),
    RoleSpec("collector", "COLLECTOR_", grpc=True, needs_redis=True),
)


# The default feeds of `tickstrata up`: a handful of liquid pairs on each Binance market.
DEMO_FEEDS: Final = {
    "binance": "BTC-USDT,ETH-USDT,SOL-USDT,BNB-USDT,XRP-USDT",
    "binance-usdm": "BTC-USDT-PERP,ETH-USDT-PERP,SOL-USDT-PERP",
}


def concrete_specs(roles: Sequence[str], *, simulate: bool) -> list[RoleSpec]:
    """The processes to run: the chosen roles, a collector per feed, the simulator's ports fixed up front."""
    spot_port, usdm_port = free_port(), free_port()
    venue_ports = {"binance": spot_port, "binance-usdm": usdm_port}
    specs: list[RoleSpec] = []
    for spec in ROLE_SPECS:
        if spec.role not in roles:
            continue
        if spec.role == "simulate":
            if simulate:
                ports = (("SIMULATOR_SPOT_PORT", str(spot_port)), ("SIMULATOR_USDM_PORT", str(usdm_port)))
                specs.append(replace(spec, env=(*ports, ("SIMULATOR_HOST", "127.0.0.1"))))
        elif spec.role == "collector":
            for exchange, symbols in DEMO_FEEDS.items():
                env = [("COLLECTOR_EXCHANGE", exchange), ("COLLECTOR_SYMBOLS", symbols)]
                if simulate:
                    env += [
                        ("COLLECTOR_WS_URL", f"ws://127.0.0.1:{venue_ports[exchange]}"),
                        ("COLLECTOR_REST_URL", f"http://127.0.0.1:{venue_ports[exchange]}"),
                    ]
                specs.append(replace(spec, instance=f"collector-{exchange}", env=tuple(env)))
        else:
            specs.append(spec)
    return specs


@dataclass
class RunningService:
    spec: RoleSpec
    process: ManagedServer
    health_port: int
    grpc_port: int | None
    extra: dict[str, str] = field(default_factory=dict)


def _say(message: str) -> None:
    print(f"[up] {message}", flush=True)


def _readyz(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=1.0) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def service_env(
    spec: RoleSpec, *, health_port: int, grpc_port: int | None, redis_url: str, questdb_http_url: str
) -> dict[str, str]:
    """The environment one service process gets: the same variables the chart sets in its pod."""
    env = dict(os.environ)
    env[f"{spec.env_prefix}HEALTH_HOST"] = "127.0.0.1"
    env[f"{spec.env_prefix}HEALTH_PORT"] = str(health_port)
    env[f"{spec.env_prefix}LOG_JSON"] = env.get(f"{spec.env_prefix}LOG_JSON", "true")
    if grpc_port is not None:
        env[f"{spec.env_prefix}GRPC_HOST"] = "127.0.0.1"
        env[f"{spec.env_prefix}GRPC_PORT"] = str(grpc_port)
    if spec.needs_redis:
        env[f"{spec.env_prefix}REDIS_URL"] = redis_url
    if spec.needs_questdb:
        env[f"{spec.env_prefix}QUESTDB_HTTP_URL"] = questdb_http_url
    env.update(spec.env)
    return env


def start_service(spec: RoleSpec, *, logs_dir: Path, redis_url: str, questdb_http_url: str) -> RunningService:
    health_port = free_port()
    grpc_port = free_port() if spec.grpc else None
    env = service_env(
        spec,
        health_port=health_port,
        grpc_port=grpc_port,
        redis_url=redis_url,
        questdb_http_url=questdb_http_url,
    )
    process = ManagedServer(
        name=spec.name,
        argv=[sys.executable, "-m", "tickstrata", spec.role],
        log_path=logs_dir / f"{spec.name}.log",
        env=env,
    )
    process.start()
    started = time.monotonic()
    process.wait_ready(lambda: _readyz(health_port), timeout_secs=SERVICE_READY_TIMEOUT_SECS)
    grpc_note = f", gRPC 127.0.0.1:{grpc_port}" if grpc_port else ""
    _say(
        f"{spec.name:<22} ready in {time.monotonic() - started:4.1f} s  pid {process.pid}, "
        f"health http://127.0.0.1:{health_port}/readyz{grpc_note}"
    )
    return RunningService(spec, process, health_port, grpc_port)


@contextmanager
def _server(name: str, server: RedisServer | QuestDBServer) -> Iterator[None]:
    started = time.monotonic()
    _say(f"starting {name} ...")
    server.start()
    _say(f"{name:<22} ready in {time.monotonic() - started:4.1f} s")
    try:
        yield
    finally:
        server.stop()
        _say(f"{name} stopped")


STATUS_INTERVAL_SECS: Final = 5.0


def stream_status(client: redis.Redis) -> str:
    """One line of what has reached Redis so far: entries per stream, and how many symbols have a latest price."""
    parts = []
    for name in sorted(client.scan_iter(match="md:*", _type="stream")):
        parts.append(f"{name.decode()}={client.xlen(name)}")
    for name in (GAP_STREAM, QUARANTINE_STREAM):
        parts.append(f"{name}={client.xlen(name)}")
    prices = sum(1 for _ in client.scan_iter(match=LATEST_PRICE_KEY_PATTERN))
    return f"stream entries: {' '.join(parts)}; latest prices cached: {prices}"


def wait_for_stop(
    duration_secs: float | None, services: Sequence[RunningService], status: Callable[[], str] | None = None
) -> str:
    """Block until SIGINT/SIGTERM, the duration ends, or a service exits on its own; say which.

    Every few seconds `status` (if given) prints what is flowing, so a newcomer sees the pipeline work.
    """
    stop = threading.Event()
    reason: list[str] = []

    def on_signal(signum: int, _frame: object) -> None:
        reason.append(signal.Signals(signum).name)
        stop.set()

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    deadline = None if duration_secs is None else time.monotonic() + duration_secs
    next_status = time.monotonic() + STATUS_INTERVAL_SECS
    try:
        while not stop.wait(1.0):
            if status is not None and time.monotonic() >= next_status:
                next_status += STATUS_INTERVAL_SECS
                try:
                    _say(status())
                except (redis.RedisError, OSError) as error:
                    _say(f"status unavailable: {error}")
            for service in services:
                if service.process.exited():
                    return f"{service.spec.name} exited unexpectedly (log: {service.process.log_path})"
            if deadline is not None and time.monotonic() >= deadline:
                return f"--duration-secs {duration_secs:g} elapsed"
        return f"received {reason[0]}"
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def run(*, data_dir: Path, duration_secs: float | None, roles: Sequence[str], simulate: bool) -> int:
    specs = concrete_specs(roles, simulate=simulate)
    logs_dir = data_dir / "logs"
    _say(f"data and logs under {data_dir}")
    services: list[RunningService] = []
    failed = False
    with ExitStack() as stack:
        redis_server = RedisServer(data_dir / "redis")
        questdb = QuestDBServer(data_dir / "questdb")
        try:
            stack.enter_context(_server("redis", redis_server))
            stack.enter_context(_server("questdb", questdb))
            for spec in specs:
                services.append(
                    start_service(
                        spec, logs_dir=logs_dir, redis_url=redis_server.url, questdb_http_url=questdb.http_url
                    )
                )
        except ServerStartError as error:
            _say(f"start-up failed: {error}")
            failed = True
        if not failed:
            _say(
                "all up: redis "
                + redis_server.url
                + f", QuestDB console {questdb.http_url}, PGWire {questdb.pg_dsn}. Ctrl-C to stop."
            )
            _say(json.dumps({s.spec.name: {"health_port": s.health_port, "grpc_port": s.grpc_port} for s in services}))
            with redis.Redis.from_url(redis_server.url, socket_timeout=2) as client:
                why = wait_for_stop(duration_secs, services, status=lambda: stream_status(client))
                _say(f"final {stream_status(client)}")
            _say(f"stopping: {why}")
            failed = "unexpectedly" in why
        for service in reversed(services):
            code = service.process.stop(timeout_secs=SERVICE_STOP_TIMEOUT_SECS)
            _say(f"{service.spec.name:<22} stopped (exit code {code})")
            failed = failed or code not in (0, None)
    _say("stopped" + (" with failures (see the logs above)" if failed else " cleanly"))
    return 1 if failed else 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="tickstrata up", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=Path(os.environ.get("TICKSTRATA_DATA_DIR", cache_dir() / "up")),
        help="where server data and service logs go (default: .cache/up, or $TICKSTRATA_DATA_DIR)",
    )
    parser.add_argument(
        "--duration-secs",
        type=float,
        default=None,
        help="stop by itself after this long (default: run until Ctrl-C)",
    )
    parser.add_argument(
        "--simulate",
        action="store_true",
        help="run the exchange simulator and point the collectors at it (machines without internet, demos)",
    )
    parser.add_argument(
        "--roles",
        default=",".join(spec.role for spec in ROLE_SPECS),
        help="comma-separated services to run (default: all)",
    )
    args = parser.parse_args(argv)
    roles = [role.strip() for role in args.roles.split(",") if role.strip()]
    unknown = sorted(set(roles) - {spec.role for spec in ROLE_SPECS})
    if unknown:
        parser.error(f"unknown roles: {', '.join(unknown)}")
    if "collector" in roles and not args.simulate:
        _say("collectors connect to the real venues; use --simulate on a machine without internet")
    return run(data_dir=args.data_dir.resolve(), duration_secs=args.duration_secs, roles=roles, simulate=args.simulate)
