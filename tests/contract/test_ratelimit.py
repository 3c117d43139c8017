"""Both rate limiters (in-process and shared SQLite) admit the same way."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from callfs_adapters.memory_ratelimit import InMemoryRateLimiter
from callfs_adapters.sqlite_ratelimit import SqliteRateLimiter
from callfs_core.ports import RateLimitPort

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(params=["memory", "sqlite"])
def make(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[object]:
    made: list[SqliteRateLimiter] = []

    def factory(rate: float, burst: int, name: str = "download") -> RateLimitPort:
        if request.param == "memory":
            return InMemoryRateLimiter(rate, burst)
        limiter = SqliteRateLimiter(str(tmp_path / "rl.sqlite3"), name, rate, burst)
        made.append(limiter)
        return limiter

    yield factory
    for limiter in made:
        limiter.close()


async def test_burst_then_wait(make: object) -> None:
    limiter = make(0.5, 2)  # type: ignore[operator]
    assert await limiter.acquire("1.1.1.1") is None
    assert await limiter.acquire("1.1.1.1") is None
    wait = await limiter.acquire("1.1.1.1")
    assert wait is not None and wait >= 1
    assert await limiter.acquire("2.2.2.2") is None  # per key


async def test_zero_rate_disables(make: object) -> None:
    limiter = make(0, 1)  # type: ignore[operator]
    for _ in range(50):
        assert await limiter.acquire("1.1.1.1") is None


async def test_sweep_keeps_active_keys(make: object) -> None:
    limiter = make(0.5, 1)  # type: ignore[operator]
    assert await limiter.acquire("k") is None
    await limiter.sweep()
    assert await limiter.acquire("k") is not None  # the bucket was not forgotten


async def test_limiters_sharing_a_file_are_independent(tmp_path: Path) -> None:
    path = str(tmp_path / "rl.sqlite3")
    a = SqliteRateLimiter(path, "generate", 0.5, 1)
    b = SqliteRateLimiter(path, "download", 0.5, 1)
    a2 = SqliteRateLimiter(path, "generate", 0.5, 1)  # another worker, same limiter
    try:
        assert await a.acquire("ip") is None
        assert await b.acquire("ip") is None
        assert await a2.acquire("ip") is not None  # shared state across connections
    finally:
        for limiter in (a, b, a2):
            limiter.close()


async def test_memory_limiter_bounds_tracked_keys() -> None:
    limiter = InMemoryRateLimiter(1, 1, max_tracked=10)
    for number in range(25):
        await limiter.acquire(f"ip{number}")
    assert len(limiter) <= 10
