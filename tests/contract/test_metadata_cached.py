"""The caching decorator passes the MetadataPort contract and never serves stale data."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import anyio
import attrs
import pytest

from callfs_adapters.memory_metadata import InMemoryMetadataStore
from callfs_adapters.metadata_cache import CachingMetadataStore
from callfs_adapters.sqlite_metadata import SqliteMetadataStore
from callfs_core.model import EntryChanges, Inode, Kind
from callfs_core.paths import ROOT, FsPath
from callfs_core.testing import MetadataContract


class TestCachedMemory(MetadataContract):
    @pytest.fixture
    async def store(self) -> CachingMetadataStore:
        return CachingMetadataStore(InMemoryMetadataStore(), entries=8)


class TestCachedSqlite(MetadataContract):
    @pytest.fixture
    async def store(self, tmp_path: Path) -> AsyncIterator[CachingMetadataStore]:
        inner = SqliteMetadataStore(str(tmp_path / "callfs.db"))
        await inner.open()
        cached = CachingMetadataStore(inner)
        yield cached
        await cached.close()


pytestmark = pytest.mark.anyio
NOW = datetime(2026, 1, 1, tzinfo=UTC)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def node(path: str, kind: Kind = Kind.DIRECTORY) -> Inode:
    return Inode(FsPath.parse(path), kind, "a", "a", 0o755, NOW, NOW)


async def test_hits_and_invalidation() -> None:
    inner = InMemoryMetadataStore()
    cache = CachingMetadataStore(inner)
    await cache.create(node("/"))
    await cache.create(node("/d"))
    await cache.create(node("/d/f", Kind.FILE))
    assert (await cache.get(FsPath.parse("/d/f"))) is not None
    assert (await cache.get(FsPath.parse("/d/f"))) is not None
    assert cache.hits == 1
    await cache.rename(FsPath.parse("/d"), FsPath.parse("/e"), changes=EntryChanges(mode=0o700))
    assert await cache.get(FsPath.parse("/d/f")) is None
    assert (await cache.get(FsPath.parse("/e"))).mode == 0o700  # type: ignore[union-attr]
    await cache.delete(FsPath.parse("/e"), recursive=True)
    assert await cache.get_many([ROOT, FsPath.parse("/e"), FsPath.parse("/e/f")]) == {
        ROOT: await inner.get(ROOT)
    }


async def test_entries_expire() -> None:
    now = [0.0]
    inner = InMemoryMetadataStore()
    cache = CachingMetadataStore(inner, ttl=10, clock=lambda: now[0])
    await cache.create(node("/"))
    assert await cache.get(FsPath.parse("/x")) is None  # cached as missing
    await inner.create(node("/x"))  # a change that bypasses the cache
    assert await cache.get(FsPath.parse("/x")) is None
    now[0] = 11
    assert await cache.get(FsPath.parse("/x")) is not None


async def test_size_is_bounded() -> None:
    cache = CachingMetadataStore(InMemoryMetadataStore(), entries=5)
    for number in range(20):
        await cache.get(FsPath.parse(f"/p{number}"))
    assert len(cache._cache) == 5


async def test_a_lookup_racing_with_a_change_is_not_cached() -> None:
    inner = InMemoryMetadataStore()
    cache = CachingMetadataStore(inner)
    await cache.create(node("/"))
    await cache.create(node("/d"))
    started, finish = anyio.Event(), anyio.Event()
    original = inner.get

    async def slow_get(path: FsPath) -> Inode | None:
        found = await original(path)
        started.set()
        await finish.wait()
        return found

    inner.get = slow_get  # type: ignore[method-assign]
    async with anyio.create_task_group() as group:
        group.start_soon(cache.get, FsPath.parse("/d"))  # reads the old /d ...
        await started.wait()
        inner.get = original  # type: ignore[method-assign]
        await cache.delete(FsPath.parse("/d"))  # ... which is deleted meanwhile
        finish.set()
    assert await cache.get(FsPath.parse("/d")) is None


class TestCachedSqliteSharedFile(MetadataContract):
    """The cache of one worker, watching ``data_version``, over a file a second
    connection (another worker) shares."""

    @pytest.fixture
    async def store(self, tmp_path: Path) -> AsyncIterator[CachingMetadataStore]:
        inner = SqliteMetadataStore(str(tmp_path / "callfs.db"))
        await inner.open()
        cached = CachingMetadataStore(inner, version=inner.data_version)
        yield cached
        await cached.close()


async def test_changes_committed_by_another_process_are_seen_at_once(tmp_path: Path) -> None:
    database = str(tmp_path / "callfs.db")
    mine, other = SqliteMetadataStore(database), SqliteMetadataStore(database)
    await mine.open()
    await other.open()
    cache = CachingMetadataStore(mine, version=mine.data_version)
    try:
        await cache.create(node("/"))
        await cache.create(node("/d"))
        path = FsPath.parse("/d/f")
        assert await cache.get(path) is None  # "missing" is cached ...
        assert await cache.get(path) is None
        assert cache.hits == 1
        await other.create(node("/d/f", Kind.FILE))  # ... until another worker creates it
        assert (await cache.get(path)) is not None
        assert (await cache.get_many([path]))[path].mode == 0o755
        current = await other.get(path)
        assert current is not None
        await other.update(attrs.evolve(current, mode=0o600))
        assert (await cache.get_many([ROOT, path]))[path].mode == 0o600
        await other.delete(path)
        assert await cache.get(path) is None
    finally:
        await cache.close()
        await other.close()


async def test_an_unreadable_version_means_no_cached_answers() -> None:
    inner = InMemoryMetadataStore()

    def broken() -> object:
        raise RuntimeError("no version")

    cache = CachingMetadataStore(inner, version=broken)
    await cache.create(node("/"))
    await cache.get(ROOT)
    await cache.get(ROOT)
    assert cache.hits == 0
