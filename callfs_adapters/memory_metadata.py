"""A dict-backed ``MetadataPort`` for tests and the embedded in-memory mode.

Every method runs without awaiting in the middle of a mutation, so each one
is atomic with respect to the other tasks of the event loop.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

import attrs

from callfs_adapters.metadata_rules import check_rename, deepest_first
from callfs_core.errors import (
    AlreadyExists,
    Conflict,
    DirectoryNotEmpty,
    NotADirectory,
    NotFound,
)
from callfs_core.model import EntryChanges, Inode, Link, LinkStatus
from callfs_core.paths import FsPath
from callfs_core.ports import MetadataPort

__all__ = ["InMemoryMetadataStore"]

ChildKey = tuple[bool, str]


def _utc(moment: datetime) -> datetime:
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError("datetimes stored in the metadata must be timezone-aware")
    return moment.astimezone(UTC)


def _normalise(inode: Inode, version: int) -> Inode:
    return attrs.evolve(inode, mtime=_utc(inode.mtime), ctime=_utc(inode.ctime), version=version)


def _normalise_link(link: Link) -> Link:
    return attrs.evolve(
        link,
        expires_at=_utc(link.expires_at),
        created_at=_utc(link.created_at),
        used_at=None if link.used_at is None else _utc(link.used_at),
    )


def _child_key(inode: Inode) -> ChildKey:
    return (inode.is_dir, inode.path.name)


class InMemoryMetadataStore:
    """Inodes and links in dictionaries; passes the ``MetadataContract`` suite.

    Children are indexed per parent so that listing a directory does not scan
    the whole tree.
    """

    def __init__(self) -> None:
        self._inodes: dict[FsPath, Inode] = {}
        self._children: dict[FsPath, dict[FsPath, Inode]] = {}
        self._links: dict[str, Link] = {}
        self._contents: dict[FsPath, bytes] = {}  # inline files' bytes

    # -- inodes ---------------------------------------------------------------
    async def get(self, path: FsPath) -> Inode | None:
        return self._inodes.get(path)

    async def get_many(self, paths: Sequence[FsPath]) -> dict[FsPath, Inode]:
        return {path: self._inodes[path] for path in paths if path in self._inodes}

    async def list_children(
        self,
        parent: FsPath,
        *,
        after: tuple[bool, str] | None = None,
        limit: int | None = None,
    ) -> list[Inode]:
        children = sorted(self._children.get(parent, {}).values(), key=_child_key)
        if after is not None:
            children = [child for child in children if _child_key(child) > after]
        return children if limit is None else children[: max(limit, 0)]

    async def list_subtree(self, root: FsPath) -> list[Inode]:
        return self._subtree(root)

    async def create(self, inode: Inode, *, content: bytes | None = None) -> Inode:
        path = inode.path
        if path in self._inodes:
            raise AlreadyExists(path)
        self._check_parent(path)
        stored = _normalise(inode, 1)
        self._put(stored, content)
        return stored

    async def update(
        self,
        inode: Inode,
        *,
        expected_version: int | None = None,
        content: bytes | None = None,
    ) -> Inode:
        current = self._inodes.get(inode.path)
        if current is None:
            raise NotFound(inode.path)
        if expected_version is not None and current.version != expected_version:
            raise Conflict(inode.path)
        stored = _normalise(inode, current.version + 1)
        self._put(stored, content)
        return stored

    async def read_content(self, path: FsPath, version: int) -> bytes | None:
        inode = self._inodes.get(path)
        if inode is None or not inode.inline or inode.version != version:
            return None
        return self._contents.get(path)

    async def delete(self, path: FsPath, *, recursive: bool = False) -> list[Inode]:
        inode = self._inodes.get(path)
        if inode is None:
            raise NotFound(path)
        below = self._subtree(path)
        if below and not recursive:
            raise DirectoryNotEmpty(path)
        removed = deepest_first([inode, *below])
        for node in removed:
            self._drop(node.path)
        return removed

    async def rename(
        self,
        source: FsPath,
        destination: FsPath,
        *,
        replace: bool = False,
        changes: EntryChanges | None = None,
    ) -> Inode | None:
        check_rename(source, destination)
        if source not in self._inodes:
            raise NotFound(source)
        replaced = self._inodes.get(destination)
        if replaced is not None:
            if not replace or destination == source:
                raise AlreadyExists(destination)
            if self._subtree(destination):
                raise DirectoryNotEmpty(destination)
        self._check_parent(destination)
        if replaced is not None:
            self._drop(destination)
        moved = [self._inodes[source], *self._subtree(source)]
        contents = [self._contents.get(node.path) for node in moved]
        # Rebase first: it may refuse an over-long path, and nothing has changed yet.
        rebased = [attrs.evolve(node, path=node.path.rebase(source, destination)) for node in moved]
        if changes is not None:
            top = rebased[0]
            rebased[0] = _normalise(changes.apply(top), top.version + 1)
        for node in moved:
            self._drop(node.path)
        for node, content in zip(rebased, contents, strict=True):
            self._put(node, content)
        return replaced

    def _subtree(self, root: FsPath) -> list[Inode]:
        return [
            inode for path, inode in self._inodes.items() if path != root and path.is_within(root)
        ]

    def _check_parent(self, path: FsPath) -> None:
        if path.is_root:
            return
        parent = self._inodes.get(path.parent)
        if parent is None:
            raise NotFound(path.parent, "the parent directory does not exist")
        if not parent.is_dir:
            raise NotADirectory(path.parent)

    def _put(self, inode: Inode, content: bytes | None = None) -> None:
        if inode.inline and content is None and inode.path not in self._contents:
            raise ValueError(f"an inline file needs its content: {inode.path}")
        self._inodes[inode.path] = inode
        if inode.inline:
            if content is not None:
                self._contents[inode.path] = bytes(content)
        else:
            self._contents.pop(inode.path, None)
        if not inode.path.is_root:
            self._children.setdefault(inode.path.parent, {})[inode.path] = inode

    def _drop(self, path: FsPath) -> None:
        del self._inodes[path]
        self._contents.pop(path, None)
        if path.is_root:
            return
        siblings = self._children[path.parent]
        del siblings[path]
        if not siblings:
            del self._children[path.parent]

    # -- links ----------------------------------------------------------------
    async def create_link(self, link: Link) -> None:
        if link.token_id in self._links:
            raise AlreadyExists(link.path, "a link with this token already exists")
        self._links[link.token_id] = _normalise_link(link)

    async def get_link(self, token_id: str) -> Link | None:
        return self._links.get(token_id)

    async def consume_link(self, token_id: str, *, used_at: datetime, client_ip: str) -> bool:
        link = self._links.get(token_id)
        if link is None or link.status is not LinkStatus.ACTIVE:
            return False
        self._links[token_id] = attrs.evolve(
            link, status=LinkStatus.USED, used_at=_utc(used_at), used_by_ip=client_ip
        )
        return True

    async def cleanup_links(self, *, now: datetime, used_before: datetime) -> int:
        doomed = [
            token_id
            for token_id, link in self._links.items()
            if (link.status is LinkStatus.ACTIVE and link.expires_at <= now)
            or (
                link.status is LinkStatus.USED
                and link.used_at is not None
                and link.used_at < used_before
            )
        ]
        for token_id in doomed:
            del self._links[token_id]
        return len(doomed)

    # -- lifecycle ------------------------------------------------------------
    async def health(self) -> None:
        return None

    async def close(self) -> None:
        return None


_check: type[MetadataPort] = InMemoryMetadataStore
