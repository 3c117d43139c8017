"""A read-through cache in front of any MetadataPort.

It caches single-path lookups (``get`` and the paths of ``get_many``,
including "nothing there") for a bounded time, and forgets every affected
path on each change made through it. It therefore never serves stale data as
long as every change goes through this one object — which holds when one
process owns the database (SQLite with one worker).

When other processes change the database too (the workers of one instance
sharing an SQLite file), ``version`` tells it about their changes: a cheap
token (SQLite's ``PRAGMA data_version``) read before every lookup, which
changes whenever another connection commits. A changed token empties the
cache. The composition root switches the cache off where no such token
exists (instances sharing PostgreSQL).
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from datetime import datetime

from callfs_core.model import EntryChanges, Inode, Link
from callfs_core.paths import FsPath
from callfs_core.ports import MetadataPort

__all__ = ["CachingMetadataStore"]

_MISSING = object()


class CachingMetadataStore:
    """Caches inode lookups of ``inner`` for ``ttl`` seconds, at most ``entries`` paths."""

    def __init__(
        self,
        inner: MetadataPort,
        *,
        ttl: float = 300.0,
        entries: int = 1000,
        clock: Callable[[], float] = time.monotonic,
        version: Callable[[], object] | None = None,
    ) -> None:
        """``version``: a token that changes whenever a change is committed by
        anything but this object (None: every change goes through this object)."""
        self.inner = inner
        self.ttl = ttl
        self.entries = entries
        self._clock = clock
        self._version = version
        self._seen_version: object = _MISSING
        # path -> (expiry, inode or None); least recently used first.
        self._cache: OrderedDict[FsPath, tuple[float, Inode | None]] = OrderedDict()
        self.hits = 0
        self.misses = 0
        # Bumped by every change: a lookup that raced with a change (it read
        # before the change committed) must not store what it read.
        self._generation = 0

    # -- cache bookkeeping ----------------------------------------------------------
    def _check_version(self) -> None:
        """Empty the cache when someone else committed a change since the last look."""
        if self._version is None:
            return
        try:
            current = self._version()
        except Exception:  # unknown: assume changed, the store answers the lookup
            current = object()
        if current != self._seen_version:
            self._seen_version = current
            self._generation += 1
            self._cache.clear()

    def _lookup(self, path: FsPath) -> Inode | object | None:
        found = self._cache.get(path)
        if found is None:
            return _MISSING
        expiry, inode = found
        if expiry < self._clock():
            del self._cache[path]
            return _MISSING
        self._cache.move_to_end(path)
        return inode

    def _remember(self, path: FsPath, inode: Inode | None, generation: int) -> None:
        if generation != self._generation:
            return
        self._cache[path] = (self._clock() + self.ttl, inode)
        self._cache.move_to_end(path)
        while len(self._cache) > self.entries:
            self._cache.popitem(last=False)

    def _forget(self, path: FsPath) -> None:
        self._generation += 1
        self._cache.pop(path, None)

    def _forget_subtree(self, root: FsPath) -> None:
        self._generation += 1
        for path in [p for p in self._cache if p.is_within(root)]:
            del self._cache[path]

    # -- reads ----------------------------------------------------------------------
    async def get(self, path: FsPath) -> Inode | None:
        self._check_version()
        cached = self._lookup(path)
        if cached is not _MISSING:
            self.hits += 1
            return cached  # type: ignore[return-value]
        self.misses += 1
        generation = self._generation
        inode = await self.inner.get(path)
        self._remember(path, inode, generation)
        return inode

    async def get_many(self, paths: Sequence[FsPath]) -> dict[FsPath, Inode]:
        result: dict[FsPath, Inode] = {}
        wanted: list[FsPath] = []
        self._check_version()
        for path in paths:
            cached = self._lookup(path)
            if cached is _MISSING:
                wanted.append(path)
            elif cached is not None:
                result[path] = cached  # type: ignore[assignment]
        self.hits += len(paths) - len(wanted)
        if wanted:
            self.misses += len(wanted)
            generation = self._generation
            found = await self.inner.get_many(wanted)
            for path in wanted:
                self._remember(path, found.get(path), generation)
            result |= found
        return result

    async def list_children(
        self, parent: FsPath, *, after: tuple[bool, str] | None = None, limit: int | None = None
    ) -> list[Inode]:
        return await self.inner.list_children(parent, after=after, limit=limit)

    async def list_subtree(self, root: FsPath) -> list[Inode]:
        return await self.inner.list_subtree(root)

    # -- changes: forget first, so a failure half way cannot leave a stale entry -------
    async def create(self, inode: Inode, *, content: bytes | None = None) -> Inode:
        self._forget(inode.path)
        try:
            return await self.inner.create(inode, content=content)
        finally:
            self._forget(inode.path)

    async def update(
        self,
        inode: Inode,
        *,
        expected_version: int | None = None,
        content: bytes | None = None,
    ) -> Inode:
        self._forget(inode.path)
        try:
            return await self.inner.update(
                inode, expected_version=expected_version, content=content
            )
        finally:
            self._forget(inode.path)

    async def read_content(self, path: FsPath, version: int) -> bytes | None:
        # Never cached: the version check in the store pairs bytes with attributes.
        return await self.inner.read_content(path, version)

    async def delete(self, path: FsPath, *, recursive: bool = False) -> list[Inode]:
        self._forget_subtree(path)
        try:
            return await self.inner.delete(path, recursive=recursive)
        finally:
            self._forget_subtree(path)

    async def rename(
        self,
        source: FsPath,
        destination: FsPath,
        *,
        replace: bool = False,
        changes: EntryChanges | None = None,
    ) -> Inode | None:
        self._forget_subtree(source)
        self._forget_subtree(destination)
        try:
            return await self.inner.rename(source, destination, replace=replace, changes=changes)
        finally:
            self._forget_subtree(source)
            self._forget_subtree(destination)

    # -- links are never cached --------------------------------------------------------
    async def create_link(self, link: Link) -> None:
        await self.inner.create_link(link)

    async def get_link(self, token_id: str) -> Link | None:
        return await self.inner.get_link(token_id)

    async def consume_link(self, token_id: str, *, used_at: datetime, client_ip: str) -> bool:
        return await self.inner.consume_link(token_id, used_at=used_at, client_ip=client_ip)

    async def cleanup_links(self, *, now: datetime, used_before: datetime) -> int:
        return await self.inner.cleanup_links(now=now, used_before=used_before)

    async def health(self) -> None:
        await self.inner.health()

    async def close(self) -> None:
        self._cache.clear()
        await self.inner.close()


_check: type[MetadataPort] = CachingMetadataStore
