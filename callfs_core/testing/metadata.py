"""The ``MetadataPort`` contract suite.

Subclass :class:`MetadataContract` in a test module and override the
``store`` fixture to yield an opened, empty store::

    class TestSqliteMetadata(MetadataContract):
        @pytest.fixture
        async def store(self, tmp_path):
            store = SqliteMetadataStore(str(tmp_path / "meta.db"))
            await store.open()
            yield store
            await store.close()

Override ``peer_store`` too when the store can be reached through a second
handle (another connection or pool on the same database): the concurrency
tests then race the two handles against each other.
"""

from __future__ import annotations

from collections.abc import Iterable
from contextlib import suppress
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import anyio
import attrs
import pytest

from callfs_core.errors import (
    AlreadyExists,
    Conflict,
    DirectoryNotEmpty,
    InvalidRequest,
    NotADirectory,
    NotFound,
)
from callfs_core.model import EntryChanges, Inode, Kind, Link, LinkStatus
from callfs_core.paths import ROOT, FsPath
from callfs_core.ports import MetadataPort
from callfs_core.testing._support import T0, p

__all__ = ["MetadataContract", "directory_inode", "file_inode"]

# Names whose code-point order differs from case-insensitive, locale and UTF-16
# orders: ASCII case, a combining sequence, Latin-1, a fullwidth letter
# (U+FF41) and an astral character (U+1F600, a surrogate pair in UTF-16).
ODD_NAMES = [
    "b",
    "a",
    "B",
    "Z",
    "z",
    "é",
    "e\u0301",
    "ä",
    "ａ",
    "😀",
    "a b",
    "a-b",
    "10",
    "9",
    "_x",
]


def directory_inode(path: str, *, owner: str = "alice", mode: int = 0o755) -> Inode:
    """A directory inode with fixed attributes."""
    return Inode(
        path=p(path),
        kind=Kind.DIRECTORY,
        owner=owner,
        group=owner,
        mode=mode,
        mtime=T0,
        ctime=T0,
    )


def file_inode(path: str, *, size: int = 3, owner: str = "alice") -> Inode:
    """A file inode with every optional attribute set."""
    return Inode(
        path=p(path),
        kind=Kind.FILE,
        owner=owner,
        group="staff",
        mode=0o644,
        mtime=T0,
        ctime=T0 - timedelta(days=1),
        size=size,
        content_type="text/plain",
        sha256="0123456789abcdef" * 4,
        backend="localfs",
        instance_id="node-1",
    )


def _link(token_id: str = "A" * 22 + "==", path: str = "/a.txt", **changes: Any) -> Link:
    link = Link(
        token_id=token_id,
        path=p(path),
        signature="S" * 43 + "=",
        expires_at=T0 + timedelta(hours=1),
        created_at=T0,
        created_by="alice",
    )
    return attrs.evolve(link, **changes)


async def build(store: MetadataPort, *entries: str) -> dict[FsPath, Inode]:
    """Create the root (if missing) and ``entries``: a trailing ``/`` makes a directory."""
    created: dict[FsPath, Inode] = {}
    if await store.get(ROOT) is None:
        created[ROOT] = await store.create(directory_inode("/", owner="root", mode=0o1777))
    for entry in entries:
        if entry.endswith("/"):
            inode = await store.create(directory_inode(entry[:-1]))
        else:
            inode = await store.create(file_inode(entry))
        created[inode.path] = inode
    return created


def paths_of(inodes: Iterable[Inode]) -> list[FsPath]:
    return [inode.path for inode in inodes]


def listing_order(inodes: Iterable[Inode]) -> list[Inode]:
    """The required order: files first, then directories, by name in code-point order."""
    return sorted(inodes, key=lambda inode: (inode.is_dir, inode.path.name))


PREFIX_SIBLINGS = (
    "/ab/",
    "/ab/z",
    "/a b/",
    "/a b/z",
    "/a_/",
    "/a_/z",
    "/a.txt",
    "/a0",
    "/a-",
    "/a%",
)
"""Entries whose paths start with ``/a`` but lie outside ``/a`` (``%`` and ``_`` are
``LIKE`` wildcards, `` ``, ``-`` and ``.`` sort before ``/``, ``0`` right after it)."""


class MetadataContract:
    """Tests every ``MetadataPort`` must pass. Override ``store`` (and maybe ``peer_store``)."""

    pytestmark = pytest.mark.anyio

    @pytest.fixture
    def anyio_backend(self) -> str:
        return "asyncio"

    @pytest.fixture
    def store(self) -> MetadataPort:
        raise NotImplementedError("override the `store` fixture to yield an opened, empty store")

    @pytest.fixture
    def peer_store(self, store: MetadataPort) -> MetadataPort:
        """A second handle on the same data; by default the store itself."""
        return store

    # -- create and get --------------------------------------------------------
    async def test_get_missing_returns_none(self, store: MetadataPort) -> None:
        assert await store.get(ROOT) is None
        assert await store.get(p("/nothing")) is None

    async def test_create_root_needs_no_parent(self, store: MetadataPort) -> None:
        root = directory_inode("/", owner="root", mode=0o1777)
        stored = await store.create(root)
        assert stored == root
        assert await store.get(ROOT) == root
        assert await store.list_children(ROOT) == []

    async def test_create_without_root_raises_not_found(self, store: MetadataPort) -> None:
        with pytest.raises(NotFound):
            await store.create(directory_inode("/a"))
        assert await store.get(p("/a")) is None

    async def test_create_round_trips_every_field(self, store: MetadataPort) -> None:
        await build(store)
        inode = Inode(
            path=p("/zoë's file.txt"),
            kind=Kind.FILE,
            owner="zoë",
            group="ops team",
            mode=0o4751,
            mtime=datetime(2031, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
            ctime=datetime(1969, 12, 31, 23, 59, 59, 1, tzinfo=UTC),
            size=2**42 + 7,
            content_type="text/plain; charset=utf-8",
            sha256="f" * 64,
            backend="s3",
            instance_id="node-7",
        )
        stored = await store.create(inode)
        assert stored == inode
        fetched = await store.get(inode.path)
        assert fetched == inode
        assert fetched is not None
        assert fetched.kind is Kind.FILE
        assert fetched.mtime.utcoffset() == timedelta(0)
        assert fetched.ctime.utcoffset() == timedelta(0)
        assert fetched.mtime.microsecond == 999999
        assert fetched.ctime.microsecond == 1

        folder = directory_inode("/dir", owner="bob", mode=0o2770)
        assert await store.create(folder) == folder
        fetched_folder = await store.get(folder.path)
        assert fetched_folder == folder
        assert fetched_folder is not None
        assert fetched_folder.kind is Kind.DIRECTORY
        assert fetched_folder.content_type is None
        assert fetched_folder.sha256 is None
        assert fetched_folder.instance_id is None

    async def test_create_stores_version_one(self, store: MetadataPort) -> None:
        await build(store)
        stored = await store.create(attrs.evolve(file_inode("/a"), version=7))
        assert stored.version == 1
        fetched = await store.get(p("/a"))
        assert fetched is not None
        assert fetched.version == 1

    async def test_create_normalises_datetimes_to_utc(self, store: MetadataPort) -> None:
        await build(store)
        plus_five_thirty = timezone(timedelta(hours=5, minutes=30))
        local = datetime(2026, 5, 6, 7, 8, 9, 654321, tzinfo=plus_five_thirty)
        await store.create(attrs.evolve(file_inode("/a"), mtime=local, ctime=local))
        fetched = await store.get(p("/a"))
        assert fetched is not None
        assert fetched.mtime == local
        assert fetched.mtime.utcoffset() == timedelta(0)
        assert fetched.mtime.replace(tzinfo=None) == datetime(2026, 5, 6, 1, 38, 9, 654321)

    async def test_create_existing_raises_already_exists(self, store: MetadataPort) -> None:
        created = await build(store, "/d/", "/f")
        with pytest.raises(AlreadyExists):
            await store.create(file_inode("/f", size=99))
        with pytest.raises(AlreadyExists):
            await store.create(file_inode("/d"))
        with pytest.raises(AlreadyExists):
            await store.create(directory_inode("/f"))
        with pytest.raises(AlreadyExists):
            await store.create(directory_inode("/", owner="mallory"))
        assert await store.get(p("/f")) == created[p("/f")]
        assert await store.get(p("/d")) == created[p("/d")]
        assert await store.get(ROOT) == created[ROOT]

    async def test_create_without_parent_raises_not_found(self, store: MetadataPort) -> None:
        await build(store)
        with pytest.raises(NotFound):
            await store.create(file_inode("/missing/x"))
        assert await store.get(p("/missing/x")) is None
        assert await store.list_subtree(ROOT) == []

    async def test_create_below_file_raises_not_a_directory(self, store: MetadataPort) -> None:
        await build(store, "/f")
        with pytest.raises(NotADirectory):
            await store.create(file_inode("/f/x"))
        with pytest.raises(NotADirectory):
            await store.create(directory_inode("/f/d"))
        assert paths_of(await store.list_subtree(ROOT)) == [p("/f")]

    async def test_concurrent_creates_of_one_path_one_wins(
        self, store: MetadataPort, peer_store: MetadataPort
    ) -> None:
        await build(store)
        outcomes: list[bool] = []

        async def attempt(handle: MetadataPort, size: int) -> None:
            try:
                await handle.create(file_inode("/race", size=size))
            except AlreadyExists:
                outcomes.append(False)
            else:
                outcomes.append(True)

        async with anyio.create_task_group() as group:
            for number in range(12):
                group.start_soon(attempt, (store, peer_store)[number % 2], number)
        assert outcomes.count(True) == 1
        assert len(outcomes) == 12

    async def test_create_racing_with_recursive_delete_leaves_no_orphan(
        self, store: MetadataPort, peer_store: MetadataPort
    ) -> None:
        await build(store)
        for round_number in range(8):
            await store.create(directory_inode("/d"))

            async def create_child(number: int = round_number) -> None:
                with suppress(NotFound):
                    await peer_store.create(file_inode(f"/d/x{number}"))

            async def delete_parent() -> None:
                await store.delete(p("/d"), recursive=True)

            async with anyio.create_task_group() as group:
                if round_number % 2:
                    group.start_soon(create_child)
                    group.start_soon(delete_parent)
                else:
                    group.start_soon(delete_parent)
                    group.start_soon(create_child)
            assert await store.get(p("/d")) is None
            assert await store.list_subtree(ROOT) == []

    # -- get_many -------------------------------------------------------------
    async def test_get_many_returns_existing_only(self, store: MetadataPort) -> None:
        created = await build(store, "/a/", "/a/b.txt")
        wanted = [ROOT, p("/a"), p("/a/b.txt"), p("/a/missing"), p("/zz"), p("/a/b.txt")]
        found = await store.get_many(wanted)
        assert found == created

    async def test_get_many_of_nothing_is_empty(self, store: MetadataPort) -> None:
        await build(store)
        assert await store.get_many([]) == {}
        assert await store.get_many([p("/x"), p("/y/z")]) == {}

    async def test_get_many_of_many_paths(self, store: MetadataPort) -> None:
        await build(store)
        files = [file_inode(f"/f{number:04}") for number in range(600)]
        for inode in files:
            await store.create(inode)
        wanted = [inode.path for inode in files] + [p(f"/g{n}") for n in range(50)]
        found = await store.get_many(wanted)
        assert found == {inode.path: inode for inode in files}

    async def test_get_many_ancestors(self, store: MetadataPort) -> None:
        created = await build(store, "/a/", "/a/b/", "/a/b/c/", "/a/b/c/d.txt")
        target = p("/a/b/c/d.txt")
        assert await store.get_many(list(target.iter_lineage())) == created

    # -- list_children --------------------------------------------------------
    async def test_list_children_order(self, store: MetadataPort) -> None:
        await build(store, "/d/")
        inodes = [await store.create(file_inode(f"/d/{name}")) for name in ODD_NAMES]
        for name in ["dz", "DA", "é-dir", "0", "ａ", "😀"]:
            inodes.append(await store.create(directory_inode(f"/d/{name}.d")))
        listed = await store.list_children(p("/d"))
        assert listed == listing_order(inodes)
        names = [inode.path.name for inode in listed if inode.is_file]
        assert names.index("Z") < names.index("a") < names.index("z") < names.index("é")
        assert names.index("ä") < names.index("é") < names.index("ａ") < names.index("😀")
        assert names.index("10") < names.index("9")
        assert [inode.is_dir for inode in listed] == [False] * len(ODD_NAMES) + [True] * 6

    async def test_list_children_only_direct_children(self, store: MetadataPort) -> None:
        await build(store, "/a/", "/a/x", "/a/sub/", "/a/sub/deep", *PREFIX_SIBLINGS)
        assert paths_of(await store.list_children(p("/a"))) == [p("/a/x"), p("/a/sub")]
        assert paths_of(await store.list_children(p("/a/sub"))) == [p("/a/sub/deep")]
        assert paths_of(await store.list_children(ROOT)) == [
            p("/a%"),
            p("/a-"),
            p("/a.txt"),
            p("/a0"),
            p("/a"),
            p("/a b"),
            p("/a_"),
            p("/ab"),
        ]

    async def test_list_children_of_empty_missing_or_file(self, store: MetadataPort) -> None:
        await build(store, "/empty/", "/f")
        assert await store.list_children(p("/empty")) == []
        assert await store.list_children(p("/missing")) == []
        assert await store.list_children(p("/f")) == []

    async def test_list_children_returns_stored_inodes(self, store: MetadataPort) -> None:
        created = await build(store, "/d/", "/d/f", "/d/e/")
        listed = await store.list_children(p("/d"))
        assert listed == [created[p("/d/f")], created[p("/d/e")]]

    async def test_list_children_after_cursor(self, store: MetadataPort) -> None:
        await build(store, "/d/")
        for name in ["a", "b", "c", "é"]:
            await store.create(file_inode(f"/d/{name}"))
        for name in ["a", "m", "z"]:
            await store.create(directory_inode(f"/d/{name}.d"))
        full = await store.list_children(p("/d"))
        for index, inode in enumerate(full):
            cursor = (inode.is_dir, inode.path.name)
            assert await store.list_children(p("/d"), after=cursor) == full[index + 1 :]
        names = paths_of(full)
        # Cursors naming nothing that exists: placed by their sort key.
        after_b0 = await store.list_children(p("/d"), after=(False, "b0"))
        assert paths_of(after_b0) == names[2:]
        only_dirs = await store.list_children(p("/d"), after=(False, "\U0010ffff"))
        assert paths_of(only_dirs) == names[4:]
        assert paths_of(await store.list_children(p("/d"), after=(True, ""))) == names[4:]
        assert await store.list_children(p("/d"), after=(True, "\U0010ffff")) == []
        assert paths_of(await store.list_children(p("/d"), after=(False, ""))) == names

    async def test_list_children_limit(self, store: MetadataPort) -> None:
        await build(store, "/d/")
        for name in ["c", "a", "b", "é", "Z"]:
            await store.create(file_inode(f"/d/{name}"))
        for name in ["y", "x"]:
            await store.create(directory_inode(f"/d/{name}"))
        full = await store.list_children(p("/d"))
        assert len(full) == 7
        assert await store.list_children(p("/d"), limit=2) == full[:2]
        assert await store.list_children(p("/d"), limit=0) == []
        assert await store.list_children(p("/d"), limit=100) == full
        assert await store.list_children(p("/d"), after=(False, "b"), limit=3) == full[3:6]

    async def test_list_children_pages_reassemble_the_listing(self, store: MetadataPort) -> None:
        await build(store, "/d/")
        for number in range(11):
            await store.create(file_inode(f"/d/f{number}"))
            await store.create(directory_inode(f"/d/d{number}"))
        full = await store.list_children(p("/d"))
        pages: list[Inode] = []
        cursor: tuple[bool, str] | None = None
        while True:
            page = await store.list_children(p("/d"), after=cursor, limit=3)
            assert len(page) <= 3
            if not page:
                break
            pages.extend(page)
            cursor = (page[-1].is_dir, page[-1].path.name)
        assert pages == full
        assert len(full) == 22

    # -- list_subtree ---------------------------------------------------------
    async def test_list_subtree(self, store: MetadataPort) -> None:
        created = await build(store, "/a/", "/a/x", "/a/b/", "/a/b/y", *PREFIX_SIBLINGS)
        below_a = await store.list_subtree(p("/a"))
        assert sorted(below_a, key=lambda i: i.path) == [
            created[p("/a/b")],
            created[p("/a/b/y")],
            created[p("/a/x")],
        ]
        everything = await store.list_subtree(ROOT)
        assert {inode.path for inode in everything} == set(created) - {ROOT}
        assert await store.list_subtree(p("/a/x")) == []
        assert await store.list_subtree(p("/missing")) == []

    # -- update ---------------------------------------------------------------
    async def test_update_replaces_attributes_and_increments_version(
        self, store: MetadataPort
    ) -> None:
        created = await build(store, "/f")
        original = created[p("/f")]
        later = T0 + timedelta(seconds=1, microseconds=1)
        changed = attrs.evolve(
            original,
            size=12,
            sha256="e" * 64,
            mtime=later,
            owner="bob",
            group="bob",
            mode=0o600,
            content_type=None,
            instance_id=None,
            backend="s3",
        )
        stored = await store.update(changed)
        assert stored == attrs.evolve(changed, version=2)
        assert await store.get(p("/f")) == stored
        again = await store.update(attrs.evolve(stored, size=13))
        assert again.version == 3
        assert await store.get(p("/f")) == again
        assert await store.list_children(ROOT) == [again]

    async def test_update_ignores_given_version(self, store: MetadataPort) -> None:
        await build(store, "/f")
        stored = await store.update(attrs.evolve(file_inode("/f", size=5), version=40))
        assert stored.version == 2
        fetched = await store.get(p("/f"))
        assert fetched is not None
        assert fetched.version == 2
        assert fetched.size == 5

    async def test_update_with_expected_version(self, store: MetadataPort) -> None:
        await build(store, "/f")
        first = await store.update(file_inode("/f", size=5), expected_version=1)
        assert first.version == 2
        with pytest.raises(Conflict):
            await store.update(file_inode("/f", size=6), expected_version=1)
        with pytest.raises(Conflict):
            await store.update(file_inode("/f", size=6), expected_version=3)
        assert await store.get(p("/f")) == first
        second = await store.update(file_inode("/f", size=7), expected_version=2)
        assert second.version == 3
        assert await store.get(p("/f")) == second

    async def test_concurrent_compare_and_set_one_wins(
        self, store: MetadataPort, peer_store: MetadataPort
    ) -> None:
        await build(store, "/f")
        winners: list[int] = []

        async def attempt(handle: MetadataPort, size: int) -> None:
            try:
                await handle.update(file_inode("/f", size=size), expected_version=1)
            except Conflict:
                return
            winners.append(size)

        async with anyio.create_task_group() as group:
            for size in range(10):
                group.start_soon(attempt, (store, peer_store)[size % 2], size)
        assert len(winners) == 1
        fetched = await store.get(p("/f"))
        assert fetched is not None
        assert (fetched.size, fetched.version) == (winners[0], 2)

    async def test_update_missing_raises_not_found(self, store: MetadataPort) -> None:
        await build(store)
        with pytest.raises(NotFound):
            await store.update(file_inode("/f"))
        with pytest.raises(NotFound):
            await store.update(file_inode("/f"), expected_version=1)
        assert await store.get(p("/f")) is None

    # -- delete ---------------------------------------------------------------
    async def test_delete_file(self, store: MetadataPort) -> None:
        created = await build(store, "/d/", "/d/f", "/d/g")
        removed = await store.delete(p("/d/f"))
        assert removed == [created[p("/d/f")]]
        assert await store.get(p("/d/f")) is None
        assert paths_of(await store.list_children(p("/d"))) == [p("/d/g")]

    async def test_delete_missing_raises_not_found(self, store: MetadataPort) -> None:
        await build(store)
        with pytest.raises(NotFound):
            await store.delete(p("/nothing"))
        with pytest.raises(NotFound):
            await store.delete(p("/nothing"), recursive=True)

    async def test_delete_non_empty_directory_needs_recursive(self, store: MetadataPort) -> None:
        created = await build(store, "/d/", "/d/f")
        with pytest.raises(DirectoryNotEmpty):
            await store.delete(p("/d"))
        assert await store.get_many([p("/d"), p("/d/f")]) == {
            p("/d"): created[p("/d")],
            p("/d/f"): created[p("/d/f")],
        }

    async def test_delete_empty_directory(self, store: MetadataPort) -> None:
        created = await build(store, "/d/", "/d/e/")
        assert await store.delete(p("/d/e")) == [created[p("/d/e")]]
        assert await store.delete(p("/d")) == [created[p("/d")]]
        assert await store.list_subtree(ROOT) == []

    async def test_delete_recursive_removes_subtree_deepest_first(
        self, store: MetadataPort
    ) -> None:
        tree = ("/a/", "/a/x", "/a/b/", "/a/b/y", "/a/b/c/", "/a/b/c/z", "/a/e/")
        created = await build(store, *tree, *PREFIX_SIBLINGS, "/ab/a/")
        removed = await store.delete(p("/a"), recursive=True)
        expected = {path for path in created if path.is_within(p("/a"))}
        assert {inode.path for inode in removed} == expected
        assert len(removed) == len(expected) == 7
        depths = [inode.path.depth for inode in removed]
        assert depths == sorted(depths, reverse=True)
        assert removed[-1] == created[p("/a")]
        for inode in removed:
            assert inode == created[inode.path]
        remaining = {inode.path for inode in await store.list_subtree(ROOT)}
        assert remaining == set(created) - expected - {ROOT}

    async def test_delete_recursive_of_a_file(self, store: MetadataPort) -> None:
        created = await build(store, "/f", "/f0")
        assert await store.delete(p("/f"), recursive=True) == [created[p("/f")]]
        assert paths_of(await store.list_subtree(ROOT)) == [p("/f0")]

    # -- rename ---------------------------------------------------------------
    async def test_rename_file(self, store: MetadataPort) -> None:
        created = await build(store, "/d/", "/d/b.txt", "/d/a.txt", "/e/")
        await store.rename(p("/d/b.txt"), p("/d/0.txt"))
        assert await store.get(p("/d/b.txt")) is None
        moved = await store.get(p("/d/0.txt"))
        assert moved == attrs.evolve(created[p("/d/b.txt")], path=p("/d/0.txt"))
        assert paths_of(await store.list_children(p("/d"))) == [p("/d/0.txt"), p("/d/a.txt")]
        await store.rename(p("/d/0.txt"), p("/e/é.txt"))
        assert paths_of(await store.list_children(p("/d"))) == [p("/d/a.txt")]
        assert paths_of(await store.list_children(p("/e"))) == [p("/e/é.txt")]

    async def test_rename_directory_rekeys_the_subtree(self, store: MetadataPort) -> None:
        tree = ("/a/", "/a/x", "/a/b/", "/a/b/y", "/a/b/c/", "/a/b/c/z", "/m/")
        created = await build(store, *tree, *PREFIX_SIBLINGS)
        await store.rename(p("/a"), p("/m/n"))
        assert await store.get(p("/a")) is None
        assert await store.list_subtree(p("/a")) == []
        assert await store.list_children(p("/a/b")) == []
        old_subtree = [path for path in created if path.is_within(p("/a"))]
        for old in old_subtree:
            new = old.rebase(p("/a"), p("/m/n"))
            assert await store.get(new) == attrs.evolve(created[old], path=new)
        below = {inode.path for inode in await store.list_subtree(p("/m/n"))}
        assert below == {old.rebase(p("/a"), p("/m/n")) for old in old_subtree} - {p("/m/n")}
        assert paths_of(await store.list_children(p("/m"))) == [p("/m/n")]
        assert paths_of(await store.list_children(p("/m/n"))) == [p("/m/n/x"), p("/m/n/b")]
        assert paths_of(await store.list_children(p("/m/n/b"))) == [p("/m/n/b/y"), p("/m/n/b/c")]
        siblings = [p(entry.rstrip("/")) for entry in PREFIX_SIBLINGS]
        assert await store.get_many(siblings) == {path: created[path] for path in siblings}
        assert p("/a") not in paths_of(await store.list_children(ROOT))

    async def test_rename_onto_a_prefix_sibling_name(self, store: MetadataPort) -> None:
        created = await build(store, "/ab/", "/ab/z", "/a b/")
        await store.rename(p("/ab"), p("/a"))
        assert await store.get(p("/a/z")) == attrs.evolve(created[p("/ab/z")], path=p("/a/z"))
        assert await store.get(p("/a b")) == created[p("/a b")]
        assert await store.list_subtree(p("/a b")) == []
        await store.rename(p("/a"), p("/a b/a"))
        assert paths_of(await store.list_children(p("/a b/a"))) == [p("/a b/a/z")]

    async def test_rename_missing_source_raises_not_found(self, store: MetadataPort) -> None:
        await build(store, "/d/")
        with pytest.raises(NotFound):
            await store.rename(p("/nothing"), p("/d/x"))
        assert await store.list_children(p("/d")) == []

    async def test_rename_to_missing_parent_raises_not_found(self, store: MetadataPort) -> None:
        created = await build(store, "/f", "/d/", "/d/x")
        with pytest.raises(NotFound):
            await store.rename(p("/f"), p("/missing/f"))
        with pytest.raises(NotFound):
            await store.rename(p("/d"), p("/missing/d"))
        assert await store.get_many(list(created)) == created

    async def test_rename_onto_existing_raises_already_exists(self, store: MetadataPort) -> None:
        created = await build(store, "/f", "/g", "/d/", "/d/x", "/e/")
        for source, destination in [("/f", "/g"), ("/f", "/d"), ("/d", "/f"), ("/d", "/e")]:
            with pytest.raises(AlreadyExists):
                await store.rename(p(source), p(destination))
        with pytest.raises(AlreadyExists):
            await store.rename(p("/f"), p("/f"))
        everything = [ROOT, *(inode.path for inode in await store.list_subtree(ROOT))]
        assert await store.get_many(everything) == created

    async def test_rename_with_replace(self, store: MetadataPort) -> None:
        created = await build(store, "/f", "/g", "/d/", "/d/x", "/e/", "/full/", "/full/y")
        replaced = await store.rename(p("/f"), p("/g"), replace=True)
        assert replaced == created[p("/g")]
        assert await store.get(p("/g")) == attrs.evolve(created[p("/f")], path=p("/g"))
        assert await store.get(p("/f")) is None
        assert await store.rename(p("/d"), p("/e"), replace=True) == created[p("/e")]
        assert await store.get(p("/e/x")) == attrs.evolve(created[p("/d/x")], path=p("/e/x"))
        assert await store.rename(p("/g"), p("/h"), replace=True) is None
        with pytest.raises(DirectoryNotEmpty):
            await store.rename(p("/h"), p("/full"), replace=True)
        assert await store.get(p("/h")) is not None
        assert await store.get(p("/full/y")) == created[p("/full/y")]

    async def test_rename_with_changes_applies_them_to_the_moved_entry(
        self, store: MetadataPort
    ) -> None:
        created = await build(store, "/d/", "/d/x", "/f")
        later = created[p("/f")].ctime + timedelta(hours=1)
        changes = EntryChanges(
            mode=0o600, group="team", owner="bob", location=("s3", None), ctime=later
        )
        await store.rename(p("/f"), p("/d/g"), changes=changes)
        moved = await store.get(p("/d/g"))
        assert moved == attrs.evolve(
            created[p("/f")],
            path=p("/d/g"),
            mode=0o600,
            group="team",
            owner="bob",
            backend="s3",
            instance_id=None,
            ctime=later,
            version=created[p("/f")].version + 1,
        )
        await store.rename(p("/d"), p("/e"), changes=EntryChanges(mode=0o700))
        assert (await store.get(p("/e"))).mode == 0o700  # type: ignore[union-attr]
        child = await store.get(p("/e/x"))
        assert child == attrs.evolve(created[p("/d/x")], path=p("/e/x"))  # subtree unchanged

    async def test_rename_below_a_file_raises_not_a_directory(self, store: MetadataPort) -> None:
        created = await build(store, "/f", "/g")
        with pytest.raises(NotADirectory):
            await store.rename(p("/g"), p("/f/g"))
        assert await store.get_many(list(created)) == created

    async def test_rename_into_itself_raises_invalid_request(self, store: MetadataPort) -> None:
        created = await build(store, "/d/", "/d/e/")
        with pytest.raises(InvalidRequest):
            await store.rename(p("/d"), p("/d/e/d"))
        with pytest.raises(InvalidRequest):
            await store.rename(p("/d"), p("/d/x"))
        assert await store.get_many(list(created)) == created

    # -- inline content (small files kept with their entry) ---------------------
    async def test_inline_content_round_trips_with_its_version(self, store: MetadataPort) -> None:
        await build(store, "/d/")
        inode = attrs.evolve(file_inode("/d/small"), size=5, inline=True)
        stored = await store.create(inode, content=b"hello")
        assert stored.inline and stored.version == 1
        assert await store.get(p("/d/small")) == stored
        assert await store.read_content(p("/d/small"), 1) == b"hello"
        assert await store.read_content(p("/d/small"), 2) is None  # another version
        assert await store.read_content(p("/d/missing"), 1) is None
        listed = await store.list_children(p("/d"))
        assert listed == [stored]

    async def test_inline_content_may_be_empty_and_binary(self, store: MetadataPort) -> None:
        await build(store)
        blob = bytes(range(256)) * 3
        await store.create(attrs.evolve(file_inode("/empty"), size=0, inline=True), content=b"")
        await store.create(
            attrs.evolve(file_inode("/bin"), size=len(blob), inline=True), content=blob
        )
        assert await store.read_content(p("/empty"), 1) == b""
        assert await store.read_content(p("/bin"), 1) == blob

    async def test_a_file_that_is_not_inline_has_no_content(self, store: MetadataPort) -> None:
        await build(store, "/f", "/d/")
        assert await store.read_content(p("/f"), 1) is None
        assert await store.read_content(p("/d"), 1) is None

    async def test_update_replaces_inline_content(self, store: MetadataPort) -> None:
        await build(store)
        created = await store.create(attrs.evolve(file_inode("/f"), inline=True), content=b"one")
        updated = await store.update(
            attrs.evolve(created, size=3, sha256="e" * 64), expected_version=1, content=b"two"
        )
        assert updated.version == 2 and updated.inline
        assert await store.read_content(p("/f"), 2) == b"two"
        assert await store.read_content(p("/f"), 1) is None

    async def test_update_to_backend_bytes_drops_the_content(self, store: MetadataPort) -> None:
        await build(store)
        created = await store.create(attrs.evolve(file_inode("/f"), inline=True), content=b"one")
        moved_out = await store.update(attrs.evolve(created, inline=False, size=10**6))
        assert not moved_out.inline
        assert await store.read_content(p("/f"), moved_out.version) is None
        back_in = await store.update(attrs.evolve(moved_out, inline=True, size=4), content=b"back")
        assert back_in.inline
        assert await store.read_content(p("/f"), back_in.version) == b"back"

    async def test_attribute_update_keeps_inline_content(self, store: MetadataPort) -> None:
        await build(store)
        created = await store.create(attrs.evolve(file_inode("/f"), inline=True), content=b"one")
        chmod = await store.update(attrs.evolve(created, mode=0o600), expected_version=1)
        assert chmod.inline and chmod.mode == 0o600
        assert await store.read_content(p("/f"), chmod.version) == b"one"

    async def test_rename_with_a_new_location_drops_inline_content(
        self, store: MetadataPort
    ) -> None:
        await build(store, "/d/")
        await store.create(attrs.evolve(file_inode("/d/f"), inline=True), content=b"one")
        changes = EntryChanges(mode=0o640, location=("s3", None))
        await store.rename(p("/d/f"), p("/d/g"), changes=changes)
        moved = await store.get(p("/d/g"))
        assert moved is not None and not moved.inline and moved.backend == "s3"
        assert await store.read_content(p("/d/g"), moved.version) is None
        kept = EntryChanges(mode=0o600)
        await store.create(attrs.evolve(file_inode("/d/h"), inline=True), content=b"two")
        await store.rename(p("/d/h"), p("/d/i"), changes=kept)
        renamed = await store.get(p("/d/i"))
        assert renamed is not None and renamed.inline and renamed.mode == 0o600
        assert await store.read_content(p("/d/i"), renamed.version) == b"two"

    async def test_failed_update_keeps_the_content(self, store: MetadataPort) -> None:
        await build(store)
        created = await store.create(attrs.evolve(file_inode("/f"), inline=True), content=b"one")
        with pytest.raises(Conflict):
            await store.update(created, expected_version=7, content=b"two")
        assert await store.read_content(p("/f"), 1) == b"one"

    async def test_an_inline_entry_needs_its_content(self, store: MetadataPort) -> None:
        await build(store, "/f")
        with pytest.raises(ValueError):
            await store.create(attrs.evolve(file_inode("/g"), inline=True))
        assert await store.get(p("/g")) is None
        current = await store.get(p("/f"))
        assert current is not None
        with pytest.raises(ValueError):  # not inline yet: no bytes to keep
            await store.update(attrs.evolve(current, inline=True))
        assert await store.get(p("/f")) == current

    async def test_failed_create_leaves_no_content(self, store: MetadataPort) -> None:
        await build(store, "/f")
        with pytest.raises(AlreadyExists):
            await store.create(attrs.evolve(file_inode("/f"), inline=True), content=b"new")
        assert await store.read_content(p("/f"), 1) is None

    async def test_rename_carries_inline_content(self, store: MetadataPort) -> None:
        await build(store, "/a/", "/a/b/", "/m/", "/m/old")
        await store.create(attrs.evolve(file_inode("/a/b/f"), inline=True), content=b"deep")
        await store.create(attrs.evolve(file_inode("/a/g"), inline=True), content=b"top")
        await store.rename(p("/a"), p("/m/n"))
        assert await store.read_content(p("/m/n/b/f"), 1) == b"deep"
        assert await store.read_content(p("/m/n/g"), 1) == b"top"
        assert await store.read_content(p("/a/g"), 1) is None
        await store.rename(p("/m/n/g"), p("/m/old"), replace=True)
        assert await store.read_content(p("/m/old"), 1) == b"top"

    async def test_rename_over_an_inline_file_drops_its_content(self, store: MetadataPort) -> None:
        await build(store, "/src")
        await store.create(attrs.evolve(file_inode("/dst"), inline=True), content=b"gone")
        await store.rename(p("/src"), p("/dst"), replace=True)
        moved = await store.get(p("/dst"))
        assert moved is not None and not moved.inline
        assert await store.read_content(p("/dst"), moved.version) is None

    async def test_delete_drops_inline_content(self, store: MetadataPort) -> None:
        await build(store, "/d/")
        await store.create(attrs.evolve(file_inode("/d/f"), inline=True), content=b"x")
        await store.create(attrs.evolve(file_inode("/g"), inline=True), content=b"y")
        removed = await store.delete(p("/g"))
        assert [inode.inline for inode in removed] == [True]
        await store.delete(p("/d"), recursive=True)
        for path in ("/d/f", "/g"):
            assert await store.read_content(p(path), 1) is None
        # A new entry at a deleted path starts without the old bytes.
        await store.create(file_inode("/g"))
        assert await store.read_content(p("/g"), 1) is None

    # -- links ----------------------------------------------------------------
    async def test_create_and_get_link(self, store: MetadataPort) -> None:
        link = _link()
        await store.create_link(link)
        assert await store.get_link(link.token_id) == link
        assert await store.get_link("B" * 22 + "==") is None

    async def test_create_duplicate_link_raises_already_exists(self, store: MetadataPort) -> None:
        link = _link()
        await store.create_link(link)
        with pytest.raises(AlreadyExists):
            await store.create_link(_link(path="/other.txt"))
        assert await store.get_link(link.token_id) == link

    async def test_link_datetimes_round_trip(self, store: MetadataPort) -> None:
        minus_seven = timezone(timedelta(hours=-7))
        expires = datetime(2030, 6, 7, 8, 9, 10, 999999, tzinfo=minus_seven)
        link = _link(expires_at=expires, created_at=datetime(2030, 6, 7, 1, 2, 3, 4, tzinfo=UTC))
        await store.create_link(link)
        fetched = await store.get_link(link.token_id)
        assert fetched == link
        assert fetched is not None
        assert fetched.expires_at.utcoffset() == timedelta(0)
        assert fetched.expires_at.replace(tzinfo=None) == datetime(2030, 6, 7, 15, 9, 10, 999999)
        assert fetched.created_at.microsecond == 4

    async def test_consume_link_once(self, store: MetadataPort) -> None:
        link = _link()
        await store.create_link(link)
        used_at = T0 + timedelta(minutes=5, microseconds=17)
        assert await store.consume_link(link.token_id, used_at=used_at, client_ip="192.0.2.7")
        assert not await store.consume_link(link.token_id, used_at=used_at, client_ip="192.0.2.8")
        fetched = await store.get_link(link.token_id)
        assert fetched == attrs.evolve(
            link, status=LinkStatus.USED, used_at=used_at, used_by_ip="192.0.2.7"
        )

    async def test_consume_missing_link(self, store: MetadataPort) -> None:
        assert not await store.consume_link("nope", used_at=T0, client_ip="::1")
        assert await store.get_link("nope") is None

    async def test_concurrent_consumers_exactly_one_wins(
        self, store: MetadataPort, peer_store: MetadataPort
    ) -> None:
        link = _link()
        await store.create_link(link)
        results: list[bool] = []

        async def consume(handle: MetadataPort, number: int) -> None:
            ip = f"198.51.100.{number}"
            results.append(await handle.consume_link(link.token_id, used_at=T0, client_ip=ip))

        async with anyio.create_task_group() as group:
            for number in range(20):
                group.start_soon(consume, (store, peer_store)[number % 2], number)
        assert len(results) == 20
        assert results.count(True) == 1
        fetched = await store.get_link(link.token_id)
        assert fetched is not None
        assert fetched.status is LinkStatus.USED

    async def test_cleanup_links(self, store: MetadataPort) -> None:
        now = T0 + timedelta(days=2)
        used_before = now - timedelta(hours=24)
        expired = _link("expired", expires_at=now - timedelta(microseconds=1))
        live = _link("live", expires_at=now + timedelta(seconds=1))
        used_old = _link(
            "used-old",
            status=LinkStatus.USED,
            expires_at=now + timedelta(hours=1),
            used_at=used_before - timedelta(seconds=1),
            used_by_ip="::1",
        )
        used_recent = _link(
            "used-recent",
            status=LinkStatus.USED,
            expires_at=now - timedelta(hours=1),
            used_at=used_before + timedelta(seconds=1),
            used_by_ip="::1",
        )
        for link in (expired, live, used_old, used_recent):
            await store.create_link(link)
        assert await store.cleanup_links(now=now, used_before=used_before) == 2
        assert await store.get_link("expired") is None
        assert await store.get_link("used-old") is None
        assert await store.get_link("live") == live
        assert await store.get_link("used-recent") == used_recent
        assert await store.cleanup_links(now=now, used_before=used_before) == 0

    async def test_consumed_link_is_cleaned_up_by_use_time(self, store: MetadataPort) -> None:
        link = _link()
        await store.create_link(link)
        used_at = T0 + timedelta(minutes=1)
        assert await store.consume_link(link.token_id, used_at=used_at, client_ip="::1")
        later = T0 + timedelta(days=3)
        kept = await store.cleanup_links(now=later, used_before=used_at - timedelta(seconds=1))
        assert kept == 0
        assert await store.get_link(link.token_id) is not None
        gone = await store.cleanup_links(now=later, used_before=used_at + timedelta(seconds=1))
        assert gone == 1
        assert await store.get_link(link.token_id) is None

    # -- lifecycle ------------------------------------------------------------
    async def test_health(self, store: MetadataPort) -> None:
        await store.health()
        await build(store)
        await store.health()
