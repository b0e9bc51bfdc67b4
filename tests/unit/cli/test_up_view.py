"""The live view of `tickstrata up`: rates, freshness, lag, stored rows, gaps — computed from samples, no servers."""

from __future__ import annotations

from typing import Any

from tickstrata.cli.up_view import FeedSample, LiveView, Sample, render

T0_NS = 1_767_225_600_000_000_000


def _sample(at_secs: float, trades_total: int, *, newest_ms_ago: float = 40.0, lag: int | None = 3) -> Sample:
    at_ns = T0_NS + int(at_secs * 1e9)
    return Sample(
        at_ns=at_ns,
        feeds=(
            FeedSample("binance", "trades", trades_total, at_ns - int(newest_ms_ago * 1e6), lag),
            FeedSample("binance-usdm", "funding", 0, None, None),
        ),
        gaps_by_exchange={"binance-usdm": 2, "binance": 1},
        quarantined=1234,
        stored_rows={"trades": 1_500_000, "books": None},
    )


def test_rates_come_from_the_difference_between_two_samples() -> None:
    lines = render(_sample(12.0, 11_000), _sample(10.0, 1_000))
    [trades] = [line for line in lines if line.startswith("binance ") and "trades" in line]
    assert trades.split() == ["binance", "trades", "5,000", "40", "ms", "3"]


def test_first_sample_has_no_rate_and_unknowns_show_as_dashes() -> None:
    lines = render(_sample(0.0, 500), None)
    [funding] = [line for line in lines if "funding" in line]
    assert funding.split() == ["binance-usdm", "funding", "—", "—", "—"]
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
