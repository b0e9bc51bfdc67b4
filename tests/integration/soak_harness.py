"""The soak's bookkeeping: what the simulator sent, what QuestDB holds, which gaps excuse the difference, and the
samples (Redis memory, every process's RSS, the writer group's lag) taken while it ran.

The ground truth is the simulator's capture (`SIMULATOR_RECORD_FILE`): one line per frame it sent, in send order.
Reconciliation is pure (`reconcile`), so its rules read in one place:

- trades: exact, by the venue's aggregate id per symbol. A stored id seen twice is a duplicate; an id stored but
  never sent a phantom; an id sent but not stored must lie in a trades gap (its trade time inside the window).
- quotes: the stored rows of a symbol, in time order, must be the sent frames in send order with some left out
  (matched by their four values); a left-out frame must lie in a quotes gap: by its transaction time where the
  venue stamps one (USD-M), else (spot stamps quotes with our receipt time, which a lost frame never got) a gap
  overlapping the interval between the stored neighbours it was sent between.
- candles: one row per minute (storage upserts the minute): every minute sent is stored, or each of its pushes
  lies in a candles gap. funding: one row per event time, the same way.
- books are snapshots the collector derives from the depth diffs, so they have no sent counterpart: a hole longer
  than `BOOK_HOLE_LIMIT_NS` between consecutive snapshots of a symbol must overlap a books gap.
"""

from __future__ import annotations

import bisect
import csv
import io
import itertools
import os
import threading
import time
import urllib.parse
import urllib.request
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import msgspec
import redis

from tickstrata.common.events import DataType, Gap
from tickstrata.common.streams import GAP_STREAM, MARKET_DATA_STREAM_PATTERN, WRITER_GROUP, decode_entry
from tickstrata.localstack.questdb import QuestDBServer

NS_PER_MS: Final = 1_000_000
BOOK_HOLE_LIMIT_NS: Final = 5_000 * NS_PER_MS
"""Snapshots come every 250 ms: a 5 s silence outside any gap is a loss, not a slow moment."""
MIB: Final = 1024 * 1024
_NO_PROXY: Final = urllib.request.build_opener(urllib.request.ProxyHandler({}))

SymbolKey = tuple[str, str]  # (exchange, symbol)
QuoteValues = tuple[float, float, float, float]  # bid price, bid size, ask price, ask size


def venue_symbols(spot_symbols: Iterable[str]) -> dict[tuple[str, str], str]:
    """(venue, stream symbol) → normalized symbol: `("binance", "btcusdt") → "BTC-USDT"`, USD-M with `-PERP`."""
    names: dict[tuple[str, str], str] = {}
    for symbol in spot_symbols:
        stream_symbol = symbol.replace("-", "").lower()
        names[("binance", stream_symbol)] = symbol
        names[("binance-usdm", stream_symbol)] = f"{symbol}-PERP"
    return names


# ---- what the simulator sent ----------------------------------------------------------------------------------


@dataclass
class Sent:
    """Every frame of the capture, reduced to what identifies the stored row it should become."""

    frames: int = 0
    first_ms: int = 0
    last_ms: int = 0
    per_stream_kind: Counter[str] = field(default_factory=Counter)
    trades: dict[SymbolKey, dict[int, int]] = field(default_factory=lambda: defaultdict(dict))  # id → trade ns
    quotes: dict[SymbolKey, list[tuple[QuoteValues, int | None]]] = field(default_factory=lambda: defaultdict(list))
    candles: dict[SymbolKey, dict[int, list[int]]] = field(default_factory=lambda: defaultdict(dict))  # open → E
    funding: dict[SymbolKey, set[int]] = field(default_factory=lambda: defaultdict(set))  # event ns


class _Head(msgspec.Struct):
    ts_ms: int
    venue: str
    stream: str


def read_capture(path: Path, names: dict[tuple[str, str], str]) -> Sent:
    """Parse the simulator's capture; frames of other symbols than `names` fail (the soak subscribes to all)."""
    sent = Sent()
    head_decoder = msgspec.json.Decoder(_Head)
    with path.open("rb") as capture:
        for line in capture:
            head_raw, _, frame_raw = line.partition(b',"frame":')
            head = head_decoder.decode(head_raw + b"}")
            stream_symbol, _, kind = head.stream.partition("@")
            sent.frames += 1
            sent.first_ms = head.ts_ms if sent.frames == 1 else min(sent.first_ms, head.ts_ms)
            sent.last_ms = max(sent.last_ms, head.ts_ms)
            sent.per_stream_kind[kind] += 1
            if kind.startswith("depth"):
                continue  # the collector turns diffs into snapshots: counted, not matched
            key = (head.venue, names[(head.venue, stream_symbol)])
            frame: dict[str, Any] = msgspec.json.decode(frame_raw.rstrip().removesuffix(b"}"))
            if kind == "aggTrade":
                sent.trades[key][int(frame["a"])] = int(frame["T"]) * NS_PER_MS
            elif kind == "bookTicker":
                values = (float(frame["b"]), float(frame["B"]), float(frame["a"]), float(frame["A"]))
                stamp = int(frame["T"]) * NS_PER_MS if "T" in frame else None
                sent.quotes[key].append((values, stamp))
            elif kind == "kline_1m":
                pushes = sent.candles[key].setdefault(int(frame["k"]["t"]) * NS_PER_MS, [])
                pushes.append(int(frame["E"]) * NS_PER_MS)
            elif kind == "markPrice@1s":
                sent.funding[key].add(int(frame["E"]) * NS_PER_MS)
    return sent


# ---- what QuestDB holds -----------------------------------------------------------------------------------------


def export_csv(questdb: QuestDBServer, sql: str) -> list[list[str]]:
    """Rows of `sql` through QuestDB's CSV export (`/exp`): far lighter than `/exec` JSON for millions of rows."""
    url = f"{questdb.http_url}/exp?{urllib.parse.urlencode({'query': sql})}"
    with _NO_PROXY.open(url, timeout=300) as response:
        text = response.read().decode()
    rows = list(csv.reader(io.StringIO(text)))
    return rows[1:]  # the header


@dataclass
class Stored:
    trades: dict[SymbolKey, Counter[int]] = field(default_factory=lambda: defaultdict(Counter))
    quotes: dict[SymbolKey, list[tuple[QuoteValues, int]]] = field(default_factory=lambda: defaultdict(list))
    candles: dict[SymbolKey, set[int]] = field(default_factory=lambda: defaultdict(set))
    funding: dict[SymbolKey, set[int]] = field(default_factory=lambda: defaultdict(set))
    books: dict[SymbolKey, list[int]] = field(default_factory=lambda: defaultdict(list))


def read_stored(questdb: QuestDBServer) -> Stored:
    stored = Stored()
    for exchange, symbol, trade_id in export_csv(questdb, "SELECT exchange, symbol, trade_id FROM trades"):
        stored.trades[(exchange, symbol)][int(trade_id)] += 1
    quotes_sql = (
        "SELECT exchange, symbol, bid_price, bid_size, ask_price, ask_size, cast(ts AS LONG) FROM quotes "
        "ORDER BY exchange, symbol, ts"
    )
    for exchange, symbol, bid, bid_size, ask, ask_size, ts in export_csv(questdb, quotes_sql):
        values = (float(bid), float(bid_size), float(ask), float(ask_size))
        stored.quotes[(exchange, symbol)].append((values, int(ts)))
    for exchange, symbol, ts in export_csv(questdb, "SELECT exchange, symbol, cast(ts AS LONG) FROM candles"):
        stored.candles[(exchange, symbol)].add(int(ts))
    for exchange, symbol, ts in export_csv(questdb, "SELECT exchange, symbol, cast(ts AS LONG) FROM funding"):
        stored.funding[(exchange, symbol)].add(int(ts))
    books_sql = "SELECT exchange, symbol, cast(ts AS LONG) FROM books ORDER BY exchange, symbol, ts"
    for exchange, symbol, ts in export_csv(questdb, books_sql):
        stored.books[(exchange, symbol)].append(int(ts))
    return stored


def read_gaps(client: redis.Redis) -> list[Gap]:
    gaps: list[Gap] = []
    for _entry_id, fields in client.xrange(GAP_STREAM) or []:
        assert fields is not None, "a gap entry without fields: deleted while read"
        gaps.extend(event for event in decode_entry(fields).events if isinstance(event, Gap))
    return gaps


# ---- reconciliation ---------------------------------------------------------------------------------------------


class GapIndex:
    """The published gap windows per (exchange, symbol, data type); a symbol-less gap covers every symbol."""

    def __init__(self, gaps: Iterable[Gap]) -> None:
        self._windows: dict[tuple[str, str | None, DataType], list[tuple[int, int]]] = defaultdict(list)
        for gap in gaps:
            self._windows[(gap.exchange, gap.symbol, gap.data_type)].append((gap.start_ns, gap.end_ns))

    def _candidates(self, key: SymbolKey, data_type: DataType) -> list[tuple[int, int]]:
        exchange, symbol = key
        return self._windows.get((exchange, symbol, data_type), []) + self._windows.get((exchange, None, data_type), [])

    def contains(self, key: SymbolKey, data_type: DataType, ts_ns: int) -> bool:
        return any(start <= ts_ns < end for start, end in self._candidates(key, data_type))  # half-open windows

    def overlaps(self, key: SymbolKey, data_type: DataType, low_ns: int, high_ns: int) -> bool:
        return any(start <= high_ns and end > low_ns for start, end in self._candidates(key, data_type))


@dataclass
class TypeFigures:
    """One data type's account: `missing_in_gaps` is excused; `missing_uncovered`, `duplicates` and `phantoms`
    are failures (each with up to a few examples in `problems`)."""

    name: str
    sent: int = 0
    stored: int = 0
    missing_in_gaps: int = 0
    missing_uncovered: int = 0
    duplicates: int = 0
    phantoms: int = 0
    problems: list[str] = field(default_factory=list)

    def problem(self, text: str) -> None:
        if len(self.problems) < 5:
            self.problems.append(text)

    @property
    def ok(self) -> bool:
        return self.missing_uncovered == 0 and self.duplicates == 0 and self.phantoms == 0


def reconcile_trades(sent: Sent, stored: Stored, gaps: GapIndex) -> TypeFigures:
    figures = TypeFigures("trades")
    for key in sorted(set(sent.trades) | set(stored.trades)):
        sent_ids, stored_ids = sent.trades.get(key, {}), stored.trades.get(key, Counter())
        figures.sent += len(sent_ids)
        figures.stored += sum(stored_ids.values())
        for trade_id, times in stored_ids.items():
            if times > 1:
                figures.duplicates += times - 1
                figures.problem(f"{key} trade {trade_id} stored {times} times")
            if trade_id not in sent_ids:
                figures.phantoms += 1
                figures.problem(f"{key} trade {trade_id} stored but never sent")
        for trade_id, trade_ns in sent_ids.items():
            if trade_id in stored_ids:
                continue
            if gaps.contains(key, DataType.TRADES, trade_ns):
                figures.missing_in_gaps += 1
            else:
                figures.missing_uncovered += 1
                figures.problem(f"{key} trade {trade_id} (T={trade_ns}) neither stored nor in a gap")
    return figures


def reconcile_quotes(sent: Sent, stored: Stored, gaps: GapIndex) -> TypeFigures:
    figures = TypeFigures("quotes")
    for key in sorted(set(sent.quotes) | set(stored.quotes)):
        frames, rows = sent.quotes.get(key, []), stored.quotes.get(key, [])
        figures.sent += len(frames)
        figures.stored += len(rows)
        matched = 0
        for values, stamp in frames:
            if matched < len(rows) and rows[matched][0] == values:
                matched += 1
                continue
            # Lost: it would have been stored between rows[matched - 1] and rows[matched].
            if stamp is not None:
                covered = gaps.contains(key, DataType.QUOTES, stamp)
            else:
                low = rows[matched - 1][1] if matched > 0 else 0
                high = rows[matched][1] if matched < len(rows) else 2**63 - 1
                covered = gaps.overlaps(key, DataType.QUOTES, low, high)
            if covered:
                figures.missing_in_gaps += 1
            else:
                figures.missing_uncovered += 1
                figures.problem(f"{key} quote {values} (T={stamp}) neither stored nor in a gap")
        if matched < len(rows):
            figures.phantoms += len(rows) - matched
            figures.problem(f"{key} {len(rows) - matched} stored quotes out of the sent order, from {rows[matched]}")
    return figures


def reconcile_keyed(
    name: str,
    data_type: DataType,
    sent: dict[SymbolKey, dict[int, list[int]]],
    stored: dict[SymbolKey, set[int]],
    gaps: GapIndex,
) -> TypeFigures:
    """Rows identified by a timestamp key; `sent` maps each key to the event times of the frames behind it."""
    figures = TypeFigures(name)
    for key in sorted(set(sent) | set(stored)):
        sent_keys, stored_keys = sent.get(key, {}), stored.get(key, set())
        figures.sent += len(sent_keys)
        figures.stored += len(stored_keys)
        for ts in stored_keys - set(sent_keys):
            figures.phantoms += 1
            figures.problem(f"{key} {name} row at {ts} stored but never sent")
        for ts, event_times in sent_keys.items():
            if ts in stored_keys:
                continue
            if all(gaps.contains(key, data_type, event_ns) for event_ns in event_times):
                figures.missing_in_gaps += 1
            else:
                figures.missing_uncovered += 1
                figures.problem(f"{key} {name} row at {ts} neither stored nor in a gap")
    return figures


def reconcile_books(stored: Stored, gaps: GapIndex) -> TypeFigures:
    figures = TypeFigures("books")
    for key, stamps in sorted(stored.books.items()):
        figures.stored += len(stamps)
        for before, after in itertools.pairwise(stamps):
            if after - before > BOOK_HOLE_LIMIT_NS and not gaps.overlaps(key, DataType.BOOKS, before, after):
                figures.missing_uncovered += 1
                figures.problem(f"{key} no book snapshot for {(after - before) / 1e9:.1f} s after {before}")
    return figures


def reconcile(sent: Sent, stored: Stored, gaps: Iterable[Gap]) -> list[TypeFigures]:
    index = GapIndex(gaps)
    funding_sent = {key: {ts: [ts] for ts in stamps} for key, stamps in sent.funding.items()}
    return [
        reconcile_trades(sent, stored, index),
        reconcile_quotes(sent, stored, index),
        reconcile_keyed("candles", DataType.CANDLES, sent.candles, stored.candles, index),
        reconcile_keyed("funding", DataType.FUNDING, funding_sent, stored.funding, index),
        reconcile_books(stored, index),
    ]


# ---- samples taken while it runs --------------------------------------------------------------------------------


def rss_kib(pid: int) -> int | None:
    """VmRSS of `pid` in KiB; None once it has gone."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    for line in status.splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return None


def cpu_secs(pid: int) -> float | None:
    """User plus system CPU time `pid` has used so far, in seconds; None once it has gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rpartition(")")[2].split()  # after the command name, which may hold spaces
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class Sample:
    at_secs: float  # since the sampler started
    redis_used_bytes: int | None  # None while Redis is down
    writer_pending: int | None  # summed over md:* streams; None while Redis is down
    writer_lag: int | None  # entries not yet delivered to the writer group, summed; None if Redis cannot tell
    rss_kib: dict[str, int]


def writer_group_backlog(client: redis.Redis) -> tuple[int, int | None]:
    """(pending, lag) of the writer group summed over the md:* streams (XINFO GROUPS).

    A group whose last delivered id is the stream's last generated id has lag 0, whatever XINFO says: Redis 7.0
    derives `lag` from the group's entries-read counter, which does not come back right from an AOF restart (seen
    here: a drained group reported lag 2,765 after one), and reports no lag at all for some time after trims.
    """
    pending, lag, known = 0, 0, True
    for stream in client.scan_iter(match=MARKET_DATA_STREAM_PATTERN, _type="stream"):
        groups: Any = client.xinfo_groups(stream)
        info: Any = client.xinfo_stream(stream)
        for group in groups:
            name = group["name"]
            if (name.decode() if isinstance(name, bytes) else name) != WRITER_GROUP:
                continue
            pending += int(group["pending"])
            if group["last-delivered-id"] == info["last-generated-id"]:
                continue
            if group.get("lag") is None:
                known = False
            else:
                lag += int(group["lag"])
    return pending, lag if known else None


def reported_lag(client: redis.Redis) -> int | None:
    """The writer group's lag summed as XINFO GROUPS reports it (None if any stream reports none)."""
    total = 0
    for stream in client.scan_iter(match=MARKET_DATA_STREAM_PATTERN, _type="stream"):
        groups: Any = client.xinfo_groups(stream)
        for group in groups:
            name = group["name"]
            if (name.decode() if isinstance(name, bytes) else name) == WRITER_GROUP:
                if group.get("lag") is None:
                    return None
                total += int(group["lag"])
    return total


class Sampler(threading.Thread):
    """Samples once per `interval_secs` until stopped; a sample taken while Redis is away just lacks its part."""

    def __init__(self, redis_url: Callable[[], str], pids: Callable[[], dict[str, int | None]], interval_secs: float):
        super().__init__(name="soak-sampler", daemon=True)
        self._redis_url = redis_url
        self._pids = pids
        self._interval_secs = interval_secs
        self._stop_event = threading.Event()
        self._started_at = time.monotonic()
        self.samples: list[Sample] = []
        self.error: BaseException | None = None
        self.cpu: dict[str, dict[int, float]] = defaultdict(dict)  # name → pid → CPU seconds at its last sample

    def now(self) -> float:
        return time.monotonic() - self._started_at

    def stop(self) -> None:
        """Stop sampling and take one last sample (the state the run ended in)."""
        self._stop_event.set()
        self.join(timeout=30)
        client = redis.Redis.from_url(self._redis_url(), socket_timeout=2.0, socket_connect_timeout=1.0)
        try:
            self.samples.append(self._sample(client))
        finally:
            client.close()

    def run(self) -> None:
        client: redis.Redis | None = None
        url = ""
        try:
            while not self._stop_event.wait(self._interval_secs):
                if self._redis_url() != url:
                    url = self._redis_url()
                    if client is not None:
                        client.close()
                    client = redis.Redis.from_url(url, socket_timeout=2.0, socket_connect_timeout=1.0)
                self.samples.append(self._sample(client))
        except BaseException as error:  # reported by the test, which fails on it
            self.error = error
        finally:
            if client is not None:
                client.close()

    def _sample(self, client: redis.Redis | None) -> Sample:
        pids = self._pids()
        rss = {name: kib for name, pid in pids.items() if pid and (kib := rss_kib(pid)) is not None}
        for name, pid in pids.items():
            if pid and (cpu := cpu_secs(pid)) is not None:
                self.cpu[name][pid] = cpu  # a restarted process is a new pid: its lives add up
        used: int | None = None
        pending: int | None = None
        lag: int | None = None
        if client is not None:
            try:
                memory: Any = client.info("memory")
                used = int(memory["used_memory"])
                pending, lag = writer_group_backlog(client)
            except (redis.ConnectionError, redis.TimeoutError, redis.ResponseError):
                pass  # Redis restarting (or still loading its AOF): this sample has no Redis part
        return Sample(self.now(), used, pending, lag, rss)


def backlog(sample: Sample) -> int | None:
    if sample.writer_pending is None or sample.writer_lag is None:
        return None
    return sample.writer_pending + sample.writer_lag


def peak_backlog(samples: Iterable[Sample], start_secs: float, end_secs: float) -> int:
    values = [b for s in samples if start_secs <= s.at_secs <= end_secs and (b := backlog(s)) is not None]
    return max(values, default=0)


def first_at_or_below(samples: list[Sample], after_secs: float, limit: int) -> float | None:
    """The first sample time after `after_secs` whose backlog is at most `limit`, or None."""
    times = [s.at_secs for s in samples]
    for sample in samples[bisect.bisect_left(times, after_secs) :]:
        value = backlog(sample)
        if value is not None and value <= limit:
            return sample.at_secs
    return None


def peak_rss_mib(samples: Iterable[Sample]) -> dict[str, float]:
    peaks: dict[str, int] = {}
    for sample in samples:
        for name, kib in sample.rss_kib.items():
            peaks[name] = max(peaks.get(name, 0), kib)
    return {name: kib / 1024 for name, kib in sorted(peaks.items())}


def cpu_totals(sampler: Sampler) -> dict[str, float]:
    """CPU seconds per process over the run (every life of a restarted one; a killed life's last second is lost)."""
    return {name: sum(lives.values()) for name, lives in sorted(sampler.cpu.items())}


def peak_redis_mib(samples: Iterable[Sample]) -> float:
    return max((s.redis_used_bytes or 0 for s in samples), default=0) / MIB


def figures_table(types: list[TypeFigures], run: dict[str, str]) -> str:
    """The closing table: one row per data type, then the run's figures."""
    header = f"{'type':<8} {'sent':>10} {'stored':>10} {'in gaps':>9} {'uncovered':>10} {'dups':>6} {'phantom':>8}"
    lines = [header, "-" * len(header)]
    for t in types:
        sent = "-" if t.name == "books" else str(t.sent)
        lines.append(
            f"{t.name:<8} {sent:>10} {t.stored:>10} {t.missing_in_gaps:>9} {t.missing_uncovered:>10} "
            f"{t.duplicates:>6} {t.phantoms:>8}"
        )
    width = max(len(name) for name in run)
    lines += ["", *(f"{name:<{width}}  {value}" for name, value in run.items())]
    return "\n".join(lines)
