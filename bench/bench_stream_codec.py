"""Stream-entry codec: our MessagePack entries vs stdlib JSON, side by side in one run.

Measures encode and decode throughput (events/s) and bytes per event (all entry fields, the W3C traceparent
included) for single trades and batches of 100, interleaving the codecs in every repetition and reporting
medians, because on a shared 2-vCPU machine only same-run ratios are trustworthy (reference/performance.md).

Codecs, each decoding all the way back to validated ``Trade`` objects with exact ``Decimal`` values:

- ``msgpack``: ours, ``tickstrata.common.streams.encode_entry``/``decode_entry``.
- ``json-stdlib``: the baseline; one self-describing JSON object per event, Decimals as strings.
- ``json-msgspec``: the same array-like structs through msgspec's JSON codec, to separate the gain of the
  format from the gain of the library.

With ``--redis-url`` it also publishes (encode + pipelined XADD) and consumes (XRANGE + decode) through a real
Redis and reads the stream's memory per event. Run: ``python bench/bench_stream_codec.py [--quick]``.
"""

from __future__ import annotations

import argparse
import functools
import gc
import json
import random
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, cast

import msgspec

from tickstrata.common.events import Event, Side, Trade
from tickstrata.common.streams import FIELD_EVENTS, FIELD_TRACEPARENT, FIELD_VERSION
from tickstrata.common.streams import decode_entry as msgpack_decode
from tickstrata.common.streams import encode_entry as msgpack_encode

TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
EVENTS_PER_SCENARIO = 2000  # distinct trades per scenario, so caches and branch predictors see variety

# The baselines do the same envelope work as encode_entry/decode_entry (version check, traceparent carried
# as bounded ASCII), so the comparison isolates the payload codec.
_TRACE_FIELD_MAX_BYTES = 512

Fields = dict[bytes, bytes]
Encode = Callable[[Sequence[Trade]], Fields]
Decode = Callable[[Fields], Sequence[Event]]


def _envelope(payload: bytes) -> Fields:
    traceparent = TRACEPARENT.encode("ascii")
    if len(traceparent) > _TRACE_FIELD_MAX_BYTES:
        raise ValueError("traceparent")
    return {FIELD_VERSION: b"1", FIELD_EVENTS: payload, FIELD_TRACEPARENT: traceparent}


def _open_envelope(fields: Fields) -> bytes:
    traceparent = fields[FIELD_TRACEPARENT]
    if fields[FIELD_VERSION] != b"1" or not (0 < len(traceparent) <= _TRACE_FIELD_MAX_BYTES and traceparent.isascii()):
        raise ValueError("envelope")
    traceparent.decode("ascii")
    return fields[FIELD_EVENTS]


def _json_encode(trades: Sequence[Trade]) -> Fields:
    payload = [
        {
            "type": "trade",
            "exchange": t.exchange,
            "symbol": t.symbol,
            "trade_id": t.trade_id,
            "price": str(t.price),
            "size": str(t.size),
            "side": t.side.value,
            "ts_event_ns": t.ts_event_ns,
            "ts_recv_ns": t.ts_recv_ns,
        }
        for t in trades
    ]
    return _envelope(json.dumps(payload, separators=(",", ":")).encode())


def _json_decode(fields: Fields) -> list[Trade]:
    return [
        Trade(
            exchange=o["exchange"],
            symbol=o["symbol"],
            trade_id=o["trade_id"],
            price=Decimal(o["price"]),
            size=Decimal(o["size"]),
            side=Side(o["side"]),
            ts_event_ns=o["ts_event_ns"],
            ts_recv_ns=o["ts_recv_ns"],
        )
        for o in json.loads(_open_envelope(fields))
        if o["type"] == "trade"
    ]


_msgspec_json_encoder = msgspec.json.Encoder()
_msgspec_json_decoder = msgspec.json.Decoder(tuple[Event, ...])


def _msgspec_json_encode(trades: Sequence[Trade]) -> Fields:
    return _envelope(_msgspec_json_encoder.encode(trades))


def _msgspec_json_decode(fields: Fields) -> tuple[Event, ...]:
    return _msgspec_json_decoder.decode(_open_envelope(fields))


def _msgpack_encode(trades: Sequence[Trade]) -> Fields:
    return msgpack_encode(trades, traceparent=TRACEPARENT)


def _msgpack_decode(fields: Fields) -> tuple[Event, ...]:
    return msgpack_decode(fields).events


CODECS: dict[str, tuple[Encode, Decode]] = {
    "msgpack": (_msgpack_encode, _msgpack_decode),
    "json-stdlib": (_json_encode, _json_decode),
    "json-msgspec": (_msgspec_json_encode, _msgspec_json_decode),
}
BASELINE = "json-stdlib"
OURS = "msgpack"


def make_trades(count: int, seed: int = 7) -> list[Trade]:
    """Binance-like BTC-USDT trades: 8-decimal strings as the venue sends them, ns timestamps."""
    rng = random.Random(seed)
    ts_ns = 1_717_000_000_000_000_000
    trades = []
    for i in range(count):
        ts_ns += rng.randrange(1_000_000, 50_000_000)
        cents = 6_412_345 + rng.randrange(-500, 500)
        trades.append(
            Trade(
                exchange="binance",
                symbol="BTC-USDT",
                trade_id=str(3_400_000_000 + i),
                price=Decimal(f"{cents // 100}.{cents % 100:02d}000000"),
                size=Decimal(f"0.{rng.randrange(1, 10**8):08d}"),
                side=Side.BUY if rng.random() < 0.5 else Side.SELL,
                ts_event_ns=ts_ns,
                ts_recv_ns=ts_ns + rng.randrange(500_000, 3_000_000),
            )
        )
    return trades


@dataclass
class Scenario:
    name: str
    batch_size: int
    batches: list[list[Trade]]
    # codec -> per-repetition events/s
    encode_rates: dict[str, list[float]] = field(default_factory=dict)
    decode_rates: dict[str, list[float]] = field(default_factory=dict)
    bytes_per_event: dict[str, float] = field(default_factory=dict)


def _time_block(run: Callable[[], None], events_per_call: int, target_secs: float) -> float:
    """Return events/s for ``run`` repeated until ``target_secs`` has passed (at least once)."""
    gc.collect()
    calls = 0
    start = time.perf_counter()
    elapsed = 0.0
    while elapsed < target_secs:
        run()
        calls += 1
        elapsed = time.perf_counter() - start
    return calls * events_per_call / elapsed


def _check_round_trip(name: str, encode: Encode, decode: Decode, batch: list[Trade]) -> None:
    decoded = list(decode(encode(batch)))
    exact = [str(t.price) for t in decoded] == [str(t.price) for t in batch]  # type: ignore[union-attr]
    if decoded != batch or not exact:
        raise SystemExit(f"{name}: round trip is not exact")


def run_codec_bench(scenarios: list[Scenario], *, reps: int, block_secs: float) -> None:
    for scenario in scenarios:
        events = sum(len(batch) for batch in scenario.batches)
        for name, (encode, decode) in CODECS.items():
            _check_round_trip(name, encode, decode, scenario.batches[0])
            encoded = [encode(batch) for batch in scenario.batches]
            total_bytes = sum(len(k) + len(v) for fields in encoded for k, v in fields.items())
            scenario.bytes_per_event[name] = total_bytes / events
            scenario.encode_rates[name] = []
            scenario.decode_rates[name] = []
        for _ in range(reps):
            for name, (encode, decode) in CODECS.items():  # interleaved: every rep runs every codec
                encoded = [encode(batch) for batch in scenario.batches]
                run_encode = functools.partial(_encode_all, encode, scenario.batches)
                run_decode = functools.partial(_decode_all, decode, encoded)
                scenario.encode_rates[name].append(_time_block(run_encode, events, block_secs))
                scenario.decode_rates[name].append(_time_block(run_decode, events, block_secs))


def _encode_all(encode: Encode, batches: list[list[Trade]]) -> None:
    for batch in batches:
        encode(batch)


def _decode_all(decode: Decode, encoded: list[Fields]) -> None:
    for fields in encoded:
        decode(fields)


def _round_trip_rate(encode_rate: float, decode_rate: float) -> float:
    return 1 / (1 / encode_rate + 1 / decode_rate)


def _median_ratio(ours: list[float], theirs: list[float]) -> float:
    return statistics.median(a / b for a, b in zip(ours, theirs, strict=True))


def report_codec(scenarios: list[Scenario]) -> None:
    header = (
        f"{'scenario':<12} {'codec':<13} {'encode ev/s':>12} {'decode ev/s':>12} {'enc+dec ev/s':>13} {'B/event':>8}"
    )
    print(header)
    print("-" * len(header))
    for scenario in scenarios:
        for name in CODECS:
            encode_rate = statistics.median(scenario.encode_rates[name])
            decode_rate = statistics.median(scenario.decode_rates[name])
            print(
                f"{scenario.name:<12} {name:<13} {encode_rate:>12,.0f} {decode_rate:>12,.0f} "
                f"{_round_trip_rate(encode_rate, decode_rate):>13,.0f} {scenario.bytes_per_event[name]:>8.1f}"
            )
    print()
    for scenario in scenarios:
        encode_ratio = _median_ratio(scenario.encode_rates[OURS], scenario.encode_rates[BASELINE])
        decode_ratio = _median_ratio(scenario.decode_rates[OURS], scenario.decode_rates[BASELINE])
        round_trips = [
            _round_trip_rate(e, d)
            for e, d in zip(scenario.encode_rates[OURS], scenario.decode_rates[OURS], strict=True)
        ]
        baseline_round_trips = [
            _round_trip_rate(e, d)
            for e, d in zip(scenario.encode_rates[BASELINE], scenario.decode_rates[BASELINE], strict=True)
        ]
        size_ratio = scenario.bytes_per_event[BASELINE] / scenario.bytes_per_event[OURS]
        print(
            f"{scenario.name}: msgpack is {_median_ratio(round_trips, baseline_round_trips):.1f}x faster "
            f"(encode {encode_ratio:.1f}x, decode {decode_ratio:.1f}x) and {size_ratio:.1f}x smaller than stdlib JSON"
        )


def run_redis_bench(scenarios: list[Scenario], *, redis_url: str, reps: int) -> None:
    import redis  # noqa: PLC0415 - only needed with --redis-url

    client = redis.Redis.from_url(redis_url, decode_responses=False)
    client.ping()
    print(f"\nRedis {client.info('server')['redis_version']} at {redis_url}: publish = encode + XADD pipelined")
    print("100 entries per round trip; consume = XRANGE COUNT 100 + decode; memory = MEMORY USAGE / events")
    header = f"{'scenario':<12} {'codec':<13} {'publish ev/s':>13} {'consume ev/s':>13} {'mem B/event':>12}"
    print(header)
    print("-" * len(header))
    for scenario in scenarios:
        events = sum(len(batch) for batch in scenario.batches)
        publish: dict[str, list[float]] = {name: [] for name in CODECS}
        consume: dict[str, list[float]] = {name: [] for name in CODECS}
        memory: dict[str, float] = {}
        for _ in range(reps):
            for name, (encode, decode) in CODECS.items():
                key = f"bench:stream-codec:{name}"
                client.delete(key)
                gc.collect()
                start = time.perf_counter()
                for first in range(0, len(scenario.batches), 100):
                    pipe = client.pipeline(transaction=False)
                    for batch in scenario.batches[first : first + 100]:
                        pipe.xadd(key, cast(dict[Any, Any], encode(batch)))
                    pipe.execute()
                publish[name].append(events / (time.perf_counter() - start))
                memory[name] = (client.memory_usage(key, samples=0) or 0) / events
                start = time.perf_counter()
                last = b"-"
                while True:
                    rows = client.xrange(key, min=last, count=100)
                    if not rows:
                        break
                    for _entry_id, fields in rows:
                        decode(cast(Fields, fields))
                    last = b"(" + cast(bytes, rows[-1][0])
                consume[name].append(events / (time.perf_counter() - start))
                client.delete(key)
        for name in CODECS:
            print(
                f"{scenario.name:<12} {name:<13} {statistics.median(publish[name]):>13,.0f} "
                f"{statistics.median(consume[name]):>13,.0f} {memory[name]:>12.1f}"
            )
        print(
            f"{scenario.name}: through Redis msgpack publishes {_median_ratio(publish[OURS], publish[BASELINE]):.1f}x "
            f"and consumes {_median_ratio(consume[OURS], consume[BASELINE]):.1f}x the JSON rate, "
            f"in {memory[BASELINE] / memory[OURS]:.1f}x less memory"
        )


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="3 short repetitions (~2 s) instead of 7 (~15 s)")
    parser.add_argument("--reps", type=int, help="repetitions per codec (default 7, or 3 with --quick)")
    parser.add_argument(
        "--redis-url", help="also measure XADD/XRANGE through this Redis, e.g. redis://127.0.0.1:6379/0"
    )
    args = parser.parse_args(argv)
    reps = args.reps or (3 if args.quick else 7)
    block_secs = 0.03 if args.quick else 0.12

    trades = make_trades(EVENTS_PER_SCENARIO)
    scenarios = [
        Scenario("trade x1", 1, [[trade] for trade in trades]),
        Scenario("trade x100", 100, [trades[i : i + 100] for i in range(0, len(trades), 100)]),
    ]
    print(
        f"Python {sys.version.split()[0]}, msgspec {msgspec.__version__}; {EVENTS_PER_SCENARIO} Binance-like trades "
        f"per scenario; median of {reps} interleaved repetitions\n"
    )
    started = time.perf_counter()
    run_codec_bench(scenarios, reps=reps, block_secs=block_secs)
    report_codec(scenarios)
    if args.redis_url:
        run_redis_bench(scenarios, redis_url=args.redis_url, reps=max(1, reps // 2))
    print(f"\n(took {time.perf_counter() - started:.1f} s)")


if __name__ == "__main__":
    main()
