"""Per-client-IP token buckets (api.md §4.3)."""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from collections.abc import Callable

__all__ = ["RateLimiter"]

IDLE_EXPIRY = 600.0
MAX_TRACKED = 100_000
EVICT_BATCH = 1_000


class RateLimiter:
    """Token bucket per IP: capacity ``burst``, refilled at ``rate`` per second.

    ``rate`` 0 disables the limiter. State lives in this process.
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
        # ip -> (tokens, last refill); ordered by last use (LRU first).
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()

    def acquire(self, ip: str) -> float | None:
        """Take one token. Returns ``None`` when admitted, else seconds to wait (>= 1)."""
        if self.rate <= 0:
            return None
        now = self._clock()
        tokens, last = self._buckets.pop(ip, (float(self.burst), now))
        tokens = min(float(self.burst), tokens + (now - last) * self.rate)
        if len(self._buckets) >= self._max:
            self._evict(now)
        if tokens >= 1.0:
            self._buckets[ip] = (tokens - 1.0, now)
            return None
        self._buckets[ip] = (tokens, now)
        return max(1.0, math.ceil((1.0 - tokens) / self.rate))

    def sweep(self) -> None:
        """Forget IPs idle for more than 10 minutes."""
        self._evict(self._clock(), only_expired=True)

    def _evict(self, now: float, *, only_expired: bool = False) -> None:
        expired = [ip for ip, (_, last) in self._buckets.items() if now - last > IDLE_EXPIRY]
        for ip in expired:
            del self._buckets[ip]
        if only_expired or expired:
            return
        for _ in range(min(EVICT_BATCH, len(self._buckets))):
            self._buckets.popitem(last=False)

    def __len__(self) -> int:
        return len(self._buckets)
