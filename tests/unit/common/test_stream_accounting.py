"""The pure side of the stream contract: trim points, lag age, undelivered losses and their gap windows."""

from __future__ import annotations

import pytest

from tickstrata.common.events import DataType, GapKind
from tickstrata.common.stream_accounting import (
    DEFAULT_LOSS_LOOKBACK_NS,
    DEFAULT_LOSS_SKEW_NS,
    GroupState,
    StreamState,
    format_id,
    just_before,
    loss_gap,
    oldest_pending_age_ms,
    parse_id,
    trim_point,
    undelivered_loss,
)


def group(last: tuple[int, int], *, pending: int = 0, oldest: tuple[int, int] | None = None) -> GroupState:
    return GroupState("writer", last, pending, oldest, behind=0)


def test_ids_parse_and_format_round_trip() -> None:
    assert parse_id(b"1717000000000-3") == (1717000000000, 3)
    assert parse_id("42") == (42, 0)
    assert format_id(parse_id("5-7")) == "5-7"


def test_trim_point_is_the_oldest_entry_any_group_still_needs() -> None:
    writer = group((100, 0), pending=2, oldest=(90, 1))
    validator = group((95, 0))
    assert trim_point([writer, validator]) == (90, 1)
    assert trim_point([group((100, 0)), group((80, 5))]) == (80, 5)


def test_no_group_means_no_trim() -> None:
    assert trim_point([]) is None


def test_oldest_pending_age_uses_the_ids_clock() -> None:
    now_ns = 10_000 * 1_000_000
    assert oldest_pending_age_ms(group((9_000, 0), pending=1, oldest=(7_500, 0)), now_ns) == 2_500
    assert oldest_pending_age_ms(group((9_000, 0)), now_ns) == 0
    assert oldest_pending_age_ms(group((9_000, 0), pending=1, oldest=(20_000, 0)), now_ns) == 0  # clock behind


def stream(
    *, first: tuple[int, int] | None, added: int, length: int, max_deleted: tuple[int, int] = (0, 0)
) -> StreamState:
    return StreamState(
        length=length, first_entry=first, last_generated=(9999, 0), max_deleted=max_deleted, entries_added=added
    )


def test_our_own_trims_below_the_last_delivered_id_are_no_loss() -> None:
    # 100 added, the group read 60 (cursor at 60-0); a MINID trim removed the first 49.
    state = stream(first=(50, 0), added=100, length=51)
    assert undelivered_loss(state, group((60, 0)), entries_read=60) is None


def test_a_stream_starting_past_the_cursor_with_nothing_missing_is_no_loss() -> None:
    # The group read everything up to 60-0; the stream was trimmed to exactly the 40 entries after it.
    state = stream(first=(61, 0), added=100, length=40)
    assert undelivered_loss(state, group((60, 0)), entries_read=60) is None


def test_a_head_trim_past_the_group_is_a_skippable_loss_with_its_exact_count() -> None:
    # 5,000 added; the group read 10; MAXLEN left the newest 1,000: 3,990 were never delivered.
    state = stream(first=(4001, 0), added=5000, length=1000)
    loss = undelivered_loss(state, group((10, 0)), entries_read=10)
    assert loss is not None
    assert (loss.after, loss.through, loss.skippable, loss.entries) == ((10, 0), (4000, 2**64 - 1), True, 3990)


def test_a_stream_trimmed_empty_loses_everything_the_group_had_not_read() -> None:
    state = stream(first=None, added=20, length=0)
    loss = undelivered_loss(state, group((5, 0)), entries_read=5)
    assert loss is not None
    assert (loss.through, loss.entries) == ((9999, 0), 15)


def test_an_xdel_in_the_middle_is_a_loss_that_cannot_be_skipped() -> None:
    state = stream(first=(5, 0), max_deleted=(30, 0), added=100, length=99)
    loss = undelivered_loss(state, group((10, 0)), entries_read=10)
    assert loss is not None
    assert (loss.skippable, loss.entries) == (False, None)


def test_just_before_steps_back_one_id() -> None:
    assert just_before((7, 3)) == (7, 2)
    assert just_before((7, 0)) == (6, 2**64 - 1)


def test_loss_gap_window_covers_events_queued_before_the_first_lost_id() -> None:
    gap = loss_gap("md:binance:trades", (1_000_000, 0), (1_000_500, 3), cause="deleted while pending", now_ns=7)
    assert gap is not None
    assert (gap.exchange, gap.data_type, gap.symbol, gap.kind) == (
        "binance",
        DataType.TRADES,
        None,
        GapKind.STREAM_LOSS,
    )
    assert gap.start_ns == 1_000_000 * 1_000_000 - DEFAULT_LOSS_LOOKBACK_NS
    assert gap.end_ns == 1_000_500 * 1_000_000 + DEFAULT_LOSS_SKEW_NS + 1  # half-open: that millisecond is in
    assert "1000000-0..1000500-3" in gap.cause


@pytest.mark.parametrize("name", ["qa:gaps", "md:Evil:trades", "dlq:writer"])
def test_no_gap_for_a_stream_that_names_no_venue(name: str) -> None:
    assert loss_gap(name, (1, 0), (2, 0), cause="x", now_ns=0) is None


def test_a_counter_lost_over_a_redis_restart_is_not_read_as_a_loss() -> None:
    # After an AOF restart Redis 7.0 may report entries-read 0 for a group that had read everything.
    state = stream(first=(61, 0), added=100, length=40)
    assert undelivered_loss(state, group((60, 0)), entries_read=0) is None
    assert undelivered_loss(state, group((60, 0)), entries_read=None) is None


def test_an_emptied_stream_past_the_cursor_is_a_loss_even_without_counters() -> None:
    loss = undelivered_loss(stream(first=None, added=20, length=0), group((5, 0)), entries_read=None)
    assert loss is not None
    assert (loss.through, loss.skippable, loss.entries) == ((9999, 0), True, None)
