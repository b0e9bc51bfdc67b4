"""The live view of `tickstrata up`: rates, freshness, consumer-group lag, losses, stored rows, gaps, Redis memory —
computed from samples, no servers."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from tickstrata.cli.up_view import FeedSample, GroupLag, LiveView, RedisMemory, Sample, render
from tickstrata.common.completeness import BucketCounts

T0_NS = 1_767_225_600_000_000_000
T0_MS = T0_NS // 1_000_000
MEMORY = RedisMemory(used_bytes=300 << 20, max_bytes=1 << 30)
WRITER = (GroupLag("writer", 3, 0, T0_MS),)


def _sample(
    at_secs: float,
    trades_total: int,
    *,
    newest_ms_ago: float = 40.0,
    groups: tuple[GroupLag, ...] = WRITER,
    losses: dict[tuple[str, str], int] | None = None,
    memory: RedisMemory | None = MEMORY,
) -> Sample:
    at_ns = T0_NS + int(at_secs * 1e9)
    return Sample(
        at_ns=at_ns,
        feeds=(
            FeedSample("binance", "trades", trades_total, at_ns - int(newest_ms_ago * 1e6), groups),
            FeedSample("binance-usdm", "funding", 0, None),
        ),
        gaps_by_exchange={"binance-usdm": 2, "binance": 1},
        quarantined=1234,
        stored_rows={"trades": 1_500_000, "books": None},
        stream_losses=losses or {},
        redis_memory=memory,
    )


def _rows(lines: list[str]) -> list[list[str]]:
    return [line.split() for line in lines]


def test_rates_come_from_the_difference_between_two_samples() -> None:
    lines = render(_sample(12.0, 11_000), _sample(10.0, 1_000))
    [trades] = [line for line in lines if line.startswith("binance ") and "trades" in line]
    # writer: 3 pending, none behind, the oldest pending since T0, 12 s before this sample.
    assert trades.split() == ["binance", "trades", "5,000", "40", "ms", "0", "3", "0", "12", "s", "writer"]


def test_first_sample_has_no_rate_and_unknowns_show_as_dashes() -> None:
    lines = render(_sample(0.0, 500), None)
    [funding] = [line for line in lines if "funding" in line]
    assert funding.split() == ["binance-usdm", "funding", "—", "—", "0", "—", "—", "—", "no", "group"]
    [trades] = [line for line in lines if "trades" in line and line.startswith("binance ")]
    assert trades.split()[2] == "—"


def test_old_data_is_shown_in_seconds_and_totals_are_listed() -> None:
    lines = render(_sample(5.0, 10, newest_ms_ago=125_000.0), _sample(4.0, 10))
    assert any("125 s" in line for line in lines)
    assert "stored in QuestDB: trades 1,500,000, books ?" in lines
    assert "gaps: binance 1, binance-usdm 2; quarantined: 1,234" in lines


def test_a_counter_that_went_backwards_never_gives_a_negative_rate() -> None:
    lines = render(_sample(2.0, 0), _sample(1.0, 900))
    [trades] = [line for line in lines if line.startswith("binance ") and "trades" in line]
    assert trades.split()[2] == "0"


class _Sampler:
    def __init__(self, samples: list[Sample]) -> None:
        self.samples = samples

    def sample(self) -> Sample:
        return self.samples.pop(0)


def test_on_a_terminal_the_view_redraws_over_itself() -> None:
    printed: list[str] = []

    def write(text: str, **_: Any) -> None:
        printed.append(text)

    view = LiveView(_Sampler([_sample(0, 0), _sample(2, 10_000)]), tty=True, write=write)  # type: ignore[arg-type]
    first = view.draw()
    view.draw()
    assert not printed[0].startswith("\x1b[")
    assert printed[1].startswith(f"\x1b[{len(first)}F\x1b[J")


def test_off_a_terminal_each_line_is_stamped_and_nothing_is_redrawn() -> None:
    printed: list[str] = []

    def write(text: str, **_: Any) -> None:
        printed.append(text)

    view = LiveView(_Sampler([_sample(0, 0), _sample(5, 10_000)]), tty=False, write=write)  # type: ignore[arg-type]
    view.draw()
    view.draw()
    assert "\x1b" not in "".join(printed)
    assert all(line.startswith("[up ") for line in printed[1].splitlines())
    assert "2,000" in printed[1]


def test_a_redraw_within_a_second_keeps_the_older_rate_base() -> None:
    printed: list[str] = []

    def write(text: str, **_: Any) -> None:
        printed.append(text)

    samples = [_sample(0, 0), _sample(5, 10_000), _sample(5.2, 10_100)]
    view = LiveView(_Sampler(samples), tty=False, write=write)  # type: ignore[arg-type]
    view.draw()
    view.draw()
    view.draw()
    # Against the sample at 5 s the rate would be 500/s over 0.2 s; against the one at 0 s it is 10,100/5.2 s.
    assert "1,942" in printed[2]


def test_each_group_of_a_stream_gets_its_pending_behind_and_oldest_pending_age() -> None:
    groups = (
        GroupLag("writer", 1_234_567, 12_345_678, T0_MS - 3_600_000),
        GroupLag("validator", 0, 42, None),
    )
    lines = render(_sample(0.0, 0, groups=groups), None)
    header = lines[0].split()
    assert header == ["exchange", "feed", "events/s", "freshness", "losses", "pending", "behind", "oldest", "group"]
    start = next(i for i, line in enumerate(lines) if line.startswith("binance ") and "trades" in line)
    # Groups in name order; the second continues below the stream's row without repeating the stream's cells.
    assert lines[start].split()[6:] == ["0", "42", "—", "validator"]
    assert lines[start + 1].split() == ["1,234,567", "12,345,678", "60", "min", "writer"]
    assert lines[start + 1].index("writer") == lines[0].index("group")
    assert lines[start + 1].index("12,345,678") + len("12,345,678") == lines[0].index("behind") + len("behind")


def test_behind_unknown_to_redis_shows_as_a_dash_not_zero() -> None:
    lines = render(_sample(0.0, 0, groups=(GroupLag("writer", 0, None, None),)), None)
    [trades] = [line for line in lines if line.startswith("binance ") and "trades" in line]
    assert trades.split()[6:] == ["0", "—", "—", "writer"]


def test_stream_losses_are_shown_on_their_stream_only() -> None:
    lines = render(_sample(0.0, 0, losses={("binance", "trades"): 1_500}), None)
    [trades] = [line for line in lines if line.startswith("binance ") and "trades" in line]
    [funding] = [line for line in lines if "funding" in line]
    assert trades.split()[5] == "1,500"
    assert trades.index("1,500") + len("1,500") == lines[0].index("losses") + len("losses")  # right-aligned
    assert funding.split()[4] == "0"


def test_redis_memory_is_shown_against_maxmemory_and_an_unbounded_redis_is_called_out() -> None:
    assert "redis memory: 300.0 MiB of 1.0 GiB maxmemory (29%)" in render(_sample(0.0, 0), None)
    unbounded = render(_sample(0.0, 0, memory=RedisMemory(used_bytes=2048, max_bytes=0)), None)
    assert any(line.startswith("redis memory: 2.0 KiB, no maxmemory") for line in unbounded)
    assert "redis memory: ?" in render(_sample(0.0, 0, memory=None), None)


def test_the_view_fits_100_columns_with_large_figures() -> None:
    groups = (
        GroupLag("validator", 99_999_999, 99_999_999, T0_MS - 86_400_000),
        GroupLag("writer", 99_999_999, 99_999_999, T0_MS - 86_400_000),
    )
    previous = _sample(0.0, 0, groups=groups)
    current = _sample(1.0, 9_999_999, newest_ms_ago=86_400_000.0, groups=groups, losses={("binance", "trades"): 99_999})
    lines = render(current, previous)
    table = [line for line in lines if not line.startswith(("stored", "gaps", "redis"))]
    assert max(len(line) for line in table) <= 100, "\n".join(table)


def test_completeness_per_exchange_is_shown_with_its_counts_and_before_any_count_says_so() -> None:
    before = render(_sample(0, 0), None)
    assert any(line.startswith("completeness: not counted yet") for line in before)
    # Tracked, but no whole minute since the first event yet: nothing to show, not "100%" of nothing.
    started = render(replace(_sample(0, 0), completeness={"binance": BucketCounts()}), None)
    assert any(line.startswith("completeness: not counted yet") for line in started)
    counted = replace(
        _sample(0, 0),
        completeness={
            "binance-usdm": BucketCounts(present=10),
            "binance": BucketCounts(present=8, backfilled=1, exchange_empty=1, missing=1, pending=4),
        },
    )
    [line] = [line for line in render(counted, None) if line.startswith("completeness:")]
    assert line == (
        "completeness: binance 90.909090% (8 present, 1 backfilled, 1 empty, 1 missing, 4 pending); "
        "binance-usdm 100.000000% (10 present, 0 backfilled, 0 empty, 0 missing, 0 pending)"
    )
