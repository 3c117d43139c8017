"""The PostgreSQL metadata store passes the MetadataPort contract across two pools,
and keeps its migration, index, transaction, timeout, secrecy and recovery promises.

PostgreSQL comes from ``CALLFS_TEST_POSTGRES_DSN`` or a throwaway server
(``pg_service``); each test gets a fresh database.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterator

import anyio
import anyio.to_thread
import attrs
import pg_service
import psycopg
import pytest
from procutil import free_port

from callfs_adapters import postgres_metadata
from callfs_adapters.postgres_metadata import PostgresMetadataStore, migrate
from callfs_core.errors import BackendUnavailable, CallFSError
from callfs_core.paths import ROOT, FsPath
from callfs_core.testing import MetadataContract
from callfs_core.testing._support import T0
from callfs_core.testing.metadata import build, directory_inode, file_inode

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def dsn() -> Iterator[str]:
    """A fresh, empty database."""
    database = pg_service.new_database()
    yield database
    pg_service.drop_database(database)


class TestPostgresMetadata(MetadataContract):
    @pytest.fixture
    async def store(self, dsn: str) -> AsyncIterator[PostgresMetadataStore]:
        store = PostgresMetadataStore(dsn, max_size=4)
        await store.open()
        yield store
        await store.close()

    @pytest.fixture
    async def peer_store(
        self, store: PostgresMetadataStore, dsn: str
    ) -> AsyncIterator[PostgresMetadataStore]:
        peer = PostgresMetadataStore(dsn, max_size=4)
        await peer.open()
        yield peer
        await peer.close()


def _raw(dsn: str) -> psycopg.Connection[tuple[object, ...]]:
    return psycopg.connect(dsn, autocommit=True)


def _p(text: str) -> FsPath:
    return FsPath.parse(text)


# -- migrations -------------------------------------------------------------------
async def test_migrations_are_recorded_and_idempotent(dsn: str) -> None:
    versions = list(range(1, len(postgres_metadata._MIGRATIONS) + 1))
    assert await migrate(dsn) == versions
    assert await migrate(dsn) == []
    store = PostgresMetadataStore(dsn)
    await store.open()  # migrates again at start-up: nothing to do
    try:
        await build(store, "/a/")
    finally:
        await store.close()
    assert await migrate(dsn) == []
    with _raw(dsn) as conn:
        rows = conn.execute("SELECT version FROM schema_migrations ORDER BY version").fetchall()
    assert [row[0] for row in rows] == versions


async def test_a_database_of_the_previous_release_is_upgraded(dsn: str) -> None:
    """Schema step 1 only (before inline files): migrating adds step 2, keeps every entry."""
    with _raw(dsn) as conn:
        for statement in postgres_metadata._MIGRATIONS[0]:
            conn.execute(statement)
        conn.execute(
            "CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY,"
            " applied_at TIMESTAMPTZ NOT NULL DEFAULT now())"
        )
        conn.execute("INSERT INTO schema_migrations (version) VALUES (1)")
        conn.execute(
            "INSERT INTO inodes (path, parent, name, is_dir, owner, grp, mode, size, mtime,"
            " ctime, content_type, sha256, backend, instance_id, version) VALUES"
            " ('/', NULL, '', true, 'root', 'root', 1023, 0, now(), now(), NULL, NULL,"
            " 'localfs', NULL, 1),"
            " ('/old.txt', '/', 'old.txt', false, 'alice', 'alice', 420, 3, now(), now(),"
            " 'text/plain', repeat('a', 64), 'localfs', 'i1', 4)"
        )
    assert await migrate(dsn) == list(range(2, len(postgres_metadata._MIGRATIONS) + 1))
    store = PostgresMetadataStore(dsn)
    await store.open()
    try:
        kept = await store.get(_p("/old.txt"))
        assert kept is not None and not kept.inline and kept.version == 4
        assert kept.size == 3 and kept.sha256 == "a" * 64
        small = attrs.evolve(file_inode("/new.txt"), inline=True)
        await store.create(small, content=b"new")
        assert await store.read_content(_p("/new.txt"), 1) == b"new"
    finally:
        await store.close()


async def test_concurrent_migrations_apply_each_version_once(dsn: str) -> None:
    results: list[list[int]] = []

    async def run() -> None:
        results.append(await migrate(dsn))

    async with anyio.create_task_group() as group:
        for _ in range(4):
            group.start_soon(run)
    versions = list(range(1, len(postgres_metadata._MIGRATIONS) + 1))
    assert sorted(results) == [[], [], [], versions]


async def test_concurrent_store_start_ups_share_one_migration(dsn: str) -> None:
    stores = [PostgresMetadataStore(dsn) for _ in range(3)]
    try:
        async with anyio.create_task_group() as group:
            for store in stores:
                group.start_soon(store.open)
        await build(stores[0], "/a/")
        assert await stores[2].get(_p("/a")) is not None
    finally:
        for store in stores:
            await store.close()


async def test_newer_schema_is_refused(dsn: str) -> None:
    await migrate(dsn)
    with _raw(dsn) as conn:
        conn.execute("INSERT INTO schema_migrations (version) VALUES (9999)")
    store = PostgresMetadataStore(dsn)
    with pytest.raises(BackendUnavailable, match="newer version"):
        await store.open()
    with pytest.raises(BackendUnavailable, match="newer version"):
        await migrate(dsn)


# -- schema and plans ----------------------------------------------------------------
def _plan(
    conn: psycopg.Connection[tuple[object, ...]], query: str, params: tuple[object, ...]
) -> str:
    rows = conn.execute(f"EXPLAIN {query}", params).fetchall()
    return "\n".join(str(row[0]) for row in rows)


async def test_listing_and_subtrees_are_index_scans(dsn: str) -> None:
    await migrate(dsn)
    with _raw(dsn) as conn:
        # 20 directories of 2,000 entries (files and directories mixed).
        conn.execute(
            "INSERT INTO inodes (path, parent, name, is_dir, owner, grp, mode, size, mtime,"
            " ctime, backend, version)"
            " SELECT '/', NULL, '', true, 'root', 'root', 1023, 0, now(), now(), 'localfs', 1"
            " UNION ALL"
            " SELECT '/d' || d, '/', 'd' || d, true, 'a', 'a', 493, 0, now(), now(), 'localfs', 1"
            " FROM generate_series(1, 20) AS d"
            " UNION ALL"
            " SELECT '/d' || d || '/e' || e, '/d' || d, 'e' || e, e % 3 = 0, 'a', 'a', 420, 1,"
            " now(), now(), 'localfs', 1"
            " FROM generate_series(1, 20) AS d, generate_series(1, 2000) AS e"
        )
        conn.execute("ANALYZE inodes")
        columns = postgres_metadata._INODE_COLUMNS
        first_page = _plan(
            conn,
            f"SELECT {columns} FROM inodes WHERE parent = %s ORDER BY is_dir, name LIMIT %s",
            ("/d7", 100),
        )
        next_page = _plan(
            conn,
            f"SELECT {columns} FROM inodes WHERE parent = %s AND (is_dir, name) > (%s, %s)"
            " ORDER BY is_dir, name LIMIT %s",
            ("/d7", False, "e5", 100),
        )
        for plan in (first_page, next_page):
            assert "Index Scan using inodes_children" in plan, plan
            assert "Sort" not in plan, plan
        # A whole listing may be cheaper to sort; the index must still deliver the order.
        conn.execute("SET enable_sort = off")
        whole = _plan(
            conn,
            f"SELECT {columns} FROM inodes WHERE parent = %s ORDER BY is_dir, name LIMIT %s",
            ("/d7", None),
        )
        assert "Index Scan using inodes_children" in whole, whole
        assert "Sort" not in whole, whole
        assert "Index Cond" in next_page and "ROW(is_dir, name) >" in next_page, next_page
        subtree = _plan(
            conn,
            f"SELECT {columns} FROM inodes WHERE path > %s AND path < %s",
            ("/d7/", "/d70"),
        )
        assert "inodes_pkey" in subtree, subtree
        assert "Seq Scan" not in subtree, subtree
        collations = conn.execute(
            "SELECT attname, collname FROM pg_attribute JOIN pg_collation c"
            " ON c.oid = attcollation WHERE attrelid = 'inodes'::regclass"
            " AND attname IN ('path', 'parent', 'name')"
        ).fetchall()
        assert sorted(collations) == [("name", "C"), ("parent", "C"), ("path", "C")]


async def test_datetimes_are_timestamptz_with_microseconds(dsn: str) -> None:
    store = PostgresMetadataStore(dsn)
    await store.open()
    try:
        await build(store, "/f")
    finally:
        await store.close()
    with _raw(dsn) as conn:
        row = conn.execute(
            "SELECT pg_typeof(mtime)::text, extract(epoch FROM mtime)::numeric,"
            " extract(epoch FROM ctime)::numeric FROM inodes WHERE path = '/f'"
        ).fetchone()
    assert row is not None
    inode = file_inode("/f")
    assert row[0] == "timestamp with time zone"
    assert str(row[1]) == f"{inode.mtime.timestamp():.6f}"
    assert str(row[2]) == f"{inode.ctime.timestamp():.6f}"


# -- transactions ------------------------------------------------------------------
async def test_moving_ten_thousand_entries_is_one_transaction(dsn: str) -> None:
    """A failure half way through a subtree move leaves the old tree, whole."""
    store = PostgresMetadataStore(dsn)
    await store.open()
    try:
        await store.create(directory_inode("/"))
        await store.create(directory_inode("/src"))
        for group in range(10):
            await store.create(directory_inode(f"/src/g{group}"))
        await store.create(file_inode("/src/g0/template"))
        with _raw(dsn) as raw:
            raw.execute(
                "INSERT INTO inodes"
                " SELECT '/src/g' || n % 10 || '/f' || n, '/src/g' || n % 10, 'f' || n,"
                " is_dir, owner, grp, mode, size, mtime, ctime, content_type, sha256,"
                " backend, instance_id, version"
                " FROM inodes, generate_series(1, 10000 - 11) AS n"
                " WHERE path = '/src/g0/template'"
            )
            assert len(await store.list_subtree(_p("/src"))) == 10_000
            raw.execute(
                "CREATE FUNCTION boom() RETURNS trigger LANGUAGE plpgsql AS"
                " $$ BEGIN RAISE EXCEPTION 'injected failure'; END $$"
            )
            # Fails on one row in the middle of the statement.
            raw.execute(
                "CREATE TRIGGER boom BEFORE UPDATE ON inodes FOR EACH ROW"
                " WHEN (NEW.path = '/dst/g5/f5005') EXECUTE FUNCTION boom()"
            )
            with pytest.raises(BackendUnavailable) as raised:
                await store.rename(_p("/src"), _p("/dst"))
            assert "injected" not in str(raised.value)
            assert len(await store.list_subtree(_p("/src"))) == 10_000
            assert await store.list_subtree(_p("/dst")) == []
            assert await store.get(_p("/dst")) is None
            raw.execute("DROP TRIGGER boom ON inodes")
        started = time.monotonic()
        await store.rename(_p("/src"), _p("/dst"))
        moved_in = time.monotonic() - started
        assert await store.list_subtree(_p("/src")) == []
        assert len(await store.list_subtree(_p("/dst"))) == 10_000
        assert await store.get(_p("/dst/g5/f5005")) is not None
        assert len(await store.list_children(_p("/dst/g5"))) == 999  # n % 10 == 5, n < 9990
        assert moved_in < 20, moved_in
        removed = await store.delete(_p("/dst"), recursive=True)
        assert len(removed) == 10_001
        assert await store.list_subtree(ROOT) == []
    finally:
        await store.close()


async def test_recursive_delete_racing_with_deep_creates_leaves_no_orphan(dsn: str) -> None:
    store = PostgresMetadataStore(dsn)
    peer = PostgresMetadataStore(dsn)
    await store.open()
    await peer.open()
    try:
        await build(store)
        for round_number in range(6):
            await build(store, "/d/", "/d/e/")

            async def create_below(number: int = round_number) -> None:
                for depth in range(4):
                    try:
                        await peer.create(directory_inode(f"/d/e/x{number}" + "/y" * depth))
                    except CallFSError:
                        return

            async def delete_tree() -> None:
                await store.delete(_p("/d"), recursive=True)

            async with anyio.create_task_group() as group:
                group.start_soon(create_below)
                group.start_soon(delete_tree)
            assert await store.list_subtree(ROOT) == []
    finally:
        await store.close()
        await peer.close()


async def test_concurrent_consumers_on_two_instances_exactly_one_wins(dsn: str) -> None:
    from callfs_core.model import Link

    first = PostgresMetadataStore(dsn, max_size=10)
    second = PostgresMetadataStore(dsn, max_size=10)
    await first.open()
    await second.open()
    try:
        for round_number in range(3):
            token = f"token-{round_number}"
            await first.create_link(
                Link(
                    token_id=token,
                    path=_p("/a.txt"),
                    signature="s",
                    expires_at=T0,
                    created_at=T0,
                )
            )
            results: list[bool] = []

            async def consume(
                handle: PostgresMetadataStore,
                ip: str,
                token: str = token,
                results: list[bool] = results,
            ) -> None:
                results.append(await handle.consume_link(token, used_at=T0, client_ip=ip))

            async with anyio.create_task_group() as group:
                for number in range(20):
                    handle = (first, second)[number % 2]
                    group.start_soon(consume, handle, f"192.0.2.{number}")
            assert len(results) == 20
            assert results.count(True) == 1
    finally:
        await first.close()
        await second.close()


# -- timeouts and failures -----------------------------------------------------------
async def test_statement_timeout_is_backend_unavailable(dsn: str) -> None:
    store = PostgresMetadataStore(dsn, statement_timeout=0.2)
    await store.open()
    try:
        await build(store, "/f")
        with _raw(dsn) as blocker:
            with blocker.transaction():
                blocker.execute("SELECT 1 FROM inodes WHERE path = '/f' FOR UPDATE")
                started = time.monotonic()
                with pytest.raises(BackendUnavailable, match="in time"):
                    await store.update(file_inode("/f", size=9))
                assert time.monotonic() - started < 3
            assert await store.update(file_inode("/f", size=9)) is not None
        with pytest.raises(BackendUnavailable):
            await store._fetch("/", "SELECT pg_sleep(2)", ())
        await store.health()
    finally:
        await store.close()


async def test_exhausted_pool_is_backend_unavailable(dsn: str) -> None:
    store = PostgresMetadataStore(dsn, max_size=1, pool_timeout=0.3)
    await store.open()
    try:
        await build(store)
        pool = store._pool
        assert pool is not None
        async with pool.connection():
            started = time.monotonic()
            with pytest.raises(BackendUnavailable):
                await store.get(ROOT)
            assert time.monotonic() - started < 3
        assert await store.get(ROOT) is not None
    finally:
        await store.close()


async def test_errors_never_show_the_dsn_or_password() -> None:
    secret = "s3cr3t-pa55word"
    port = free_port()  # nothing listens there
    dsn = f"postgresql://callfs:{secret}@127.0.0.1:{port}/callfs?application_name=x"
    store = PostgresMetadataStore(dsn, pool_timeout=0.5)
    assert secret not in repr(store)
    started = time.monotonic()
    with pytest.raises(BackendUnavailable) as raised:
        await store.open()
    assert time.monotonic() - started < 5
    with pytest.raises(BackendUnavailable) as raised_migrate:
        await migrate(dsn, statement_timeout=1)
    for error in (raised.value, raised_migrate.value):
        text = str(error)
        assert secret not in text and dsn not in text and str(port) not in text
        cause: BaseException | None = error
        while cause is not None:
            assert secret not in str(cause)
            cause = cause.__cause__ or cause.__context__
    with pytest.raises(BackendUnavailable, match="not open"):
        await store.health()


# -- outage and recovery ---------------------------------------------------------
@pytest.fixture
def private_server() -> Iterator[pg_service.ThrowawayPostgres]:
    """A server of our own, since this test stops it (even when a DSN is provided)."""
    server = pg_service.ThrowawayPostgres()
    try:
        server.start()
        yield server
    finally:
        server.cleanup()


async def test_server_restart_is_survived_without_reopening(
    private_server: pg_service.ThrowawayPostgres,
) -> None:
    store = PostgresMetadataStore(
        private_server.dsn, min_size=2, max_size=4, pool_timeout=1.0, statement_timeout=1.0
    )
    await store.open()
    try:
        await build(store, "/kept/")
        private_server.stop()
        for _ in range(3):
            started = time.monotonic()
            with pytest.raises(BackendUnavailable) as raised:
                await store.get(_p("/kept"))
            assert time.monotonic() - started < 4
            assert str(private_server.port) not in str(raised.value)
        with pytest.raises(BackendUnavailable):
            await store.health()
        with pytest.raises(BackendUnavailable):
            await store.create(directory_inode("/lost"))
        private_server.start()
        started = time.monotonic()
        while True:
            try:
                await store.health()
                break
            except BackendUnavailable:
                assert time.monotonic() - started < 15, "no recovery after the restart"
                await anyio.sleep(0.1)
        recovered_in = time.monotonic() - started
        assert await store.get(_p("/kept")) is not None
        assert await store.get(_p("/lost")) is None
        await store.create(directory_inode("/after"))
        assert [inode.path for inode in await store.list_children(ROOT)] == [
            _p("/after"),
            _p("/kept"),
        ]
        assert recovered_in < 10, recovered_in
    finally:
        await store.close()
