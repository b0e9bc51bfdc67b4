"""Writer rows/s into QuestDB through its own write path, next to the bare `questdb` client into a no-op endpoint.

Goal: ≥ 200k rows/s from one writer process into a real QuestDB.

Method (printed with the results):
- N Binance-like trades (4 symbols) as ``Trade`` events, fresh ids and timestamps per repetition (DEDUP keys never
  collide, so every row is an insert), built before timing.
- ``writer → QuestDB``: the writer's path: ``to_table_columns`` on each batch of ``--batch`` events, then
  ``IlpWriter.write`` (ILP/HTTP, one transactional flush per table) into ``QuestDBServer`` with the writer's DDL.
  A 200 answer means the rows are in the WAL (not yet applied); that is when the consumer would XACK.
- ``writer → no-op``: the same path into a no-op ILP/HTTP endpoint: the writer's own cost without QuestDB's.
- ``client → no-op`` (the baseline): ``questdb.Sender`` with pre-built row dicts (no conversion), ``row`` + one
  ``flush`` per batch, into the no-op endpoint: what the client library alone sustains.
- No-op endpoint: an asyncio HTTP/1.1 server in its own process that reads each request body and answers 204
  (``/settings`` answers with the real QuestDB's own reply, so the client picks the same ILP protocol version).
- Contender order rotates between repetitions; medians reported.

Run: ``.cache/venv/bin/python bench/bench_writer.py [--quick]``.
"""

from __future__ import annotations

import argparse
import sys
import time
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any, Final

from questdb import Sender, TimestampNanos

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # `bench` as a package when run as a script
from bench import _harness as h

from tickstrata.common.events import Side, Trade
from tickstrata.localstack.process import ManagedServer, free_port, tcp_port_open
from tickstrata.localstack.questdb import QuestDBServer
from tickstrata.writer.questdb_sink import IlpWriter, ilp_conf
from tickstrata.writer.tables import create_table_statements, to_table_columns

SYMBOLS: Final = ("BTC-USDT", "ETH-USDT", "SOL-USDT", "BNB-USDT")
GOAL_ROWS_PER_SEC: Final = 200_000
WRITER_QUESTDB: Final = "writer → QuestDB"
WRITER_NOOP: Final = "writer → no-op"
CLIENT_NOOP: Final = "client → no-op"

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


def chunks(items: Sequence[Trade], size: int) -> list[Sequence[Trade]]:
    return [items[i : i + size] for i in range(0, len(items), size)]


def writer_path(http_url: str) -> tuple[Callable[[Sequence[Trade], int], None], Callable[[], None]]:
    writer = IlpWriter(http_url)

    def run(trades: Sequence[Trade], batch: int) -> None:
        for part in chunks(trades, batch):
            writer.write(to_table_columns(part))

    return run, writer.close


def client_path(http_url: str) -> tuple[Callable[[Sequence[Trade], int], float], Callable[[], None]]:
    sender: Any = Sender.from_conf(ilp_conf(http_url))
    sender.establish()

    def run(trades: Sequence[Trade], batch: int) -> float:
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
    parser.add_argument("--quick", action="store_true", help="2 short repetitions (< 40 s in all)")
    parser.add_argument("--rows", type=int, help="trades per contender and repetition")
    parser.add_argument("--batch", type=int, default=5000, help="events per write (one flush per table)")
    parser.add_argument("--reps", type=int, help="repetitions (contender order rotates)")
    args = parser.parse_args(argv)
    config = Config(
        rows=args.rows or (100_000 if args.quick else 500_000),
        batch=args.batch,
        reps=args.reps or (2 if args.quick else 5),
    )
    rates: dict[str, list[float]] = {WRITER_QUESTDB: [], WRITER_NOOP: [], CLIENT_NOOP: []}
    try:
        with h.Stack() as stack:
            directory = h.workdir(stack, "writer")
            with h.phase("starting QuestDB and the no-op ILP endpoint"):
                questdb = stack.enter_context(QuestDBServer(directory / "questdb"))
                for statement in create_table_statements():
                    questdb.exec_sql(statement)
                noop_url = start_noop(stack, directory, questdb_settings(questdb.http_url))
            to_questdb, close_questdb = writer_path(questdb.http_url)
            stack.callback(close_questdb)
            to_noop, close_noop = writer_path(noop_url)
            stack.callback(close_noop)
            client_run, close_client = client_path(noop_url)
            stack.callback(close_client)

            def timed(run: Callable[[Sequence[Trade], int], None], trades: Sequence[Trade]) -> float:
                started = time.perf_counter()
                run(trades, config.batch)
                return time.perf_counter() - started

            with h.phase("warm-up, 20k rows each"):
                warm = make_trades(20_000, rep=9_999)
                to_questdb(warm, config.batch)
                to_noop(warm, config.batch)
                client_run(warm, config.batch)
            names = list(rates)
            for rep in range(config.reps):
                order = names[rep % len(names) :] + names[: rep % len(names)]
                with h.phase(f"repetition {rep + 1}/{config.reps}: {config.rows:,} rows x 3"):
                    for name in order:
                        trades = make_trades(config.rows, rep=rep * len(names) + names.index(name))
                        if name == WRITER_QUESTDB:
                            secs = timed(to_questdb, trades)
                        elif name == WRITER_NOOP:
                            secs = timed(to_noop, trades)
                        else:
                            secs = client_run(trades, config.batch)
                        rates[name].append(config.rows / secs)
            with h.phase("waiting for QuestDB to apply the WAL"):
                expected, deadline = 20_000 + config.rows * config.reps, time.monotonic() + 30
                applied = count_trades(questdb)
                while applied < expected and time.monotonic() < deadline:
                    time.sleep(0.2)
                    applied = count_trades(questdb)
            report(rates, config, applied=applied, expected=expected)
    except KeyboardInterrupt:
        print("\ninterrupted; every process started was stopped", file=sys.stderr)
        return 130
    except h.BenchError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


def report(rates: dict[str, list[float]], config: Config, *, applied: int, expected: int) -> None:
    baseline = h.median(rates[CLIENT_NOOP])
    rows = [
        [
            name,
            f"{h.median(values):,.0f}",
            " / ".join(f"{v:,.0f}" for v in values),
            f"{h.median(values) / baseline:.2f}x",
        ]
        for name, values in rates.items()
    ]
    print()
    print(f"{config.rows:,} trades per contender and repetition, {config.batch:,} events per write:")
    print(h.table(["contender", "rows/s (median)", "per repetition", "vs client → no-op"], rows))
    ours = h.median(rates[WRITER_QUESTDB])
    print()
    print(f"QuestDB applied {applied:,} of {expected:,} rows written (WAL applied after the timed writes).")
    verdict = "met" if ours >= GOAL_ROWS_PER_SEC else "MISSED"
    print(
        f"Goal ≥ {GOAL_ROWS_PER_SEC:,} rows/s: writer → QuestDB {ours:,.0f} rows/s: {verdict}; "
        f"{ours / baseline:.2f}x the bare client into a no-op endpoint "
        f"(writer's own path without QuestDB: {h.median(rates[WRITER_NOOP]) / baseline:.2f}x)."
    )


if __name__ == "__main__":
    sys.exit(main())
