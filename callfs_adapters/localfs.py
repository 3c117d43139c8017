"""File bytes on the local disk: ``/a/b.txt`` is ``<root>/a/b.txt``.

Writes are atomic: the body goes to a temporary file in the target's folder
(``.callfs-tmp-<random>``), is fsynced, and is renamed over the target on
commit, after which the folder is fsynced too. A failed, cancelled or
aborted write removes the temporary file.

Per design.md §5, small reads and writes happen inline on the event loop
(a thread hop costs more than the syscall); large chunks, and every fsync,
run in a worker thread. Reads and writes move about 1 MiB at a time. The
file of a small body is fsynced at commit, in the same hop to a thread as
the rename and the folder's fsync: one hop per small write instead of two
(a large body is fsynced while staged, outside the caller's locks).

A canonical path maps to disk only through :meth:`LocalFsBackend._disk`, and
nothing outside the root is ever touched.
"""

from __future__ import annotations

import errno
import hashlib
import os
import secrets
import stat
from collections.abc import AsyncIterable, AsyncIterator, Iterator
from contextlib import contextmanager, suppress
from typing import Final

import anyio.to_thread

from callfs_core.errors import (
    AlreadyExists,
    BackendUnavailable,
    CallFSError,
    DirectoryNotEmpty,
    FsError,
    InvalidPath,
    InvalidRequest,
    IsADirectory,
    NotADirectory,
    NotFound,
)
from callfs_core.model import BlobInfo, ByteRange
from callfs_core.paths import FsPath
from callfs_core.ports import BlobBackendPort, BlobReader, StagedBlob

__all__ = ["TEMP_PREFIX", "LocalFsBackend"]

TEMP_PREFIX: Final = ".callfs-tmp-"
"""Name prefix of staging files (in the target's folder); never a committed file."""

DEFAULT_CHUNK_SIZE: Final = 1024 * 1024
INLINE_READ_LIMIT: Final = 64 * 1024  # read a range at most this long on the event loop
INLINE_WRITE_LIMIT: Final = 256 * 1024  # write a chunk at most this long on the event loop

_MAPPED_ERRNOS: Final[dict[int, type[FsError]]] = {
    errno.ENOENT: NotFound,
    errno.EISDIR: IsADirectory,
    errno.ENOTDIR: NotADirectory,
    errno.ENOTEMPTY: DirectoryNotEmpty,
    errno.EEXIST: AlreadyExists,
}


@contextmanager
def _os_errors(path: FsPath) -> Iterator[None]:
    """Translate ``OSError`` into core errors naming the canonical path, never the disk one."""
    try:
        yield
    except CallFSError:
        raise  # NotFound & co. are OSError subclasses too
    except OSError as exc:
        mapped = _MAPPED_ERRNOS.get(exc.errno or 0)
        if mapped is not None:
            raise mapped(path) from exc
        reason = os.strerror(exc.errno) if exc.errno else "unknown error"
        raise BackendUnavailable(f"local storage failed: {reason}") from exc


def _write_chunk(fd: int, digest: hashlib._Hash, chunk: bytes) -> None:
    digest.update(chunk)
    view = memoryview(chunk)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def _fsync_directory(folder: str) -> None:
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _sync_and_rename(fd: int | None, temp: str, target: str, fsync: bool) -> None:
    """Commit a staged file: fsync its bytes (``fd``, then closed), rename it over
    the target, fsync the folder. Runs in one worker thread."""
    if fd is not None:
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    os.replace(temp, target)
    if fsync:
        _fsync_directory(os.path.dirname(target))


def _remove_quietly(disk_path: str) -> None:
    with suppress(OSError):
        os.unlink(disk_path)


class _FileReader:
    """Reads ``size`` bytes from ``start`` with ``pread``, ``chunk_size`` at a time.

    Single use: the descriptor is closed when the iteration ends or stops, or
    on :meth:`aclose` — deferred until a read running in a worker thread
    returns, so a descriptor is never closed (and its number reused) under it.
    """

    def __init__(self, path: FsPath, fd: int, start: int, size: int, chunk_size: int) -> None:
        self._path = path
        self._fd: int | None = fd
        self._start = start
        self._chunk_size = chunk_size
        self._reading = False
        self._close_requested = False
        self.size = size

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self._chunks()

    async def _chunks(self) -> AsyncIterator[bytes]:
        offset, remaining = self._start, self.size
        inline = remaining <= INLINE_READ_LIMIT
        try:
            while remaining > 0 and self._fd is not None:
                want = min(self._chunk_size, remaining)
                with _os_errors(self._path):
                    if inline:
                        data = os.pread(self._fd, want, offset)
                    else:
                        data = await self._read_in_thread(self._fd, want, offset)
                if not data:  # the file shrank underneath us
                    return
                offset += len(data)
                remaining -= len(data)
                yield data
        finally:
            self._close()

    async def _read_in_thread(self, fd: int, want: int, offset: int) -> bytes:
        self._reading = True
        try:
            return await anyio.to_thread.run_sync(os.pread, fd, want, offset)
        finally:
            self._reading = False
            if self._close_requested:
                self._close()

    def _close(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)

    async def aclose(self) -> None:
        self._close_requested = True
        if not self._reading:
            self._close()


class _StagedFile:
    def __init__(
        self,
        path: FsPath,
        temp: str,
        target: str,
        info: BlobInfo,
        *,
        fsync: bool,
        unsynced_fd: int | None = None,
    ) -> None:
        self._path = path
        self._fsync = fsync
        self._temp = temp
        self._target = target
        self._unsynced_fd = unsynced_fd  # still open: fsynced at commit
        self._done = False
        self.info = info

    async def commit(self) -> None:
        if self._done:
            raise RuntimeError("the staged blob was already committed or aborted")
        fd, self._unsynced_fd = self._unsynced_fd, None
        with _os_errors(self._path):
            try:
                if self._fsync:
                    await anyio.to_thread.run_sync(
                        _sync_and_rename, fd, self._temp, self._target, True
                    )
                else:
                    _sync_and_rename(fd, self._temp, self._target, False)
            except BaseException:
                await self.abort()
                raise
            self._done = True

    async def abort(self) -> None:
        if not self._done:
            self._done = True
            if self._unsynced_fd is not None:
                with suppress(OSError):
                    os.close(self._unsynced_fd)
                self._unsynced_fd = None
            _remove_quietly(self._temp)


class LocalFsBackend:
    """``BlobBackendPort`` on a local folder that mirrors the tree.

    Args:
        root: the storage folder; created (0755) when missing.
        name: the backend name recorded in inodes.
        chunk_size: bytes per read of a stored file.
        fsync: flush file and folder to stable storage on every write (turn
            off only where losing the last writes on power loss is acceptable).

    Raises:
        BackendUnavailable: the root folder cannot be created.
    """

    def __init__(
        self,
        root: str,
        name: str = "localfs",
        chunk_size: int = DEFAULT_CHUNK_SIZE,
        *,
        fsync: bool = True,
    ) -> None:
        if chunk_size <= 0:
            raise ValueError("chunk_size must be positive")
        self.name = name
        self._root = os.path.abspath(root)
        self._root_prefix = os.path.join(self._root, "")
        self._chunk_size = chunk_size
        self._fsync = fsync
        self._ensure_root()

    def _ensure_root(self) -> None:
        try:
            os.makedirs(self._root, mode=0o755, exist_ok=True)
        except OSError as exc:
            raise BackendUnavailable("the local storage folder cannot be created") from exc

    def _disk(self, path: FsPath) -> str:
        disk = os.path.join(self._root, *path.parts)
        # Canonical segments can be neither "..", "." nor contain "/": defence in depth.
        if disk != self._root and not disk.startswith(self._root_prefix):
            raise InvalidPath(str(path), "path escapes the storage root")
        return disk

    def _make_folders(self, disk_folder: str, path: FsPath) -> None:
        try:
            os.makedirs(disk_folder, mode=0o755, exist_ok=True)
        except FileExistsError as exc:  # a file where a folder should be
            raise NotADirectory(path) from exc

    # -- reading ----------------------------------------------------------------
    async def open(self, path: FsPath, byte_range: ByteRange | None = None) -> BlobReader:
        disk = self._disk(path)
        with _os_errors(path):
            try:
                fd = os.open(disk, os.O_RDONLY | os.O_CLOEXEC)
            except NotADirectoryError as exc:  # an ancestor is a file: nothing stored here
                raise NotFound(path) from exc
            try:
                info = os.fstat(fd)
                if stat.S_ISDIR(info.st_mode):
                    raise IsADirectory(path)
                size = info.st_size
            except BaseException:
                os.close(fd)
                raise
        start, length = 0, size
        if byte_range is not None:
            start = byte_range.start
            length = max(0, min(byte_range.end, size - 1) - start + 1)
        return _FileReader(path, fd, start, length, self._chunk_size)

    async def stat(self, path: FsPath) -> int | None:
        with _os_errors(path):
            try:
                info = os.stat(self._disk(path))
            except (FileNotFoundError, NotADirectoryError):
                return None
        return info.st_size if stat.S_ISREG(info.st_mode) else None

    # -- writing ----------------------------------------------------------------
    async def stage(self, path: FsPath, chunks: AsyncIterable[bytes]) -> StagedBlob:
        if path.is_root:
            raise IsADirectory(path)
        target = self._disk(path)
        folder = os.path.dirname(target)
        temp = os.path.join(folder, TEMP_PREFIX + secrets.token_hex(8))
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC
        with _os_errors(path):
            try:
                fd = os.open(temp, flags, 0o644)
            except FileNotFoundError:  # the folder is missing (rarely): make it first
                self._make_folders(folder, path.parent)
                fd = os.open(temp, flags, 0o644)
        digest = hashlib.sha256()
        size = 0
        try:
            # Exceptions raised by ``chunks`` itself propagate untranslated.
            async for chunk in chunks:
                with _os_errors(path):
                    if len(chunk) > INLINE_WRITE_LIMIT:
                        await anyio.to_thread.run_sync(_write_chunk, fd, digest, chunk)
                    else:
                        _write_chunk(fd, digest, chunk)
                size += len(chunk)
            if self._fsync and size > INLINE_WRITE_LIMIT:
                with _os_errors(path):
                    await anyio.to_thread.run_sync(os.fsync, fd)
        except BaseException:
            with suppress(OSError):
                os.close(fd)
            _remove_quietly(temp)
            raise
        info = BlobInfo(size=size, sha256=digest.hexdigest())
        if self._fsync and size <= INLINE_WRITE_LIMIT:
            return _StagedFile(path, temp, target, info, fsync=True, unsynced_fd=fd)
        with _os_errors(path):
            os.close(fd)
        return _StagedFile(path, temp, target, info, fsync=self._fsync)

    async def delete(self, path: FsPath) -> None:
        with _os_errors(path), suppress(FileNotFoundError, NotADirectoryError):
            os.unlink(self._disk(path))

    async def move(self, source: FsPath, destination: FsPath) -> None:
        if source.is_root or destination.is_root:
            raise InvalidRequest("cannot rename or move the root directory")
        if destination != source and destination.is_within(source):
            raise InvalidRequest("cannot move a path into itself")
        source_disk, destination_disk = self._disk(source), self._disk(destination)
        with _os_errors(source):
            try:
                os.lstat(source_disk)
            except (FileNotFoundError, NotADirectoryError) as exc:
                raise NotFound(source) from exc
        with _os_errors(destination):
            self._make_folders(os.path.dirname(destination_disk), destination.parent)
            os.replace(source_disk, destination_disk)

    async def make_directory(self, path: FsPath) -> None:
        with _os_errors(path):
            self._make_folders(self._disk(path), path)

    async def remove_directory(self, path: FsPath) -> None:
        if path.is_root:
            return
        with _os_errors(path):
            try:
                os.rmdir(self._disk(path))
            except OSError as exc:
                if exc.errno not in (errno.ENOENT, errno.ENOTEMPTY, errno.EEXIST, errno.ENOTDIR):
                    raise

    async def health(self) -> None:
        if not await anyio.to_thread.run_sync(self._root_usable):
            raise BackendUnavailable("the local storage folder is missing or not writable")

    def _root_usable(self) -> bool:
        return os.path.isdir(self._root) and os.access(self._root, os.W_OK | os.X_OK)


_check: type[BlobBackendPort] = LocalFsBackend
