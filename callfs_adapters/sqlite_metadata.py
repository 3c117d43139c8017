"""SQLite metadata (the embedded default ``MetadataPort``).

One connection for changes and scans, used by one worker thread at a time
(an anyio lock guards it), in WAL mode with a busy timeout so that several
processes (one per server worker) can share the database file. Every
mutation runs in a ``BEGIN IMMEDIATE`` transaction, so its checks and its
writes are atomic across processes too.

Point lookups and single-entry changes (``get``, ``get_many``, ``create``,
``update``, a non-recursive ``delete``, the link calls) first run on a second
connection directly on the event loop: an indexed statement takes
microseconds, while a hop to a thread and back costs more than the query and,
under load, a context switch or two (design.md §5, "thread hops decide small
files"). That connection never waits (busy timeout 0): in WAL mode a reader
never waits for a writer, and when another connection holds the write lock,
``BEGIN IMMEDIATE`` fails at once, having changed nothing, and the call moves
to the threaded connection, which waits up to the busy timeout. Scans
(listings, subtrees) and renames, which can touch many rows, always run in
the thread. SQLite's automatic checkpoint (when the WAL passes 1,000 pages)
then also runs on the loop, after the change that crossed the mark: a few
milliseconds every few hundred changes.

Paths are stored as UTF-8 ``TEXT`` compared with SQLite's default ``BINARY``
collation (byte-wise, which is code-point order). The children of a
directory are an index range scan on ``(parent, is_dir, name)``; a subtree is
the primary-key range ``p + '/' < path < p + '0'`` (``'0'`` is the character
after ``'/'``), so no ``LIKE`` pattern escaping is involved. Datetimes are
stored as integer microseconds since the Unix epoch, UTC.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any, Final, TypeVar, TypeVarTuple

import anyio
import anyio.to_thread
import attrs

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

__all__ = ["SqliteMetadataStore"]

T = TypeVar("T")
Ts = TypeVarTuple("Ts")

_MIGRATIONS: Final[tuple[tuple[str, ...], ...]] = (
    # 1: the tree and the link records.
    (
        """
        CREATE TABLE inodes (
            path TEXT PRIMARY KEY NOT NULL,
            parent TEXT REFERENCES inodes (path) DEFERRABLE INITIALLY DEFERRED,
            name TEXT NOT NULL,
            is_dir INTEGER NOT NULL,
            owner TEXT NOT NULL,
            grp TEXT NOT NULL,
            mode INTEGER NOT NULL,
            size INTEGER NOT NULL,
            mtime INTEGER NOT NULL,
            ctime INTEGER NOT NULL,
            content_type TEXT,
            sha256 TEXT,
            backend TEXT NOT NULL,
            instance_id TEXT,
            version INTEGER NOT NULL
        ) WITHOUT ROWID
        """,
        "CREATE INDEX inodes_children ON inodes (parent, is_dir, name)",
        """
        CREATE TABLE links (
            token_id TEXT PRIMARY KEY NOT NULL,
            path TEXT NOT NULL,
            signature TEXT NOT NULL,
            status TEXT NOT NULL,
            expires_at INTEGER NOT NULL,
            created_at INTEGER NOT NULL,
            used_at INTEGER,
            used_by_ip TEXT,
            created_by TEXT
        )
        """,
        "CREATE INDEX links_expiry ON links (status, expires_at)",
        "CREATE INDEX links_used ON links (status, used_at)",
    ),
    # 2: small files kept with their entry (``Inode.inline``). The bytes live in
    # their own table so that the rows listings read stay small; the foreign key
    # carries them along with renames and drops them with deletes.
    (
        "ALTER TABLE inodes ADD COLUMN inline INTEGER NOT NULL DEFAULT 0",
        """
        CREATE TABLE contents (
            path TEXT PRIMARY KEY NOT NULL
                REFERENCES inodes (path) ON DELETE CASCADE ON UPDATE CASCADE,
            data BLOB NOT NULL
        ) WITHOUT ROWID
        """,
    ),
)
"""Schema steps; step ``n`` (1-based) brings ``PRAGMA user_version`` to ``n``.
Append new steps; never edit a released one."""

DEFAULT_BUSY_TIMEOUT: Final = 5.0  # seconds a writer waits for another one
# Pauses (seconds) between inline tries of a busy database; None: go threaded.
_INLINE_RETRY_PAUSES: Final = (0, 0, 0, 0.0005, 0.001, 0.002, None)
_BATCH: Final = 500  # bound parameters per IN (...) query
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND: Final = timedelta(microseconds=1)

_INODE_COLUMNS: Final = (
    "path, is_dir, owner, grp, mode, size, mtime, ctime, content_type, sha256, backend,"
    " instance_id, version, inline"
)
_LINK_COLUMNS: Final = (
    "token_id, path, signature, status, expires_at, created_at, used_at, used_by_ip, created_by"
)


# -- translation --------------------------------------------------------------
@contextmanager
def _sqlite_errors(path: object = "/") -> Iterator[None]:
    """Translate sqlite3 (and file system) failures into core errors, chaining the cause."""
    try:
        yield
    except CallFSError:
        raise  # NotFound & co. are OSError subclasses too
    except sqlite3.IntegrityError as exc:
        if "FOREIGN KEY" in str(exc):
            raise NotFound(path, "the parent directory does not exist") from exc
        raise AlreadyExists(path) from exc
    except sqlite3.ProgrammingError:
        raise  # a bug (or use after close), not an outage; InterfaceError passes too
    except (sqlite3.DatabaseError, OSError) as exc:
        raise BackendUnavailable("the metadata database is unavailable") from exc


@contextmanager
def _write(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """A write transaction: the database write lock is taken first (waiting up to
    the busy timeout), so reads and writes inside it see one consistent state."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.rollback()
        raise


@contextmanager
def _read(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """A read transaction: several queries see one snapshot."""
    conn.execute("BEGIN")
    try:
        yield conn
    finally:
        if conn.in_transaction:
            conn.rollback()


# -- values -------------------------------------------------------------------
def _micros(moment: datetime) -> int:
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError("datetimes stored in the metadata must be timezone-aware")
    return (moment - _EPOCH) // _MICROSECOND


def _moment(micros: int) -> datetime:
    return _EPOCH + micros * _MICROSECOND


def _inode(row: Sequence[Any]) -> Inode:
    return inode_from_row(row, _moment)


def _inode_values(inode: Inode) -> tuple[Any, ...]:
    """The column values after ``path, parent, name`` in ``_insert`` order."""
    return (
        int(inode.is_dir),
        inode.owner,
        inode.group,
        inode.mode,
        inode.size,
        _micros(inode.mtime),
        _micros(inode.ctime),
        inode.content_type,
        inode.sha256,
        inode.backend,
        inode.instance_id,
        int(inode.inline),
    )


def _stored(inode: Inode, version: int) -> Inode:
    """The inode as a later read returns it (UTC datetimes, the new version)."""
    return attrs.evolve(
        inode,
        mtime=_moment(_micros(inode.mtime)),
        ctime=_moment(_micros(inode.ctime)),
        version=version,
    )


def _link(row: Sequence[Any]) -> Link:
    return Link(
        token_id=row[0],
        path=FsPath.parse(row[1]),
        signature=row[2],
        status=LinkStatus(row[3]),
        expires_at=_moment(row[4]),
        created_at=_moment(row[5]),
        used_at=None if row[6] is None else _moment(row[6]),
        used_by_ip=row[7],
        created_by=row[8],
    )


# -- operations, run in the worker thread ----------------------------------------
def _connect(database: str, busy_timeout: float) -> sqlite3.Connection:
    if database != ":memory:" and not database.startswith("file:"):
        folder = os.path.dirname(os.path.abspath(database))
        os.makedirs(folder, mode=0o755, exist_ok=True)
    conn = sqlite3.connect(
        database,
        timeout=busy_timeout,
        isolation_level=None,  # we issue BEGIN/COMMIT ourselves
        check_same_thread=False,  # one thread at a time, guarded by the store's lock
    )
    try:
        conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout * 1000)}")
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = NORMAL")
        conn.execute("PRAGMA foreign_keys = ON")
        _migrate(conn)
    except BaseException:
        conn.close()
        raise
    return conn


def _connect_inline(database: str) -> sqlite3.Connection:
    """The connection used on the event loop (the schema exists by now): it never
    waits for a lock (busy timeout 0), so it never blocks the loop on one."""
    conn = sqlite3.connect(database, isolation_level=None, check_same_thread=False)
    try:
        conn.execute("PRAGMA busy_timeout = 0")
        conn.execute("PRAGMA synchronous = NORMAL")
        conn.execute("PRAGMA foreign_keys = ON")
    except BaseException:
        conn.close()
        raise
    return conn


def _is_busy(exc: BaseException | None) -> bool:
    return isinstance(exc, sqlite3.OperationalError) and exc.sqlite_errorcode in (
        sqlite3.SQLITE_BUSY,
        sqlite3.SQLITE_LOCKED,
    )


def _migrate(conn: sqlite3.Connection) -> None:
    with _write(conn):
        (current,) = conn.execute("PRAGMA user_version").fetchone()
        if current > len(_MIGRATIONS):
            raise BackendUnavailable(
                "the metadata database was created by a newer version of CallFS"
            )
        for number, step in enumerate(_MIGRATIONS[current:], start=current + 1):
            for statement in step:
                conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {number}")


def _check_parent(conn: sqlite3.Connection, path: FsPath) -> None:
    if path.is_root:
        return
    row = conn.execute("SELECT is_dir FROM inodes WHERE path = ?", (str(path.parent),)).fetchone()
    if row is None:
        raise NotFound(path.parent, "the parent directory does not exist")
    if not row[0]:
        raise NotADirectory(path.parent)


def _exists(conn: sqlite3.Connection, path: FsPath) -> bool:
    return conn.execute("SELECT 1 FROM inodes WHERE path = ?", (str(path),)).fetchone() is not None


def _get(conn: sqlite3.Connection, path: FsPath) -> Inode | None:
    row = conn.execute(
        f"SELECT {_INODE_COLUMNS} FROM inodes WHERE path = ?", (str(path),)
    ).fetchone()
    return None if row is None else _inode(row)


def _get_many(conn: sqlite3.Connection, paths: list[str]) -> dict[FsPath, Inode]:
    found: dict[FsPath, Inode] = {}
    with _read(conn):
        for start in range(0, len(paths), _BATCH):
            batch = paths[start : start + _BATCH]
            marks = ", ".join("?" * len(batch))
            query = f"SELECT {_INODE_COLUMNS} FROM inodes WHERE path IN ({marks})"
            for row in conn.execute(query, batch):
                inode = _inode(row)
                found[inode.path] = inode
    return found


def _list_children(
    conn: sqlite3.Connection, parent: FsPath, after: tuple[bool, str] | None, limit: int
) -> list[Inode]:
    if after is None:
        query = (
            f"SELECT {_INODE_COLUMNS} FROM inodes WHERE parent = ? ORDER BY is_dir, name LIMIT ?"
        )
        rows = conn.execute(query, (str(parent), limit))
    else:
        query = (
            f"SELECT {_INODE_COLUMNS} FROM inodes WHERE parent = ? AND (is_dir, name) > (?, ?)"
            " ORDER BY is_dir, name LIMIT ?"
        )
        rows = conn.execute(query, (str(parent), int(after[0]), after[1], limit))
    return [_inode(row) for row in rows]


def _list_subtree(conn: sqlite3.Connection, root: FsPath) -> list[Inode]:
    low, high = subtree_bounds(root)
    query = f"SELECT {_INODE_COLUMNS} FROM inodes WHERE path > ? AND path < ?"
    return [_inode(row) for row in conn.execute(query, (low, high))]


def _create(conn: sqlite3.Connection, inode: Inode, content: bytes | None) -> Inode:
    if inode.inline and content is None:
        raise ValueError(f"an inline file needs its content: {inode.path}")
    values = _inode_values(inode)
    stored = _stored(inode, 1)
    with _write(conn):
        if _exists(conn, inode.path):
            raise AlreadyExists(inode.path)
        _check_parent(conn, inode.path)
        parent = None if inode.path.is_root else str(inode.path.parent)
        conn.execute(
            f"INSERT INTO inodes (path, parent, name, {_INODE_COLUMNS.removeprefix('path, ')})"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (str(inode.path), parent, inode.path.name, *values[:-1], 1, values[-1]),
        )
        if inode.inline:
            conn.execute(
                "INSERT INTO contents (path, data) VALUES (?, ?)", (str(inode.path), content)
            )
    return stored


def _update(
    conn: sqlite3.Connection,
    inode: Inode,
    expected_version: int | None,
    content: bytes | None,
) -> Inode:
    values = _inode_values(inode)
    with _write(conn):
        row = conn.execute(
            "SELECT version, inline FROM inodes WHERE path = ?", (str(inode.path),)
        ).fetchone()
        if row is None:
            raise NotFound(inode.path)
        if expected_version is not None and row[0] != expected_version:
            raise Conflict(inode.path)
        if inode.inline and content is None and not row[1]:
            raise ValueError(f"an inline file needs its content: {inode.path}")
        version = row[0] + 1
        _store_values(conn, inode, version, values)
        if inode.inline and content is not None:
            conn.execute(
                "INSERT OR REPLACE INTO contents (path, data) VALUES (?, ?)",
                (str(inode.path), content),
            )
        elif row[1] and not inode.inline:
            conn.execute("DELETE FROM contents WHERE path = ?", (str(inode.path),))
    return _stored(inode, version)


def _read_content(conn: sqlite3.Connection, path: FsPath, version: int) -> bytes | None:
    row = conn.execute(
        "SELECT c.data FROM inodes i JOIN contents c ON c.path = i.path"
        " WHERE i.path = ? AND i.version = ? AND i.inline",
        (str(path), version),
    ).fetchone()
    return None if row is None else bytes(row[0])


def _store_values(
    conn: sqlite3.Connection,
    inode: Inode,
    version: int,
    values: tuple[Any, ...] | None = None,
) -> None:
    """Overwrite the attribute columns of the row at ``inode.path``."""
    conn.execute(
        "UPDATE inodes SET is_dir = ?, owner = ?, grp = ?, mode = ?, size = ?, mtime = ?,"
        " ctime = ?, content_type = ?, sha256 = ?, backend = ?, instance_id = ?, inline = ?,"
        " version = ? WHERE path = ?",
        (*(values or _inode_values(inode)), version, str(inode.path)),
    )


def _delete(conn: sqlite3.Connection, path: FsPath, recursive: bool) -> list[Inode]:
    low, high = subtree_bounds(path)
    with _write(conn):
        inode = _get(conn, path)
        if inode is None:
            raise NotFound(path)
        if recursive:
            below = _list_subtree(conn, path)
        else:
            child = conn.execute(
                "SELECT 1 FROM inodes WHERE path > ? AND path < ? LIMIT 1", (low, high)
            ).fetchone()
            if child is not None:
                raise DirectoryNotEmpty(path)
            below = []
        conn.execute(
            "DELETE FROM inodes WHERE path = ? OR (path > ? AND path < ?)", (str(path), low, high)
        )
    removed = [inode, *below]
    return deepest_first(removed)


def _rename(
    conn: sqlite3.Connection,
    source: FsPath,
    destination: FsPath,
    replace: bool,
    changes: EntryChanges | None,
) -> Inode | None:
    low, high = subtree_bounds(source)
    src, dst = str(source), str(destination)
    with _write(conn):
        if not _exists(conn, source):
            raise NotFound(source)
        replaced = _get(conn, destination)
        if replaced is not None:
            if not replace or destination == source:
                raise AlreadyExists(destination)
            dst_low, dst_high = subtree_bounds(destination)
            child = conn.execute(
                "SELECT 1 FROM inodes WHERE path > ? AND path < ? LIMIT 1", (dst_low, dst_high)
            ).fetchone()
            if child is not None:
                raise DirectoryNotEmpty(destination)
            conn.execute("DELETE FROM inodes WHERE path = ?", (dst,))
        _check_parent(conn, destination)
        (longest,) = conn.execute(
            "SELECT max(length(CAST(path AS BLOB))) FROM inodes"
            " WHERE path = ? OR (path > ? AND path < ?)",
            (src, low, high),
        ).fetchone()
        if longest - len(src.encode()) + len(dst.encode()) > MAX_PATH_BYTES:
            raise InvalidPath(dst, f"path is longer than {MAX_PATH_BYTES} bytes")
        # substr() and length() count characters on TEXT, like Python's len().
        start = len(src) + 1
        conn.execute(
            "UPDATE inodes SET"
            " path = ? || substr(path, ?),"
            " parent = CASE WHEN path = ? THEN ? ELSE ? || substr(parent, ?) END,"
            " name = CASE WHEN path = ? THEN ? ELSE name END"
            " WHERE path = ? OR (path > ? AND path < ?)",
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
            moved = _get(conn, destination)
            assert moved is not None
            changed = changes.apply(moved)
            _store_values(conn, changed, moved.version + 1)
            if moved.inline and not changed.inline:
                conn.execute("DELETE FROM contents WHERE path = ?", (dst,))
    return replaced


def _create_link(conn: sqlite3.Connection, link: Link) -> None:
    with _write(conn):
        conn.execute(
            f"INSERT INTO links ({_LINK_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                link.token_id,
                str(link.path),
                link.signature,
                link.status.value,
                _micros(link.expires_at),
                _micros(link.created_at),
                None if link.used_at is None else _micros(link.used_at),
                link.used_by_ip,
                link.created_by,
            ),
        )


def _get_link(conn: sqlite3.Connection, token_id: str) -> Link | None:
    row = conn.execute(
        f"SELECT {_LINK_COLUMNS} FROM links WHERE token_id = ?", (token_id,)
    ).fetchone()
    return None if row is None else _link(row)


def _consume_link(conn: sqlite3.Connection, token_id: str, used_at: int, client_ip: str) -> bool:
    with _write(conn):
        cursor = conn.execute(
            "UPDATE links SET status = ?, used_at = ?, used_by_ip = ?"
            " WHERE token_id = ? AND status = ?",
            (LinkStatus.USED.value, used_at, client_ip, token_id, LinkStatus.ACTIVE.value),
        )
    return cursor.rowcount == 1


def _cleanup_links(conn: sqlite3.Connection, now: int, used_before: int) -> int:
    with _write(conn):
        cursor = conn.execute(
            "DELETE FROM links"
            " WHERE (status = ? AND expires_at <= ?) OR (status = ? AND used_at < ?)",
            (LinkStatus.ACTIVE.value, now, LinkStatus.USED.value, used_before),
        )
    return cursor.rowcount


def _health(conn: sqlite3.Connection) -> None:
    conn.execute("SELECT 1 FROM inodes LIMIT 1").fetchall()


# -- the store ------------------------------------------------------------------
class SqliteMetadataStore:
    """``MetadataPort`` on an SQLite database file (created, with its folder, on open).

    Call :meth:`open` before use and :meth:`close` at the end. Several stores
    (in several processes) may use the same file.

    Args:
        path: the database file (``:memory:`` for a private in-memory database).
        busy_timeout: seconds to wait for another writer before failing with
            ``BackendUnavailable``.
    """

    def __init__(self, path: str, *, busy_timeout: float = DEFAULT_BUSY_TIMEOUT) -> None:
        self._database = path
        self._busy_timeout = busy_timeout
        self._conn: sqlite3.Connection | None = None
        self._inline: sqlite3.Connection | None = None
        self._lock: anyio.Lock | None = None

    async def open(self) -> None:
        """Connect, enable WAL, and create or migrate the schema."""
        if self._conn is not None:
            return
        self._lock = anyio.Lock()
        with _sqlite_errors():
            self._conn = await anyio.to_thread.run_sync(
                _connect, self._database, self._busy_timeout
            )
            if self._database != ":memory:" and not self._database.startswith("file:"):
                self._inline = _connect_inline(self._database)

    async def close(self) -> None:
        conn, lock = self._conn, self._lock
        if conn is None or lock is None:
            return
        async with lock:
            self._conn = None
            if self._inline is not None:
                self._inline.close()
                self._inline = None
            await anyio.to_thread.run_sync(conn.close)

    def data_version(self) -> int:
        """A number that changes whenever another connection (in any process)
        commits to the database: SQLite's ``PRAGMA data_version``, read inline.

        Raises:
            BackendUnavailable: the store is not open, or the database fails.
        """
        inline = self._inline
        if inline is None:
            raise BackendUnavailable("the metadata store has no inline connection")
        with _sqlite_errors():
            value: int = inline.execute("PRAGMA data_version").fetchone()[0]
        return value

    async def _small(
        self, path: object, func: Callable[[sqlite3.Connection, *Ts], T], *args: *Ts
    ) -> T:
        """A call touching one entry: inline when the database is free, else threaded.

        Another process's write holds the database for tens of microseconds, so
        a busy database is tried again on the loop a few times (letting other
        requests run meanwhile) before the call moves to the threaded connection,
        whose busy handler sleeps 1-100 ms between tries."""
        inline = self._inline
        if inline is not None:
            for pause in _INLINE_RETRY_PAUSES:
                try:
                    with _sqlite_errors(path):
                        return func(inline, *args)
                except BackendUnavailable as exc:
                    if not _is_busy(exc.__cause__):
                        raise
                if pause is None:
                    break
                await anyio.sleep(pause)
        return await self._run(path, func, *args)

    async def _run(
        self, path: object, func: Callable[[sqlite3.Connection, *Ts], T], *args: *Ts
    ) -> T:
        conn, lock = self._conn, self._lock
        if conn is None or lock is None:
            raise BackendUnavailable("the metadata store is not open")
        async with lock:
            with _sqlite_errors(path):
                return await anyio.to_thread.run_sync(func, conn, *args)

    # -- inodes ---------------------------------------------------------------
    async def get(self, path: FsPath) -> Inode | None:
        return await self._small(path, _get, path)

    async def get_many(self, paths: Sequence[FsPath]) -> dict[FsPath, Inode]:
        unique = sorted({str(path) for path in paths})
        if not unique:
            return {}
        return await self._small("/", _get_many, unique)

    async def list_children(
        self,
        parent: FsPath,
        *,
        after: tuple[bool, str] | None = None,
        limit: int | None = None,
    ) -> list[Inode]:
        bound = -1 if limit is None else max(limit, 0)
        return await self._run(parent, _list_children, parent, after, bound)

    async def list_subtree(self, root: FsPath) -> list[Inode]:
        return await self._run(root, _list_subtree, root)

    async def create(self, inode: Inode, *, content: bytes | None = None) -> Inode:
        return await self._small(inode.path, _create, inode, content)

    async def update(
        self,
        inode: Inode,
        *,
        expected_version: int | None = None,
        content: bytes | None = None,
    ) -> Inode:
        return await self._small(inode.path, _update, inode, expected_version, content)

    async def read_content(self, path: FsPath, version: int) -> bytes | None:
        return await self._small(path, _read_content, path, version)

    async def delete(self, path: FsPath, *, recursive: bool = False) -> list[Inode]:
        if recursive:
            return await self._run(path, _delete, path, recursive)
        return await self._small(path, _delete, path, recursive)

    async def rename(
        self,
        source: FsPath,
        destination: FsPath,
        *,
        replace: bool = False,
        changes: EntryChanges | None = None,
    ) -> Inode | None:
        check_rename(source, destination)
        return await self._run(destination, _rename, source, destination, replace, changes)

    # -- links ----------------------------------------------------------------
    async def create_link(self, link: Link) -> None:
        await self._small(link.path, _create_link, link)

    async def get_link(self, token_id: str) -> Link | None:
        return await self._small("/", _get_link, token_id)

    async def consume_link(self, token_id: str, *, used_at: datetime, client_ip: str) -> bool:
        return await self._small("/", _consume_link, token_id, _micros(used_at), client_ip)

    async def cleanup_links(self, *, now: datetime, used_before: datetime) -> int:
        return await self._run("/", _cleanup_links, _micros(now), _micros(used_before))

    async def health(self) -> None:
        await self._run("/", _health)


_check: type[MetadataPort] = SqliteMetadataStore
