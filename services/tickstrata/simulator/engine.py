"""One simulated venue: its markets, who subscribed to what, and the frames every tick produces.

Clock-free: `tick(now_ms)` advances every market to `now_ms` and publishes the resulting frames to subscribers,
so the same engine runs under the server's wall clock and under a test's virtual clock. Frames are built only
for streams somebody listens to, once per frame, and handed to each subscriber without blocking.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from tickstrata.simulator import frames, hostile
from tickstrata.simulator.book import LevelChange
from tickstrata.simulator.faults import FaultRecord, FaultSpec
from tickstrata.simulator.instruments import Instrument, Venue, build_instruments
from tickstrata.simulator.market import KlineAccumulator, SymbolMarket
from tickstrata.simulator.ratelimit import WeightLimiter
from tickstrata.simulator.streams import depth_cadences
from tickstrata.simulator.tape import EmptyKlineMode, Tape, Trade

KLINE_PUSH_MS = 2000


@dataclass(frozen=True)
class EngineConfig:
    seed: int = 42
    symbols: tuple[str, ...] = ()
    trades_per_sec: float = 2.0
    history_trades_per_sec: float = 0.5
    history_minutes: int = 2 * 24 * 60
    book_depth: int = 100
    book_updates_per_sec: float = 10.0
    empty_kline_mode: EmptyKlineMode = "flat"
    weight_limit_per_min: int | None = None  # None: the venue's own (6000 spot, 2400 USD-M)
    ban_secs: int = 120
    kline_push_ms: int = KLINE_PUSH_MS  # in-progress kline updates; a closed kline goes out at its minute's end


class Subscriber(Protocol):
    id: int
    combined: bool

    def deliver(self, data: bytes) -> None: ...

    def describe(self) -> dict[str, Any]: ...

    def backlog(self) -> int: ...

    def go_silent(self, until_ms: int | None) -> None: ...

    def abort(self) -> None: ...

    def shutdown(self, send_event: bool) -> None: ...

    def flood(self, data: bytes, count: int, interval_secs: float) -> None: ...


Recorder = Callable[[int, str, str, bytes], None]  # (ts_ms, venue, stream, raw frame)


@dataclass
class _DepthWindow:
    cadence_ms: int
    end_ms: int
    pending: list[LevelChange] = field(default_factory=list)
    last_u: int | None = None


class VenueEngine:
    def __init__(self, venue: Venue, config: EngineConfig, *, start_ms: int) -> None:
        self.venue = venue
        self.config = config
        self.start_ms = start_ms
        self.instruments: dict[str, Instrument] = build_instruments(venue, config.symbols or None)
        salt = 0 if venue is Venue.SPOT else 1_000_003
        self.markets: dict[str, SymbolMarket] = {}
        for key, (symbol, inst) in enumerate(self.instruments.items()):
            symbol_key = salt + key
            tape = Tape(
                inst,
                seed=config.seed,
                symbol_key=symbol_key,
                price_key=key,
                start_ms=start_ms,
                trades_per_sec=config.trades_per_sec,
                history_trades_per_sec=config.history_trades_per_sec,
                history_minutes=config.history_minutes,
                empty_kline_mode=config.empty_kline_mode,
            )
            self.markets[symbol] = SymbolMarket(
                tape,
                seed=config.seed,
                symbol_key=symbol_key,
                start_ms=start_ms,
                book_depth=config.book_depth,
                book_updates_per_sec=config.book_updates_per_sec,
            )
        self.stream_symbols = frozenset(inst.stream_symbol for inst in self.instruments.values())
        default_limit = 6000 if venue is Venue.SPOT else 2400
        self.limiter = WeightLimiter(
            limit_per_min=config.weight_limit_per_min or default_limit, ban_secs=config.ban_secs
        )
        self.subscriptions: dict[str, set[Subscriber]] = {}
        self.connections: dict[int, Subscriber] = {}
        self.stream_stats: dict[str, list[int]] = {}  # stream -> [sent, dropped]
        self.faults: list[FaultRecord] = []
        self._drops: dict[str, list[FaultRecord]] = {}
        self._rest_faults: list[FaultRecord] = []
        cadences = depth_cadences(venue)
        self._depth: dict[tuple[str, str], _DepthWindow] = {
            (symbol, channel): _DepthWindow(cadence, (start_ms // cadence + 1) * cadence)
            for symbol in self.instruments
            for channel, cadence in cadences.items()
        }
        self._top: dict[str, tuple[tuple[int, int] | None, tuple[int, int] | None]] = {}
        self._last_kline_push = start_ms // config.kline_push_ms
        self._last_mark_sec = start_ms // 1000
        self.now_ms = start_ms
        self.recorder: Recorder | None = None
        self.on_subscribe: Callable[[str], None] | None = None  # the replay waits for its first listener
        self.replay_mode = False

    # ------------------------------------------------------------------------------------------ subscribers

    def register(self, conn: Subscriber) -> None:
        self.connections[conn.id] = conn

    def unregister(self, conn: Subscriber) -> None:
        self.connections.pop(conn.id, None)
        for subscribers in self.subscriptions.values():
            subscribers.discard(conn)

    def subscribe(self, conn: Subscriber, stream: str) -> None:
        self.subscriptions.setdefault(stream, set()).add(conn)
        if self.on_subscribe is not None:
            self.on_subscribe(stream)

    def unsubscribe(self, conn: Subscriber, stream: str) -> None:
        self.subscriptions.get(stream, set()).discard(conn)

    def backlog(self) -> int:
        """Frames queued for the slowest connection (the replay paces itself on it)."""
        return max((conn.backlog() for conn in self.connections.values()), default=0)

    def _listened(self, stream: str) -> bool:
        return bool(self.subscriptions.get(stream))

    # ------------------------------------------------------------------------------------------- publishing

    def publish(self, stream: str, payload: dict[str, Any] | bytes, ids: tuple[int, int] | None = None) -> None:
        """Send one frame of `stream` to its subscribers, unless a drop fault eats it (recorded with its ids)."""
        subscribers = self.subscriptions.get(stream)
        if not subscribers:
            return
        stats = self.stream_stats.setdefault(stream, [0, 0])
        drops = self._drops.get(stream)
        if drops:
            record = drops[0]
            record.remaining -= 1
            if record.remaining <= 0:
                drops.pop(0)
            stats[1] += 1
            entry: dict[str, Any] = {"stream": stream, "ts_ms": self.now_ms}
            if ids is not None:
                entry["first_id"], entry["last_id"] = ids
            record.effects.setdefault("dropped", []).append(entry)
            return
        stats[0] += 1
        raw = payload if isinstance(payload, bytes) else frames.encode(payload)
        wrapped: bytes | None = None
        for conn in list(subscribers):
            if conn.combined:
                if wrapped is None:
                    wrapped = b'{"stream":"' + stream.encode() + b'","data":' + raw + b"}"
                conn.deliver(wrapped)
            else:
                conn.deliver(raw)
        if self.recorder is not None:
            self.recorder(self.now_ms, self.venue.value, stream, raw)

    def tick(self, now_ms: int) -> None:
        """Advance every market to `now_ms` and publish what happened."""
        if now_ms <= self.now_ms or self.replay_mode:
            return
        self.now_ms = now_ms
        kline_push = now_ms // self.config.kline_push_ms != self._last_kline_push
        self._last_kline_push = now_ms // self.config.kline_push_ms
        mark_sec = now_ms // 1000
        mark_push = self.venue is Venue.USDM and mark_sec != self._last_mark_sec
        self._last_mark_sec = mark_sec
        for symbol, market in self.markets.items():
            self._tick_symbol(symbol, market, now_ms, kline_push=kline_push, mark_push=mark_push)

    def _tick_symbol(
        self, symbol: str, market: SymbolMarket, now_ms: int, *, kline_push: bool, mark_push: bool
    ) -> None:
        inst = market.instrument
        s = inst.stream_symbol
        step = market.advance(now_ms)
        outage = market.in_outage(now_ms)
        if step.trades:
            self._publish_trades(inst, step.trades, now_ms)
        self._tick_depth(symbol, inst, step.changes, now_ms)
        if step.changes:
            top = (market.book.best_bid, market.book.best_ask)
            listened = self._listened(f"{s}@bookTicker")
            if listened and top != self._top.get(symbol) and top[0] is not None and top[1] is not None:
                self._top[symbol] = top
                frame = frames.book_ticker(
                    inst, market.book.update_id, top[0], top[1], event_ms=now_ms, tx_ms=step.changes[-1].ts_ms
                )
                self.publish(f"{s}@bookTicker", frame, (market.book.update_id, market.book.update_id))
        for closed in step.closed:
            if not outage:  # a minute closing while the venue is down never gets its final push
                self._publish_kline(market, closed, closed=True)
        if kline_push and not outage:
            self._publish_kline(market, market.candle, closed=False)
        if mark_push and not outage:
            state = market.mark(now_ms)
            self.publish(f"{s}@markPrice@1s", frames.mark_price_update(inst, state, event_ms=now_ms))
            if (now_ms // 1000) % 3 == 0:
                self.publish(f"{s}@markPrice", frames.mark_price_update(inst, state, event_ms=now_ms))

    def _publish_trades(self, inst: Instrument, trades: list[Trade], now_ms: int) -> None:
        s = inst.stream_symbol
        if self._listened(f"{s}@aggTrade"):
            for trade in trades:
                self.publish(f"{s}@aggTrade", frames.agg_trade(inst, trade, now_ms), (trade.agg_id, trade.agg_id))
        if self._listened(f"{s}@trade"):
            for trade in trades:
                for frame in frames.raw_trades(inst, trade, now_ms):
                    self.publish(f"{s}@trade", frame, (frame["t"], frame["t"]))

    def _publish_kline(self, market: SymbolMarket, candle: KlineAccumulator, *, closed: bool) -> None:
        stream = f"{market.instrument.stream_symbol}@kline_1m"
        if not self._listened(stream):
            return
        if candle.trades == 0:
            minute = candle.open_ms // 60_000
            if market.tape.empty_kline_mode == "skip" or market.tape.outage_overlaps(minute):
                return  # the venue has no candle for this minute: nothing to push
        frame = frames.kline_event(market.instrument, candle.kline(), closed=closed, event_ms=self.now_ms)
        self.publish(stream, frame)

    def _tick_depth(self, symbol: str, inst: Instrument, changes: list[LevelChange], now_ms: int) -> None:
        for channel in depth_cadences(self.venue):
            window = self._depth[(symbol, channel)]
            window.pending.extend(changes)
            if now_ms < window.end_ms:
                continue
            boundary = now_ms // window.cadence_ms * window.cadence_ms
            cut = len(window.pending)
            while cut and window.pending[cut - 1].ts_ms >= boundary:
                cut -= 1
            batch, window.pending = window.pending[:cut], window.pending[cut:]
            window.end_ms = boundary + window.cadence_ms
            if not batch:
                continue
            stream = f"{inst.stream_symbol}@{channel}"
            if not self._listened(stream):
                window.last_u = batch[-1].update_id
                continue
            # The pu chain advances even when nobody listens or the event is dropped, as on the venue.
            frame = frames.depth_update(inst, batch, event_ms=boundary, previous_u=window.last_u)
            window.last_u = batch[-1].update_id
            self.publish(stream, frame, (batch[0].update_id, batch[-1].update_id))

    # ---------------------------------------------------------------------------------------------- faults

    def apply_fault(self, spec: FaultSpec, now_ms: int) -> FaultRecord:
        """Apply `spec` to this venue at `now_ms` (connection faults go through the subscribers)."""
        self.tick(now_ms)
        record = FaultRecord(spec, self.venue.value, now_ms)
        self.faults.append(record)
        next_sec_ms = (now_ms // 1000 + 1) * 1000
        kind = spec.kind
        if kind == "drop":
            if not spec.stream:
                raise ValueError("a drop fault needs a stream")
            record.remaining = spec.count
            self._drops.setdefault(spec.stream, []).append(record)
        elif kind == "depth_gap":
            inst = self._instrument(spec.symbol)
            record.remaining = spec.count
            for channel in depth_cadences(self.venue):
                twin = FaultRecord(spec, self.venue.value, now_ms, id=record.id, effects=record.effects)
                twin.remaining = spec.count
                self._drops.setdefault(f"{inst.stream_symbol}@{channel}", []).append(twin)
        elif kind in ("outage", "empty_interval"):
            self._suppress(spec, record, now_ms, next_sec_ms)
        elif kind == "candle_revision":
            inst = self._instrument(spec.symbol)
            open_ms = spec.open_time_ms if spec.open_time_ms is not None else now_ms // 60_000 * 60_000
            self.markets[inst.symbol].tape.revisions.add(open_ms)
            record.effects = {"symbol": inst.symbol, "open_time_ms": open_ms}
        elif kind == "bad_rest":
            record.remaining = spec.count
            record.effects = {"endpoint": spec.endpoint, "body": spec.body, "served": 0}
            self._rest_faults.append(record)
        elif kind == "rest_429":
            self.limiter.force_429(spec.count, spec.retry_after_secs)
            record.effects = {"requests": spec.count, "retry_after_secs": spec.retry_after_secs}
        else:
            self._connection_fault(spec, record, now_ms)
        return record

    def take_rest_fault(self, endpoint: str) -> FaultSpec | None:
        """The bad answer the next request to `endpoint` gets, if a bad_rest fault still has one to serve."""
        for record in self._rest_faults:
            if record.remaining > 0 and record.spec.endpoint == endpoint:
                record.remaining -= 1
                record.effects["served"] += 1
                return record.spec
        return None

    def _instrument(self, symbol: str | None) -> Instrument:
        if symbol is None or symbol.upper() not in self.instruments:
            raise ValueError(f"unknown symbol {symbol!r} for {self.venue.value}")
        return self.instruments[symbol.upper()]

    def _suppress(self, spec: FaultSpec, record: FaultRecord, now_ms: int, next_sec_ms: int) -> None:
        if spec.kind == "outage":
            start = max(spec.start_ms or next_sec_ms, next_sec_ms)
            end = start + round((spec.duration_secs or 60.0) * 1000)
            symbols = list(self.markets)
        else:
            # Whole minutes, never the one in progress (part of it has been streamed already).
            requested = -(-(spec.start_ms or 0) // 60_000) * 60_000
            start = max(requested, (now_ms // 60_000 + 1) * 60_000)
            end = start + spec.minutes * 60_000
            symbols = [self._instrument(spec.symbol).symbol] if spec.symbol else list(self.markets)
        for symbol in symbols:
            self.markets[symbol].tape.suppress(start, end, "outage" if spec.kind == "outage" else "empty")
        record.effects = {"start_ms": start, "end_ms": end, "symbols": symbols}

    def _connection_fault(self, spec: FaultSpec, record: FaultRecord, now_ms: int) -> None:
        targets = [conn for conn in self.connections.values() if spec.connection_id in (None, conn.id)]
        for conn in targets:
            if spec.kind == "inject":
                for frame in spec.frames:
                    conn.deliver(frame.encode())
            elif spec.kind == "garbage":
                conn.flood(hostile.garbage(spec.size_bytes), spec.count, 1.0 / spec.frames_per_sec)
            elif spec.kind == "silent":
                conn.go_silent(now_ms + round(spec.duration_secs * 1000) if spec.duration_secs else None)
            elif spec.kind == "abrupt_close":
                conn.abort()
            else:
                conn.shutdown(spec.send_event)
        record.effects = {"connections": sorted(conn.id for conn in targets)}
        if spec.kind == "inject":
            record.effects["frames"] = len(spec.frames)
        elif spec.kind == "garbage":
            record.effects |= {"frames": spec.count, "frame_bytes": spec.size_bytes}

    # ----------------------------------------------------------------------------------------------- state

    def state(self, now_ms: int, *, wall_ms: int | None = None) -> dict[str, Any]:
        self.tick(now_ms)
        symbols: dict[str, Any] = {}
        for symbol, market in self.markets.items():
            inst = market.instrument
            bid, ask = market.book.best_bid, market.book.best_ask
            symbols[symbol] = {
                "last_agg_id": market.last_agg_id,
                "last_trade_id": market.last_trade_id,
                "last_update_id": market.book.update_id,
                "last_price": inst.format_price(market.last_price_ticks),
                "best_bid": inst.format_price(bid[0]) if bid else None,
                "best_ask": inst.format_price(ask[0]) if ask else None,
                "trades_printed": market.trades_printed,
                "depth_last_u": {
                    channel: self._depth[(symbol, channel)].last_u for channel in depth_cadences(self.venue)
                },
            }
        return {
            "venue": self.venue.value,
            "now_ms": now_ms,
            "started_ms": self.start_ms,
            "replay": self.replay_mode,
            "symbols": symbols,
            "streams": {name: {"sent": s[0], "dropped": s[1]} for name, s in sorted(self.stream_stats.items())},
            "connections": [conn.describe() for conn in self.connections.values()],
            "rest": {
                "used_weight_1m": self.limiter.used(now_ms if wall_ms is None else wall_ms),
                "limit_per_min": self.limiter.limit_per_min,
                "backoff_until_ms": self.limiter.backoff_until_ms,
                "banned_until_ms": self.limiter.banned_until_ms,
                "responses": dict(self.limiter.responses),
            },
            "faults": [record.as_json() for record in self.faults],
        }
