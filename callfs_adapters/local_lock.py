"""In-process named locks on anyio (the ``LockPort`` of a single-process server)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager

import anyio

from callfs_core.errors import LockTimeout
from callfs_core.ports import LockPort

__all__ = ["LocalLockManager"]


class _Entry:
    """One named lock, its shared holders, and the number of tasks using it."""

    __slots__ = ("drained", "lock", "readers", "users")

    def __init__(self) -> None:
        self.lock = anyio.Lock()
        self.readers = 0  # tasks holding the name shared
        self.drained: anyio.Event | None = None  # set when the last reader leaves
        self.users = 0

    async def wait_for_readers(self) -> None:
        while self.readers:
            if self.drained is None:
                self.drained = anyio.Event()
            await self.drained.wait()

    def leave_shared(self) -> None:
        self.readers -= 1
        if self.readers == 0 and self.drained is not None:
            self.drained.set()
            self.drained = None


class LocalLockManager:
    """Named locks for the tasks of one process.

    :meth:`hold` is exclusive; :meth:`hold_shared` lets any number of holders
    in at once but none while an exclusive holder is in (readers of the same
    bytes need not wait for each other). A lock object exists only while some
    task holds or waits for its name, so the table does not grow with the
    number of paths ever locked. Locks are owned by the task that entered
    (not reentrant).
    """

    def __init__(self) -> None:
        self._entries: dict[str, _Entry] = {}
        self._held = 0

    @property
    def held_count(self) -> int:
        """The number of locks held right now (for a metrics gauge)."""
        return self._held

    def hold(self, *names: str, timeout: float) -> AbstractAsyncContextManager[None]:
        return self._hold(sorted(set(names)), timeout)

    @asynccontextmanager
    async def _hold(self, names: list[str], seconds: float) -> AsyncIterator[None]:
        entries = [self._join(name) for name in names]
        acquired: list[_Entry] = []
        try:
            # Free locks are taken at once (even when the timeout is 0), without
            # the cost of a cancel scope; the scope bounds only a real wait.
            waiting = len(entries)
            for index, entry in enumerate(entries):
                try:
                    entry.lock.acquire_nowait()
                except anyio.WouldBlock:
                    waiting = index
                    break
                acquired.append(entry)
            if waiting < len(entries) or any(entry.readers for entry in entries):
                try:
                    with anyio.fail_after(max(seconds, 0.0)):
                        for entry in entries[waiting:]:
                            await entry.lock.acquire()
                            acquired.append(entry)
                        for entry in entries:  # shared holders finish first
                            await entry.wait_for_readers()
                except TimeoutError:
                    raise LockTimeout() from None
            self._held += len(acquired)
            try:
                yield
            finally:
                self._held -= len(acquired)
        finally:
            for entry in reversed(acquired):
                entry.lock.release()
            for name in names:
                self._leave(name)

    def hold_shared(self, name: str, *, timeout: float) -> AbstractAsyncContextManager[None]:
        return self._hold_shared(name, timeout)

    @asynccontextmanager
    async def _hold_shared(self, name: str, seconds: float) -> AsyncIterator[None]:
        entry = self._join(name)
        try:
            # Passing through the exclusive lock waits for a current exclusive
            # holder; shared holders then count themselves in and let go of it.
            try:
                entry.lock.acquire_nowait()
            except anyio.WouldBlock:
                try:
                    with anyio.fail_after(max(seconds, 0.0)):
                        await entry.lock.acquire()
                except TimeoutError:
                    raise LockTimeout() from None
            entry.readers += 1
            entry.lock.release()
            try:
                yield
            finally:
                entry.leave_shared()
        finally:
            self._leave(name)

    def _join(self, name: str) -> _Entry:
        entry = self._entries.get(name)
        if entry is None:
            entry = self._entries[name] = _Entry()
        entry.users += 1
        return entry

    def _leave(self, name: str) -> None:
        entry = self._entries[name]
        entry.users -= 1
        if entry.users == 0:
            del self._entries[name]

    async def health(self) -> None:
        return None


_check: type[LockPort] = LocalLockManager
