"""Named locks shared by the worker processes of one instance (``flock`` on lock files).

With ``server.workers`` > 1 every worker is its own process, so an in-process
lock no longer serialises writers. Each held name is a lock file
``<folder>/<sha256 of the name>.lock`` locked with ``flock``; the holder
deletes it on release, so only held or awaited names occupy the disk. The
classic unlink race (a waiter locks a file the previous holder just deleted)
is closed by comparing the locked descriptor's inode with the path's after
locking, and retrying when they differ.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import os
import time
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager

import anyio

from callfs_adapters.local_lock import LocalLockManager
from callfs_core.errors import BackendUnavailable, LockTimeout
from callfs_core.ports import LockPort

__all__ = ["FileLockManager"]

FIRST_POLL = 0.001
MAX_POLL = 0.02


class FileLockManager:
    """A LockPort for the processes of one machine sharing ``folder``.

    Within a process, tasks queue on an in-process lock first (no polling);
    across processes, waiters poll ``flock`` with a short exponential backoff.
    :meth:`hold_shared` takes ``LOCK_SH``: shared holders, in any process, do
    not wait for each other.
    """

    def __init__(self, folder: str) -> None:
        self.folder = folder
        self._local = LocalLockManager()

    def open(self) -> None:
        """Create the lock folder (0700)."""
        os.makedirs(self.folder, mode=0o700, exist_ok=True)

    @property
    def held_count(self) -> int:
        return self._local.held_count

    def _path(self, name: str) -> str:
        return os.path.join(self.folder, hashlib.sha256(name.encode()).hexdigest() + ".lock")

    def hold(self, *names: str, timeout: float) -> AbstractAsyncContextManager[None]:
        return self._hold(sorted(set(names)), timeout)

    @asynccontextmanager
    async def _hold(self, names: list[str], seconds: float) -> AsyncIterator[None]:
        deadline = time.monotonic() + max(seconds, 0.0)
        async with self._local.hold(*names, timeout=seconds):
            taken: list[tuple[str, int]] = []
            try:
                for name in names:
                    path = self._path(name)
                    taken.append((path, await self._acquire(path, deadline)))
                yield
            finally:
                for path, fd in reversed(taken):
                    # Unlink while still holding the lock: a waiter that opened
                    # the old file notices the inode change and retries.
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(path)
                    os.close(fd)

    def hold_shared(self, name: str, *, timeout: float) -> AbstractAsyncContextManager[None]:
        return self._hold_shared(name, timeout)

    @asynccontextmanager
    async def _hold_shared(self, name: str, seconds: float) -> AsyncIterator[None]:
        deadline = time.monotonic() + max(seconds, 0.0)
        async with self._local.hold_shared(name, timeout=seconds):
            path = self._path(name)
            fd = await self._acquire(path, deadline, fcntl.LOCK_SH)
            try:
                yield
            finally:
                # The last holder removes the file: taking it exclusively at once
                # proves nobody else holds it (a waiter that opened the old file
                # notices the inode change and retries).
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except OSError:
                    pass  # others hold it: the last of them removes it
                else:
                    with contextlib.suppress(FileNotFoundError):
                        if os.stat(path).st_ino == os.fstat(fd).st_ino:
                            os.unlink(path)
                os.close(fd)

    async def _acquire(self, path: str, deadline: float, mode: int = fcntl.LOCK_EX) -> int:
        delay = FIRST_POLL
        while True:
            fd = self._try_lock(path, mode)
            if fd is not None:
                return fd
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise LockTimeout()
            await anyio.sleep(min(delay, remaining))
            delay = min(delay * 2, MAX_POLL)

    def _try_lock(self, path: str, mode: int) -> int | None:
        while True:
            try:
                fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            except OSError as exc:
                raise BackendUnavailable("the lock folder cannot be used") from exc
            try:
                fcntl.flock(fd, mode | fcntl.LOCK_NB)
            except OSError as exc:
                os.close(fd)
                if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
                    return None
                raise BackendUnavailable("the lock folder cannot be used") from exc
            try:
                current = os.stat(path).st_ino
            except FileNotFoundError:
                current = None
            if current == os.fstat(fd).st_ino:
                return fd
            os.close(fd)  # the file was replaced under us: take the new one

    async def health(self) -> None:
        if not await anyio.to_thread.run_sync(self._usable):
            raise BackendUnavailable("the lock folder is missing or not writable")

    def _usable(self) -> bool:
        return os.path.isdir(self.folder) and os.access(self.folder, os.W_OK)


_check: type[LockPort] = FileLockManager
