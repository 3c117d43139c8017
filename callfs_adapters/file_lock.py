"""Named locks shared by the worker processes of one instance (byte-range locks on one file).

With ``server.workers`` > 1 every worker is its own process, so an in-process
lock no longer serialises writers. Every name maps to one byte of the lock
file ``<folder>/locks`` (its offset: 63 bits of the name's BLAKE2b hash; the
file stays empty, a POSIX lock may lie beyond its end), and holding the name
means holding a POSIX record lock (``fcntl.lockf``) on that byte: exclusive
for :meth:`FileLockManager.hold`, shared for
:meth:`FileLockManager.hold_shared`.

A held lock costs two system calls (lock, unlock) on a descriptor each process
opens once; nothing is created or removed per name. POSIX record locks belong
to the process, not to a task: tasks of one process therefore meet in an
in-process readers–writer lock on the same byte first, so that a process
holds each byte in one mode at a time; the first of its shared holders locks
the byte, the last unlocks it. Two names sharing a byte (a 2⁻⁶³ chance) would
only make their holders wait for each other.
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
from types import TracebackType

import anyio

from callfs_adapters.local_lock import LocalLockManager
from callfs_core.errors import BackendUnavailable, LockTimeout
from callfs_core.ports import LockPort

__all__ = ["FileLockManager"]

FIRST_POLL = 0.001
MAX_POLL = 0.02
LOCK_FILE = "locks"


def lock_offset(name: str) -> int:
    """The byte of the lock file that stands for ``name``."""
    digest = hashlib.blake2b(name.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") >> 1


class FileLockManager:
    """A LockPort for the processes of one machine sharing ``folder``.

    Within a process, tasks queue on an in-process lock first (no polling);
    across processes, waiters poll the byte lock with a short exponential
    backoff. :meth:`hold_shared` holders, in any process, do not wait for each
    other.
    """

    def __init__(self, folder: str) -> None:
        self.folder = folder
        self._local = LocalLockManager()
        self._fd: int | None = None
        self._pid = 0
        # byte -> this process's shared holders while it holds the byte shared
        self._shared: dict[int, int] = {}

    def open(self) -> None:
        """Create the lock folder (0700)."""
        os.makedirs(self.folder, mode=0o700, exist_ok=True)

    @property
    def held_count(self) -> int:
        return self._local.held_count

    def _file(self) -> int:
        """This process's descriptor of the lock file (record locks are per process)."""
        if self._fd is None or self._pid != os.getpid():
            try:
                fd = os.open(
                    os.path.join(self.folder, LOCK_FILE),
                    os.O_RDWR | os.O_CREAT | os.O_CLOEXEC,
                    0o600,
                )
            except OSError as exc:
                raise BackendUnavailable("the lock folder cannot be used") from exc
            self._fd, self._pid = fd, os.getpid()
        return self._fd

    def hold(self, *names: str, timeout: float) -> AbstractAsyncContextManager[None]:
        return self._hold(sorted({lock_offset(name) for name in names}), timeout)

    @asynccontextmanager
    async def _hold(self, offsets: list[int], seconds: float) -> AsyncIterator[None]:
        deadline = time.monotonic() + max(seconds, 0.0)
        async with self._local.hold(*map(str, offsets), timeout=seconds):
            taken: list[int] = []
            try:
                for offset in offsets:
                    await self._acquire(offset, deadline, fcntl.LOCK_EX)
                    taken.append(offset)
                yield
            finally:
                for offset in reversed(taken):
                    self._unlock(offset)

    def hold_shared(self, name: str, *, timeout: float) -> AbstractAsyncContextManager[None]:
        return _SharedHold(self, lock_offset(name), timeout)

    async def _acquire(self, offset: int, deadline: float, mode: int) -> None:
        delay = FIRST_POLL
        while not self._try_lock(offset, mode):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise LockTimeout()
            await anyio.sleep(min(delay, remaining))
            delay = min(delay * 2, MAX_POLL)

    def _try_lock(self, offset: int, mode: int) -> bool:
        try:
            fcntl.lockf(self._file(), mode | fcntl.LOCK_NB, 1, offset)
        except OSError as exc:
            if exc.errno in (errno.EACCES, errno.EAGAIN):
                return False
            raise BackendUnavailable("the lock folder cannot be used") from exc
        return True

    def _unlock(self, offset: int) -> None:
        with contextlib.suppress(OSError):  # only fails when the descriptor is gone
            fcntl.lockf(self._file(), fcntl.LOCK_UN, 1, offset)

    async def health(self) -> None:
        if not await anyio.to_thread.run_sync(self._usable):
            raise BackendUnavailable("the lock folder is missing or not writable")

    def _usable(self) -> bool:
        return os.path.isdir(self.folder) and os.access(self.folder, os.W_OK)


class _SharedHold:
    """One shared hold (a class, not a generator: readers take one per request)."""

    __slots__ = ("_inner", "_manager", "_offset", "_seconds")

    def __init__(self, manager: FileLockManager, offset: int, seconds: float) -> None:
        self._manager = manager
        self._offset = offset
        self._seconds = seconds
        self._inner: AbstractAsyncContextManager[None] | None = None

    async def __aenter__(self) -> None:
        manager, offset = self._manager, self._offset
        deadline = time.monotonic() + max(self._seconds, 0.0)
        inner = manager._local.hold_shared(str(offset), timeout=self._seconds)
        await inner.__aenter__()
        try:
            if not manager._shared.get(offset):
                # The first shared holder of this process locks the byte.
                await manager._acquire(offset, deadline, fcntl.LOCK_SH)
        except BaseException as exc:
            await inner.__aexit__(type(exc), exc, exc.__traceback__)
            raise
        manager._shared[offset] = manager._shared.get(offset, 0) + 1
        self._inner = inner

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        manager, offset = self._manager, self._offset
        left = manager._shared[offset] - 1
        if left:
            manager._shared[offset] = left
        else:
            del manager._shared[offset]
            manager._unlock(offset)  # the last shared holder of this process
        assert self._inner is not None
        await self._inner.__aexit__(exc_type, exc, traceback)


_check: type[LockPort] = FileLockManager
