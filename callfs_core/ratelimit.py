"""Token-bucket arithmetic (api.md §4.3), pure: the limiters keep the state."""

from __future__ import annotations

import math

__all__ = ["take_token"]


def take_token(
    tokens: float, last: float, now: float, *, rate: float, burst: int
) -> tuple[float, float | None]:
    """Refill a bucket from ``last`` to ``now`` and try to take one token.

    Args:
        tokens: tokens in the bucket at ``last`` (a new bucket starts with ``burst``).
        last, now: seconds on one clock.
        rate: tokens added per second (> 0).
        burst: the bucket's capacity.

    Returns:
        The tokens left, and ``None`` when admitted or else the whole seconds
        (>= 1) until a token will be available.
    """
    elapsed = max(0.0, now - last)
    tokens = min(float(burst), tokens + elapsed * rate)
    if tokens >= 1.0:
        return tokens - 1.0, None
    return tokens, float(max(1, math.ceil((1.0 - tokens) / rate)))
