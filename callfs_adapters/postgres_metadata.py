"""PostgreSQL metadata (``MetadataPort`` for clusters of CallFS instances).

A psycopg 3 ``AsyncConnectionPool`` (opened in :meth:`PostgresMetadataStore.open`,
inside the worker that uses it) of autocommit connections: single statements
are atomic on their own, and every mutation that needs more than one runs in
one explicit transaction. Each connection gets ``statement_timeout`` and the
UTC time zone when it is made; the pool checks a connection before handing it
out, so connections broken by a server restart are replaced by themselves.

Inline content (small files whose bytes the metadata keeps) lives in the
entry's own row, ``content BYTEA`` beside ``inline``: a rename re-keys the row
and so carries the bytes, a delete drops them, and a compare-and-set update
replaces attributes and bytes in one statement. Only :meth:`read_content`
selects ``content``; PostgreSQL keeps large values out of line (TOAST), so
listings and lookups do not pay for them.

Paths are ``TEXT COLLATE "C"``: compared byte-wise, which for UTF-8 is
Unicode code-point order. The children of a directory are an index range scan
on ``(parent, is_dir, name)`` in listing order (files first); a subtree is the
primary-key range ``p || '/' < path < p || '0'`` (``'0'`` is the character
after ``'/'``), so no ``LIKE`` pattern is involved. Datetimes are
``TIMESTAMPTZ`` (microseconds).

Concurrency: ``create`` locks the parent row ``FOR SHARE`` while it inserts;
recursive ``delete`` and ``rename`` lock the whole subtree ``FOR UPDATE``
first, so no entry is ever left without its parent. The schema is versioned
in ``schema_migrations`` and migrated at start-up under a transaction-level
advisory lock, so several instances may start at once.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from datetime import UTC, datetime
from typing import Any, Final

import attrs
import psycopg
import psycopg.errors
from psycopg import AsyncConnection
from psycopg.rows import TupleRow
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from callfs_adapters.metadata_rules import (
    check_rename,
    deepest_first,
    inode_from_row,
    subtree_bounds,
)
from callfs_core.errors import (
    AlreadyExists,
    BackendUnavailable,
    CallFSError,
    Conflict,
    DirectoryNotEmpty,
    InvalidPath,
    NotADirectory,
    NotFound,
)
from callfs_core.model import EntryChanges, Inode, Link, LinkStatus
from callfs_core.paths import MAX_PATH_BYTES, FsPath
from callfs_core.ports import MetadataPort

__all__ = ["PostgresMetadataStore", "migrate"]

logger = logging.getLogger(__name__)

Connection = AsyncConnection[TupleRow]

_MIGRATIONS: Final[tuple[tuple[str, ...], ...]] = (
    # 1: the tree and the link records.
    (
        """
        CREATE TABLE inodes (
            path TEXT COLLATE "C" PRIMARY KEY,
            parent TEXT COLLATE "C" REFERENCES inodes (path),
            name TEXT COLLATE "C" NOT NULL,
            is_dir BOOLEAN NOT NULL,
            owner TEXT NOT NULL,
            grp TEXT NOT NULL,
            mode INTEGER NOT NULL,
            size BIGINT NOT NULL,
            mtime TIMESTAMPTZ NOT NULL,
            ctime TIMESTAMPTZ NOT NULL,
            content_type TEXT,
            sha256 TEXT,
            backend TEXT NOT NULL,
            instance_id TEXT,
            version BIGINT NOT NULL,
            CONSTRAINT inodes_only_root_has_no_parent CHECK ((parent IS NULL) = (path = '/'))
        )
        """,
        "CREATE INDEX inodes_children ON inodes (parent, is_dir, name)",
        """
        CREATE TABLE links (
            token_id TEXT PRIMARY KEY,
            path TEXT NOT NULL,
            signature TEXT NOT NULL,
            status TEXT NOT NULL CHECK (status IN ('active', 'used')),
            expires_at TIMESTAMPTZ NOT NULL,
            created_at TIMESTAMPTZ NOT NULL,
            used_at TIMESTAMPTZ,
            used_by_ip TEXT,
            created_by TEXT
        )
        """,
        "CREATE INDEX links_expiry ON links (status, expires_at)",
        "CREATE INDEX links_used ON links (status, used_at)",
    ),
    # 2: inline content, kept in the entry's row (NULL unless inline).
    (
        "ALTER TABLE inodes ADD COLUMN inline BOOLEAN NOT NULL DEFAULT false",
        "ALTER TABLE inodes ADD COLUMN content BYTEA",
        # NOT VALID: every existing row has just got inline = false and content
        # NULL, so skip the full-table check under the migration's exclusive
        # lock; rows written from now on are checked all the same.
        "ALTER TABLE inodes ADD CONSTRAINT inodes_content_only_when_inline"
        " CHECK (inline = (content IS NOT NULL)) NOT VALID",
    ),
)
"""Schema steps; step ``n`` (1-based) is recorded as version ``n`` in
``schema_migrations``. Append new steps; never edit a released one."""

_MIGRATION_LOCK: Final = 0x43616C6C46532D6D  # "CallFS-m": the advisory lock key
_LOCK_ROUNDS: Final = 50  # bound on re-locking a subtree that keeps growing
_UNAVAILABLE: Final = "the metadata database is unavailable"

_INODE_COLUMNS: Final = (
    "path, is_dir, owner, grp, mode, size, mtime, ctime, content_type, sha256, backend,"
    " instance_id, version, inline"
)
"""Every column of an inode but ``content`` (bytes are read by ``read_content`` only)."""
_LINK_COLUMNS: Final = (
    "token_id, path, signature, status, expires_at, created_at, used_at, used_by_ip, created_by"
)


# -- translation --------------------------------------------------------------
@contextmanager
def _pg_errors(path: object = "/") -> Iterator[None]:
    """Translate psycopg and pool failures into core errors, chaining the cause.

    Messages are fixed sentences: a driver message may name the server, and
    the DSN (with its password) must never reach a client or a log line.
    """
    try:
        yield
    except CallFSError:
        raise
    except psycopg.errors.UniqueViolation as exc:
        raise AlreadyExists(path) from exc
    except psycopg.errors.CheckViolation as exc:
        # A caller's bug (an inline entry without its bytes), not an outage.
        raise ValueError(f"{path}: the entry breaks a check of the inodes table") from exc
    except psycopg.errors.ForeignKeyViolation as exc:
        raise NotFound(path, "the parent directory does not exist") from exc
    except psycopg.errors.QueryCanceled as exc:
        raise BackendUnavailable("the metadata database did not answer in time") from exc
    except PoolTimeout as exc:
        raise BackendUnavailable("no metadata database connection was available in time") from exc
    except (psycopg.Error, OSError) as exc:
        raise BackendUnavailable(_UNAVAILABLE) from exc


# -- values -------------------------------------------------------------------
def _aware(moment: datetime) -> datetime:
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError("datetimes stored in the metadata must be timezone-aware")
    return moment


def _utc(moment: datetime) -> datetime:
    return moment.astimezone(UTC)


def _inode(row: Sequence[Any]) -> Inode:
    return inode_from_row(row, _utc)


def _inode_values(inode: Inode) -> tuple[Any, ...]:
    """The attribute columns, in ``_INODE_COLUMNS`` order between path and version."""
    return (
        inode.is_dir,
        inode.owner,
        inode.group,
        inode.mode,
        inode.size,
        _aware(inode.mtime),
        _aware(inode.ctime),
        inode.content_type,
        inode.sha256,
        inode.backend,
        inode.instance_id,
    )


def _content(inode: Inode, content: bytes | None) -> bytes | None:
    """The new bytes to keep with ``inode``: ``content`` for an inline file, else none."""
    return bytes(content) if inode.inline and content is not None else None


def _stored(inode: Inode, version: int) -> Inode:
    """The inode as a later read returns it (UTC datetimes, the new version)."""
    return attrs.evolve(inode, mtime=_utc(inode.mtime), ctime=_utc(inode.ctime), version=version)


def _link(row: Sequence[Any]) -> Link:
    return Link(
        token_id=row[0],
        path=FsPath.parse(row[1]),
        signature=row[2],
        status=LinkStatus(row[3]),
        expires_at=_utc(row[4]),
        created_at=_utc(row[5]),
        used_at=None if row[6] is None else _utc(row[6]),
        used_by_ip=row[7],
        created_by=row[8],
    )


# -- migrations ---------------------------------------------------------------
async def _migrate(conn: Connection) -> list[int]:
    """Bring the schema up to date in one transaction; return the versions applied."""
    async with conn.transaction():
        encoding = await (await conn.execute("SHOW server_encoding")).fetchone()
        if encoding is None or encoding[0] != "UTF8":
            raise BackendUnavailable("the metadata database must use the UTF8 encoding")
        # Held until commit: concurrent starters wait here, then find nothing to do.
        await conn.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATION_LOCK,))
        await conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations ("
            " version INTEGER PRIMARY KEY,"
            " applied_at TIMESTAMPTZ NOT NULL DEFAULT now())"
        )
        cursor = await conn.execute("SELECT version FROM schema_migrations")
        done = {row[0] for row in await cursor.fetchall()}
        if done and max(done) > len(_MIGRATIONS):
            raise BackendUnavailable(
                "the metadata database was created by a newer version of CallFS"
            )
        applied: list[int] = []
        for number, step in enumerate(_MIGRATIONS, start=1):
            if number in done:
                continue
            for statement in step:
                await conn.execute(statement)
            await conn.execute("INSERT INTO schema_migrations (version) VALUES (%s)", (number,))
            applied.append(number)
    return applied


async def migrate(dsn: str, *, statement_timeout: float = 30.0) -> list[int]:
    """Create or upgrade the CallFS schema in the database at ``dsn`` (``callfs db migrate``).

    Safe to run while instances start or serve: migrations are serialised by
    an advisory lock and each runs in one transaction.

    Args:
        dsn: a libpq connection string or ``postgresql://`` URL.
        statement_timeout: seconds allowed for connecting and for each statement
            (waiting for another instance's migration included).

    Returns:
        The schema versions this call applied, in order (``[]`` when the
        schema was already current).

    Raises:
        BackendUnavailable: the database cannot be reached, or its schema is
            newer than this version of CallFS knows.
    """
    with _pg_errors():
        conn = await AsyncConnection.connect(
            dsn,
            autocommit=True,
            connect_timeout=max(round(statement_timeout), 2),
            application_name="callfs-migrate",
        )
        async with conn:
            await conn.execute(
                "SELECT set_config('statement_timeout', %s, false)",
                (str(max(round(statement_timeout * 1000), 1)),),
            )
            return await _migrate(conn)


# -- queries shared by the write operations ------------------------------------
async def _fetch_inode(conn: Connection, path: FsPath, *, lock: str = "") -> Inode | None:
    cursor = await conn.execute(
        f"SELECT {_INODE_COLUMNS} FROM inodes WHERE path = %s {lock}", (str(path),)
    )
    row = await cursor.fetchone()
    return None if row is None else _inode(row)


async def _has_children(conn: Connection, path: FsPath) -> bool:
    low, high = subtree_bounds(path)
    cursor = await conn.execute(
        "SELECT 1 FROM inodes WHERE path > %s AND path < %s LIMIT 1", (low, high)
    )
    return await cursor.fetchone() is not None


async def _lock_parent(conn: Connection, path: FsPath) -> None:
    """Check that the parent of ``path`` is a directory and keep it from being
    removed or moved until commit (``FOR SHARE``: creators do not block each other)."""
    if path.is_root:
        return
    cursor = await conn.execute(
        "SELECT is_dir FROM inodes WHERE path = %s FOR SHARE", (str(path.parent),)
    )
    row = await cursor.fetchone()
    if row is None:
        raise NotFound(path.parent, "the parent directory does not exist")
    if not row[0]:
        raise NotADirectory(path.parent)


async def _lock_subtree(conn: Connection, root: FsPath) -> list[str]:
    """Lock ``root`` and every entry below it ``FOR UPDATE``; return their paths.

    A creator that held a directory ``FOR SHARE`` while we waited for it has
    committed a child that this statement's snapshot does not show, so lock
    again until a round finds nothing new: then no entry below ``root`` can
    appear before commit (creating one needs its parent ``FOR SHARE``).
    """
    low, high = subtree_bounds(root)
    query = (
        "SELECT path FROM inodes WHERE path = %s OR (path > %s AND path < %s)"
        " ORDER BY path FOR UPDATE"
    )
    locked: list[str] = []
    for _ in range(_LOCK_ROUNDS):
        cursor = await conn.execute(query, (str(root), low, high))
        found = [row[0] for row in await cursor.fetchall()]
        if found == locked:
            break
        locked = found
    return locked


async def _write_attributes(conn: Connection, inode: Inode, version: int) -> None:
    # An inline entry keeps its bytes (valid under the new version) unless the
    # change relocated them (``inode.inline`` turned off by EntryChanges.apply).
    await conn.execute(
        "UPDATE inodes SET is_dir = %s, owner = %s, grp = %s, mode = %s, size = %s,"
        " mtime = %s, ctime = %s, content_type = %s, sha256 = %s, backend = %s,"
        " instance_id = %s, version = %s, inline = inline AND %s,"
        " content = CASE WHEN inline AND %s THEN content END WHERE path = %s",
        (*_inode_values(inode), version, inode.inline, inode.inline, str(inode.path)),
    )


# -- the store ------------------------------------------------------------------
class PostgresMetadataStore:
    """``MetadataPort`` on a PostgreSQL database shared by every CallFS instance.

    Call :meth:`open` (inside the worker process and event loop that use the
    store) before use and :meth:`close` at the end. Opening migrates the schema.

    Args:
        dsn: a libpq connection string or ``postgresql://`` URL.
        min_size: connections kept open.
        max_size: connections at most.
        statement_timeout: seconds a statement may run (lock waits included)
            before it fails with ``BackendUnavailable``.
        pool_timeout: seconds to wait for a free or new connection before
            failing with ``BackendUnavailable``.
    """

    def __init__(
        self,
        dsn: str,
        *,
        min_size: int = 1,
        max_size: int = 10,
        statement_timeout: float = 5.0,
        pool_timeout: float = 5.0,
    ) -> None:
        self._dsn = dsn
        self._min_size = min_size
        self._max_size = max_size
        self._statement_timeout = statement_timeout
        self._pool_timeout = pool_timeout
        self._pool: AsyncConnectionPool[Connection] | None = None

    def __repr__(self) -> str:
        return f"{type(self).__name__}(max_size={self._max_size})"  # never the DSN

    async def _configure(self, conn: Connection) -> None:
        await conn.execute(
            "SELECT set_config('statement_timeout', %s, false),"
            " set_config('TimeZone', 'UTC', false)",
            (str(max(round(self._statement_timeout * 1000), 1)),),
        )

    @staticmethod
    def _reconnect_failed(pool: AsyncConnectionPool[Connection]) -> None:
        # The pool stops retrying in the background; the next request starts again.
        logger.warning("the metadata database is unreachable; reconnecting on the next request")

    async def open(self) -> None:
        """Open the connection pool and create or migrate the schema.

        Raises:
            BackendUnavailable: the database cannot be reached within
                ``pool_timeout``, or its schema is newer than this CallFS.
        """
        if self._pool is not None:
            return
        pool: AsyncConnectionPool[Connection] = AsyncConnectionPool(
            self._dsn,
            min_size=self._min_size,
            max_size=self._max_size,
            open=False,
            kwargs={
                "autocommit": True,
                "application_name": "callfs",
                "connect_timeout": max(round(self._pool_timeout), 2),
            },
            configure=self._configure,
            check=AsyncConnectionPool.check_connection,
            timeout=self._pool_timeout,
            # Give up background retries soon (their back-off doubles each time),
            # so that a request after an outage connects at once.
            reconnect_timeout=max(2 * self._pool_timeout, 2.0),
            reconnect_failed=self._reconnect_failed,
            name="callfs-metadata",
        )
        try:
            with _pg_errors():
                await pool.open(wait=True, timeout=self._pool_timeout)
                async with pool.connection() as conn:
                    await _migrate(conn)
        except BaseException:
            await pool.close()
            raise
        self._pool = pool

    async def close(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            await pool.close()

    @asynccontextmanager
    async def _connection(self) -> AsyncIterator[Connection]:
        pool = self._pool
        if pool is None:
            raise BackendUnavailable("the metadata store is not open")
        async with pool.connection() as conn:
            yield conn

    @asynccontextmanager
    async def _transaction(self, path: object) -> AsyncIterator[Connection]:
        """One transaction on one pooled connection, with errors translated."""
        with _pg_errors(path):
            async with self._connection() as conn, conn.transaction():
                yield conn

    async def _fetch(self, path: object, query: str, params: Sequence[Any]) -> list[TupleRow]:
        with _pg_errors(path):
            async with self._connection() as conn:
                cursor = await conn.execute(query, params)
                return await cursor.fetchall()

    # -- inodes ---------------------------------------------------------------
    async def get(self, path: FsPath) -> Inode | None:
        rows = await self._fetch(
            path, f"SELECT {_INODE_COLUMNS} FROM inodes WHERE path = %s", (str(path),)
        )
        return _inode(rows[0]) if rows else None

    async def get_many(self, paths: Sequence[FsPath]) -> dict[FsPath, Inode]:
        unique = sorted({str(path) for path in paths})
        if not unique:
            return {}
        rows = await self._fetch(
            "/", f"SELECT {_INODE_COLUMNS} FROM inodes WHERE path = ANY(%s::text[])", (unique,)
        )
        found = (_inode(row) for row in rows)
        return {inode.path: inode for inode in found}

    async def list_children(
        self,
        parent: FsPath,
        *,
        after: tuple[bool, str] | None = None,
        limit: int | None = None,
    ) -> list[Inode]:
        bound = None if limit is None else max(limit, 0)  # LIMIT NULL is no limit
        if after is None:
            query = (
                f"SELECT {_INODE_COLUMNS} FROM inodes WHERE parent = %s"
                " ORDER BY is_dir, name LIMIT %s"
            )
            params: tuple[Any, ...] = (str(parent), bound)
        else:
            query = (
                f"SELECT {_INODE_COLUMNS} FROM inodes"
                " WHERE parent = %s AND (is_dir, name) > (%s, %s)"
                " ORDER BY is_dir, name LIMIT %s"
            )
            params = (str(parent), after[0], after[1], bound)
        return [_inode(row) for row in await self._fetch(parent, query, params)]

    async def list_subtree(self, root: FsPath) -> list[Inode]:
        low, high = subtree_bounds(root)
        query = f"SELECT {_INODE_COLUMNS} FROM inodes WHERE path > %s AND path < %s"
        return [_inode(row) for row in await self._fetch(root, query, (low, high))]

    async def create(self, inode: Inode, *, content: bytes | None = None) -> Inode:
        if inode.inline and content is None:
            raise ValueError(f"an inline file needs its content: {inode.path}")
        values = _inode_values(inode)
        data = _content(inode, content)
        parent = None if inode.path.is_root else str(inode.path.parent)
        async with self._transaction(inode.path) as conn:
            await _lock_parent(conn, inode.path)
            await conn.execute(
                f"INSERT INTO inodes (parent, name, {_INODE_COLUMNS}, content)"
                " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, 1, %s, %s)",
                (parent, inode.path.name, str(inode.path), *values, data is not None, data),
            )
        return _stored(inode, 1)

    async def update(
        self,
        inode: Inode,
        *,
        expected_version: int | None = None,
        content: bytes | None = None,
    ) -> Inode:
        values = _inode_values(inode)
        data = _content(inode, content)
        async with self._transaction(inode.path) as conn:
            # One statement: the version check, the attributes and the bytes
            # (NULL when the file is not inline) change together or not at all.
            # An entry made inline without bytes breaks the table's check.
            cursor = await conn.execute(
                "UPDATE inodes SET is_dir = %s, owner = %s, grp = %s, mode = %s, size = %s,"
                " mtime = %s, ctime = %s, content_type = %s, sha256 = %s, backend = %s,"
                " instance_id = %s, inline = %s,"
                " content = CASE WHEN %s THEN COALESCE(%s::bytea, content) END,"
                " version = version + 1"
                " WHERE path = %s AND (%s::bigint IS NULL OR version = %s::bigint)"
                " RETURNING version",
                (
                    *values,
                    inode.inline,
                    inode.inline,
                    data,
                    str(inode.path),
                    expected_version,
                    expected_version,
                ),
            )
            row = await cursor.fetchone()
            if row is None:
                exists = await conn.execute(
                    "SELECT 1 FROM inodes WHERE path = %s", (str(inode.path),)
                )
                if await exists.fetchone() is None:
                    raise NotFound(inode.path)
                raise Conflict(inode.path)
        return _stored(inode, row[0])

    async def read_content(self, path: FsPath, version: int) -> bytes | None:
        rows = await self._fetch(
            path,
            "SELECT content FROM inodes WHERE path = %s AND version = %s AND inline",
            (str(path), version),
        )
        return bytes(rows[0][0]) if rows else None

    async def delete(self, path: FsPath, *, recursive: bool = False) -> list[Inode]:
        low, high = subtree_bounds(path)
        async with self._transaction(path) as conn:
            if recursive:
                locked = await _lock_subtree(conn, path)
                if str(path) not in locked:
                    raise NotFound(path)
            else:
                if await _fetch_inode(conn, path, lock="FOR UPDATE") is None:
                    raise NotFound(path)
                # A fresh snapshot, taken after creators of children released the row.
                if await _has_children(conn, path):
                    raise DirectoryNotEmpty(path)
            cursor = await conn.execute(
                f"DELETE FROM inodes WHERE path = %s OR (path > %s AND path < %s)"
                f" RETURNING {_INODE_COLUMNS}",
                (str(path), low, high),
            )
            removed = [_inode(row) for row in await cursor.fetchall()]
        return deepest_first(removed)

    async def rename(
        self,
        source: FsPath,
        destination: FsPath,
        *,
        replace: bool = False,
        changes: EntryChanges | None = None,
    ) -> Inode | None:
        check_rename(source, destination)
        low, high = subtree_bounds(source)
        src, dst = str(source), str(destination)
        async with self._transaction(destination) as conn:
            moving = await _lock_subtree(conn, source)
            if src not in moving:
                raise NotFound(source)
            replaced = await _fetch_inode(conn, destination, lock="FOR UPDATE")
            if replaced is not None:
                if not replace or destination == source:
                    raise AlreadyExists(destination)
                if await _has_children(conn, destination):
                    raise DirectoryNotEmpty(destination)
                await conn.execute("DELETE FROM inodes WHERE path = %s", (dst,))
            await _lock_parent(conn, destination)
            longest = max(len(path.encode()) for path in moving)
            if longest - len(src.encode()) + len(dst.encode()) > MAX_PATH_BYTES:
                raise InvalidPath(dst, f"path is longer than {MAX_PATH_BYTES} bytes")
            # substr() counts characters in a UTF8 database, like Python's len().
            start = len(src) + 1
            await conn.execute(
                "UPDATE inodes SET"
                " path = %s || substr(path, %s),"
                " parent = CASE WHEN path = %s THEN %s ELSE %s || substr(parent, %s) END,"
                " name = CASE WHEN path = %s THEN %s ELSE name END"
                " WHERE path = %s OR (path > %s AND path < %s)",
                (
                    dst,
                    start,
                    src,
                    str(destination.parent),
                    dst,
                    start,
                    src,
                    destination.name,
                    src,
                    low,
                    high,
                ),
            )
            if changes is not None:
                moved = await _fetch_inode(conn, destination)
                assert moved is not None
                await _write_attributes(conn, changes.apply(moved), moved.version + 1)
        return replaced

    # -- links ----------------------------------------------------------------
    async def create_link(self, link: Link) -> None:
        async with self._transaction(link.path) as conn:
            await conn.execute(
                f"INSERT INTO links ({_LINK_COLUMNS}) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)",
                (
                    link.token_id,
                    str(link.path),
                    link.signature,
                    link.status.value,
                    _aware(link.expires_at),
                    _aware(link.created_at),
                    None if link.used_at is None else _aware(link.used_at),
                    link.used_by_ip,
                    link.created_by,
                ),
            )

    async def get_link(self, token_id: str) -> Link | None:
        rows = await self._fetch(
            "/", f"SELECT {_LINK_COLUMNS} FROM links WHERE token_id = %s", (token_id,)
        )
        return _link(rows[0]) if rows else None

    async def consume_link(self, token_id: str, *, used_at: datetime, client_ip: str) -> bool:
        with _pg_errors():
            async with self._connection() as conn:
                cursor = await conn.execute(
                    "UPDATE links SET status = %s, used_at = %s, used_by_ip = %s"
                    " WHERE token_id = %s AND status = %s",
                    (
                        LinkStatus.USED.value,
                        _aware(used_at),
                        client_ip,
                        token_id,
                        LinkStatus.ACTIVE.value,
                    ),
                )
                return cursor.rowcount == 1

    async def cleanup_links(self, *, now: datetime, used_before: datetime) -> int:
        with _pg_errors():
            async with self._connection() as conn:
                cursor = await conn.execute(
                    "DELETE FROM links"
                    " WHERE (status = %s AND expires_at <= %s) OR (status = %s AND used_at < %s)",
                    (
                        LinkStatus.ACTIVE.value,
                        _aware(now),
                        LinkStatus.USED.value,
                        _aware(used_before),
                    ),
                )
                return cursor.rowcount

    async def health(self) -> None:
        await self._fetch("/", "SELECT 1", ())


_check: type[MetadataPort] = PostgresMetadataStore
