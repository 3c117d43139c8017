"""A dict-backed ``BlobBackendPort`` for tests; behaves like ``localfs`` without a disk."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterable, AsyncIterator
from typing import Final

import anyio.lowlevel

from callfs_core.errors import IsADirectory, NotADirectory, NotFound
from callfs_core.model import BlobInfo, ByteRange
from callfs_core.paths import FsPath
from callfs_core.ports import BlobBackendPort, BlobReader, StagedBlob

__all__ = ["InMemoryBlobBackend"]

CHUNK_SIZE: Final = 1024 * 1024


class _MemoryReader:
    def __init__(self, data: bytes) -> None:
        self._data: bytes | None = data
        self.size = len(data)

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self._chunks()

    async def _chunks(self) -> AsyncIterator[bytes]:
        data = self._data
        if data is None:
            return
        view = memoryview(data)
        for start in range(0, len(data), CHUNK_SIZE):
            await anyio.lowlevel.checkpoint()
            yield bytes(view[start : start + CHUNK_SIZE])

    async def aclose(self) -> None:
        self._data = None


class _MemoryStaged:
    def __init__(self, backend: InMemoryBlobBackend, path: FsPath, data: bytes) -> None:
        self._backend = backend
        self._path = path
        self._data: bytes | None = data
        self.info = BlobInfo(size=len(data), sha256=hashlib.sha256(data).hexdigest())

    async def commit(self) -> None:
        if self._data is None:
            raise RuntimeError("the staged blob was already committed or aborted")
        self._backend._publish(self._path, self._data)
        self._data = None

    async def abort(self) -> None:
        self._data = None


class InMemoryBlobBackend:
    """File bytes in a dict and directories in a set, keyed by canonical path.

    Like ``localfs``, a committed file implies its parent directories, and a
    directory cannot be overwritten by a file (nor created over one).
    """

    def __init__(self, name: str = "memory") -> None:
        self.name = name
        self._files: dict[FsPath, bytes] = {}
        self._directories: set[FsPath] = {FsPath.parse("/")}

    # -- reading ----------------------------------------------------------------
    async def open(self, path: FsPath, byte_range: ByteRange | None = None) -> BlobReader:
        await anyio.lowlevel.checkpoint()
        data = self._files.get(path)
        if data is None:
            if path in self._directories:
                raise IsADirectory(path)
            raise NotFound(path)
        if byte_range is not None:
            data = data[byte_range.start : byte_range.end + 1]
        return _MemoryReader(data)

    async def stat(self, path: FsPath) -> int | None:
        data = self._files.get(path)
        return None if data is None else len(data)

    # -- writing ----------------------------------------------------------------
    async def stage(self, path: FsPath, chunks: AsyncIterable[bytes]) -> StagedBlob:
        buffer = bytearray()
        async for chunk in chunks:
            buffer += chunk
        return _MemoryStaged(self, path, bytes(buffer))

    def _publish(self, path: FsPath, data: bytes) -> None:
        if path in self._directories:
            raise IsADirectory(path)
        self._add_parents(path)
        self._files[path] = data

    def _add_parents(self, path: FsPath) -> None:
        for ancestor in path.ancestors():
            if ancestor in self._files:
                raise NotADirectory(ancestor)
        self._directories.update(path.ancestors())

    async def delete(self, path: FsPath) -> None:
        if path in self._directories and path not in self._files:
            raise IsADirectory(path)
        self._files.pop(path, None)

    async def move(self, source: FsPath, destination: FsPath) -> None:
        if source in self._files:
            self._add_parents(destination)
            self._files[destination] = self._files.pop(source)
            return
        if source not in self._directories or source.is_root:
            raise NotFound(source)
        self._add_parents(destination)
        for directory in [d for d in self._directories if d.is_within(source)]:
            self._directories.remove(directory)
            self._directories.add(directory.rebase(source, destination))
        for path in [p for p in self._files if p.is_within(source)]:
            self._files[path.rebase(source, destination)] = self._files.pop(path)

    async def make_directory(self, path: FsPath) -> None:
        if path in self._files:
            raise NotADirectory(path)
        self._add_parents(path)
        self._directories.add(path)

    async def remove_directory(self, path: FsPath) -> None:
        if path.is_root or path not in self._directories:
            return
        occupied = any(p != path and p.is_within(path) for p in self._directories) or any(
            p.is_within(path) for p in self._files
        )
        if not occupied:
            self._directories.remove(path)

    async def health(self) -> None:
        return None


_check: type[BlobBackendPort] = InMemoryBlobBackend
