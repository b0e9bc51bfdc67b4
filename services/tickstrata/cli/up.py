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

from tickstrata.cli.up_demo import print_quality, run_demo_queries, write_demo_faults
from tickstrata.cli.up_view import LiveView, Sampler
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
    """QuestDB's HTTP endpoint (ILP and /exec)."""
    needs_questdb_pg: bool = False
    """QuestDB's PGWire endpoint (SQL reads)."""
    grpc_port: int | None = None
    """A gRPC port fixed before start (a collector's, which the validator is told up front); else a free one."""
    instance: str = ""  # several processes of one role (a collector per venue) need distinct names
    env: tuple[tuple[str, str], ...] = ()

    @property
    def name(self) -> str:
        return self.instance or self.role


# Start order: producers of data last, so every consumer is ready before anything flows. The collector entry
# stands for one collector per venue feed (DEMO_FEEDS).
ROLE_SPECS: Final = (
    RoleSpec("writer", "WRITER_", needs_redis=True, needs_questdb=True),
    RoleSpec("validator", "VALIDATOR_", grpc=True, needs_redis=True, needs_questdb=True),
    RoleSpec("query", "QUERY_", grpc=True, needs_redis=True, needs_questdb=True, needs_questdb_pg=True),
    RoleSpec("simulate", "SIMULATOR_"),
    RoleSpec("collector", "COLLECTOR_", grpc=True, needs_redis=True),
)


# The default feeds of `tickstrata up`: a handful of liquid pairs on each Binance market.
DEMO_FEEDS: Final = {
    "binance": "BTC-USDT,ETH-USDT,SOL-USDT,BNB-USDT,XRP-USDT",
    "binance-usdm": "BTC-USDT-PERP,ETH-USDT-PERP,SOL-USDT-PERP",
}


def concrete_specs(roles: Sequence[str], *, simulate: bool, scenario: Path | None = None) -> list[RoleSpec]:
    """The processes to run: the chosen roles, a collector per feed, the simulator's ports fixed up front."""
    spot_port, usdm_port = free_port(), free_port()
    venue_ports = {"binance": spot_port, "binance-usdm": usdm_port}
    # Collectors start after the validator, which must know where their BackfillService will listen.
    backfill_ports = {exchange: free_port() for exchange in DEMO_FEEDS} if "collector" in roles else {}
    specs: list[RoleSpec] = []
    for spec in ROLE_SPECS:
        if spec.role not in roles:
            continue
        if spec.role == "validator":
            addresses = ",".join(f"{exchange}=127.0.0.1:{port}" for exchange, port in backfill_ports.items())
            # Everything is on loopback (milliseconds from venue to Redis): a short grace judges minutes sooner.
            validator_env = (("VALIDATOR_BACKFILL_ADDRESSES", addresses), ("VALIDATOR_GRACE_SECS", "5"))
            specs.append(replace(spec, env=validator_env))
        elif spec.role == "simulate":
            if simulate:
                ports = (("SIMULATOR_SPOT_PORT", str(spot_port)), ("SIMULATOR_USDM_PORT", str(usdm_port)))
                faults = (("SIMULATOR_SCENARIO_FILE", str(scenario)),) if scenario is not None else ()
                specs.append(replace(spec, env=(*ports, ("SIMULATOR_HOST", "127.0.0.1"), *faults)))
        elif spec.role == "collector":
            for exchange, symbols in DEMO_FEEDS.items():
                env = [("COLLECTOR_EXCHANGE", exchange), ("COLLECTOR_SYMBOLS", symbols)]
                if simulate:
                    env += [
                        ("COLLECTOR_WS_URL", f"ws://127.0.0.1:{venue_ports[exchange]}"),
                        ("COLLECTOR_REST_URL", f"http://127.0.0.1:{venue_ports[exchange]}"),
                    ]
                specs.append(
                    replace(spec, instance=f"collector-{exchange}", env=tuple(env), grpc_port=backfill_ports[exchange])
                )
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


@dataclass(frozen=True)
class Endpoints:
    """Where the local servers are, as every service process is told."""

    redis_url: str
    questdb_http_url: str
    questdb_pg_dsn: str


def service_env(spec: RoleSpec, *, health_port: int, grpc_port: int | None, endpoints: Endpoints) -> dict[str, str]:
    """The environment one service process gets: the same variables the chart sets in its pod."""
    env = dict(os.environ)
    env[f"{spec.env_prefix}HEALTH_HOST"] = "127.0.0.1"
    env[f"{spec.env_prefix}HEALTH_PORT"] = str(health_port)
    env[f"{spec.env_prefix}LOG_JSON"] = env.get(f"{spec.env_prefix}LOG_JSON", "true")
    if grpc_port is not None:
        env[f"{spec.env_prefix}GRPC_HOST"] = "127.0.0.1"
        env[f"{spec.env_prefix}GRPC_PORT"] = str(grpc_port)
    if spec.needs_redis:
        env[f"{spec.env_prefix}REDIS_URL"] = endpoints.redis_url
    if spec.needs_questdb:
        env[f"{spec.env_prefix}QUESTDB_HTTP_URL"] = endpoints.questdb_http_url
    if spec.needs_questdb_pg:
        env[f"{spec.env_prefix}QUESTDB_PG_DSN"] = endpoints.questdb_pg_dsn
    env.update(spec.env)
    return env


def start_service(spec: RoleSpec, *, logs_dir: Path, endpoints: Endpoints) -> RunningService:
    health_port = free_port()
    grpc_port = (spec.grpc_port or free_port()) if spec.grpc else None
    env = service_env(spec, health_port=health_port, grpc_port=grpc_port, endpoints=endpoints)
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


STATUS_INTERVAL_TTY_SECS: Final = 2.0
STATUS_INTERVAL_LOG_SECS: Final = 5.0
REDIS_PERSISTENCE_ARGS: Final = ("--appendonly", "yes", "--appendfsync", "everysec")
"""A second `up` on the same data dir resumes: the streams, consumer groups and cache survive a stop."""

DEMO_CANDLE_FEED: Final = ("binance", "BTC-USDT")


def wait_for_stop(
    duration_secs: float | None,
    services: Sequence[RunningService],
    tick: Callable[[], None] | None = None,
    *,
    tick_interval_secs: float = STATUS_INTERVAL_LOG_SECS,
) -> str:
    """Block until SIGINT/SIGTERM, the duration ends, or a service exits on its own; say which.

    Every `tick_interval_secs` `tick` (if given) refreshes the live view, so a newcomer sees the pipeline work.
    """
    stop = threading.Event()
    reason: list[str] = []

    def on_signal(signum: int, _frame: object) -> None:
        reason.append(signal.Signals(signum).name)
        stop.set()

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    deadline = None if duration_secs is None else time.monotonic() + duration_secs
    next_tick = time.monotonic() + tick_interval_secs
    try:
        while not stop.wait(min(1.0, tick_interval_secs)):
            if tick is not None and time.monotonic() >= next_tick:
                next_tick += tick_interval_secs
                try:
                    tick()
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


def _stored_summary(rows: dict[str, int | None]) -> str:
    return ", ".join(f"{table} {'?' if count is None else f'{count:,}'}" for table, count in rows.items())


def _finish_demo(
    services: Sequence[RunningService], why: str, *, demo_queries: bool, duration_secs: float | None
) -> None:
    """What a bounded run prints at its end: the demo queries, the quality report, the commands to try next."""
    query = next((s for s in services if s.spec.role == "query"), None)
    if demo_queries and query is not None and query.grpc_port is not None and "unexpectedly" not in why:
        symbols = [symbol for feed in DEMO_FEEDS.values() for symbol in feed.split(",")][:3]
        run_demo_queries(f"127.0.0.1:{query.grpc_port}", symbols, DEMO_CANDLE_FEED, _say)
        address = f"--address 127.0.0.1:{query.grpc_port}"
        _say(f"next, while `tickstrata up` runs: `tickstrata latest BTC-USDT {address}`")
        _say(f"                              `tickstrata candles binance BTC-USDT 1m --from -1h {address}`")
    validator = next((s for s in services if s.spec.role == "validator"), None)
    if validator is not None and validator.grpc_port is not None:
        if demo_queries and duration_secs is not None and "unexpectedly" not in why:
            print_quality(f"127.0.0.1:{validator.grpc_port}", _say, window_secs=duration_secs + 120)
        _say(f"completeness: `tickstrata quality --from -1h --address 127.0.0.1:{validator.grpc_port}`")


def run(
    *,
    data_dir: Path,
    duration_secs: float | None,
    roles: Sequence[str],
    simulate: bool,
    demo_queries: bool,
    faults: bool = False,
) -> int:
    scenario = write_demo_faults(data_dir, _say) if faults and simulate else None
    specs = concrete_specs(roles, simulate=simulate, scenario=scenario)
    logs_dir = data_dir / "logs"
    resuming = (data_dir / "questdb" / "db").exists()
    _say(("resuming on the data under " if resuming else "data and logs under ") + str(data_dir))
    services: list[RunningService] = []
    failed = False
    with ExitStack() as stack:
        redis_server = RedisServer(data_dir / "redis", extra_args=REDIS_PERSISTENCE_ARGS)
        questdb = QuestDBServer(data_dir / "questdb")
        try:
            stack.enter_context(_server("redis", redis_server))
            stack.enter_context(_server("questdb", questdb))
            endpoints = Endpoints(
                redis_url=redis_server.url,
                questdb_http_url=questdb.http_url,
                questdb_pg_dsn=questdb.pg_dsn,
            )
            client = stack.enter_context(redis.Redis.from_url(redis_server.url, socket_timeout=2))
            sampler = Sampler(client, questdb)
            if resuming:
                _say(f"already stored: {_stored_summary(sampler.stored_rows())}")
            for spec in specs:
                services.append(start_service(spec, logs_dir=logs_dir, endpoints=endpoints))
        except ServerStartError as error:
            _say(f"start-up failed: {error}")
            failed = True
        if not failed:
            _say(
                f"all up: redis {endpoints.redis_url}, QuestDB console {endpoints.questdb_http_url}, "
                f"PGWire {endpoints.questdb_pg_dsn}"
            )
            _say(json.dumps({s.spec.name: {"health_port": s.health_port, "grpc_port": s.grpc_port} for s in services}))
            _say("Ctrl-C to stop." + ("" if duration_secs is None else f" Stopping by itself in {duration_secs:g} s."))
            tty = sys.stdout.isatty()
            view = LiveView(sampler, tty=tty)
            why = wait_for_stop(
                duration_secs,
                services,
                tick=view.refresh,
                tick_interval_secs=STATUS_INTERVAL_TTY_SECS if tty else STATUS_INTERVAL_LOG_SECS,
            )
            view.draw_final()
            _finish_demo(services, why, demo_queries=demo_queries, duration_secs=duration_secs)
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
        "--no-demo-queries",
        action="store_true",
        help="with --duration-secs, skip the queries printed at the end (latest prices, the last hour of candles)",
    )
    parser.add_argument(
        "--faults",
        action="store_true",
        help="with --simulate: the venues drop trades, cut a connection, go quiet and go down during the run "
        "(the validator accounts for each)",
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
    return run(
        data_dir=args.data_dir.resolve(),
        duration_secs=args.duration_secs,
        roles=roles,
        simulate=args.simulate,
        demo_queries=args.duration_secs is not None and not args.no_demo_queries,
        faults=args.faults,
    )
