"""The SQLite metadata store passes the MetadataPort contract, also across handles
and processes, and keeps its schema, index and error-translation promises."""

from __future__ import annotations

import sqlite3
import sys
import textwrap
from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import attrs
import pytest

from callfs_adapters import sqlite_metadata
from callfs_adapters.sqlite_metadata import SqliteMetadataStore
from callfs_core.errors import BackendUnavailable, CallFSError
from callfs_core.paths import ROOT, FsPath
from callfs_core.testing import MetadataContract
from callfs_core.testing.metadata import build, directory_inode, file_inode


class TestSqliteMetadata(MetadataContract):
    @pytest.fixture
    async def store(self, tmp_path: Path) -> AsyncIterator[SqliteMetadataStore]:
        store = SqliteMetadataStore(str(tmp_path / "meta" / "callfs.db"))
        await store.open()
        yield store
        await store.close()

    @pytest.fixture
    async def peer_store(
        self, store: SqliteMetadataStore, tmp_path: Path
    ) -> AsyncIterator[SqliteMetadataStore]:
        peer = SqliteMetadataStore(str(tmp_path / "meta" / "callfs.db"))
        await peer.open()
        yield peer
        await peer.close()


class TestSqliteMemoryDatabase(MetadataContract):
    @pytest.fixture
    async def store(self) -> AsyncIterator[SqliteMetadataStore]:
        store = SqliteMetadataStore(":memory:")
        await store.open()
        yield store
        await store.close()


pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def database(tmp_path: Path) -> str:
    return str(tmp_path / "callfs.db")


def _raw(database: str) -> sqlite3.Connection:
    return sqlite3.connect(database, isolation_level=None)


async def test_schema_version_pragmas_and_reopen(database: str) -> None:
    store = SqliteMetadataStore(database)
    await store.open()
    await build(store, "/a/", "/a/f")
    await store.close()
    conn = _raw(database)
    try:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == len(sqlite_metadata._MIGRATIONS)
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    finally:
        conn.close()
    reopened = SqliteMetadataStore(database)
    await reopened.open()
    try:
        assert await reopened.get(FsPath.parse("/a/f")) is not None
    finally:
        await reopened.close()


async def test_a_database_of_the_previous_release_is_upgraded(database: str) -> None:
    """Schema step 1 only (before inline files): opening it adds step 2 and keeps every entry."""
    conn = _raw(database)
    for statement in sqlite_metadata._MIGRATIONS[0]:
        conn.execute(statement)
    conn.execute("PRAGMA user_version = 1")
    old = (0, "alice", "alice", 0o644, 3, 0, 0, "text/plain", "a" * 64, "localfs", "i1", 4)
    conn.execute(
        "INSERT INTO inodes VALUES ('/', NULL, '', 1, 'root', 'root', 1023, 0, 0, 0, NULL,"
        " NULL, 'localfs', NULL, 1)"
    )
    conn.execute(
        "INSERT INTO inodes (path, parent, name, is_dir, owner, grp, mode, size, mtime, ctime,"
        " content_type, sha256, backend, instance_id, version)"
        " VALUES ('/old.txt', '/', 'old.txt', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        old,
    )
    conn.close()
    store = SqliteMetadataStore(database)
    await store.open()
    try:
        kept = await store.get(FsPath.parse("/old.txt"))
        assert kept is not None and not kept.inline and kept.version == 4
        assert kept.size == 3 and kept.sha256 == "a" * 64
        small = attrs.evolve(file_inode("/new.txt"), inline=True)
        await store.create(small, content=b"new")
        assert await store.read_content(FsPath.parse("/new.txt"), 1) == b"new"
    finally:
        await store.close()
    conn = _raw(database)
    try:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == len(sqlite_metadata._MIGRATIONS)
    finally:
        conn.close()


async def test_newer_schema_is_refused(database: str) -> None:
    conn = _raw(database)
    conn.execute(f"PRAGMA user_version = {len(sqlite_metadata._MIGRATIONS) + 1}")
    conn.close()
    store = SqliteMetadataStore(database)
    with pytest.raises(BackendUnavailable, match="newer version"):
        await store.open()


async def test_not_a_database_is_unavailable(tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.db"
    garbage.write_bytes(b"this is not an sqlite database, not at all" * 100)
    with pytest.raises(BackendUnavailable) as raised:
        await SqliteMetadataStore(str(garbage)).open()
    assert str(tmp_path) not in str(raised.value)


async def test_unopenable_location_is_unavailable(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("a file where the folder should be")
    with pytest.raises(BackendUnavailable):
        await SqliteMetadataStore(str(blocker / "sub" / "callfs.db")).open()


async def test_unopened_store_is_unavailable(database: str) -> None:
    with pytest.raises(BackendUnavailable):
        await SqliteMetadataStore(database).health()


async def test_busy_database_is_unavailable(database: str) -> None:
    store = SqliteMetadataStore(database, busy_timeout=0.05)
    await store.open()
    blocker = _raw(database)
    try:
        await build(store)
        blocker.execute("BEGIN IMMEDIATE")
        with pytest.raises(BackendUnavailable):
            await store.create(directory_inode("/d"))
        assert await store.get(ROOT) is not None  # readers are not blocked in WAL mode
        blocker.execute("ROLLBACK")
        await store.create(directory_inode("/d"))
    finally:
        blocker.close()
        await store.close()


async def test_listing_is_an_index_range_scan(database: str) -> None:
    store = SqliteMetadataStore(database)
    await store.open()
    await store.close()
    conn = _raw(database)
    try:
        columns = sqlite_metadata._INODE_COLUMNS
        for query, params in [
            (
                f"SELECT {columns} FROM inodes WHERE parent = ? ORDER BY is_dir, name LIMIT ?",
                ("/", 10),
            ),
            (
                f"SELECT {columns} FROM inodes WHERE parent = ? AND (is_dir, name) > (?, ?)"
                " ORDER BY is_dir, name LIMIT ?",
                ("/", 0, "m", 10),
            ),
        ]:
            plan = " | ".join(row[3] for row in conn.execute(f"EXPLAIN QUERY PLAN {query}", params))
            assert "inodes_children" in plan
            assert "TEMP B-TREE" not in plan
        subtree = " | ".join(
            row[3]
            for row in conn.execute(
                "EXPLAIN QUERY PLAN SELECT path FROM inodes WHERE path > ? AND path < ?",
                ("/a/", "/a0"),
            )
        )
        assert "SEARCH" in subtree
    finally:
        conn.close()


async def test_datetimes_are_stored_as_utc_microseconds(database: str) -> None:
    store = SqliteMetadataStore(database)
    await store.open()
    try:
        await build(store, "/f")
    finally:
        await store.close()
    conn = _raw(database)
    try:
        mtime, ctime = conn.execute("SELECT mtime, ctime FROM inodes WHERE path = '/f'").fetchone()
    finally:
        conn.close()
    inode = file_inode("/f")
    assert mtime == int(inode.mtime.timestamp()) * 1_000_000 + inode.mtime.microsecond
    assert ctime == int(inode.ctime.timestamp()) * 1_000_000 + inode.ctime.microsecond


_WRITER = textwrap.dedent(
    """
    import sys
    import anyio
    from callfs_adapters.sqlite_metadata import SqliteMetadataStore
    from callfs_core.testing.metadata import file_inode

    async def main() -> None:
        store = SqliteMetadataStore(sys.argv[1])
        await store.open()
        print("ready", flush=True)
        try:
            for number in range(150):
                await store.create(file_inode(f"/d/child-{number:03}"))
        finally:
            await store.close()

    anyio.run(main)
    """
)


async def test_two_processes_share_the_database(database: str) -> None:
    store = SqliteMetadataStore(database)
    await store.open()
    try:
        await build(store, "/d/")
        async with await anyio.open_process([sys.executable, "-c", _WRITER, database]) as child:
            assert child.stdout is not None
            with anyio.fail_after(30):
                assert (await child.stdout.receive()).startswith(b"ready")
            for number in range(150):
                await store.create(file_inode(f"/d/parent-{number:03}"))
            await child.wait()
            assert child.stderr is not None
            errors = b"".join([chunk async for chunk in child.stderr])
        assert child.returncode == 0, errors.decode()
        children = await store.list_children(FsPath.parse("/d"))
        assert len(children) == 300
        names = [inode.path.name for inode in children]
        assert names == sorted(names)
    finally:
        await store.close()


async def test_moving_ten_thousand_entries_is_one_transaction(database: str) -> None:
    """A failure half way through a subtree move leaves the old tree, whole."""
    store = SqliteMetadataStore(database)
    await store.open()
    try:
        await store.create(directory_inode("/"))
        await store.create(directory_inode("/src"))
        for group in range(10):
            await store.create(directory_inode(f"/src/g{group}"))
        raw = _raw(database)
        rows = [(f"/src/g{n % 10}/f{n}", f"/src/g{n % 10}", f"f{n}") for n in range(10_000 - 11)]
        template = file_inode("/src/g0/template")
        await store.create(template)
        columns = raw.execute("SELECT * FROM inodes WHERE path = '/src/g0/template'").fetchone()
        raw.executemany(
            "INSERT INTO inodes VALUES (" + ",".join("?" * len(columns)) + ")",
            [(path, parent, name, *columns[3:]) for path, parent, name in rows],
        )
        before = len(await store.list_subtree(FsPath.parse("/src")))
        assert before == 10_000
        # Fail on one row in the middle of the statement.
        raw.execute(
            "CREATE TRIGGER boom BEFORE UPDATE ON inodes WHEN NEW.path = '/dst/g5/f5005'"
            " BEGIN SELECT RAISE(ABORT, 'injected failure'); END"
        )
        with pytest.raises(CallFSError):  # RAISE(ABORT) is reported as a constraint failure
            await store.rename(FsPath.parse("/src"), FsPath.parse("/dst"))
        assert len(await store.list_subtree(FsPath.parse("/src"))) == 10_000
        assert await store.list_subtree(FsPath.parse("/dst")) == []
        assert await store.get(FsPath.parse("/dst")) is None
        raw.execute("DROP TRIGGER boom")
        raw.close()
        await store.rename(FsPath.parse("/src"), FsPath.parse("/dst"))
        assert await store.list_subtree(FsPath.parse("/src")) == []
        assert len(await store.list_subtree(FsPath.parse("/dst"))) == 10_000
        assert await store.get(FsPath.parse("/dst/g5/f5005")) is not None
    finally:
        await store.close()
