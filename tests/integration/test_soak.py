"""Soak: simulator → collectors (Binance spot and USD-M) → Redis → writer → QuestDB, every one a real process, while
the writer is `kill -9`ed at seeded random moments, QuestDB is stopped and started again (same data directory) and
Redis is restarted once with a clean shutdown (SIGTERM; its AOF keeps the data; same port and data directory).

At the end every frame the simulator sent is in QuestDB exactly once or covered by a published gap
(`soak_harness.reconcile` states the rule per data type), Redis memory and every process's RSS stayed within
their budgets, and the writer group's backlog (XINFO GROUPS pending + lag over md:*) rose during the QuestDB
outage and is 0 once drained. The figures table is printed (`pytest -s` shows it; it is also in the log).

`make test` runs the short size (about 45 s of traffic); `make reliability` (TICKSTRATA_RELIABILITY=full) runs
10 minutes with a 60 s QuestDB outage. The rate is what this 2-core machine sustains with every process on it
(see docs/writer.md, "Soak"); TICKSTRATA_SOAK_TRADES_PER_SEC overrides it, TICKSTRATA_RELIABILITY_SEED the seed.
"""

from __future__ import annotations

import json
import os
import random
import signal
import statistics
import time
import urllib.request
from collections import Counter
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import redis

from tests.integration.collector_harness import CollectorProcess, running_collector, simulator_state
from tests.integration.soak_harness import (
    Sampler,
    Sent,
    Stored,
    backlog,
    cpu_totals,
    figures_table,
    first_at_or_below,
    peak_backlog,
    peak_redis_mib,
    peak_rss_mib,
    read_capture,
    read_gaps,
    read_stored,
    reconcile,
    reported_lag,
    venue_symbols,
    writer_group_backlog,
)
from tests.integration.test_writer_kill import _WriterProcess, readyz
from tests.integration.writer_harness import drained, wal_applied
from tickstrata.common.events import DataType, Gap, GapKind
from tickstrata.common.streams import MARKET_DATA_STREAM_PATTERN
from tickstrata.localstack.process import ManagedServer
from tickstrata.localstack.questdb import QuestDBServer
from tickstrata.localstack.redis import RedisServer
from tickstrata.localstack.simulator import SimulatorEndpoints, start_simulator

FULL = os.environ.get("TICKSTRATA_RELIABILITY", "") == "full"
SYMBOLS = ("BTC-USDT", "ETH-USDT", "SOL-USDT", "XRP-USDT")  # on both venues: 8 markets
REDIS_AOF = ("--appendonly", "yes", "--appendfsync", "everysec")
WAIT_SECS = 300.0
SAMPLE_INTERVAL_SECS = 1.0
TABLES = ("trades", "quotes", "candles", "funding", "books")


@dataclass(frozen=True)
class SoakSize:
    traffic_secs: float
    trades_per_sec: float  # per market (simulator setting); quotes, depth, klines and marks come on top
    writer_kills: int
    questdb_outage_secs: float
    questdb_outage_at: float  # share of the traffic time
    redis_restart_after_secs: float  # after QuestDB is back
    # Budgets: Redis used_memory, and each process's VmRSS (MiB).
    redis_memory_mib: int
    rss_mib: dict[str, int]


RSS_BUDGETS_MIB = {
    "simulator": 400,  # its per-connection send queue is bounded (100k frames)
    "collector-binance": 256,  # a 50k-event publish queue
    "collector-binance-usdm": 256,
    "writer": 512,  # one read batch (500 entries) as DataFrames, whatever the backlog
    "redis": 384,  # used_memory's budget plus allocator overhead
    "questdb": 1536,  # a 1 GiB heap plus QuestDB's off-heap column memory
}
SHORT = SoakSize(
    traffic_secs=40,
    trades_per_sec=250,
    writer_kills=2,
    questdb_outage_secs=15,
    questdb_outage_at=0.25,
    redis_restart_after_secs=3,
    redis_memory_mib=128,
    rss_mib=RSS_BUDGETS_MIB,
)
FULL_SIZE = SoakSize(
    traffic_secs=600,
    trades_per_sec=250,
    writer_kills=12,
    questdb_outage_secs=60,
    questdb_outage_at=0.3,
    redis_restart_after_secs=3,
    redis_memory_mib=512,
    # The simulator's RSS grows about 0.5 MiB/s at this rate (measured: 456 MiB after 10 minutes); it is the test's
    # venue, not a service, so its budget is the measured growth with headroom.
    rss_mib=RSS_BUDGETS_MIB | {"simulator": 768},
)


class Stack:
    """Every process of the soak; `close()` stops whichever are running, whatever happened."""

    def __init__(self, directory: Path, seed: int) -> None:
        self.directory = directory
        self.seed = seed
        self.redis = RedisServer(directory / "redis", extra_args=REDIS_AOF)
        self.questdb = QuestDBServer(directory / "questdb")
        self.simulator: ManagedServer | None = None
        self.endpoints: SimulatorEndpoints | None = None
        self.collectors: dict[str, CollectorProcess] = {}
        self.writers: _WriterProcess | None = None
        self.writer: ManagedServer | None = None
        self.writer_names: list[str] = []
        self.capture = directory / "capture.jsonl"

    def pids(self) -> dict[str, int | None]:
        pids = {name: c.process.pid for name, c in self.collectors.items()}
        pids |= {"simulator": self.simulator.pid if self.simulator else None}
        pids |= {"writer": self.writer.pid if self.writer else None}
        return pids | {"redis": self.redis.pid, "questdb": self.questdb.pid}

    def start_servers(self, trades_per_sec: float) -> None:
        self.redis.start()
        self.questdb.start()
        self.simulator, self.endpoints = start_simulator(
            self.directory,
            seed=str(self.seed),
            symbols=",".join(s.replace("-", "") for s in SYMBOLS),
            trades_per_sec=str(trades_per_sec),
            book_updates_per_sec="20",
            record_file=str(self.capture),
        )
        self.writers = _WriterProcess(self.directory, self.redis.url, self.questdb.http_url)
        self.start_writer("writer-0")

    def start_writer(self, name: str) -> None:
        assert self.writers is not None
        self.writer = self.writers.start(name)
        self.writer_names.append(name)

    def kill_writer(self, rng: random.Random) -> None:
        """kill -9, then a new life: mostly under the same name (re-reads its pending entries), else a new one
        (the dead consumer's entries must be claimed)."""
        assert self.writer is not None
        assert self.writer.pid is not None
        self.assert_alive()
        os.kill(self.writer.pid, signal.SIGKILL)
        self.writer.stop(timeout_secs=10)
        name = self.writer_names[-1] if rng.random() < 0.7 else f"writer-{len(self.writer_names)}"
        self.start_writer(name)

    def restart_redis(self) -> None:
        """SIGTERM (Redis writes and fsyncs its AOF, exits 0), then a new server on the same port and directory;
        every stream and the writer group's position must come back from the AOF."""
        port = self.redis.port
        before = _stream_positions(self.redis.url)
        code = self.redis.stop(timeout_secs=60)
        assert code == 0, f"redis did not shut down cleanly ({code}):\n{self.redis.log_path.read_text()[-2000:]}"
        self.redis = RedisServer(self.directory / "redis", port=port, extra_args=REDIS_AOF, start_timeout_secs=120)
        self.redis.start()
        after = _stream_positions(self.redis.url)
        for stream, (added, delivered) in before.items():
            assert stream in after, f"{stream} did not survive the restart"
            assert after[stream][0] >= added, f"{stream} lost entries: {before[stream]} -> {after[stream]}"
            assert after[stream][1] >= delivered, f"{stream} group went back: {before[stream]} -> {after[stream]}"

    def assert_alive(self) -> None:
        for name, process in [("simulator", self.simulator), ("writer", self.writer)] + [
            (name, c.process) for name, c in self.collectors.items()
        ]:
            if process is not None and process.exited():
                pytest.fail(f"{name} exited on its own:\n{process.log_tail()}")

    def close(self) -> None:
        for process in (self.writer, self.simulator):
            if process is not None:
                process.stop(timeout_secs=30)
        self.questdb.stop()
        self.redis.stop()


def _stream_id(raw: bytes | str) -> tuple[int, int]:
    text = raw.decode() if isinstance(raw, bytes) else raw
    ms, _, seq = text.partition("-")
    return int(ms), int(seq or 0)


def _stream_positions(url: str) -> dict[str, tuple[int, tuple[int, int]]]:
    """Per md:* stream: (entries ever added, the writer group's last delivered id)."""
    client = redis.Redis.from_url(url)
    try:
        positions: dict[str, tuple[int, tuple[int, int]]] = {}
        for stream in client.scan_iter(match=MARKET_DATA_STREAM_PATTERN, _type="stream"):
            info: Any = client.xinfo_stream(stream)
            groups: Any = client.xinfo_groups(stream)
            delivered = max((_stream_id(g["last-delivered-id"]) for g in groups), default=(0, 0))
            positions[stream.decode()] = (int(info["entries-added"]), delivered)
        return positions
    finally:
        client.close()


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Stack]:
    seed = int(os.environ.get("TICKSTRATA_RELIABILITY_SEED", str(random.SystemRandom().randrange(1 << 30))))
    print(f"TICKSTRATA_RELIABILITY_SEED={seed}")
    instance = Stack(tmp_path, seed)
    try:
        yield instance
    finally:
        instance.close()


def _wait(stack: Stack, condition: Any, what: str, timeout_secs: float = WAIT_SECS) -> None:
    deadline = time.monotonic() + timeout_secs
    while not condition():
        stack.assert_alive()
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout_secs:.0f} s waiting for {what}")
        time.sleep(0.2)


def _run_until(stack: Stack, started: float, at_secs: float) -> None:
    """Let the pipeline run until `at_secs` after `started`, checking that nothing died meanwhile."""
    while time.monotonic() - started < at_secs:
        stack.assert_alive()
        time.sleep(min(0.2, max(0.0, at_secs - (time.monotonic() - started))))


def _schedule(size: SoakSize, rng: random.Random) -> list[tuple[float, str]]:
    """Seeded moments (seconds into the traffic) for each fault; kills fall anywhere, outages included. Redis
    restarts while the writer still drains the QuestDB backlog: that backlog must survive in the AOF."""
    actions = [(rng.uniform(0.05, 0.9) * size.traffic_secs, "kill writer") for _ in range(size.writer_kills)]
    questdb_back = size.questdb_outage_at * size.traffic_secs + size.questdb_outage_secs
    actions.append((size.questdb_outage_at * size.traffic_secs, "stop questdb"))
    actions.append((questdb_back, "start questdb"))
    actions.append((questdb_back + size.redis_restart_after_secs, "restart redis"))
    return sorted(actions)


def _quiesce_simulator(endpoints: SimulatorEndpoints) -> int:
    """End the traffic: an open-ended venue outage from the next second; return when it starts (ms)."""
    starts = []
    for venue in ("binance", "binance-usdm"):
        request = urllib.request.Request(
            f"{endpoints.rest_url(venue)}/_sim/faults",
            data=json.dumps({"kind": "outage", "duration_secs": 24 * 3600}).encode(),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            starts.append(int(json.loads(response.read())["applied"][0]["effects"]["start_ms"]))
    return max(starts)


def _delivered(endpoints: SimulatorEndpoints, quiet_from_ms: int) -> bool:
    """The outage has begun and every frame queued for a connection has been written to it."""
    for venue in ("binance", "binance-usdm"):
        state = simulator_state(endpoints, venue)
        if state["now_ms"] < quiet_from_ms + 500 or any(c["queued"] for c in state["connections"]):
            return False
    return True


def _all_drained(client: redis.Redis) -> bool:
    streams = list(client.scan_iter(match=MARKET_DATA_STREAM_PATTERN, _type="stream"))
    return bool(streams) and all(drained(client, stream) for stream in streams)


def _soak(stack: Stack, size: SoakSize) -> None:
    trades_per_sec = float(os.environ.get("TICKSTRATA_SOAK_TRADES_PER_SEC", size.trades_per_sec))
    rng = random.Random(stack.seed)
    stack.start_servers(trades_per_sec)
    assert stack.writers is not None
    assert stack.endpoints is not None
    writers, endpoints = stack.writers, stack.endpoints
    _wait(stack, lambda: readyz(writers.health_port) == 200, "the writer to be ready")
    sampler = Sampler(lambda: stack.redis.url, stack.pids, SAMPLE_INTERVAL_SECS)
    marks: dict[str, float] = {}
    done: list[str] = []
    with ExitStack() as collectors:
        for exchange in ("binance", "binance-usdm"):
            symbols = [s if exchange == "binance" else f"{s}-PERP" for s in SYMBOLS]
            stack.collectors[f"collector-{exchange}"] = collectors.enter_context(
                running_collector(stack.directory, endpoints, stack.redis.url, exchange=exchange, symbols=symbols)
            )
        sampler.start()
        started = time.monotonic()
        marks["traffic start"] = sampler.now()
        questdb_ports = stack.questdb.ports
        # A slow stop or start (a loaded machine) delays what follows: never shortens an outage or a phase.
        shift = 0.0
        for at_secs, action in _schedule(size, rng):
            _run_until(stack, started, at_secs + shift)
            if action == "kill writer":
                stack.kill_writer(rng)
            elif action == "stop questdb":
                marks["questdb stop"] = sampler.now()
                stack.questdb.stop()
            elif action == "start questdb":
                stack.questdb = QuestDBServer(stack.directory / "questdb", ports=questdb_ports)
                stack.questdb.start()
                marks["questdb start"] = sampler.now()
            else:
                marks["redis stop"] = sampler.now()
                stack.restart_redis()
                marks["redis start"] = sampler.now()
            done.append(f"{action}@{time.monotonic() - started:.1f}s")
            shift = max(shift, time.monotonic() - started - at_secs)
        _run_until(stack, started, size.traffic_secs + shift)
        quiet_from_ms = _quiesce_simulator(endpoints)
        marks["traffic end"] = sampler.now()
        _wait(stack, lambda: _delivered(endpoints, quiet_from_ms), "the simulator's last frames to go out")
        # A clean stop publishes what the collectors still hold, and the gap windows still open.
        collectors.close()
        stack.collectors.clear()
    client = redis.Redis.from_url(stack.redis.url)
    try:
        _wait(stack, lambda: _all_drained(client), "the writer to drain every stream")
        _wait(stack, lambda: all(wal_applied(stack.questdb, table) for table in TABLES), "the WAL apply")
        marks["drained"] = sampler.now()
        sampler.stop()
        assert sampler.error is None, repr(sampler.error)
        final_pending, final_lag = writer_group_backlog(client)
        xinfo_lag = reported_lag(client)
        gaps = read_gaps(client)
    finally:
        client.close()
    assert stack.writer is not None
    assert stack.writer.stop(timeout_secs=30) == 0, stack.writer.log_tail()
    assert stack.simulator is not None
    stack.simulator.stop(timeout_secs=30)  # flushes the capture

    sent = read_capture(stack.capture, venue_symbols(SYMBOLS))
    types = reconcile(sent, read_stored(stack.questdb), gaps)
    samples = sampler.samples
    before_outage = [b for s in samples if s.at_secs < marks["questdb stop"] and (b := backlog(s)) is not None]
    steady = max(before_outage, default=0)  # includes the writer's dead moments before the outage
    steady_median = statistics.median(before_outage or [0])
    outage_peak = peak_backlog(samples, marks["questdb stop"], marks["questdb start"])
    caught_up = first_at_or_below(samples, marks["questdb start"], steady)
    traffic_secs = (sent.last_ms - sent.first_ms) / 1000
    rss = peak_rss_mib(samples)
    cpu = cpu_totals(sampler)
    run = {
        "seed": str(stack.seed),
        "faults": ", ".join(done),
        "writer lives": f"{len(stack.writer_names)} ({', '.join(stack.writer_names)})",
        "simulator rate": f"{trades_per_sec:g} trades/s per market x {len(SYMBOLS) * 2} markets",
        "events sent": f"{sent.frames} ({dict(sent.per_stream_kind)})",
        "achieved events/s": f"{sent.frames / traffic_secs:,.0f} over {traffic_secs:.0f} s",
        "gaps published": f"{len(gaps)} ({sorted({f'{g.kind}/{g.data_type}' for g in gaps})})",
        "peak backlog": f"{max((b for s in samples if (b := backlog(s)) is not None), default=0)} entries "
        f"(before the outage {steady}, during it {outage_peak}; median {steady_median})",
        "time to drain": f"{caught_up - marks['questdb start']:.0f} s after QuestDB returned"
        if caught_up is not None
        else "never caught up before the end",
        "final backlog": f"pending {final_pending}, lag {final_lag} (XINFO GROUPS says {xinfo_lag})",
        "peak Redis memory": f"{peak_redis_mib(samples):.0f} MiB (budget {size.redis_memory_mib} MiB)",
        **{f"peak RSS {name}": f"{mib:.0f} MiB (budget {size.rss_mib[name]} MiB)" for name, mib in rss.items()},
        "CPU seconds": ", ".join(f"{name} {secs:.0f}" for name, secs in cpu.items()),
        "CPU per 1k events": f"{1000 * sum(cpu.values()) / sent.frames:.2f} s: 2 cores saturate near "
        f"{2 * sent.frames / sum(cpu.values()):,.0f} events/s at this mix",
        "marks (s)": ", ".join(f"{name} {at:.0f}" for name, at in marks.items()),
    }
    for index, gap in enumerate(gaps[:10]):
        run[f"gap {index}"] = (
            f"{gap.kind} {gap.exchange}/{gap.symbol or '*'}/{gap.data_type} [{gap.start_ns}, {gap.end_ns}) "
            f"({(gap.end_ns - gap.start_ns) / 1e9:.1f} s) {gap.cause}"
        )
    table = figures_table(types, run)
    print("\n" + table)
    (stack.directory / "soak-figures.txt").write_text(table + "\n")

    context = f"seed={stack.seed}\n{table}"
    for figures in types:
        assert figures.ok, f"{figures.name}: {figures.problems}\n{context}"
    assert all(t.stored > 0 for t in types), context
    assert (final_pending, final_lag) == (0, 0), context
    # Rose: well above the steady state before the outage (the collectors publish hundreds of entries a second).
    assert outage_peak > 2 * steady_median, f"the backlog did not rise in the outage\n{context}"
    assert outage_peak > 50, f"the backlog did not rise in the outage\n{context}"
    assert peak_redis_mib(samples) <= size.redis_memory_mib, context
    for name, mib in rss.items():
        assert mib <= size.rss_mib[name], f"{name} RSS {mib:.0f} MiB over budget\n{context}"
    assert set(rss) == set(size.rss_mib), f"not every process was sampled: {sorted(rss)}"


@pytest.mark.integration
@pytest.mark.timeout(900)
def test_soak_short(stack: Stack) -> None:
    _soak(stack, SHORT)


@pytest.mark.integration
@pytest.mark.reliability
@pytest.mark.timeout(3600)
@pytest.mark.skipif(not FULL, reason="full size (10 minutes) runs with `make reliability`")
def test_soak_full(stack: Stack) -> None:
    _soak(stack, FULL_SIZE)


# ---- the reconciliation rules themselves (pure; no server) --------------------------------------------------------

SPOT_BTC = ("binance", "BTC-USDT")
PERP_BTC = ("binance-usdm", "BTC-USDT-PERP")


def _gap(key: tuple[str, str | None], data_type: DataType, start_ns: int, end_ns: int) -> Gap:
    exchange, symbol = key
    return Gap(exchange, data_type, symbol, GapKind.DISCONNECT, start_ns, end_ns, "test", end_ns)


def test_reconcile_trades_flags_duplicates_phantoms_and_losses_outside_gaps() -> None:
    sent = Sent()
    sent.trades[SPOT_BTC] = {i: 1_000 * i for i in range(1, 7)}
    stored = Stored()
    stored.trades[SPOT_BTC] = Counter({1: 1, 2: 2, 4: 1, 6: 1, 99: 1})  # 3 and 5 lost, 2 twice, 99 never sent
    [trades, *_] = reconcile(sent, stored, [_gap(SPOT_BTC, DataType.TRADES, 2_500, 3_001)])
    assert (trades.sent, trades.stored, trades.missing_in_gaps) == (6, 6, 1)  # 3 is excused, 5 is not
    assert (trades.missing_uncovered, trades.duplicates, trades.phantoms) == (1, 1, 1)
    assert not trades.ok
    # A gap of another data type or symbol excuses nothing; a feed-wide gap (no symbol) excuses every symbol.
    stored.trades[SPOT_BTC] = Counter({1: 1, 2: 1, 4: 1, 6: 1})
    [trades, *_] = reconcile(sent, stored, [_gap(SPOT_BTC, DataType.QUOTES, 0, 10_000)])
    assert trades.missing_uncovered == 2
    [trades, *_] = reconcile(sent, stored, [_gap(("binance", None), DataType.TRADES, 3_000, 5_001)])
    assert (trades.missing_in_gaps, trades.ok) == (2, True)


def test_reconcile_quotes_follows_send_order_and_time_of_the_neighbours() -> None:
    a, b, c, d = ((float(i), 1.0, float(i) + 0.5, 2.0) for i in range(4))
    sent = Sent()
    sent.quotes[SPOT_BTC] = [(a, None), (b, None), (c, None)]  # spot: no venue time
    sent.quotes[PERP_BTC] = [(a, 100), (b, 200), (c, 300)]  # USD-M: the transaction time
    stored = Stored()
    stored.quotes[SPOT_BTC] = [(a, 10), (c, 30)]
    stored.quotes[PERP_BTC] = [(a, 100), (c, 300)]
    gaps = [_gap(SPOT_BTC, DataType.QUOTES, 25, 40), _gap(PERP_BTC, DataType.QUOTES, 150, 250)]
    quotes = reconcile(sent, stored, gaps)[1]
    assert (quotes.missing_in_gaps, quotes.ok) == (2, True)
    # A window that misses the lost frame's interval (spot) or time (USD-M) excuses nothing.
    gaps = [_gap(SPOT_BTC, DataType.QUOTES, 31, 40), _gap(PERP_BTC, DataType.QUOTES, 250, 260)]
    assert reconcile(sent, stored, gaps)[1].missing_uncovered == 2
    # A stored row the simulator never sent, or out of order, is a phantom.
    stored.quotes[SPOT_BTC] = [(a, 10), (c, 30), (d, 40)]
    assert reconcile(sent, stored, gaps)[1].phantoms == 1


def test_reconcile_candles_need_every_push_of_a_lost_minute_in_a_gap() -> None:
    sent = Sent()
    sent.candles[SPOT_BTC] = {60_000: [61_000, 119_000], 120_000: [121_000]}
    stored = Stored()
    stored.candles[SPOT_BTC] = {120_000}
    candles = reconcile(sent, stored, [_gap(SPOT_BTC, DataType.CANDLES, 100_000, 120_000)])[2]
    assert candles.missing_uncovered == 1  # the push at 61 s lies outside the window
    candles = reconcile(sent, stored, [_gap(SPOT_BTC, DataType.CANDLES, 60_000, 120_000)])[2]
    assert (candles.missing_in_gaps, candles.ok) == (1, True)


def test_reconcile_books_flags_a_silent_hole_only() -> None:
    stored = Stored()
    stored.books[SPOT_BTC] = [0, 250_000_000, 10_000_000_000]
    assert reconcile(Sent(), stored, [])[4].missing_uncovered == 1
    gap = _gap(SPOT_BTC, DataType.BOOKS, 1_000_000_000, 2_000_000_000)
    assert reconcile(Sent(), stored, [gap])[4].ok
