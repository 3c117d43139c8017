"""Per-client-IP token buckets in this process (api.md §4.3)."""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable

from callfs_core.ports import RateLimitPort
from callfs_core.ratelimit import take_token

__all__ = ["IDLE_EXPIRY", "MAX_TRACKED", "InMemoryRateLimiter"]

IDLE_EXPIRY = 600.0
MAX_TRACKED = 100_000
EVICT_BATCH = 1_000


class InMemoryRateLimiter:
    """Token bucket per key: capacity ``burst``, refilled at ``rate`` per second.

    ``rate`` 0 disables the limiter. At most ``max_tracked`` keys are kept:
    when full, idle keys are dropped, else the 1,000 least recently seen.
    """

    def __init__(
        self,
        rate: float,
        burst: int,
        *,
        clock: Callable[[], float] = time.monotonic,
        max_tracked: int = MAX_TRACKED,
    ) -> None:
        self.rate = rate
        self.burst = burst
        self._clock = clock
        self._max = max_tracked
        # key -> (tokens, last refill); ordered by last use (least recent first).
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()

    async def acquire(self, key: str) -> float | None:
        return self.acquire_now(key)

    def acquire_now(self, key: str) -> float | None:
        if self.rate <= 0:
            return None
        now = self._clock()
        tokens, last = self._buckets.pop(key, (float(self.burst), now))
        if len(self._buckets) >= self._max:
            self._evict(now)
        tokens, wait = take_token(tokens, last, now, rate=self.rate, burst=self.burst)
        self._buckets[key] = (tokens, now)
        return wait

    async def sweep(self) -> None:
        self._evict(self._clock(), only_expired=True)

    def _evict(self, now: float, *, only_expired: bool = False) -> None:
        expired = [k for k, (_, last) in self._buckets.items() if now - last > IDLE_EXPIRY]
        for key in expired:
            del self._buckets[key]
        if only_expired or expired:
            return
        for _ in range(min(EVICT_BATCH, len(self._buckets))):
            self._buckets.popitem(last=False)

    def __len__(self) -> int:
        return len(self._buckets)


_check: type[RateLimitPort] = InMemoryRateLimiter
