"""GetLatestPrice latency through the real query service at ~1k requests/s, next to a no-op gRPC call.

Goal: p99 < 1 ms absolute and ≤ 1.5x the no-op call's p99, measured side by side in one run.

Method (printed with the results):
- A real ``redis-server`` (``RedisServer``) seeded with ``px:<exchange>:<symbol>`` values for 5 venues x 40
  symbols (``encode_latest_price``), and ``python -m tickstrata query`` as its own process on loopback ports,
  serving from its in-process mirror of the cache (``query/mirror.py``, the default). With ``--compare-redis`` a
  second query process runs with ``QUERY_LATEST_MIRROR=false`` (every call reads Redis) for the same calls.
- ``--updates-per-sec`` (default 200): a separate writer process rewrites the 5 BTC-USDT keys at that total rate
  throughout, as a live feed would, so the mirror keeps receiving invalidations and refreshing.
- Contenders, each on one gRPC channel per server from this process (sync stub): ``no-op`` (the standard health
  ``Check`` on the mirror server: a gRPC round trip with no Redis work), ``named`` (``GetLatestPrice`` BTC-USDT
  with the 5 exchanges named), ``all venues`` (no exchange named).
- Open loop at ``--rate``: request *i* is due at start + i/rate; latency runs from the due time (so a slow call
  that delays the next ones counts against them: no coordinated omission). Blocks of ``--requests`` per
  contender, the order rotating between repetitions; percentiles over all samples of a contender.
- Closed loop: back-to-back calls for ``--closed-secs`` per contender and repetition, median calls/s.
- The client and the service share the machine's CPUs (2 vCPU on the build VM): absolute figures include the
  client's own Python gRPC cost on both sides of the ratio.

Run: ``.cache/venv/bin/python bench/bench_query_latest.py [--quick]``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import itertools
import os
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any, Final, cast

import grpc
import redis
from grpc_health.v1 import health_pb2, health_pb2_grpc
from opentelemetry import metrics

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # `bench` as a package when run as a script
from bench import _harness as h
from bench import ghz_client

from tickstrata.common.redis_connection import connect_redis
from tickstrata.common.streams import LatestPrice, encode_latest_price, latest_price_key
from tickstrata.localstack.process import ManagedServer, free_port
from tickstrata.localstack.redis import RedisServer
from tickstrata.marketdata.v1 import market_data_service_pb2 as pb
from tickstrata.marketdata.v1 import market_data_service_pb2_grpc as pb_grpc
from tickstrata.query.latest_rpcs import LatestRpcs
from tickstrata.query.settings import QuerySettings

EXCHANGES: Final = ("binance", "coinbase", "kraken", "okx", "bybit")
SYMBOL: Final = "BTC-USDT"
FILLER_SYMBOLS: Final = 39  # other symbols on every venue, so SCAN walks a realistic keyspace (200 keys)


GOAL_P99_US: Final = 1000.0
GOAL_RATIO: Final = 1.5
SPIN_NS: Final = 200_000  # sleep until this close to the due time, then spin (time.sleep overshoots ~60 µs)
CALL_TIMEOUT_SECS: Final = 5.0


@dataclass(frozen=True)
class Config:
    rate: float
    requests: int
    reps: int
    closed_secs: float
    warmup: int


@dataclass
class Samples:
    latencies_us: list[float]
    late_starts: int
    closed_rates: list[float]


Call = Callable[[], None]


def seed(client: redis.Redis) -> None:
    now = time.time_ns()
    pipe = client.pipeline(transaction=False)
    symbols = [SYMBOL, *(f"C{i:02d}-USDT" for i in range(FILLER_SYMBOLS))]
    for index, exchange in enumerate(EXCHANGES):
        for symbol in symbols:
            value = LatestPrice(
                price=Decimal("64123.45") + index, size=Decimal("0.0123"), ts_event_ns=now, ts_recv_ns=now + 1000
            )
            pipe.set(latest_price_key(exchange, symbol), encode_latest_price(value))
    pipe.execute()


def write_forever(redis_url: str, updates_per_sec: float) -> None:
    """The feed stand-in (its own process): rewrite the BTC-USDT keys round-robin at `updates_per_sec`."""
    client = redis.Redis.from_url(redis_url)
    period_secs = 1.0 / updates_per_sec
    next_due = time.monotonic()
    price = Decimal("64000")
    for step in itertools.count():
        price += Decimal("0.01")
        now = time.time_ns()
        value = LatestPrice(price=price, size=Decimal("0.0123"), ts_event_ns=now - 1000, ts_recv_ns=now)
        client.set(latest_price_key(EXCHANGES[step % len(EXCHANGES)], SYMBOL), encode_latest_price(value))
        next_due += period_secs
        time.sleep(max(0.0, next_due - time.monotonic()))


def start_writer(stack: h.Stack, directory: Path, redis_url: str, updates_per_sec: float) -> None:
    argv = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--writer",
        redis_url,
        "--updates-per-sec",
        str(updates_per_sec),
    ]
    stack.process(ManagedServer(name="writer", argv=argv, log_path=directory / "writer.log"), stop_timeout_secs=5.0)


def start_query(stack: h.Stack, directory: Path, redis_url: str, *, mirror: bool) -> int:
    health_port, grpc_port = free_port(), free_port()
    name = "query" if mirror else "query-no-mirror"
    env = {
        **os.environ,
        "QUERY_LATEST_MIRROR": "true" if mirror else "false",
        "QUERY_REDIS_URL": redis_url,
        "QUERY_HEALTH_HOST": "127.0.0.1",
        "QUERY_HEALTH_PORT": str(health_port),
        "QUERY_GRPC_HOST": "127.0.0.1",
        "QUERY_GRPC_PORT": str(grpc_port),
        "QUERY_LOG_LEVEL": "WARNING",
    }
    server = stack.process(
        ManagedServer(
            name=name, argv=[sys.executable, "-m", "tickstrata", "query"], log_path=directory / f"{name}.log", env=env
        ),
        stop_timeout_secs=5.0,
    )
    h.wait_until(server, f"http://127.0.0.1:{health_port}/readyz")
    return grpc_port


def noop_call(channel: grpc.Channel) -> Call:
    health = health_pb2_grpc.HealthStub(channel)
    check = health_pb2.HealthCheckRequest(service="")
    if health.Check(check, timeout=CALL_TIMEOUT_SECS).status != health_pb2.HealthCheckResponse.SERVING:
        raise h.BenchError("the query service's gRPC health is not SERVING")

    def noop() -> None:
        health.Check(check, timeout=CALL_TIMEOUT_SECS)

    return noop


def latest_calls(channel: grpc.Channel, label: str) -> dict[str, Call]:
    market = pb_grpc.MarketDataServiceStub(channel)
    named = pb.GetLatestPriceRequest(symbol=SYMBOL, exchanges=list(EXCHANGES))
    every = pb.GetLatestPriceRequest(symbol=SYMBOL)

    # Check every answer once before timing: the named and all-venues paths must return all 5 prices.
    for kind, request in (("named", named), ("all venues", every)):
        response = market.GetLatestPrice(request, timeout=CALL_TIMEOUT_SECS)
        if sorted(p.exchange for p in response.prices) != sorted(EXCHANGES) or response.missing_exchanges:
            raise h.BenchError(f"GetLatestPrice ({kind}, {label}) returned {response}")

    def latest_named() -> None:
        market.GetLatestPrice(named, timeout=CALL_TIMEOUT_SECS)

    def latest_all() -> None:
        market.GetLatestPrice(every, timeout=CALL_TIMEOUT_SECS)

    return {f"GetLatestPrice named, {label}": latest_named, f"GetLatestPrice all venues, {label}": latest_all}


def run_paced(call: Call, *, count: int, rate: float, into: Samples) -> None:
    period_ns = int(1e9 / rate)
    start = time.perf_counter_ns() + 1_000_000
    for i in range(count):
        due = start + i * period_ns
        ahead = due - time.perf_counter_ns()
        if ahead > SPIN_NS:
            time.sleep((ahead - SPIN_NS) / 1e9)
        while time.perf_counter_ns() < due:
            pass
        sent = time.perf_counter_ns()
        if sent - due > period_ns:
            into.late_starts += 1
        call()
        into.latencies_us.append((time.perf_counter_ns() - due) / 1000)


def run_closed(call: Call, *, secs: float) -> float:
    calls, start = 0, time.perf_counter()
    deadline = start + secs
    while True:
        call()
        calls += 1
        now = time.perf_counter()
        if now >= deadline:
            return calls / (now - start)


@contextlib.contextmanager
def client_gc_paused() -> Iterator[None]:
    """No collection in this (client) process during a timed block: its 15 ms gen-2 pauses are not the service's.

    The collection runs between blocks instead; the service process collects as it always does."""
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def measure(calls: dict[str, Call], config: Config) -> dict[str, Samples]:
    names = list(calls)
    results = {name: Samples([], 0, []) for name in names}
    with h.phase(f"warm-up, {config.warmup} calls each"):
        for call in calls.values():
            for _ in range(config.warmup):
                call()
    for rep in range(config.reps):
        order = names[rep % len(names) :] + names[: rep % len(names)]
        with h.phase(f"repetition {rep + 1}/{config.reps}: {config.requests} paced + {config.closed_secs} s closed"):
            for name in order:
                with client_gc_paused():
                    run_paced(calls[name], count=config.requests, rate=config.rate, into=results[name])
            for name in order:
                results[name].closed_rates.append(run_closed(calls[name], secs=config.closed_secs))
    return results


class _HandlerContext:
    """What `get_latest_price` needs of a gRPC context when called in-process: `abort` (never reached here)."""

    async def abort(self, code: grpc.StatusCode, details: str) -> None:
        raise h.BenchError(f"GetLatestPrice aborted in-process: {code.name}: {details}")


async def _handler_times(redis_url: str, *, mirror: bool, calls: int) -> dict[str, list[float]]:
    settings = QuerySettings(redis_url=redis_url, latest_mirror=mirror)
    client = connect_redis(redis_url)
    rpcs = LatestRpcs(client, settings, metrics.get_meter("bench"))
    await rpcs.start()
    try:
        deadline = time.monotonic() + 10
        while mirror and not rpcs.mirror_serves():
            if time.monotonic() > deadline:
                raise h.BenchError("the in-process mirror never went live")
            await asyncio.sleep(0.01)
        context = cast("Any", _HandlerContext())
        requests = {
            "named": pb.GetLatestPriceRequest(symbol=SYMBOL, exchanges=list(EXCHANGES)),
            "all venues": pb.GetLatestPriceRequest(symbol=SYMBOL),
        }
        times: dict[str, list[float]] = {}
        for kind, request in requests.items():
            samples = times.setdefault(kind, [])
            for index in range(calls + calls // 10):
                started = time.perf_counter_ns()
                await rpcs.get_latest_price(request, context)
                if index >= calls // 10:  # the first tenth warms up
                    samples.append((time.perf_counter_ns() - started) / 1000)
        return times
    finally:
        await rpcs.close()
        await client.aclose()


def handler_report(redis_url: str, *, calls: int) -> None:
    """Where the time goes: the service's handler alone, in this process, with and without the mirror."""
    rows = []
    for mirror in (True, False):
        for kind, samples in asyncio.run(_handler_times(redis_url, mirror=mirror, calls=calls)).items():
            label = f"{kind}, {'mirror' if mirror else 'Redis (MGET, SCAN for all venues)'}"
            p50, p99 = h.percentile(samples, 50), h.percentile(samples, 99)
            rows.append([label, str(len(samples)), f"{p50:.0f}", f"{p99:.0f}"])
    print()
    print("The GetLatestPrice handler alone (in this process, no gRPC; the writer still running), µs per call:")
    print(h.table(["handler path", "calls", "p50 µs", "p99 µs"], rows))


def report(results: dict[str, Samples], config: Config) -> None:
    names = list(results)
    noop = results[names[0]].latencies_us
    noop_p50, noop_p99 = h.percentile(noop, 50), h.percentile(noop, 99)
    rows = []
    for name in names:
        samples = results[name]
        lat = samples.latencies_us
        p50, p99, p999 = h.percentile(lat, 50), h.percentile(lat, 99), h.percentile(lat, 99.9)
        rows.append(
            [
                name,
                str(len(lat)),
                f"{p50:.0f}",
                f"{p99:.0f}",
                f"{p999:.0f}",
                f"{max(lat):.0f}",
                f"{p50 / noop_p50:.2f}x",
                f"{p99 / noop_p99:.2f}x",
                f"{h.median(samples.closed_rates):,.0f}",
                str(samples.late_starts),
            ]
        )
    headers = [
        "contender",
        "samples",
        "p50 µs",
        "p99 µs",
        "p99.9 µs",
        "max µs",
        "p50 vs no-op",
        "p99 vs no-op",
        "closed-loop calls/s",
        "late sends",
    ]
    print()
    print(f"Open loop at {config.rate:,.0f} requests/s, latency from each request's due time (µs):")
    print(h.table(headers, rows))
    print()
    print(f"Goal: p99 < {GOAL_P99_US:.0f} µs and ≤ {GOAL_RATIO}x the no-op call's p99 ({noop_p99:.0f} µs).")
    for name in names[1:]:
        p99 = h.percentile(results[name].latencies_us, 99)
        absolute = "met" if p99 < GOAL_P99_US else "MISSED"
        relative = "met" if p99 <= GOAL_RATIO * noop_p99 else "MISSED"
        print(
            f"  {name}: p99 {p99:.0f} µs: absolute goal {absolute}; {p99 / noop_p99:.2f}x no-op: ratio goal {relative}"
        )
        if h.median(results[name].closed_rates) < config.rate:
            print(f"    (its closed-loop rate is below {config.rate:,.0f}/s from this client: the open loop queues up)")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="3 short repetitions (< 40 s in all)")
    parser.add_argument("--rate", type=float, default=1000.0, help="open-loop requests/s (default 1000)")
    parser.add_argument("--requests", type=int, help="paced requests per contender and repetition")
    parser.add_argument("--reps", type=int, help="repetitions (contender order rotates)")
    parser.add_argument("--closed-secs", type=float, help="closed-loop seconds per contender and repetition")
    parser.add_argument(
        "--updates-per-sec", type=float, default=200.0, help="writes to the BTC-USDT keys during the run (0: none)"
    )
    parser.add_argument(
        "--compare-redis", action="store_true", help="also time a query process without the mirror (reads Redis)"
    )
    parser.add_argument("--writer", metavar="REDIS_URL", help=argparse.SUPPRESS)  # the writer process's own mode
    args = parser.parse_args(argv)
    if args.writer:
        write_forever(args.writer, args.updates_per_sec)
        return 0
    config = Config(
        rate=args.rate,
        requests=args.requests or (1500 if args.quick else 5000),
        reps=args.reps or (3 if args.quick else 5),
        closed_secs=args.closed_secs or (0.5 if args.quick else 2.0),
        warmup=300 if args.quick else 2000,
    )
    try:
        with h.Stack() as stack:
            directory = h.workdir(stack, "query-latest")
            with h.phase("starting redis-server and tickstrata query"):
                redis_server = stack.enter_context(RedisServer(directory / "redis"))
                client = redis.Redis.from_url(redis_server.url)
                stack.callback(client.close)
                seed(client)
                servers = {"mirror": start_query(stack, directory, redis_server.url, mirror=True)}
                if args.compare_redis:
                    servers["Redis"] = start_query(stack, directory, redis_server.url, mirror=False)
                if args.updates_per_sec > 0:
                    start_writer(stack, directory, redis_server.url, args.updates_per_sec)
            channels = {label: grpc.insecure_channel(f"127.0.0.1:{port}") for label, port in servers.items()}
            for channel in channels.values():
                stack.callback(channel.close)
            calls = {"no-op (health Check)": noop_call(channels["mirror"])}
            for label, channel in channels.items():
                calls.update(latest_calls(channel, label))
            print(f"{args.updates_per_sec:,.0f} writes/s to the BTC-USDT keys during the run")
            results = measure(calls, config)
            report(results, config)
            ghz_client.report(
                directory, servers["mirror"], rate=config.rate, requests=config.requests, reps=config.reps,
                goal_p99_us=GOAL_P99_US, goal_ratio=GOAL_RATIO,
            )  # fmt: skip
            with client_gc_paused():
                handler_report(redis_server.url, calls=config.requests)
    except KeyboardInterrupt:
        print("\ninterrupted; every process started was stopped", file=sys.stderr)
        return 130
    except h.BenchError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
