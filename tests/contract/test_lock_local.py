"""The in-process lock manager passes the LockPort contract, and keeps no garbage."""

from __future__ import annotations

import anyio
import pytest

from callfs_adapters.local_lock import LocalLockManager
from callfs_core.errors import LockTimeout
from callfs_core.testing import LockContract, SharedLockContract


class TestLocalLocks(LockContract, SharedLockContract):
    @pytest.fixture
    def locks(self) -> LocalLockManager:
        return LocalLockManager()


pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


async def test_held_count_and_no_growth() -> None:
    locks = LocalLockManager()
    assert locks.held_count == 0
    async with locks.hold("/a", "/b", "/a", timeout=1):
        assert locks.held_count == 2
        async with locks.hold("/c", timeout=1):
            assert locks.held_count == 3
    assert locks.held_count == 0
    for number in range(100):
        async with locks.hold(f"/f{number}", timeout=1):
            pass
    assert locks._entries == {}


async def test_no_growth_after_timeouts_and_cancellations() -> None:
    locks = LocalLockManager()
    taken = anyio.Event()
    release = anyio.Event()

    async def holder() -> None:
        async with locks.hold("/x", timeout=1):
            taken.set()
            await release.wait()

    async with anyio.create_task_group() as group:
        group.start_soon(holder)
        await taken.wait()
        for number in range(10):
            with pytest.raises(LockTimeout):
                async with locks.hold(f"/w{number}", "/x", timeout=0.001):
                    pass
            with anyio.move_on_after(0.001):
                async with locks.hold("/x", f"/y{number}", timeout=1):
                    pass
        assert locks.held_count == 1
        assert set(locks._entries) == {"/x"}
        release.set()
    assert locks.held_count == 0
    assert locks._entries == {}


async def test_zero_timeout_takes_a_free_lock() -> None:
    locks = LocalLockManager()
    outcomes: list[str] = []

    async def contender() -> None:
        try:
            async with locks.hold("/b", timeout=0):
                outcomes.append("obtained")
        except LockTimeout:
            outcomes.append("timeout")

    async with locks.hold("/a", "/b", timeout=0):
        assert locks.held_count == 2
        async with anyio.create_task_group() as group:
            group.start_soon(contender)
    assert outcomes == ["timeout"]
    async with anyio.create_task_group() as group:
        group.start_soon(contender)
    assert outcomes == ["timeout", "obtained"]
