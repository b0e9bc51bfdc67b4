"""Freshness: venue event time → queryable in QuestDB, through collector, Redis Streams and writer (goal p99 < 1 s).

Method (printed with the results):
- ``tickstrata simulate`` generates Binance spot aggTrades for 4 symbols, 5k trades/s in all, with a 5 ms tick.
- ``tickstrata collector`` (trades) publishes to ``md:binance:trades``; ``tickstrata writer`` (default settings
  except a 100 ms read block) writes a real QuestDB (the project's 9.3 jar) and acknowledges after the WAL commit.
- An observer in this process asks QuestDB over PGWire for the rows newer than the newest it has seen every
  ``--poll-ms`` (20), and notes the reply time of the first query that returned each row: its *visible* time.
  The row holds ``ts`` (the venue's ``T``, ms) and ``ts_recv_ns`` (the collector's receive time); one host clock.
- Baseline in the same run: the same trades' arrival in the Redis stream (the entry id's millisecond is Redis's
  clock at the XADD), so ``T → in Redis`` is what the collector alone adds, and the ratio shows the cost of the
  storage hop (writer read, ILP/HTTP commit, WAL apply) on top of it.
- visible is late by at most one observer round (query period), reported as the resolution.

Run: ``.cache/venv/bin/python bench/bench_freshness.py [--quick]``.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import psycopg
import redis

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # `bench` as a package when run as a script
from bench import _harness as h

from tickstrata.common.events import DataType, Trade
from tickstrata.common.streams import decode_entry, market_data_stream
from tickstrata.localstack.process import ManagedServer, free_port
from tickstrata.localstack.questdb import QuestDBServer
from tickstrata.localstack.redis import RedisServer

SYMBOLS: Final = ("BTC-USDT", "ETH-USDT", "SOL-USDT", "BNB-USDT")
GOAL_P99_MS: Final = 1000.0
STREAM: Final = market_data_stream("binance", DataType.TRADES)


@dataclass(frozen=True)
class Config:
    rate: float
    warmup_secs: float
    window_secs: float
    poll_ms: float


@dataclass(frozen=True)
class Seen:
    visible_ns: int
    ts_event_ns: int
    ts_recv_ns: int
    key: str
    """symbol:trade_id (ids are per symbol)."""


def start_writer(stack: h.Stack, directory: Path, *, redis_url: str, questdb_http_url: str) -> ManagedServer:
    health_port = free_port()
    env = {
        **os.environ,
        "WRITER_REDIS_URL": redis_url,
        "WRITER_QUESTDB_HTTP_URL": questdb_http_url,
        "WRITER_HEALTH_HOST": "127.0.0.1",
        "WRITER_HEALTH_PORT": str(health_port),
        "WRITER_BLOCK_MS": "100",
        "WRITER_JANITOR_INTERVAL_SECS": "1",
        "WRITER_LOG_LEVEL": "WARNING",
    }
    server = stack.process(
        ManagedServer(
            name="writer",
            argv=[sys.executable, "-m", "tickstrata", "writer"],
            log_path=directory / "writer.log",
            env=env,
        ),
        stop_timeout_secs=10.0,
    )
    h.wait_until(server, f"http://127.0.0.1:{health_port}/readyz")
    return server


def observe(
    connection: psycopg.Connection[tuple[int, int, str]], secs: float, poll_secs: float
) -> tuple[list[Seen], list[float]]:
    """Poll QuestDB for rows newer than the newest seen; return each row's first-visible time and the poll periods."""
    seen: list[Seen] = []
    periods: list[float] = []
    known: set[str] = set()
    horizon_ns = time.time_ns() - 2_000_000_000
    deadline = time.monotonic() + secs
    previous = 0
    with connection.cursor() as cursor:
        while time.monotonic() < deadline:
            cursor.execute(
                "SELECT cast(ts AS LONG), ts_recv_ns, symbol || ':' || trade_id FROM trades "
                "WHERE exchange = 'binance' AND ts >= cast(%s AS TIMESTAMP_NS)",
                (horizon_ns,),
            )
            rows = cursor.fetchall()
            got = time.time_ns()
            if previous:
                periods.append((got - previous) / 1e6)
            previous = got
            newest = horizon_ns
            for ts_ns, recv_ns, key in rows:
                newest = max(newest, ts_ns)
                if key not in known:
                    known.add(key)
                    seen.append(Seen(got, ts_ns, recv_ns, key))
            # A transaction holds every symbol's trades of one read, so a later one brings nothing much older
            # than what was seen: re-read a short trailing margin only (rows are de-duplicated by key).
            horizon_ns = max(horizon_ns, newest - 250_000_000)
            # A tight loop would have QuestDB answer queries flat out on the same 2 cores as everything measured.
            time.sleep(poll_secs)
    return seen, periods


def redis_arrivals(client: redis.Redis, start_ms: int, end_ms: int) -> dict[str, float]:
    """symbol:trade_id → ms from T to the XADD that carried it (entry id ms is Redis's clock)."""
    arrivals: dict[str, float] = {}
    for page in h.entries_between(client, STREAM, start_ms, end_ms):
        for entry_id, fields in page:
            added_ms = int(entry_id.split(b"-")[0])
            for event in decode_entry(fields).events:
                if type(event) is Trade:
                    arrivals[f"{event.symbol}:{event.trade_id}"] = added_ms - event.ts_event_ns / 1e6
    return arrivals


def row(label: str, values_ms: Sequence[float]) -> list[str]:
    if not values_ms:
        return [label, "—", "—", "—", "—", "0"]
    return [
        label,
        f"{h.percentile(values_ms, 50):.1f}",
        f"{h.percentile(values_ms, 90):.1f}",
        f"{h.percentile(values_ms, 99):.1f}",
        f"{max(values_ms):.1f}",
        f"{len(values_ms):,}",
    ]


def run(config: Config) -> int:
    with h.Stack() as stack:
        directory = h.workdir(stack, "freshness")
        with h.phase("starting Redis, QuestDB, the simulator, the writer and the collector"):
            redis_server = stack.enter_context(RedisServer(directory / "redis"))
            questdb = stack.enter_context(QuestDBServer(directory / "questdb"))
            client = redis.Redis(host="127.0.0.1", port=redis_server.port)
            stack.callback(client.close)
            sim = h.start_simulator(
                stack,
                directory,
                tls=None,
                settings={
                    "symbols": ",".join(s.replace("-", "") for s in SYMBOLS),
                    "trades_per_sec": f"{config.rate / len(SYMBOLS):.3f}",
                    "tick_ms": "5",
                },
            )
            # A second group that never reads: the writer trims streams only below what every group consumed, so
            # the entries stay for the baseline's read-back at the end.
            client.xgroup_create(STREAM, "bench-baseline", id="0", mkstream=True)
            start_writer(stack, directory, redis_url=redis_server.url, questdb_http_url=questdb.http_url)
            h.start_collector(stack, directory, simulator=sim, redis_url=redis_server.url, symbols=SYMBOLS)
            connection: psycopg.Connection[tuple[int, int, str]] = psycopg.connect(questdb.pg_dsn, autocommit=True)
            stack.callback(connection.close)
        with h.phase(f"warm-up {config.warmup_secs:.0f} s"):
            observe(connection, config.warmup_secs, config.poll_ms / 1000)
        with h.phase(f"observing {config.window_secs:.0f} s"):
            start_ms = h.redis_ms(client)
            seen, periods = observe(connection, config.window_secs, config.poll_ms / 1000)
            end_ms = h.redis_ms(client)
        arrivals = redis_arrivals(client, start_ms, end_ms)
    # Only trades whose whole life fell in the window: published in it and seen in it.
    window = [s for s in seen if s.key in arrivals]
    event_to_visible = [(s.visible_ns - s.ts_event_ns) / 1e6 for s in window]
    recv_to_visible = [(s.visible_ns - s.ts_recv_ns) / 1e6 for s in window]
    event_to_redis = [arrivals[s.key] for s in window]
    through = len(arrivals) / ((end_ms - start_ms) / 1000)
    print()
    print(
        f"{len(SYMBOLS)} symbols, offered {config.rate:,.0f} trades/s; {through:,.0f} trades/s reached the stream; "
        f"{len(window):,} trades followed from T to visible in QuestDB over {config.window_secs:.0f} s."
    )
    print()
    print(
        h.table(
            ["latency (ms)", "p50", "p90", "p99", "max", "samples"],
            [
                row("T (venue event time) → visible in QuestDB", event_to_visible),
                row("collector receive → visible in QuestDB", recv_to_visible),
                row("T → in the Redis stream (baseline)", event_to_redis),
                row("observer resolution (query period)", periods),
            ],
        )
    )
    if not event_to_visible:
        print("no trade became visible in QuestDB", file=sys.stderr)
        return 1
    p99 = h.percentile(event_to_visible, 99)
    base_p99 = h.percentile(event_to_redis, 99)
    print()
    print(f"ratio p99 (QuestDB / Redis stream): {p99 / base_p99:.1f}x; p50: "
          f"{h.percentile(event_to_visible, 50) / h.percentile(event_to_redis, 50):.1f}x")  # fmt: skip
    verdict = "MET" if p99 < GOAL_P99_MS else "NOT MET"
    print(f"goal: T → visible in QuestDB p99 < {GOAL_P99_MS:.0f} ms: {p99:.1f} ms, {verdict}")
    return 0


def parse_args(argv: Sequence[str] | None) -> Config:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="3 s warm-up, 10 s window")
    parser.add_argument("--rate", type=float, default=5000.0, help="trades/s over all symbols (default 5000)")
    parser.add_argument("--window", type=float, help="observation window in seconds (default 30; --quick 10)")
    parser.add_argument("--poll-ms", type=float, default=20.0, help="pause between observer queries (default 20)")
    args = parser.parse_args(argv)
    window = args.window if args.window is not None else (10.0 if args.quick else 30.0)
    if not (100 <= args.rate <= 20_000 and 1 <= window <= 300):
        parser.error("out of range: 100 <= rate <= 20000, 1 <= window <= 300")
    return Config(args.rate, 3.0 if args.quick else 5.0, window, args.poll_ms)


def main(argv: Sequence[str] | None = None) -> int:
    config = parse_args(argv)
    began = time.monotonic()
    try:
        code = run(config)
    except h.BenchError as error:
        print(f"\nbenchmark failed: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\ninterrupted; every process started was stopped", file=sys.stderr)
        return 130
    print(f"\n({time.monotonic() - began:.0f} s)")
    return code


if __name__ == "__main__":
    sys.exit(main())
