"""Writer rows/s into QuestDB through its own write path, next to the bare `questdb` client into a no-op endpoint.

Goal: ≥ 200k rows/s from one writer process into a real QuestDB.

Method (printed with the results):
- N Binance-like trades (4 symbols), fresh ids and timestamps per repetition (DEDUP keys never collide, so every
  row is an insert), encoded before timing into stream entries of ``--entry-events`` trades (``xadd_args``, the
  collector's encoding; 500 is the collector's default entry size, reached under load), fields as XREADGROUP
  returns them.
- ``consumer: Redis → QuestDB``: the whole writer minus its process shell: the workload waits in a stream
  (published before timing, each entry with a sampled traceparent as the collector sends), and a fresh
  ``StreamConsumer`` with the writer's defaults and the app's ``QuestDBSink`` drains it: XREADGROUP, decode,
  frames, write, suspended-table check, XACK, two spans per entry. Timed until every row is written.
- ``writer → QuestDB``: the writer's path from entry bytes to QuestDB, without Redis: ``decode_wire_entry`` per entry,
  ``build_batch`` (one checked DataFrame per table) per write of ``--batch`` events, then ``IlpWriter.write``
  (``Sender.dataframe``, one transactional ILP/HTTP flush per table) into ``QuestDBServer`` with the writer's DDL.
  A 200 answer means the rows are in the WAL (not yet applied); that is when the consumer would XACK.
- ``writer → QuestDB, small writes``: the same with ``--small-batch`` events per write. QuestDB spends a fixed
  time per transaction, so rows/s grows with the write size; the two sizes give the fixed cost per write and
  the cost per row (``time per write = fixed + per_row x events``), hence the rate the writer sustains when
  its writes grow with the backlog (``1 / per_row``) and the write size at which it keeps up with 200k rows/s.
  The consumer's writes are whatever one XREADGROUP returned: up to ``WRITER_BATCH_ENTRIES`` (500) entries per
  stream, so they grow by themselves when the writer falls behind.
- ``writer → no-op``: the ``--batch`` path into a no-op ILP/HTTP endpoint: the writer's own cost without QuestDB.
- ``client → no-op`` (the baseline): ``questdb.Sender`` with pre-built row dicts (no conversion), ``row`` + one
  ``flush`` per ``--batch`` rows, into the no-op endpoint: what the client library alone sustains.
- No-op endpoint: an asyncio HTTP/1.1 server in its own process that reads each request body and answers 204
  (``/settings`` answers with the real QuestDB's own reply, so the client picks the same ILP protocol version).
- Contender order rotates between repetitions; medians reported, and where the writer's time went (decode,
  frames, write) for ``writer → QuestDB``.

Run: ``.cache/venv/bin/python bench/bench_writer.py [--quick]``.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any, Final, cast

import redis
import redis.asyncio as aioredis
from opentelemetry.sdk.trace import TracerProvider
from questdb import Sender, TimestampNanos

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # `bench` as a package when run as a script
from bench import _harness as h

from tickstrata.common.events import Side, Trade
from tickstrata.common.questdb_rest import ilp_conf
from tickstrata.common.questdb_schema import create_table_statements
from tickstrata.common.streams import FIELD_TRACEPARENT, MAX_EVENTS_PER_ENTRY, xadd_args
from tickstrata.localstack.process import ManagedServer, free_port, tcp_port_open
from tickstrata.localstack.questdb import QuestDBServer
from tickstrata.localstack.redis import RedisServer
from tickstrata.writer.consumer import ConsumerConfig, StreamConsumer
from tickstrata.writer.frames import build_batch
from tickstrata.writer.questdb_sink import IlpWriter, QuestDBSink
from tickstrata.writer.wire import decode_wire_entry

SYMBOLS: Final = ("BTC-USDT", "ETH-USDT", "SOL-USDT", "BNB-USDT")
GOAL_ROWS_PER_SEC: Final = 200_000
WRITER_QUESTDB: Final = "writer → QuestDB"
WRITER_QUESTDB_SMALL: Final = "writer → QuestDB, small writes"
WRITER_NOOP: Final = "writer → no-op"
CLIENT_NOOP: Final = "client → no-op"
CONSUMER_QUESTDB: Final = "consumer: Redis → QuestDB"
STREAM: Final = "md:binance:trades"
# A sampled trace context, as the collector puts in every entry: the consumer records its two spans per entry.
TRACEPARENT: Final = b"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"

# Runs with our venv's Python: argv = port, path of a file holding the body to answer GET /settings with.
_NOOP_SOURCE: Final = r"""
import asyncio, sys

SETTINGS = open(sys.argv[2], "rb").read()

class Ilp(asyncio.Protocol):
    def connection_made(self, transport):
        self.transport, self.buffer, self.need, self.path = transport, bytearray(), None, b""

    def data_received(self, data):
        self.buffer += data
        while True:
            if self.need is None:
                end = self.buffer.find(b"\r\n\r\n")
                if end < 0:
                    return
                head = bytes(self.buffer[:end]).split(b"\r\n")
                del self.buffer[: end + 4]
                self.path = head[0].split(b" ")[1]
                self.need = 0
                for line in head[1:]:
                    name, _, value = line.partition(b":")
                    name = name.strip().lower()
                    if name == b"content-length":
                        self.need = int(value)
                    elif name == b"expect" and value.strip().lower() == b"100-continue":
                        self.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")
            if len(self.buffer) < self.need:
                return
            del self.buffer[: self.need]
            self.need = None
            if self.path.startswith(b"/settings"):
                self.transport.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: "
                                     + str(len(SETTINGS)).encode() + b"\r\n\r\n" + SETTINGS)
            else:
                self.transport.write(b"HTTP/1.1 204 No Content\r\n\r\n")

async def main():
    server = await asyncio.get_running_loop().create_server(Ilp, "127.0.0.1", int(sys.argv[1]))
    async with server:
        await server.serve_forever()

asyncio.run(main())
"""


@dataclass(frozen=True)
class Config:
    rows: int
    batch: int
    small_batch: int
    entry_events: int
    reps: int


def make_trades(count: int, rep: int) -> list[Trade]:
    base_ns = time.time_ns() - 3_600_000_000_000 + rep * count * 1000
    trades = []
    for i in range(count):
        ts = base_ns + i * 1000
        trades.append(
            Trade(
                exchange="binance",
                symbol=SYMBOLS[i % len(SYMBOLS)],
                trade_id=f"{rep}-{i}",
                price=Decimal(64000 + i % 1000) / 10,
                size=Decimal(i % 97 + 1) / 1000,
                side=Side.BUY if i % 2 else Side.SELL,
                ts_event_ns=ts,
                ts_recv_ns=ts + 2_000_000,
            )
        )
    return trades


Entry = Mapping[bytes, bytes]


@dataclass(frozen=True)
class Workload:
    trades: list[Trade]
    entries: list[Entry]
    """The same trades as stream-entry fields."""
    entry_events: int


def make_workload(count: int, rep: int, entry_events: int) -> Workload:
    trades = make_trades(count, rep)
    entries = [
        cast("Entry", xadd_args(trades[i : i + entry_events]).fields) for i in range(0, len(trades), entry_events)
    ]
    return Workload(trades, entries, entry_events)


@dataclass
class Phases:
    """Seconds the writer path spent per phase: (decode, frames, write), one tuple per timed run."""

    runs: list[tuple[float, float, float]] = field(default_factory=list)


def writer_path(http_url: str, phases: Phases) -> tuple[Callable[[Workload, int], None], Callable[[], None]]:
    writer = IlpWriter(http_url)

    def run(workload: Workload, batch: int) -> None:
        per_batch = max(1, batch // workload.entry_events)
        decode = frames = write = 0.0
        for start in range(0, len(workload.entries), per_batch):
            t0 = time.perf_counter()
            decoded = [(fields, decode_wire_entry(fields)) for fields in workload.entries[start : start + per_batch]]
            t1 = time.perf_counter()
            built = build_batch(decoded)
            t2 = time.perf_counter()
            writer.write(built.frames)
            t3 = time.perf_counter()
            decode, frames, write = decode + t1 - t0, frames + t2 - t1, write + t3 - t2
        phases.runs.append((decode, frames, write))

    return run, writer.close


def consumer_path(redis_url: str, questdb_url: str) -> Callable[[Workload], float]:
    """The whole writer minus its process shell: the workload waits in a stream, a fresh `StreamConsumer` drains it."""
    client = redis.Redis.from_url(redis_url)
    tracer = TracerProvider().get_tracer("bench")  # records spans (sampled parents) and drops them: their cost

    def run(workload: Workload) -> float:
        client.flushall()
        pipe = client.pipeline(transaction=False)
        for fields in workload.entries:
            pipe.xadd(STREAM, {**fields, FIELD_TRACEPARENT: TRACEPARENT})  # type: ignore[dict-item]
        pipe.execute()
        return asyncio.run(drain(len(workload.trades)))

    async def drain(rows: int) -> float:
        sink, redis_async = QuestDBSink(questdb_url), aioredis.Redis.from_url(redis_url)
        # The writer's defaults: each read takes up to 500 entries, so writes grow with the backlog.
        config = ConsumerConfig(consumer_name="bench", block_ms=100, janitor_interval_secs=3600)
        consumer = StreamConsumer(redis_async, sink.write, config, tracer=tracer)
        try:
            started = time.perf_counter()
            task = asyncio.create_task(consumer.run())
            while consumer.written_events < rows and not task.done():  # noqa: ASYNC110 (a counter, no event)
                await asyncio.sleep(0.005)
            secs = time.perf_counter() - started  # the last batch's XACK (a few ms) is not in it
            consumer.request_stop()
            await task
        finally:
            await sink.close()
            await redis_async.aclose()
        if consumer.written_events < rows:
            raise h.BenchError(f"the consumer stopped after {consumer.written_events:,} of {rows:,} rows")
        return secs

    return run


def client_path(http_url: str) -> tuple[Callable[[Workload, int], float], Callable[[], None]]:
    sender: Any = Sender.from_conf(ilp_conf(http_url))
    sender.establish()

    def run(workload: Workload, batch: int) -> float:
        trades = workload.trades
        rows = [
            (
                {"exchange": t.exchange, "symbol": t.symbol, "side": t.side.value},
                {
                    "trade_id": t.trade_id,
                    "price": float(t.price),
                    "size": float(t.size),
                    "ts_recv_ns": t.ts_recv_ns,
                    "backfilled": t.backfilled,
                },
                TimestampNanos(t.ts_event_ns),
            )
            for t in trades
        ]  # built before timing: the baseline is the client alone
        started = time.perf_counter()
        for start in range(0, len(rows), batch):
            for symbols, columns, at in rows[start : start + batch]:
                sender.row("trades", symbols=symbols, columns=columns, at=at)
            sender.flush(transactional=True)
        return time.perf_counter() - started

    return run, lambda: sender.close(flush=False)


def start_noop(stack: h.Stack, directory: Path, settings: bytes) -> str:
    script, settings_file = directory / "noop_ilp.py", directory / "settings.json"
    script.write_text(_NOOP_SOURCE)
    settings_file.write_bytes(settings)
    port = free_port()
    server = stack.process(
        ManagedServer(
            name="noop-ilp",
            argv=[sys.executable, str(script), str(port), str(settings_file)],
            log_path=directory / "noop-ilp.log",
        ),
        stop_timeout_secs=3.0,
    )
    server.wait_ready(lambda: tcp_port_open(port), timeout_secs=h.START_TIMEOUT_SECS, interval_secs=0.05)
    return f"http://127.0.0.1:{port}"


def questdb_settings(http_url: str) -> bytes:
    try:
        with urllib.request.urlopen(f"{http_url}/settings", timeout=5) as response:  # noqa: S310 (loopback)
            body: bytes = response.read()
            return body
    except OSError:
        return b"{}"


def count_trades(server: QuestDBServer) -> int:
    payload = server.exec_sql("SELECT count() FROM trades")
    return int(payload["dataset"][0][0])


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="2 short repetitions (about 20 s in all)")
    parser.add_argument("--rows", type=int, help="trades per contender and repetition")
    parser.add_argument("--batch", type=int, default=50_000, help="events per write (one flush per table)")
    parser.add_argument("--small-batch", type=int, default=5_000, help="events per write of the small-writes run")
    parser.add_argument("--entry-events", type=int, default=500, help="events per stream entry (at most 1000)")
    parser.add_argument("--reps", type=int, help="repetitions (contender order rotates)")
    args = parser.parse_args(argv)
    config = Config(
        rows=args.rows or (100_000 if args.quick else 500_000),
        batch=args.batch,
        small_batch=args.small_batch,
        entry_events=min(max(args.entry_events, 1), MAX_EVENTS_PER_ENTRY),
        reps=args.reps or (2 if args.quick else 5),
    )
    try:
        with h.Stack() as stack:
            rates, applied, expected, phases = run_contenders(stack, config)
            report(rates, config, applied=applied, expected=expected, phases=phases)
    except KeyboardInterrupt:
        print("\ninterrupted; every process started was stopped", file=sys.stderr)
        return 130
    except h.BenchError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


Run = Callable[[Workload], float]
"""Writes a workload; returns the seconds the writes took."""


def run_contenders(stack: h.Stack, config: Config) -> tuple[dict[str, list[float]], int, int, Phases]:
    directory = h.workdir(stack, "writer")
    with h.phase("starting QuestDB, Redis and the no-op ILP endpoint"):
        questdb = stack.enter_context(QuestDBServer(directory / "questdb"))
        redis_server = stack.enter_context(RedisServer(directory / "redis"))
        for statement in create_table_statements():
            questdb.exec_sql(statement)
        noop_url = start_noop(stack, directory, questdb_settings(questdb.http_url))
    phases, small_phases = Phases(), Phases()
    to_questdb, close_questdb = writer_path(questdb.http_url, phases)
    stack.callback(close_questdb)
    to_questdb_small, close_questdb_small = writer_path(questdb.http_url, small_phases)
    stack.callback(close_questdb_small)
    to_noop, close_noop = writer_path(noop_url, Phases())
    stack.callback(close_noop)
    client_run, close_client = client_path(noop_url)
    stack.callback(close_client)

    def timed(run: Callable[[Workload, int], None], batch: int) -> Run:
        def go(workload: Workload) -> float:
            started = time.perf_counter()
            run(workload, batch)
            return time.perf_counter() - started

        return go

    contenders: dict[str, Run] = {
        CONSUMER_QUESTDB: consumer_path(redis_server.url, questdb.http_url),
        WRITER_QUESTDB: timed(to_questdb, config.batch),
        WRITER_QUESTDB_SMALL: timed(to_questdb_small, config.small_batch),
        WRITER_NOOP: timed(to_noop, config.batch),
        CLIENT_NOOP: lambda workload: client_run(workload, config.batch),
    }
    warm_rows = 20_000
    with h.phase(f"warm-up, {warm_rows // 1000}k rows each"):
        for index, run in enumerate(contenders.values()):
            run(make_workload(warm_rows, rep=10_000 + index, entry_events=config.entry_events))
        phases.runs.clear()
    rates: dict[str, list[float]] = {name: [] for name in contenders}
    names = list(contenders)
    for rep in range(config.reps):
        order = names[rep % len(names) :] + names[: rep % len(names)]
        with h.phase(f"repetition {rep + 1}/{config.reps}: {config.rows:,} rows x {len(names)}"):
            for name in order:
                workload = make_workload(config.rows, rep * len(names) + names.index(name), config.entry_events)
                rates[name].append(config.rows / contenders[name](workload))
    with h.phase("waiting for QuestDB to apply the WAL"):
        expected = warm_rows * 3 + config.rows * config.reps * 3
        deadline, applied = time.monotonic() + 60, count_trades(questdb)
        while applied < expected and time.monotonic() < deadline:
            time.sleep(0.2)
            applied = count_trades(questdb)
    return rates, applied, expected, phases


def report(rates: dict[str, list[float]], config: Config, *, applied: int, expected: int, phases: Phases) -> None:
    baseline = h.median(rates[CLIENT_NOOP])
    write_sizes = {name: f"{config.batch:,}" for name in rates} | {
        WRITER_QUESTDB_SMALL: f"{config.small_batch:,}",
        CONSUMER_QUESTDB: "what a read gives",
    }
    rows = [
        [
            name,
            write_sizes[name],
            f"{h.median(values):,.0f}",
            " / ".join(f"{v:,.0f}" for v in values),
            f"{h.median(values) / baseline:.2f}x",
        ]
        for name, values in rates.items()
    ]
    print()
    print(f"{config.rows:,} trades per contender and repetition, in stream entries of {config.entry_events}:")
    print(h.table(["contender", "events/write", "rows/s (median)", "per repetition", "vs client → no-op"], rows))
    ours = h.median(rates[WRITER_QUESTDB])
    print()
    print(f"QuestDB applied {applied:,} of {expected:,} rows written (WAL applied after the timed writes).")
    verdict = "met" if ours >= GOAL_ROWS_PER_SEC else "MISSED"
    print(
        f"Goal ≥ {GOAL_ROWS_PER_SEC:,} rows/s: writer → QuestDB {ours:,.0f} rows/s at {config.batch:,} events per "
        f"write: {verdict}; {ours / baseline:.2f}x the bare client into a no-op endpoint "
        f"(writer's own path without QuestDB: {h.median(rates[WRITER_NOOP]) / baseline:.2f}x)."
    )
    consumer = h.median(rates[CONSUMER_QUESTDB])
    print(
        f"The whole consumer (XREADGROUP, decode, frames, write, suspended check, XACK, spans) drains a backlog at "
        f"{consumer:,.0f} rows/s: {'met' if consumer >= GOAL_ROWS_PER_SEC else 'MISSED'} too."
    )
    print_write_size_model(config, ours, h.median(rates[WRITER_QUESTDB_SMALL]))
    if phases.runs:
        decode, frames, write = (h.median([run[i] for run in phases.runs]) for i in range(3))
        per_row_us = [secs / config.rows * 1e6 for secs in (decode, frames, write)]
        print(
            "writer → QuestDB per row (median run): "
            f"decode {per_row_us[0]:.2f} µs, frames {per_row_us[1]:.2f} µs, "
            f"write (serialize + flush, QuestDB's ingest included) {per_row_us[2]:.2f} µs."
        )


def print_write_size_model(config: Config, large_rate: float, small_rate: float) -> None:
    """Fit time per write = fixed + per_row x events through the two write sizes, and say what it implies."""
    if config.batch <= config.small_batch:
        return
    large_secs, small_secs = config.batch / large_rate, config.small_batch / small_rate
    per_row_secs = (large_secs - small_secs) / (config.batch - config.small_batch)
    fixed_secs = small_secs - per_row_secs * config.small_batch
    if per_row_secs <= 0 or fixed_secs <= 0:
        print("Write-size model: not measurable in this run (noise); rerun with more rows or repetitions.")
        return
    line = (
        f"Write-size model: {fixed_secs * 1e3:.1f} ms per write + {per_row_secs * 1e6:.2f} µs per row; "
        f"sustained when writes grow with the backlog: {1 / per_row_secs:,.0f} rows/s"
    )
    load = GOAL_ROWS_PER_SEC * per_row_secs
    if load < 1:
        needed_events = GOAL_ROWS_PER_SEC * fixed_secs / (1 - load)
        line += f"; keeps up with {GOAL_ROWS_PER_SEC:,} rows/s at writes of ≥ {needed_events:,.0f} events"
    print(line + ".")


if __name__ == "__main__":
    sys.exit(main())
