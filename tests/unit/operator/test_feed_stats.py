"""The status statistics, pure: rates from two samples, ages as short text, no rate from a reset counter; the
completeness column from the validator's per-symbol counts; and the tracker's rules for writing them."""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest
import redis
import yaml

from tickstrata.common.completeness import FIELD_UPDATED_NS, FIELD_WINDOW_SECS, BucketCounts
from tickstrata_operator.feed_stats import Reading, Sample, age_text, completeness_text, parse_sample, status_fields
from tickstrata_operator.resync import StatsTracker

CRD = Path(__file__).resolve().parents[3] / "charts" / "tickstrata" / "crds" / "exchangefeeds.tickstrata.io.yaml"

SEC = 1_000_000_000


def test_the_rate_is_the_difference_over_the_time_between_samples() -> None:
    previous, current = Sample(1_000, 5 * SEC, 10 * SEC), Sample(1_600, 11 * SEC, 12 * SEC)
    assert status_fields(previous, current, now_wall_ns=13 * SEC) == {"eventsPerSec": 300.0, "lastEventAge": "2s"}


def test_one_sample_gives_an_age_but_no_rate() -> None:
    assert status_fields(None, Sample(5, 1 * SEC, 1 * SEC), now_wall_ns=1 * SEC + 250_000_000) == {
        "lastEventAge": "250ms"
    }


def test_a_counter_that_went_back_gives_no_rate() -> None:  # Redis flushed or restarted without persistence
    assert "eventsPerSec" not in status_fields(Sample(1_000, None, 1 * SEC), Sample(10, None, 2 * SEC), now_wall_ns=0)


def test_nothing_published_yet_says_nothing() -> None:
    assert parse_sample([None, None], 0) is None
    assert status_fields(None, None, now_wall_ns=0) == {}
    assert parse_sample([b"12", b"34"], 5) == Sample(12, 34, 5)


@pytest.mark.parametrize(
    ("age_secs", "text"),
    [(0.0004, "0ms"), (0.85, "850ms"), (12, "12s"), (300, "5m"), (3 * 3600 + 5, "3h"), (2 * 86_400, "2d"), (-1, "0ms")],
)
def test_age_text(age_secs: float, text: str) -> None:
    assert age_text(int(age_secs * SEC)) == text


# ---- completeness -----------------------------------------------------------------------------------------------

YEAR_MINUTES = 525_600


def test_completeness_sums_the_feed_s_symbols_only() -> None:
    fields = {
        b"BTC-USDT": BucketCounts(present=YEAR_MINUTES - 1, missing=1).encode().encode(),
        b"ETH-USDT": BucketCounts(present=YEAR_MINUTES - 10, backfilled=5, exchange_empty=5, pending=60)
        .encode()
        .encode(),
        b"SOL-USDT": b"0,0,0,1000,0",  # another feed's symbol on the same exchange
        FIELD_WINDOW_SECS.encode(): b"31536000",
        FIELD_UPDATED_NS.encode(): b"1700000000000000000",
    }
    # One missing minute in two symbol-years (pending buckets are not classified yet): 1 - 1/1051200, rounded down.
    assert completeness_text(fields, ["BTC-USDT", "ETH-USDT"]) == "99.999904%"
    assert completeness_text(fields, ["BTC-USDT"]) == "99.999809%"
    assert completeness_text(fields, ["ETH-USDT"]) == "100.000000%"
    assert completeness_text(fields, ["SOL-USDT", "BTC-USDT"]) != completeness_text(fields, ["BTC-USDT"])
    assert completeness_text({"BTC-USDT": "0,0,0,0,9"}, ["BTC-USDT"]) == "100.000000%"  # all pending: none missing


def test_no_counts_yet_is_no_value_not_zero() -> None:
    assert completeness_text({}, ["BTC-USDT"]) is None
    assert completeness_text({b"SOL-USDT": b"1,0,0,0,0", FIELD_WINDOW_SECS.encode(): b"60"}, ["BTC-USDT"]) is None


@pytest.mark.parametrize("bad", [b"1,2,3", b"1,2,3,4,x", b"-1,0,0,0,0", b""])
def test_a_malformed_count_of_the_feed_is_an_error_another_s_is_not_read(bad: bytes) -> None:
    with pytest.raises(ValueError, match="five non-negative integers"):
        completeness_text({b"BTC-USDT": bad, b"ETH-USDT": b"1,0,0,0,0"}, ["BTC-USDT", "ETH-USDT"])
    assert completeness_text({b"BTC-USDT": bad, b"ETH-USDT": b"1,0,0,0,0"}, ["ETH-USDT"]) == "100.000000%"


def test_the_text_is_what_the_crd_and_its_printer_column_expect() -> None:
    crd = yaml.safe_load(CRD.read_text())
    (version,) = crd["spec"]["versions"]
    status = version["schema"]["openAPIV3Schema"]["properties"]["status"]["properties"]
    pattern = re.compile(status["completeness"]["pattern"])
    column = next(c for c in version["additionalPrinterColumns"] if c["name"] == "Completeness")
    assert (column["type"], column["jsonPath"]) == ("string", ".status.completeness")
    for counts in (BucketCounts(present=1), BucketCounts(missing=1), BucketCounts(present=2, missing=1)):
        text = completeness_text({"X-Y": counts.encode()}, ["X-Y"])
        assert text is not None
        assert pattern.fullmatch(text), text
    assert "99.999809%" in column["description"]


class FakeReader:
    def __init__(self) -> None:
        self.hashes: dict[str, Mapping[bytes, bytes] | redis.RedisError] = {}
        self.calls: list[tuple[list[str], list[str]]] = []
        self.routes: list[tuple[dict[str, Mapping[str, str]], int]] = []

    def read(self, feeds: Sequence[str], exchanges: Sequence[str], taken_ns: int) -> Reading:
        self.calls.append((list(feeds), list(exchanges)))
        return Reading(
            samples=dict.fromkeys(feeds),
            completeness={exchange: self.hashes.get(exchange, {}) for exchange in exchanges},
        )

    def write_routes(self, routes: Mapping[str, Mapping[str, str]], ttl_secs: int) -> None:
        self.routes.append((dict(routes), ttl_secs))

    def close(self) -> None:
        pass


class FakeKube:
    def __init__(self) -> None:
        self.patches: list[dict[str, Any]] = []

    def merge_patch(self, kind: str, namespace: str, name: str, patch: Mapping[str, Any], *, status: bool) -> None:
        assert (kind, status) == ("ExchangeFeed", True)
        self.patches.append(dict(patch["status"]))


def _feed(name: str, market: str, symbols: list[str], status: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "metadata": {"namespace": "md", "name": name},
        "spec": {"exchange": "binance", "market": market, "symbols": symbols},
        "status": status or {},
    }


def test_the_tracker_writes_completeness_keeps_it_on_malformed_counts_and_warns_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    reader, kube = FakeReader(), FakeKube()
    tracker = StatsTracker(reader)  # type: ignore[arg-type]  # the fake has the method used
    spot = _feed("spot", "spot", ["BTC-USDT", "ETH-USDT"])
    perp = _feed("perp", "usdm-futures", ["BTC-USDT-PERP"])

    def update(*feeds: dict[str, Any]) -> list[dict[str, Any]]:
        kube.patches.clear()
        asyncio.run(tracker.update(kube, list(feeds)))  # type: ignore[arg-type]
        return list(kube.patches)

    # Nothing counted yet: nothing written (the column stays empty, it does not say 0%).
    assert update(spot, perp) == []
    # Both exchanges' hashes in the same reading as the statistics: one round trip.
    assert reader.calls[-1] == (["md.spot", "md.perp"], ["binance", "binance-usdm"])
    reader.hashes["binance"] = {b"BTC-USDT": b"3,0,0,1,0", b"ETH-USDT": b"4,0,0,0,0"}
    assert update(spot, perp) == [{"completeness": "87.500000%"}]
    spot["status"] = {"completeness": "87.500000%"}
    assert update(spot, perp) == []  # unchanged: not written again
    # Malformed: warned once, the previous value kept (no write), and not warned again on the next pass.
    caplog.set_level(logging.WARNING, logger="tickstrata_operator.resync")
    reader.hashes["binance"] = {b"BTC-USDT": b"garbage", b"ETH-USDT": b"4,0,0,0,0"}
    assert update(spot, perp) == []
    assert update(spot, perp) == []
    warnings = [r for r in caplog.records if "completeness counts malformed" in r.getMessage()]
    assert len(warnings) == 1
    assert warnings[0].__dict__["feed"] == "md.spot"
    # The key is not even a hash: the same.
    reader.hashes["binance"] = redis.ResponseError("WRONGTYPE Operation against a key holding the wrong kind of value")
    assert update(spot, perp) == []
    # Healed: written again; the counts disappear (validator reset): the field is removed, not left stale.
    reader.hashes["binance"] = {b"BTC-USDT": b"8,0,0,0,0"}
    assert update(spot, perp) == [{"completeness": "100.000000%"}]
    spot["status"] = {"completeness": "100.000000%"}
    reader.hashes["binance"] = {}
    assert update(spot, perp) == [{"completeness": None}]
    assert len([r for r in caplog.records if "completeness counts malformed" in r.getMessage()]) == 1
