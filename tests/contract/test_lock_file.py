"""The cross-process file lock manager passes the LockPort contract, also between processes."""

from __future__ import annotations

import multiprocessing
import os
import time
from pathlib import Path

import anyio
import anyio.lowlevel
import pytest

from callfs_adapters.file_lock import FileLockManager
from callfs_core.errors import LockTimeout
from callfs_core.testing import LockContract, SharedLockContract


class TestFileLocks(LockContract, SharedLockContract):
    @pytest.fixture
    def locks(self, tmp_path: Path) -> FileLockManager:
        manager = FileLockManager(str(tmp_path / "locks"))
        manager.open()
        return manager


pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def _hold_in_child(folder: str, ready: object, release: object, shared: bool = False) -> None:
    async def main() -> None:
        manager = FileLockManager(folder)
        if shared:
            held = manager.hold_shared("/shared", timeout=5)
        else:
            held = manager.hold("/shared", timeout=5)
        async with held:
            ready.set()  # type: ignore[attr-defined]
            release.wait(10)  # type: ignore[attr-defined]

    anyio.run(main)


async def test_excludes_another_process(tmp_path: Path) -> None:
    folder = str(tmp_path / "locks")
    manager = FileLockManager(folder)
    manager.open()
    context = multiprocessing.get_context("spawn")
    ready, release = context.Event(), context.Event()
    child = context.Process(target=_hold_in_child, args=(folder, ready, release))
    child.start()
    try:
        assert await anyio.to_thread.run_sync(ready.wait, 20)
        with pytest.raises(LockTimeout):
            async with manager.hold("/shared", timeout=0.1):
                pass
        async with manager.hold("/other", timeout=0.1):
            pass
        release.set()
        started = time.monotonic()
        async with manager.hold("/shared", timeout=10):
            waited = time.monotonic() - started
        assert waited < 5
    finally:
        release.set()
        await anyio.to_thread.run_sync(child.join, 20)
    assert child.exitcode == 0
    assert os.listdir(folder) == ["locks"]  # one file, whatever the names locked


def _read(counter: str) -> int:
    return int(Path(counter).read_text())


def _write(counter: str, value: int) -> None:
    Path(counter).write_text(str(value))


def _count_in_child(folder: str, counter: str, rounds: int) -> None:
    async def main() -> None:
        manager = FileLockManager(folder)
        for _ in range(rounds):
            async with manager.hold("/counter", timeout=30):
                # A read-modify-write that loses updates without mutual exclusion.
                value = _read(counter)
                await anyio.lowlevel.checkpoint()
                _write(counter, value + 1)

    anyio.run(main)


def test_no_lost_updates_across_processes(tmp_path: Path) -> None:
    folder = str(tmp_path / "locks")
    FileLockManager(folder).open()
    counter = tmp_path / "counter"
    counter.write_text("0")
    context = multiprocessing.get_context("spawn")
    children = [
        context.Process(target=_count_in_child, args=(folder, str(counter), 100)) for _ in range(3)
    ]
    for child in children:
        child.start()
    for child in children:
        child.join(60)
        assert child.exitcode == 0
    assert counter.read_text() == "300"


async def test_shared_holds_across_processes(tmp_path: Path) -> None:
    folder = str(tmp_path / "locks")
    manager = FileLockManager(folder)
    manager.open()
    context = multiprocessing.get_context("spawn")
    ready, release = context.Event(), context.Event()
    child = context.Process(target=_hold_in_child, args=(folder, ready, release, True))
    child.start()
    try:
        assert await anyio.to_thread.run_sync(ready.wait, 20)
        # Another process's reader does not stop ours, but stops a writer.
        async with manager.hold_shared("/shared", timeout=0.1):
            pass
        with pytest.raises(LockTimeout):
            async with manager.hold("/shared", timeout=0.1):
                pass
        release.set()
        async with manager.hold("/shared", timeout=5):
            pass
    finally:
        release.set()
        child.join(10)
    assert child.exitcode == 0
    assert os.listdir(folder) == ["locks"]
    assert Path(folder, "locks").stat().st_size == 0  # noqa: ASYNC240 (locks are not data)


def _try_exclusive(folder: str, name: str) -> None:
    """Exit 0 when ``name`` can be held exclusively within 0.2 s, 3 when not."""

    async def main() -> int:
        try:
            async with FileLockManager(folder).hold(name, timeout=0.2):
                return 0
        except LockTimeout:
            return 3

    raise SystemExit(anyio.run(main))


def _exclusive_in_child(folder: str, name: str) -> int | None:
    child = multiprocessing.get_context("spawn").Process(target=_try_exclusive, args=(folder, name))
    child.start()
    child.join(20)
    return child.exitcode


async def test_the_last_reader_of_a_process_lets_writers_of_others_in(tmp_path: Path) -> None:
    # Record locks belong to the process: the byte must stay locked while any
    # task of this process still reads, and be free once none does.
    folder = str(tmp_path / "locks")
    manager = FileLockManager(folder)
    manager.open()
    first = manager.hold_shared("/f", timeout=1)
    second = manager.hold_shared("/f", timeout=1)
    await first.__aenter__()
    await second.__aenter__()
    await first.__aexit__(None, None, None)
    assert await anyio.to_thread.run_sync(_exclusive_in_child, folder, "/f") == 3
    assert await anyio.to_thread.run_sync(_exclusive_in_child, folder, "/g") == 0
    await second.__aexit__(None, None, None)
    assert await anyio.to_thread.run_sync(_exclusive_in_child, folder, "/f") == 0
