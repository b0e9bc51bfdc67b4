import random

import pytest

from tickstrata.common.backoff import Backoff, backoff_delay_secs


def test_delays_double_up_to_the_cap_and_never_drop_below_half_a_step() -> None:
    backoff = Backoff(0.1, 1.0, rng=random.Random(7))
    steps = [0.1, 0.2, 0.4, 0.8, 1.0, 1.0, 1.0]
    for step in steps:
        assert step / 2 <= backoff.next_delay_secs() <= step


def test_reset_starts_again_from_the_initial_step() -> None:
    backoff = Backoff(0.1, 5.0, rng=random.Random(1))
    for _ in range(10):
        backoff.next_delay_secs()
    backoff.reset()
    assert backoff.next_delay_secs() <= 0.1


def test_huge_attempt_numbers_stay_at_the_cap() -> None:
    assert 2.5 <= backoff_delay_secs(10**9, initial_secs=0.1, max_secs=5.0, rng=random.Random(3)) <= 5.0


def test_jitter_spreads_retries() -> None:
    rng = random.Random(11)
    delays = {round(backoff_delay_secs(3, initial_secs=0.1, max_secs=5.0, rng=rng), 6) for _ in range(20)}
    assert len(delays) > 10


@pytest.mark.parametrize(("initial", "maximum"), [(0.0, 1.0), (2.0, 1.0), (-1.0, 1.0)])
def test_a_nonsense_schedule_is_refused(initial: float, maximum: float) -> None:
    with pytest.raises(ValueError, match="initial_secs"):
        Backoff(initial, maximum)
