"""In-process named locks on anyio (the ``LockPort`` of a single-process server)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager

import anyio

from callfs_core.errors import LockTimeout
from callfs_core.ports import LockPort

__all__ = ["LocalLockManager"]


class _Entry:
    """One named lock and the number of tasks holding or waiting for it."""

    __slots__ = ("lock", "users")

    def __init__(self) -> None:
        self.lock = anyio.Lock()
        self.users = 0


class LocalLockManager:
    """Named locks for the tasks of one process.

    A lock object exists only while some task holds or waits for its name, so
    the table does not grow with the number of paths ever locked. Locks are
    owned by the task that entered :meth:`hold` (not reentrant).
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
            try:
                with anyio.fail_after(max(seconds, 0.0)):
                    for entry in entries:
                        try:  # a free lock is taken even when the timeout is 0
                            entry.lock.acquire_nowait()
                        except anyio.WouldBlock:
                            await entry.lock.acquire()
                        acquired.append(entry)
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
