"""The ``BlobBackendPort`` contract suite.

Subclass :class:`BlobBackendContract` and override the ``backend`` fixture to
yield a ready, empty backend::

    class TestLocalFs(BlobBackendContract):
        @pytest.fixture
        def backend(self, tmp_path):
            return LocalFsBackend(str(tmp_path / "data"))

Capabilities are fixtures the subclass may override:

* ``max_chunk_size`` — the largest chunk a reader may yield (default 1 MiB).
* ``detects_directories`` — whether ``commit`` can tell that a directory
  occupies the path and refuse with ``IsADirectory`` (default ``True``; an
  object store with implicit directories may answer ``False``).
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import AsyncIterator

import anyio
import pytest

from callfs_core.errors import IsADirectory, NotFound
from callfs_core.model import BlobInfo, ByteRange
from callfs_core.paths import FsPath
from callfs_core.ports import BlobBackendPort, BlobReader
from callfs_core.testing._support import p, split, stream

__all__ = ["BlobBackendContract"]

MiB = 1024 * 1024


class _Boom(Exception):
    """Raised by a test body iterator (a client that went away)."""


def _data(size: int, seed: int = 1) -> bytes:
    return random.Random(seed).randbytes(size)


def _info(data: bytes) -> BlobInfo:
    return BlobInfo(size=len(data), sha256=hashlib.sha256(data).hexdigest())


async def _failing(pieces: list[bytes], error: BaseException) -> AsyncIterator[bytes]:
    for piece in pieces:
        await anyio.lowlevel.checkpoint()
        yield piece
    raise error


async def _hanging(pieces: list[bytes]) -> AsyncIterator[bytes]:
    for piece in pieces:
        yield piece
    await anyio.sleep_forever()
    yield b"never"  # pragma: no cover


class BlobBackendContract:
    """Tests every ``BlobBackendPort`` must pass. Override ``backend``."""

    pytestmark = pytest.mark.anyio

    @pytest.fixture
    def anyio_backend(self) -> str:
        return "asyncio"

    @pytest.fixture
    def backend(self) -> BlobBackendPort:
        raise NotImplementedError("override the `backend` fixture to yield an empty backend")

    @pytest.fixture
    def max_chunk_size(self) -> int:
        return MiB

    @pytest.fixture
    def detects_directories(self) -> bool:
        return True

    # -- helpers --------------------------------------------------------------
    @pytest.fixture
    def read(self, backend: BlobBackendPort, max_chunk_size: int) -> _Read:
        return _Read(backend, max_chunk_size)

    async def write(self, backend: BlobBackendPort, path: FsPath, data: bytes) -> BlobInfo:
        staged = await backend.stage(path, stream(split(data, [64 * 1024]) or [b""]))
        await staged.commit()
        return staged.info

    # -- writing and reading ----------------------------------------------------
    async def test_round_trip(self, backend: BlobBackendPort, read: _Read) -> None:
        data = b"hello, world\n"
        info = await self.write(backend, p("/hello.txt"), data)
        assert info == _info(data)
        assert await read(p("/hello.txt")) == data
        assert await backend.stat(p("/hello.txt")) == len(data)

    async def test_empty_file(self, backend: BlobBackendPort, read: _Read) -> None:
        staged = await backend.stage(p("/empty"), stream([]))
        assert staged.info == _info(b"")
        await staged.commit()
        assert await read(p("/empty")) == b""
        assert await backend.stat(p("/empty")) == 0
        info = await self.write(backend, p("/empty-chunks"), b"")
        assert info.sha256 == hashlib.sha256(b"").hexdigest()
        assert await read(p("/empty-chunks")) == b""

    async def test_large_file_in_irregular_chunks(
        self, backend: BlobBackendPort, read: _Read
    ) -> None:
        data = _data(5 * MiB + 123)
        pieces = split(data, [65536, MiB + 7, 1, 3 * MiB, 100])
        staged = await backend.stage(p("/big.bin"), stream(pieces))
        assert staged.info == _info(data)
        await staged.commit()
        assert await read(p("/big.bin")) == data
        assert await backend.stat(p("/big.bin")) == len(data)

    async def test_many_small_chunks(self, backend: BlobBackendPort, read: _Read) -> None:
        data = _data(100_000, seed=2)
        info = await backend.stage(p("/small-chunks"), stream(split(data, [97])))
        assert info.info == _info(data)
        await info.commit()
        assert await read(p("/small-chunks")) == data

    async def test_byte_ranges(self, backend: BlobBackendPort, read: _Read) -> None:
        data = _data(3 * MiB + 5, seed=3)
        await self.write(backend, p("/ranged"), data)
        last = len(data) - 1
        cases = [
            (0, 0),
            (0, 9),
            (1000, 1999),
            (MiB - 3, MiB + 3),
            (MiB, 2 * MiB + 10),
            (last - 9, last),
            (last, last),
            (0, last),
        ]
        for start, end in cases:
            assert await read(p("/ranged"), ByteRange(start, end)) == data[start : end + 1]

    async def test_byte_ranges_of_a_small_file(self, backend: BlobBackendPort, read: _Read) -> None:
        await self.write(backend, p("/digits"), b"0123456789")
        assert await read(p("/digits"), ByteRange(3, 5)) == b"345"
        assert await read(p("/digits"), ByteRange(0, 0)) == b"0"
        assert await read(p("/digits"), ByteRange(9, 9)) == b"9"
        assert await read(p("/digits"), ByteRange(0, 9)) == b"0123456789"

    async def test_open_missing_raises_not_found(self, backend: BlobBackendPort) -> None:
        with pytest.raises(NotFound):
            await backend.open(p("/missing"))
        with pytest.raises(NotFound):
            await backend.open(p("/missing/deeper.txt"))
        with pytest.raises(NotFound):
            await backend.open(p("/missing"), ByteRange(0, 0))
        assert await backend.stat(p("/missing")) is None

    async def test_open_below_a_file_raises_not_found(self, backend: BlobBackendPort) -> None:
        await self.write(backend, p("/f"), b"x")
        with pytest.raises(NotFound):
            await backend.open(p("/f/x"))
        assert await backend.stat(p("/f/x")) is None

    async def test_open_directory_is_not_readable(self, backend: BlobBackendPort) -> None:
        await backend.make_directory(p("/d"))
        with pytest.raises((NotFound, IsADirectory)):
            await backend.open(p("/d"))
        assert await backend.stat(p("/d")) is None

    async def test_special_names(self, backend: BlobBackendPort, read: _Read) -> None:
        names = ["/dir with spaces/é ａ😀.txt", "/.hidden", "/...", "/a+b@c=d&e", "/trailing..."]
        for number, name in enumerate(names):
            await self.write(backend, p(name), name.encode() * number)
        for number, name in enumerate(names):
            assert await read(p(name)) == name.encode() * number

    # -- atomicity ------------------------------------------------------------
    async def test_staged_bytes_invisible_until_commit(
        self, backend: BlobBackendPort, read: _Read
    ) -> None:
        staged = await backend.stage(p("/new.txt"), stream([b"new"]))
        with pytest.raises(NotFound):
            await backend.open(p("/new.txt"))
        assert await backend.stat(p("/new.txt")) is None
        await staged.commit()
        assert await read(p("/new.txt")) == b"new"

        await self.write(backend, p("/old.txt"), b"old content")
        replacement = await backend.stage(p("/old.txt"), stream([b"replacement"]))
        assert await read(p("/old.txt")) == b"old content"
        assert await backend.stat(p("/old.txt")) == len(b"old content")
        await replacement.commit()
        assert await read(p("/old.txt")) == b"replacement"

    async def test_abort_leaves_previous_content(
        self, backend: BlobBackendPort, read: _Read
    ) -> None:
        await self.write(backend, p("/f"), b"previous")
        staged = await backend.stage(p("/f"), stream([b"discarded"]))
        await staged.abort()
        await staged.abort()
        assert await read(p("/f")) == b"previous"

        fresh = await backend.stage(p("/g"), stream([b"discarded"]))
        await fresh.abort()
        with pytest.raises(NotFound):
            await backend.open(p("/g"))

    async def test_failing_body_propagates_and_leaves_previous_content(
        self, backend: BlobBackendPort, read: _Read
    ) -> None:
        await self.write(backend, p("/f"), b"previous")
        error = _Boom("client went away")
        with pytest.raises(_Boom) as raised:
            await backend.stage(p("/f"), _failing([b"x" * 1000, b"y" * MiB], error))
        assert raised.value is error
        assert await read(p("/f")) == b"previous"

        with pytest.raises(_Boom):
            await backend.stage(p("/new/g"), _failing([b"partial"], _Boom()))
        with pytest.raises(NotFound):
            await backend.open(p("/new/g"))
        assert await backend.stat(p("/new/g")) is None

    async def test_failing_body_with_an_os_error_propagates_unchanged(
        self, backend: BlobBackendPort
    ) -> None:
        error = ConnectionResetError("peer reset")
        with pytest.raises(ConnectionResetError) as raised:
            await backend.stage(p("/f"), _failing([b"abc"], error))
        assert raised.value is error
        with pytest.raises(NotFound):
            await backend.open(p("/f"))

    async def test_cancelled_stage_leaves_previous_content(
        self, backend: BlobBackendPort, read: _Read
    ) -> None:
        await self.write(backend, p("/f"), b"previous")
        with anyio.move_on_after(0.05) as scope:
            await backend.stage(p("/f"), _hanging([b"z" * 70_000, b"partial"]))
        assert scope.cancelled_caught
        assert await read(p("/f")) == b"previous"
        with anyio.move_on_after(0.05):
            await backend.stage(p("/new"), _hanging([b"partial"]))
        assert await backend.stat(p("/new")) is None

    async def test_overwrite_replaces_and_truncates(
        self, backend: BlobBackendPort, read: _Read
    ) -> None:
        await self.write(backend, p("/f"), b"a long first version")
        info = await self.write(backend, p("/f"), b"short")
        assert info == _info(b"short")
        assert await read(p("/f")) == b"short"
        assert await backend.stat(p("/f")) == 5

    async def test_concurrent_stages_last_commit_wins(
        self, backend: BlobBackendPort, read: _Read
    ) -> None:
        first = await backend.stage(p("/f"), stream([b"first"]))
        second = await backend.stage(p("/f"), stream([b"second"]))
        await first.commit()
        assert await read(p("/f")) == b"first"
        await second.commit()
        assert await read(p("/f")) == b"second"

    async def test_commit_onto_a_directory(
        self, backend: BlobBackendPort, read: _Read, detects_directories: bool
    ) -> None:
        await backend.make_directory(p("/d"))
        await self.write(backend, p("/d/inner"), b"inner")
        staged = await backend.stage(p("/d"), stream([b"file"]))
        if detects_directories:
            with pytest.raises(IsADirectory):
                await staged.commit()
            await staged.abort()
            with pytest.raises((NotFound, IsADirectory)):
                await backend.open(p("/d"))
        else:
            await staged.commit()
        assert await read(p("/d/inner")) == b"inner"

    # -- readers --------------------------------------------------------------
    async def test_reader_can_be_closed_early_and_twice(self, backend: BlobBackendPort) -> None:
        data = _data(3 * MiB, seed=4)
        await self.write(backend, p("/f"), data)
        reader = await backend.open(p("/f"))
        assert reader.size == len(data)
        await reader.aclose()
        await reader.aclose()

        reader = await backend.open(p("/f"))
        async for chunk in reader:
            assert data.startswith(chunk)
            break
        await reader.aclose()
        await reader.aclose()

    async def test_open_fails_before_reading(self, backend: BlobBackendPort) -> None:
        await self.write(backend, p("/f"), b"content")
        reader = await backend.open(p("/f"))
        await backend.delete(p("/f"))
        # The blob was opened before the delete: either the old bytes or none.
        received = b"".join([chunk async for chunk in reader])
        await reader.aclose()
        assert received in (b"content", b"")

    # -- delete, move, directories, stat ---------------------------------------
    async def test_delete_is_idempotent(self, backend: BlobBackendPort) -> None:
        await self.write(backend, p("/f"), b"bytes")
        await self.write(backend, p("/f0"), b"sibling")
        await backend.delete(p("/f"))
        assert await backend.stat(p("/f")) is None
        with pytest.raises(NotFound):
            await backend.open(p("/f"))
        await backend.delete(p("/f"))
        await backend.delete(p("/never/existed"))
        assert await backend.stat(p("/f0")) == len(b"sibling")

    async def test_move_file(self, backend: BlobBackendPort, read: _Read) -> None:
        await self.write(backend, p("/a.txt"), b"moving bytes")
        await backend.move(p("/a.txt"), p("/b.txt"))
        assert await backend.stat(p("/a.txt")) is None
        assert await read(p("/b.txt")) == b"moving bytes"
        await backend.move(p("/b.txt"), p("/new/parents/c.txt"))
        assert await read(p("/new/parents/c.txt")) == b"moving bytes"
        assert await backend.stat(p("/b.txt")) is None

    async def test_move_file_over_existing_file(
        self, backend: BlobBackendPort, read: _Read
    ) -> None:
        await self.write(backend, p("/a"), b"winner")
        await self.write(backend, p("/b"), b"loser")
        await backend.move(p("/a"), p("/b"))
        assert await read(p("/b")) == b"winner"
        assert await backend.stat(p("/a")) is None

    async def test_move_directory_with_subtree(self, backend: BlobBackendPort, read: _Read) -> None:
        await backend.make_directory(p("/d"))
        await backend.make_directory(p("/d/e"))
        await backend.make_directory(p("/d/empty"))
        await self.write(backend, p("/d/x"), b"x")
        await self.write(backend, p("/d/e/y"), b"y")
        await self.write(backend, p("/d0"), b"prefix sibling")
        await self.write(backend, p("/d e/z"), b"another sibling")
        await backend.move(p("/d"), p("/n/d2"))
        assert await read(p("/n/d2/x")) == b"x"
        assert await read(p("/n/d2/e/y")) == b"y"
        for gone in ("/d/x", "/d/e/y"):
            with pytest.raises(NotFound):
                await backend.open(p(gone))
        assert await read(p("/d0")) == b"prefix sibling"
        assert await read(p("/d e/z")) == b"another sibling"
        await self.write(backend, p("/n/d2/empty/new"), b"still a directory")
        assert await read(p("/n/d2/empty/new")) == b"still a directory"

    async def test_move_missing_raises_not_found(self, backend: BlobBackendPort) -> None:
        with pytest.raises(NotFound):
            await backend.move(p("/missing"), p("/other"))
        assert await backend.stat(p("/other")) is None

    async def test_directories(self, backend: BlobBackendPort, read: _Read) -> None:
        await backend.make_directory(p("/d"))
        await backend.make_directory(p("/d"))
        await backend.make_directory(p("/d/e/f"))
        await self.write(backend, p("/d/file"), b"inside")
        await backend.remove_directory(p("/d"))  # not empty: nothing happens
        assert await read(p("/d/file")) == b"inside"
        await backend.delete(p("/d/file"))
        await backend.remove_directory(p("/d/e/f"))
        await backend.remove_directory(p("/d/e"))
        await backend.remove_directory(p("/d"))
        await backend.remove_directory(p("/d"))
        await backend.remove_directory(p("/never/existed"))
        await self.write(backend, p("/d/again"), b"parents come back")
        assert await read(p("/d/again")) == b"parents come back"

    async def test_stat(self, backend: BlobBackendPort) -> None:
        assert await backend.stat(p("/f")) is None
        await self.write(backend, p("/f"), b"12345")
        assert await backend.stat(p("/f")) == 5
        await self.write(backend, p("/f"), b"")
        assert await backend.stat(p("/f")) == 0

    async def test_health(self, backend: BlobBackendPort) -> None:
        await backend.health()
        assert isinstance(backend.name, str)
        assert backend.name


class _Read:
    """Read a blob whole, checking the reader's size and chunk bounds."""

    def __init__(self, backend: BlobBackendPort, max_chunk_size: int) -> None:
        self._backend = backend
        self._max = max_chunk_size

    async def __call__(self, path: FsPath, byte_range: ByteRange | None = None) -> bytes:
        reader: BlobReader = await self._backend.open(path, byte_range)
        try:
            chunks = [chunk async for chunk in reader]
        finally:
            await reader.aclose()
        for chunk in chunks:
            assert 0 < len(chunk) <= self._max, "readers yield non-empty chunks of bounded size"
        data = b"".join(chunks)
        assert reader.size == len(data)
        return data
