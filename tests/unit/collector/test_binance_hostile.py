"""The hostile-message corpus (reliability.md §3.1): every item quarantined with its exact reason, no crash.

Text cases live in ``tests/data/exchanges/binance/hostile.jsonl`` (``case``, ``exchange``, expected ``reason``,
``frame``) so the simulator can inject the same frames; cases that cannot be JSON text (invalid UTF-8, a 1 MiB
frame, 100k nesting levels) are built here. Stateful items of the list (duplicate trade ids, out-of-order
trades, a candle closed twice) are not a parser's to judge: the parser passes them through unchanged and the
continuity tracker / storage dedup keys handle them (asserted below so the contract is explicit).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Final

import pytest

from tests.unit.collector.test_binance_replay import DATA, RECV_NS, adapter, frames
from tickstrata.collector.validation import MAX_FRAME_BYTES, Reason
from tickstrata.collector.venues import BinanceAdapter, ParseResult
from tickstrata.common.events import QUARANTINE_RAW_LIMIT_BYTES, DataType, Trade

HOSTILE: Final = [json.loads(line) for line in (DATA / "binance" / "hostile.jsonl").read_text().splitlines()]
GOOD_TRADE: Final = frames("binance", "agg_trade")[0]


def _binary_cases() -> list[tuple[str, str, bytes]]:
    start = GOOD_TRADE.index(b'"s":"BTCUSDT"')
    return [
        ("invalid_utf8_in_symbol", "invalid_utf8", GOOD_TRADE.replace(b'"s":"BTCUSDT"', b'"s":"BTC\xffUSDT"')),
        ("invalid_utf8_in_ignored_field", "invalid_utf8", GOOD_TRADE.replace(b'"M":true', b'"M":"\xc3\x28"')),
        ("overlong_utf8", "invalid_utf8", GOOD_TRADE[:start] + b'"x":"\xc0\xaf",' + GOOD_TRADE[start:]),
        ("frame_of_1_mib", "oversized_frame", GOOD_TRADE[:-2] + b',"pad":"' + b"x" * MAX_FRAME_BYTES + b'"}}'),
        ("deeply_nested", "nesting_too_deep", GOOD_TRADE[:-2] + b',"x":' + b"[" * 100_000 + b"]" * 100_000 + b"}}"),
        ("deeply_nested_reply", "nesting_too_deep", b'{"id":1,"x":' + b"[" * 100_000 + b"]" * 100_000 + b"}"),
    ]


def _all_cases() -> list[tuple[str, str, str, bytes]]:
    text = [(c["case"], c["exchange"], c["reason"], c["frame"].encode()) for c in HOSTILE]
    return text + [(case, "binance", reason, frame) for case, reason, frame in _binary_cases()]


_ADAPTERS: Final[dict[str, BinanceAdapter]] = {}


def _adapter(exchange: str) -> BinanceAdapter:
    if exchange not in _ADAPTERS:
        _ADAPTERS[exchange] = adapter(exchange)
    return _ADAPTERS[exchange]


def test_corpus_covers_every_stateless_reason() -> None:
    covered = {reason for _, _, reason, _ in _all_cases()}
    not_in_corpus = {Reason.VENUE_ERROR, Reason.PARSER_ERROR}  # REST-only, and our own bug
    assert {reason.value for reason in Reason} - not_in_corpus == covered


@pytest.mark.parametrize(("case", "exchange", "reason", "frame"), _all_cases(), ids=[c[0] for c in _all_cases()])
def test_hostile_frame_is_quarantined_with_its_reason(case: str, exchange: str, reason: str, frame: bytes) -> None:
    result = _adapter(exchange).parse(frame, RECV_NS)
    assert (result.events, result.depth, result.control) == ((), (), None), case
    assert len(result.quarantined) == 1
    quarantine = result.quarantined[0]
    assert (quarantine.reason, quarantine.exchange) == (reason, exchange), quarantine.detail
    assert quarantine.raw == frame[:QUARANTINE_RAW_LIMIT_BYTES]
    assert quarantine.raw_size_bytes == len(frame)
    assert quarantine.ts_recv_ns == RECV_NS
    assert quarantine.detail


def test_quarantine_names_channel_and_symbol_when_known() -> None:
    by_case = {c["case"]: c["frame"].encode() for c in HOSTILE}
    venue = _adapter("binance")
    [negative] = venue.parse(by_case["size_negative"], RECV_NS).quarantined
    assert (negative.data_type, negative.symbol) == (DataType.TRADES, "BTC-USDT")
    assert "q" in negative.detail
    [unknown] = venue.parse(by_case["unknown_symbol"], RECV_NS).quarantined
    assert (unknown.data_type, unknown.symbol) == (DataType.TRADES, None)  # the venue spelling stays in raw
    [garbage] = venue.parse(by_case["not_json"], RECV_NS).quarantined
    assert (garbage.data_type, garbage.symbol) == (None, None)


def test_good_frames_in_a_hostile_batch_still_parse() -> None:
    venue = _adapter("binance")
    good = [line for name in ("agg_trade", "kline_1m", "book_ticker", "depth") for line in frames("binance", name)]
    bad = [frame for _, exchange, _, frame in _all_cases() if exchange == "binance"]
    batch = [frame for pair in zip(good * 4, bad, strict=False) for frame in pair] + good
    results = [venue.parse(frame, RECV_NS) for frame in batch]
    quarantined = [q for r in results for q in r.quarantined]
    parsed = [r for r in results if not r.quarantined]
    assert len(quarantined) == min(len(good) * 4, len(bad))
    assert parsed == [venue.parse(frame, RECV_NS) for frame in batch if frame in good]
    assert all(r.events or r.depth for r in parsed)


def test_extra_fields_are_accepted() -> None:
    """Binance adds fields over time (``nq`` on USD-M aggTrade); a new field must not stop the feed."""
    venue = _adapter("binance")
    extended = GOOD_TRADE[:-2] + b',"newField":{"nested":[1,2,3]},"X":"MARKET"}}'
    assert venue.parse(extended, RECV_NS) == venue.parse(GOOD_TRADE, RECV_NS)


def test_str_frames_parse_and_lone_surrogates_are_invalid_utf8() -> None:
    venue = _adapter("binance")
    assert venue.parse(GOOD_TRADE.decode(), RECV_NS) == venue.parse(GOOD_TRADE, RECV_NS)
    [quarantine] = venue.parse(GOOD_TRADE.decode().replace("BTCUSDT", "BTC\udcffUSDT"), RECV_NS).quarantined
    assert quarantine.reason == "invalid_utf8"


def test_duplicates_and_reordering_pass_through_for_downstream_dedup() -> None:
    venue = _adapter("binance")
    lines = frames("binance", "agg_trade")
    replayed = [lines[1], lines[0], lines[1]]  # out of order, then a duplicate trade id
    trades = [e for frame in replayed for e in venue.parse(frame, RECV_NS).events]
    assert [t.trade_id for t in trades if isinstance(t, Trade)] == ["3400000002", "3400000001", "3400000002"]


def test_future_tolerance_is_configurable() -> None:
    strict = type(_adapter("binance"))(_adapter("binance").registry, future_tolerance_ns=0)
    by_case = {c["case"]: c["frame"].encode() for c in HOSTILE}
    frame = by_case["trade_time_in_future"].replace(b'"T":1767226030000', b'"T":1767226020001')
    assert [q.reason for q in strict.parse(frame, RECV_NS).quarantined] == ["future_timestamp"]
    assert _adapter("binance").parse(frame, RECV_NS).events  # within the default 5 s


def test_parse_result_of_a_bad_frame_is_one_quarantine() -> None:
    result = _adapter("binance").parse(b"\x00\x01", RECV_NS)
    assert isinstance(result, ParseResult)
    assert [q.reason for q in result.quarantined] == ["malformed_json"]


def test_recorded_files_exist() -> None:
    assert Path(DATA / "binance" / "hostile.jsonl").stat().st_size > 0
