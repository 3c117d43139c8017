from __future__ import annotations

import pytest

from callfs_core.ratelimit import take_token


@pytest.mark.parametrize(
    ("tokens", "elapsed", "rate", "burst", "left", "wait"),
    [
        (1.0, 0.0, 10, 5, 0.0, None),
        (0.0, 0.0, 10, 5, 0.0, 1.0),  # 0.1 s away: at least one whole second
        (0.0, 0.5, 1, 5, 0.5, 1.0),
        (0.0, 0.0, 0.25, 1, 0.0, 4.0),
        (0.0, 100.0, 1, 3, 2.0, None),  # capped at the burst
        (2.0, -5.0, 1, 3, 1.0, None),  # a clock going backwards adds nothing
    ],
)
def test_take_token(
    tokens: float, elapsed: float, rate: float, burst: int, left: float, wait: float | None
) -> None:
    got_left, got_wait = take_token(tokens, 100.0, 100.0 + elapsed, rate=rate, burst=burst)
    assert got_left == pytest.approx(left)
    assert got_wait == wait
