"""The local-disk backend passes the BlobBackendPort contract, mirrors the tree under
its root, never leaves staging files behind, and never names on-disk paths in errors."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import pytest

from callfs_adapters.localfs import TEMP_PREFIX, LocalFsBackend
from callfs_core.errors import BackendUnavailable, CallFSError, NotADirectory, NotFound
from callfs_core.paths import FsPath
from callfs_core.testing import BlobBackendContract
from callfs_core.testing._support import stream


class TestLocalFsBlobs(BlobBackendContract):
    @pytest.fixture
    def backend(self, tmp_path: Path) -> LocalFsBackend:
        return LocalFsBackend(str(tmp_path / "data"))


class TestLocalFsSmallChunks(BlobBackendContract):
    """A small read chunk exercises many reads per range and the threaded path."""

    @pytest.fixture
    def backend(self, tmp_path: Path) -> LocalFsBackend:
        return LocalFsBackend(str(tmp_path / "data"), chunk_size=100_000)

    @pytest.fixture
    def max_chunk_size(self) -> int:
        return 100_000


pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return tmp_path / "data"


@pytest.fixture
def backend(root: Path) -> LocalFsBackend:
    return LocalFsBackend(str(root))


def p(text: str) -> FsPath:
    return FsPath.parse(text)


def leftovers(root: Path) -> list[Path]:
    return [path for path in root.rglob("*") if path.name.startswith(TEMP_PREFIX)]


async def write(backend: LocalFsBackend, path: str, data: bytes) -> None:
    staged = await backend.stage(p(path), stream([data]))
    await staged.commit()


async def failing() -> AsyncIterator[bytes]:
    yield b"partial"
    raise RuntimeError("client went away")


async def test_constructor_creates_the_root(tmp_path: Path) -> None:
    LocalFsBackend(str(tmp_path / "deep" / "root"))
    assert (tmp_path / "deep" / "root").is_dir()


async def test_files_are_mirrored_under_the_root(backend: LocalFsBackend, root: Path) -> None:
    await write(backend, "/a/b/é ａ.txt", b"mirrored")
    await backend.make_directory(p("/empty/dir"))
    assert (root / "a" / "b" / "é ａ.txt").read_bytes() == b"mirrored"
    assert (root / "empty" / "dir").is_dir()
    assert (root / "a" / "b" / "é ａ.txt").stat().st_mode & 0o777 == 0o644 & ~_umask()
    await backend.move(p("/a"), p("/z/a"))
    assert (root / "z" / "a" / "b" / "é ａ.txt").read_bytes() == b"mirrored"
    assert not (root / "a").exists()


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


async def test_no_staging_file_remains(backend: LocalFsBackend, root: Path) -> None:
    await write(backend, "/d/f", b"previous")
    staged = await backend.stage(p("/d/f"), stream([b"discarded"]))
    assert len(leftovers(root)) == 1
    assert leftovers(root)[0].parent == root / "d"  # staged beside its target
    await staged.abort()
    assert leftovers(root) == []

    with pytest.raises(RuntimeError):
        await backend.stage(p("/d/g"), failing())
    assert leftovers(root) == []

    async def hanging() -> AsyncIterator[bytes]:
        yield b"x" * 300_000
        await anyio.sleep_forever()
        yield b""  # pragma: no cover

    with anyio.move_on_after(0.05):
        await backend.stage(p("/d/h"), hanging())
    assert leftovers(root) == []

    await backend.make_directory(p("/d/dir"))
    onto_directory = await backend.stage(p("/d/dir"), stream([b"file"]))
    with pytest.raises(CallFSError):
        await onto_directory.commit()
    await onto_directory.abort()
    assert leftovers(root) == []
    assert sorted(path.name for path in (root / "d").iterdir()) == ["dir", "f"]
    assert (root / "d" / "f").read_bytes() == b"previous"


async def test_make_directory_over_a_file(backend: LocalFsBackend) -> None:
    await write(backend, "/f", b"file")
    with pytest.raises(NotADirectory):
        await backend.make_directory(p("/f"))
    with pytest.raises(NotADirectory):
        await backend.make_directory(p("/f/sub"))


async def test_errors_do_not_reveal_the_disk_path(backend: LocalFsBackend, root: Path) -> None:
    for action in (
        backend.open(p("/missing")),
        backend.move(p("/missing"), p("/x")),
        backend.make_directory(p("/missing")),
    ):
        try:
            await action
        except CallFSError as error:
            assert str(root) not in str(error)
            assert str(root) not in error.message
    with pytest.raises(NotFound) as raised:
        await backend.open(p("/missing/file"))
    assert str(root) not in str(raised.value)
    assert raised.value.path == "/missing/file"


async def test_health_reports_a_missing_root(backend: LocalFsBackend, root: Path) -> None:
    await backend.health()
    os.rmdir(root)
    with pytest.raises(BackendUnavailable) as raised:
        await backend.health()
    assert str(root) not in str(raised.value)


async def test_nothing_outside_the_root_is_touched(tmp_path: Path, backend: LocalFsBackend) -> None:
    outside = tmp_path / "outside.txt"
    outside.write_bytes(b"keep")
    await write(backend, "/outside.txt", b"inside")
    await backend.remove_directory(p("/"))
    await backend.delete(p("/outside.txt"))
    assert outside.read_bytes() == b"keep"
    assert (tmp_path / "data").is_dir()


async def test_open_file_survives_replacement(backend: LocalFsBackend) -> None:
    await write(backend, "/f", b"first version")
    reader = await backend.open(p("/f"))
    await write(backend, "/f", b"second")
    received = b"".join([chunk async for chunk in reader])
    await reader.aclose()
    assert received == b"first version"


def _open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


async def test_readers_release_descriptors(backend: LocalFsBackend) -> None:
    await write(backend, "/big", os.urandom(3 * 1024 * 1024))
    before = _open_fds()
    for _ in range(5):
        reader = await backend.open(p("/big"))
        async for _chunk in reader:
            break
        await reader.aclose()
        reader = await backend.open(p("/big"))
        async for _chunk in reader:
            pass
    received: list[int] = []
    reader = await backend.open(p("/big"))

    async def consume() -> None:
        async for chunk in reader:
            received.append(len(chunk))
            await anyio.sleep(0.01)

    async with anyio.create_task_group() as group:
        group.start_soon(consume)
        await anyio.sleep(0.005)
        await reader.aclose()  # from another task, possibly during a threaded read
    assert 1 <= len(received) < 3
    assert _open_fds() == before
