"""`python -m tickstrata validator` as a real process, and the backdated market data its tests publish.

The scenario data comes from the simulator's own REST history (the tape the live stream would have carried), so a
"live" minute the test publishes and the backfill the validator later asks for describe the same trades.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import redis

from tickstrata.common.events import Candle, CandleSource, Event, Side, Trade
from tickstrata.common.streams import encode_entry
from tickstrata.localstack.process import free_port

READY_TIMEOUT_SECS = 60.0
NS_PER_MS = 1_000_000


@dataclass(frozen=True)
class ValidatorProcess:
    address: str
    health_port: int
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


def _ready(health_port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{health_port}/readyz", timeout=2) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, ConnectionError):
        return False


@contextmanager
def validator_process(
    log_path: Path, redis_url: str, questdb_http_url: str, **settings: str
) -> Iterator[ValidatorProcess]:
    """A ready validator; SIGTERM it after, and assert it exited 0. `settings` become `VALIDATOR_<NAME>`."""
    health_port, grpc_port = free_port(), free_port()
    env = {
        **os.environ,
        "VALIDATOR_REDIS_URL": redis_url,
        "VALIDATOR_QUESTDB_HTTP_URL": questdb_http_url,
        "VALIDATOR_HEALTH_HOST": "127.0.0.1",
        "VALIDATOR_HEALTH_PORT": str(health_port),
        "VALIDATOR_GRPC_HOST": "127.0.0.1",
        "VALIDATOR_GRPC_PORT": str(grpc_port),
        "VALIDATOR_LOG_JSON": "false",
        **{f"VALIDATOR_{name.upper()}": value for name, value in settings.items()},
    }
    with log_path.open("ab") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "tickstrata", "validator"], env=env, stdout=log, stderr=log, stdin=subprocess.DEVNULL
        )
    try:
        deadline = time.monotonic() + READY_TIMEOUT_SECS
        while not _ready(health_port):
            assert process.poll() is None, f"validator exited early:\n{log_path.read_text()[-3000:]}"
            assert time.monotonic() < deadline, "validator never became ready"
            time.sleep(0.1)
        yield ValidatorProcess(f"127.0.0.1:{grpc_port}", health_port, log_path)
        process.terminate()
        assert process.wait(timeout=30) == 0, log_path.read_text()[-3000:]
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=10)


def _get(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.loads(response.read())


def venue_symbol(symbol: str) -> str:
    return symbol.replace("-", "")


def history_trades(rest_url: str, symbol: str, start_ms: int, end_ms: int) -> list[Trade]:
    """The venue's aggregate trades in [start_ms, end_ms) as live events (what the stream would have carried)."""
    trades: list[Trade] = []
    cursor = start_ms
    while cursor < end_ms:
        upto = min(end_ms, cursor + 3_600_000) - 1
        rows = _get(
            f"{rest_url}/api/v3/aggTrades?symbol={venue_symbol(symbol)}&startTime={cursor}&endTime={upto}&limit=1000"
        )
        assert len(rows) < 1000, "more trades per hour than one page: lower the simulator's history rate"
        for row in rows:
            trades.append(
                Trade(
                    exchange="binance",
                    symbol=symbol,
                    trade_id=str(row["a"]),
                    price=Decimal(row["p"]),
                    size=Decimal(row["q"]),
                    side=Side.SELL if row["m"] else Side.BUY,
                    ts_event_ns=int(row["T"]) * NS_PER_MS,
                    ts_recv_ns=int(row["T"]) * NS_PER_MS + 1,
                )
            )
        cursor = upto + 1
    return trades


def history_candles(rest_url: str, symbol: str, start_ms: int, end_ms: int) -> list[Candle]:
    """The venue's closed 1-minute candles in [start_ms, end_ms), as the live kline stream would have sent them."""
    query = f"symbol={venue_symbol(symbol)}&interval=1m&startTime={start_ms}&endTime={end_ms - 1}&limit=1000"
    rows = _get(f"{rest_url}/api/v3/klines?{query}")
    return [
        Candle(
            exchange="binance",
            symbol=symbol,
            interval_secs=60,
            open_time_ns=int(row[0]) * NS_PER_MS,
            open=Decimal(row[1]),
            high=Decimal(row[2]),
            low=Decimal(row[3]),
            close=Decimal(row[4]),
            volume=Decimal(row[5]),
            quote_volume=Decimal(row[7]),
            trade_count=int(row[8]),
            closed=True,
            source=CandleSource.WS,
            ts_event_ns=int(row[6]) * NS_PER_MS,
            ts_recv_ns=int(row[6]) * NS_PER_MS + 1,
        )
        for row in rows
        if start_ms <= int(row[0]) < end_ms
    ]


def publish(client: redis.Redis, stream: str, events: Sequence[Event]) -> None:
    """XADD each event as its own entry, in the order given."""
    pipe = client.pipeline(transaction=False)
    for event in events:
        pipe.xadd(stream, encode_entry([event]))  # type: ignore[arg-type]
    pipe.execute()
