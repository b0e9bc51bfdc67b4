"""Property: whatever bytes arrive, ``parse`` returns a ``ParseResult`` of valid items or quarantines; never raises.

Three generators: arbitrary bytes; recorded frames with one JSON value replaced, removed or added (the shape
attacks that reach the domain rules); recorded frames with bytes flipped, cut or inserted (the framing attacks).
Every produced event must also satisfy the domain rules the quarantine reasons promise, so a rule that silently
stopped firing would fail here too.
"""

from __future__ import annotations

import json
import os
from decimal import Decimal
from typing import Any, Final

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.unit.collector.test_binance_replay import RECV_NS, adapter, frames
from tickstrata.collector.validation import DEFAULT_FUTURE_TOLERANCE_NS, Reason
from tickstrata.collector.venues import BinanceAdapter, ControlMessage, DepthDiff, ParseResult
from tickstrata.common.events import Candle, Funding, Quarantine, Quote, Trade

VENUES: Final = {exchange: adapter(exchange) for exchange in ("binance", "binance-usdm")}
KINDS: Final = ("agg_trade", "kline_1m", "book_ticker", "depth", "control", "raw_frames", "mark_price")
GOOD: Final = [
    (exchange, line)
    for exchange in VENUES
    for kind in KINDS
    if kind != "mark_price" or exchange == "binance-usdm"
    if kind != "raw_frames" or exchange == "binance"
    for line in frames(exchange, kind)
]
REASONS: Final = {reason.value for reason in Reason} - {Reason.PARSER_ERROR.value}
LATEST_NS: Final = RECV_NS + DEFAULT_FUTURE_TOLERANCE_NS
# 1000 examples per generator keeps the unit run at seconds; reliability.md asks 10k per type for a release:
# TICKSTRATA_FUZZ_EXAMPLES=10000 pytest tests/unit/collector/test_binance_property.py
EXAMPLES: Final = int(os.environ.get("TICKSTRATA_FUZZ_EXAMPLES", "1000"))
PROPERTY: Final = settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])

json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=20),
    st.sampled_from(["nan", "NaN", "inf", "-Infinity", "1e400", "-1e400", "1e-400", "0", "-0", "0E-8", "", " 1 "]),
    st.decimals(allow_nan=True, allow_infinity=True).map(str),
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner, max_size=3),
    max_leaves=6,
)


def _check_event(event: object, exchange: str) -> None:
    if isinstance(event, Trade):
        assert event.exchange == exchange
        assert event.price > 0
        assert event.size > 0
        assert event.ts_event_ns <= LATEST_NS
    elif isinstance(event, Candle):
        assert 0 < event.low <= min(event.open, event.close) <= max(event.open, event.close) <= event.high
        assert event.volume >= 0
        assert event.ts_event_ns <= LATEST_NS
    elif isinstance(event, Quote):
        assert 0 < event.bid_price < event.ask_price
        assert event.bid_size >= 0
        assert event.ask_size >= 0
    elif isinstance(event, Funding):
        assert event.mark_price is not None
        assert event.mark_price > 0
        assert event.rate.is_finite()
    else:
        raise AssertionError(f"unexpected event {event!r}")


def _check(result: ParseResult, exchange: str) -> None:
    assert isinstance(result, ParseResult)
    filled = [bool(result.events), bool(result.depth), result.control is not None, bool(result.quarantined)]
    assert sum(filled) == 1, result
    for event in result.events:
        _check_event(event, exchange)
    for diff in result.depth:
        assert isinstance(diff, DepthDiff)
        assert diff.first_update_id <= diff.final_update_id
        assert all(price > 0 and size >= 0 for price, size in diff.bids + diff.asks)
    if result.control is not None:
        assert isinstance(result.control, ControlMessage)
    for quarantine in result.quarantined:
        assert isinstance(quarantine, Quarantine)
        assert quarantine.reason in REASONS, (quarantine.reason, quarantine.detail)
        assert quarantine.exchange == exchange


def _parse(venue: BinanceAdapter, raw: bytes | str) -> ParseResult:
    result = venue.parse(raw, RECV_NS)
    _check(result, venue.exchange)
    return result


@PROPERTY
@given(raw=st.binary(max_size=512), exchange=st.sampled_from(list(VENUES)))
def test_any_bytes(raw: bytes, exchange: str) -> None:
    _parse(VENUES[exchange], raw)


@PROPERTY
@given(raw=st.text(max_size=256), exchange=st.sampled_from(list(VENUES)))
def test_any_text(raw: str, exchange: str) -> None:
    _parse(VENUES[exchange], raw)


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [prefix]
    if isinstance(value, dict):
        for key, child in value.items():
            found += _paths(child, (*prefix, key))
    elif isinstance(value, list):
        for index, child in enumerate(value):
            found += _paths(child, (*prefix, index))
    return found


@PROPERTY
@given(data=st.data(), good=st.sampled_from(GOOD), replacement=json_values, mode=st.sampled_from(["set", "del", "add"]))
def test_mutated_json_frames(data: st.DataObject, good: tuple[str, bytes], replacement: Any, mode: str) -> None:
    exchange, line = good
    document = json.loads(line, parse_float=Decimal)
    path = data.draw(st.sampled_from(_paths(document)[1:]))
    parent = document
    for step in path[:-1]:
        parent = parent[step]
    if mode == "del":
        del parent[path[-1]]
    elif mode == "add" and isinstance(parent, dict):
        parent["new_" + str(path[-1])] = replacement
    else:
        parent[path[-1]] = replacement
    raw = json.dumps(document, default=str).encode()
    _parse(VENUES[exchange], raw)


@PROPERTY
@given(
    good=st.sampled_from(GOOD),
    edits=st.lists(st.tuples(st.integers(min_value=0), st.binary(max_size=4), st.integers(0, 4)), max_size=4),
)
def test_byte_mutations(good: tuple[str, bytes], edits: list[tuple[int, bytes, int]]) -> None:
    exchange, raw = good
    for position, insert, remove in edits:
        at = position % (len(raw) + 1)
        raw = raw[:at] + insert + raw[at + remove :]
    _parse(VENUES[exchange], raw)


EDGE_VALUES: Final[list[object]] = [
    None, True, False, 0, -1, 1.5, 2**63, -(2**63) - 1, 10**30, "", "x", "nan", "-Infinity", "1e400", "1e-400", "0",
    "-0.00000001", "0E-8", "99999999999999999999", "1_000", " 7 ", [], {}, [["1", "1", "1"]], [["-1", "1"]],
]  # fmt: skip


def _leaves(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    return [path for path in _paths(value, prefix) if path and not isinstance(_at(value, path), dict | list)]


def _at(document: Any, path: tuple[Any, ...]) -> Any:
    for step in path:
        document = document[step]
    return document


def test_every_leaf_with_every_edge_value() -> None:
    """Exhaustive companion of the random mutations: each value of each recorded frame, replaced by each edge
    value (and negated where numeric), gives a valid item or a quarantine; a rule that stopped firing shows up."""
    parsed = 0
    for exchange, line in GOOD:
        document = json.loads(line)
        for path in _leaves(document):
            original = _at(document, path)
            variants = [*EDGE_VALUES, f"-{original}"] if isinstance(original, str) else EDGE_VALUES
            for value in variants:
                _at(document, path[:-1])[path[-1]] = value
                _parse(VENUES[exchange], json.dumps(document).encode())
                parsed += 1
            _at(document, path[:-1])[path[-1]] = original
    assert parsed > 10_000


def test_good_frames_satisfy_the_same_checks() -> None:
    for exchange, line in GOOD:
        assert not _parse(VENUES[exchange], line).quarantined
