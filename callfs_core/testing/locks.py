"""The ``LockPort`` contract suite.

Subclass :class:`LockContract` and override the ``locks`` fixture to yield a
ready lock manager. Lock names are unique per test run only if the service
is shared, so adapters backed by a shared service should prefix them (or use
a fresh namespace) in their fixture.
"""

from __future__ import annotations

import anyio
import pytest

from callfs_core.errors import LockTimeout
from callfs_core.ports import LockPort, SharedLockPort

__all__ = ["LockContract", "SharedLockContract"]

PATIENT = 10.0  # seconds: long enough never to expire in a passing test
BRIEF = 0.05  # seconds: a wait that is expected to time out


async def assert_free(locks: LockPort, *names: str) -> None:
    """The locks can be taken at once (from another task than any holder)."""
    async with locks.hold(*names, timeout=1.0):
        pass


class LockContract:
    """Tests every ``LockPort`` must pass. Override ``locks``."""

    pytestmark = pytest.mark.anyio

    @pytest.fixture
    def anyio_backend(self) -> str:
        return "asyncio"

    @pytest.fixture
    def locks(self) -> LockPort:
        raise NotImplementedError("override the `locks` fixture to yield a lock manager")

    async def test_mutual_exclusion(self, locks: LockPort) -> None:
        inside = 0
        most = 0
        entered = 0

        async def worker() -> None:
            nonlocal inside, most, entered
            async with locks.hold("/shared", timeout=PATIENT):
                inside += 1
                entered += 1
                most = max(most, inside)
                await anyio.sleep(0.002)
                inside -= 1

        async with anyio.create_task_group() as group:
            for _ in range(20):
                group.start_soon(worker)
        assert most == 1
        assert entered == 20
        await assert_free(locks, "/shared")

    async def test_timeout_raises_and_holds_nothing(self, locks: LockPort) -> None:
        taken = anyio.Event()
        release = anyio.Event()

        async def holder() -> None:
            async with locks.hold("/b", timeout=PATIENT):
                taken.set()
                await release.wait()

        async with anyio.create_task_group() as group:
            group.start_soon(holder)
            await taken.wait()
            with pytest.raises(LockTimeout):
                async with locks.hold("/b", timeout=BRIEF):
                    pytest.fail("obtained a lock held by another task")
            with pytest.raises(LockTimeout):
                async with locks.hold("/a", "/b", timeout=BRIEF):
                    pytest.fail("obtained a lock held by another task")
            # "/a" was taken before "/b" timed out; it must have been released.
            await assert_free(locks, "/a")
            release.set()
        await assert_free(locks, "/a", "/b")

    async def test_waiting_holder_gets_the_lock(self, locks: LockPort) -> None:
        order: list[str] = []
        taken = anyio.Event()

        async def first() -> None:
            async with locks.hold("/f", timeout=PATIENT):
                taken.set()
                await anyio.sleep(0.1)
                order.append("first")

        async def second() -> None:
            await taken.wait()
            async with locks.hold("/f", timeout=PATIENT):
                order.append("second")

        async with anyio.create_task_group() as group:
            group.start_soon(first)
            group.start_soon(second)
        assert order == ["first", "second"]

    async def test_overlapping_sets_in_any_order_do_not_deadlock(self, locks: LockPort) -> None:
        counts = {"ab": 0, "ba": 0, "bc": 0}

        async def worker(key: str, names: tuple[str, ...]) -> None:
            for _ in range(25):
                async with locks.hold(*names, timeout=PATIENT):
                    await anyio.lowlevel.checkpoint()
                    counts[key] += 1

        with anyio.fail_after(PATIENT):
            async with anyio.create_task_group() as group:
                group.start_soon(worker, "ab", ("/a", "/b"))
                group.start_soon(worker, "ba", ("/b", "/a"))
                group.start_soon(worker, "bc", ("/c", "/b"))
        assert counts == {"ab": 25, "ba": 25, "bc": 25}

    async def test_multiple_names_are_all_held(self, locks: LockPort) -> None:
        async def probe(name: str) -> None:
            with pytest.raises(LockTimeout):
                async with locks.hold(name, timeout=BRIEF):
                    pass

        async with locks.hold("/y", "/x", timeout=PATIENT), anyio.create_task_group() as group:
            group.start_soon(probe, "/x")
            group.start_soon(probe, "/y")
        await assert_free(locks, "/x", "/y")

    async def test_duplicate_names_and_no_names(self, locks: LockPort) -> None:
        async with locks.hold("/dup", "/dup", timeout=PATIENT):
            pass
        await assert_free(locks, "/dup")
        async with locks.hold(timeout=BRIEF):
            pass

    async def test_different_names_do_not_block(self, locks: LockPort) -> None:
        async with locks.hold("/one", timeout=PATIENT), anyio.create_task_group() as group:
            group.start_soon(assert_free, locks, "/two")
            group.start_soon(assert_free, locks, "/one/child")
            group.start_soon(assert_free, locks, "/one0")

    async def test_released_when_the_body_raises(self, locks: LockPort) -> None:
        with pytest.raises(ZeroDivisionError):
            async with locks.hold("/e", "/f", timeout=PATIENT):
                raise ZeroDivisionError
        await assert_free(locks, "/e", "/f")

    async def test_released_when_the_holder_is_cancelled(self, locks: LockPort) -> None:
        taken = anyio.Event()
        async with anyio.create_task_group() as group:

            async def holder() -> None:
                async with locks.hold("/c", "/d", timeout=PATIENT):
                    taken.set()
                    await anyio.sleep_forever()

            group.start_soon(holder)
            await taken.wait()
            group.cancel_scope.cancel()
        await assert_free(locks, "/c", "/d")

    async def test_cancelled_waiter_leaves_no_trace(self, locks: LockPort) -> None:
        taken = anyio.Event()
        release = anyio.Event()

        async def holder() -> None:
            async with locks.hold("/w", timeout=PATIENT):
                taken.set()
                await release.wait()

        async with anyio.create_task_group() as group:
            group.start_soon(holder)
            await taken.wait()
            with anyio.move_on_after(BRIEF) as scope:
                async with locks.hold("/v", "/w", timeout=PATIENT):
                    pytest.fail("obtained a lock held by another task")
            assert scope.cancelled_caught
            await assert_free(locks, "/v")
            release.set()
        await assert_free(locks, "/v", "/w")

    async def test_health(self, locks: LockPort) -> None:
        await locks.health()


class SharedLockContract:
    """Tests every ``SharedLockPort`` must pass (besides :class:`LockContract`).
    Override ``locks``."""

    pytestmark = pytest.mark.anyio

    @pytest.fixture
    def anyio_backend(self) -> str:
        return "asyncio"

    @pytest.fixture
    def locks(self) -> SharedLockPort:
        raise NotImplementedError("override the `locks` fixture to yield a lock manager")

    async def test_shared_holders_do_not_wait_for_each_other(self, locks: SharedLockPort) -> None:
        inside = 0
        most = 0

        async def reader() -> None:
            nonlocal inside, most
            async with locks.hold_shared("/f", timeout=BRIEF * 20):
                inside += 1
                most = max(most, inside)
                await anyio.sleep(0.05)
                inside -= 1

        async with anyio.create_task_group() as group:
            for _ in range(10):
                group.start_soon(reader)
        assert most == 10

    async def test_exclusive_and_shared_exclude_each_other(self, locks: SharedLockPort) -> None:
        log: list[str] = []

        async def writer(started: anyio.Event) -> None:
            async with locks.hold("/f", timeout=PATIENT):
                started.set()
                log.append("writer in")
                await anyio.sleep(0.05)
                log.append("writer out")

        async def reader() -> None:
            async with locks.hold_shared("/f", timeout=PATIENT):
                log.append("reader in")
                await anyio.sleep(0.05)
                log.append("reader out")

        async with anyio.create_task_group() as group:
            started = anyio.Event()
            group.start_soon(writer, started)
            await started.wait()
            group.start_soon(reader)
        assert log == ["writer in", "writer out", "reader in", "reader out"]

        log.clear()
        async with anyio.create_task_group() as group:
            group.start_soon(reader)
            await anyio.sleep(0.01)
            group.start_soon(writer, anyio.Event())
        assert log == ["reader in", "reader out", "writer in", "writer out"]

    async def test_timeouts_both_ways(self, locks: SharedLockPort) -> None:
        async def try_shared() -> None:
            with pytest.raises(LockTimeout):
                async with locks.hold_shared("/f", timeout=BRIEF):
                    pass  # pragma: no cover

        async def try_exclusive() -> None:
            with pytest.raises(LockTimeout):
                async with locks.hold("/f", timeout=BRIEF):
                    pass  # pragma: no cover

        async with locks.hold("/f", timeout=PATIENT), anyio.create_task_group() as group:
            group.start_soon(try_shared)
        shared = locks.hold_shared("/f", timeout=PATIENT)
        async with shared, anyio.create_task_group() as group:
            group.start_soon(try_exclusive)
        # Nothing is left held.
        async with locks.hold("/f", timeout=1.0), locks.hold("/g", timeout=1.0):
            pass

    async def test_cancelled_shared_holder_releases(self, locks: SharedLockPort) -> None:
        with anyio.move_on_after(0.05):
            async with locks.hold_shared("/f", timeout=PATIENT):
                await anyio.sleep_forever()
        async with locks.hold("/f", timeout=1.0):
            pass
