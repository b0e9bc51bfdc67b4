"""The quarantine byte budget: a token bucket on an injected clock, and what it does to records beyond it."""

from __future__ import annotations

import pytest

from tickstrata.collector.quarantine_budget import RECORD_OVERHEAD_BYTES, QuarantineBudget, TokenBucket
from tickstrata.common.events import QUARANTINE_RAW_LIMIT_BYTES, Quarantine


class FakeClock:
    def __init__(self, now: float = 100.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def quarantine(raw: bytes, reason: str = "malformed_json", detail: str = "x") -> Quarantine:
    return Quarantine.capture(raw, exchange="binance", reason=reason, detail=detail, ts_recv_ns=1)


def test_bucket_starts_full_refills_at_its_rate_and_never_past_capacity() -> None:
    clock = FakeClock()
    bucket = TokenBucket(100.0, 250.0, clock)
    assert bucket.take(250)
    assert not bucket.take(1)  # empty: nothing taken, nothing owed
    clock.now += 0.5
    assert bucket.available == pytest.approx(50.0)
    assert not bucket.take(60)
    assert bucket.take(50)
    clock.now += 3600
    assert bucket.available == pytest.approx(250.0)
    clock.now -= 10  # a clock stepping back does not drain the bucket
    assert bucket.available == pytest.approx(250.0)


def test_bucket_refuses_nonsense_rates() -> None:
    with pytest.raises(ValueError, match="positive"):
        TokenBucket(0, 10, FakeClock())


def test_within_budget_every_record_passes_whole() -> None:
    clock = FakeClock()
    budget = QuarantineBudget(1024 * 1024, clock=clock)
    record = quarantine(b"z" * QUARANTINE_RAW_LIMIT_BYTES)
    for _ in range(10):  # 10 x ~64 KiB per second, within 1 MiB/s
        admission = budget.admit(record)
        assert admission.quarantine is record
        assert admission.cut_bytes == 0
        clock.now += 0.1
    assert (budget.dropped_total, budget.cut_bytes_total) == (0, 0)
    assert budget.take_report() is None


def test_a_flood_is_cut_first_then_dropped_and_stays_within_the_byte_rate() -> None:
    clock = FakeClock()
    rate = 128 * 1024
    budget = QuarantineBudget(rate, clock=clock)
    record = quarantine(b"g" * QUARANTINE_RAW_LIMIT_BYTES, detail="1048576 bytes, limit 1048575")
    published: list[Quarantine] = []
    seconds, per_second = 20, 20
    for _ in range(seconds * per_second):
        admission = budget.admit(record)
        if admission.quarantine is not None:
            published.append(admission.quarantine)
            # A cut record keeps its reason, detail and the full size: the loss is visible in the record itself.
            assert admission.quarantine.reason == record.reason
            assert admission.quarantine.raw_size_bytes == QUARANTINE_RAW_LIMIT_BYTES
        clock.now += 1 / per_second
    charged = sum(QuarantineBudget.cost(q) for q in published)
    capacity = max(rate, QUARANTINE_RAW_LIMIT_BYTES + 2 * RECORD_OVERHEAD_BYTES)  # the burst: a second, or a record
    assert charged <= rate * seconds + capacity
    assert charged >= rate * seconds * 0.9  # the budget is used, not wasted
    assert any(len(q.raw) < len(record.raw) for q in published)
    unbudgeted = seconds * per_second * QuarantineBudget.cost(record)
    assert budget.cut_bytes_total >= unbudgeted - charged - capacity
    assert budget.cut_bytes_total > 0


def test_records_that_do_not_fit_even_bare_are_dropped_and_reported_once_per_interval() -> None:
    clock = FakeClock()
    budget = QuarantineBudget(1024, clock=clock, report_interval_secs=10)  # capacity: one maximal record
    big = quarantine(b"b" * QUARANTINE_RAW_LIMIT_BYTES)
    assert budget.admit(big).quarantine is big  # the full bucket admits one maximal record whole
    tiny = [quarantine(b"t", reason="empty_message") for _ in range(50)]
    outcomes = [budget.admit(record) for record in tiny]
    assert all(outcome.dropped for outcome in outcomes)
    assert budget.dropped_total == 50
    assert budget.take_report() is None  # not before the interval: a flood logs once per interval
    clock.now += 10
    report = budget.take_report()
    assert report is not None
    assert report.dropped_by_reason == {"empty_message": 50}
    assert report.cut_bytes == 50
    assert budget.take_report() is None  # reported once; nothing new since
    clock.now += 10
    assert budget.take_report() is None


def test_the_bucket_refills_so_quarantine_resumes_after_a_flood() -> None:
    clock = FakeClock()
    budget = QuarantineBudget(64 * 1024, clock=clock)
    record = quarantine(b"r" * 1000)
    while not budget.admit(record).dropped:
        pass
    clock.now += 1.0
    assert budget.admit(record).quarantine is record
