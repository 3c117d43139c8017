"""The ports: what the engine needs from the outside world, as async Protocols.

Adapters in ``callfs_adapters`` implement them; the contract suites in
``callfs_core.testing`` check that an implementation behaves as documented
here. Every method raises only errors of :mod:`callfs_core.errors`: an adapter
translates its library's exceptions at its boundary (connection failures
become :class:`~callfs_core.errors.BackendUnavailable`).
"""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator, Sequence
from contextlib import AbstractAsyncContextManager
from datetime import datetime
from typing import Protocol, runtime_checkable

from callfs_core.model import BlobInfo, ByteRange, EntryChanges, Inode, Link
from callfs_core.paths import FsPath

__all__ = [
    "BlobBackendPort",
    "BlobReader",
    "Clock",
    "IdGenerator",
    "LinkSigner",
    "LockPort",
    "MetadataPort",
    "PeerPort",
    "RateLimitPort",
    "SharedLockPort",
    "StagedBlob",
]


@runtime_checkable
class MetadataPort(Protocol):
    """The tree of inodes and the link records. The source of truth for existence.

    Children of a directory are always ordered files first, then directories,
    each by name in Unicode code-point order (byte-wise UTF-8), in every store.
    """

    async def get(self, path: FsPath) -> Inode | None:
        """Return the inode at ``path`` or ``None`` when nothing is there."""
        ...

    async def get_many(self, paths: Sequence[FsPath]) -> dict[FsPath, Inode]:
        """Return the inodes that exist among ``paths`` (missing ones are absent).

        Used to fetch a path and all its ancestors in one round trip.
        """
        ...

    async def list_children(
        self,
        parent: FsPath,
        *,
        after: tuple[bool, str] | None = None,
        limit: int | None = None,
    ) -> list[Inode]:
        """List the direct children of ``parent`` in listing order.

        Args:
            parent: the directory.
            after: cursor ``(is_directory, name)``: return only children that
                sort after it (files before directories, then by name).
            limit: at most this many children.

        Returns:
            The children; ``[]`` for an empty or missing directory.
        """
        ...

    async def list_subtree(self, root: FsPath) -> list[Inode]:
        """Return every inode strictly below ``root`` (any order)."""
        ...

    async def create(self, inode: Inode, *, content: bytes | None = None) -> Inode:
        """Insert a new inode, atomically with the check that its parent exists.

        With ``content`` (a file with ``inode.inline`` set), the store keeps the
        file's bytes with the entry, written in the same transaction: the entry
        and its bytes appear together or not at all.

        Returns:
            The stored inode (``version`` 1).

        Raises:
            AlreadyExists: an entry exists at ``inode.path``.
            NotFound: the parent directory does not exist.
            NotADirectory: the parent is a file.
        """
        ...

    async def update(
        self,
        inode: Inode,
        *,
        expected_version: int | None = None,
        content: bytes | None = None,
    ) -> Inode:
        """Replace the attributes of the existing inode at ``inode.path``.

        Args:
            inode: the new attributes (``version`` is ignored).
            expected_version: when given, update only if the stored version
                equals it (compare-and-set).
            content: the file's new bytes when ``inode.inline`` is set, written
                in the same transaction; ``None`` keeps the bytes the store holds
                for an entry that is inline already (an attribute change). When
                ``inode.inline`` is not set, bytes kept for the entry are dropped.

        Returns:
            The stored inode with ``version`` incremented.

        Raises:
            NotFound: no entry at the path.
            Conflict: the stored version differs from ``expected_version``.
        """
        ...

    async def read_content(self, path: FsPath, version: int) -> bytes | None:
        """The bytes kept with the inline file at ``path`` (``Inode.inline``).

        Returns ``None`` unless the entry exists, is inline and still has
        ``version``, so a caller never pairs one version's attributes with
        another version's bytes. Renames carry the bytes along; deletes drop them.
        """
        ...

    async def delete(self, path: FsPath, *, recursive: bool = False) -> list[Inode]:
        """Remove the entry (and with ``recursive`` its whole subtree) in one transaction.

        Returns:
            The removed inodes, deepest first, so their bytes can be removed.

        Raises:
            NotFound: no entry at the path.
            DirectoryNotEmpty: a directory with children and ``recursive`` false.
        """
        ...

    async def rename(
        self,
        source: FsPath,
        destination: FsPath,
        *,
        replace: bool = False,
        changes: EntryChanges | None = None,
    ) -> Inode | None:
        """Re-key ``source`` and its subtree to ``destination`` in one transaction.

        Args:
            replace: an existing file or empty directory at ``destination`` is
                removed in the same transaction.
            changes: attribute changes applied to the moved entry (not its
                subtree) in the same transaction; its version increases.

        Returns:
            The inode that was replaced, or ``None``.

        Raises:
            NotFound: no entry at ``source`` or no parent directory at the destination.
            AlreadyExists: an entry exists at ``destination`` (without ``replace``).
            DirectoryNotEmpty: ``replace`` and the destination is a non-empty directory.
            NotADirectory: the destination's parent is a file.
            InvalidRequest: ``source`` or ``destination`` is ``/``, or
                ``destination`` lies below ``source``.
        """
        ...

    async def create_link(self, link: Link) -> None:
        """Store a new link record. Raises AlreadyExists for a duplicate ``token_id``."""
        ...

    async def get_link(self, token_id: str) -> Link | None:
        """Return the link record or ``None``."""
        ...

    async def consume_link(self, token_id: str, *, used_at: datetime, client_ip: str) -> bool:
        """Atomically change the link from ``active`` to ``used``.

        Returns:
            True for exactly one of any number of concurrent callers; False
            when the link is missing or was already used.
        """
        ...

    async def cleanup_links(self, *, now: datetime, used_before: datetime) -> int:
        """Delete active links expired at ``now`` and links used before ``used_before``.

        Returns:
            The number of records deleted.
        """
        ...

    async def health(self) -> None:
        """Do a trivial read. Raises BackendUnavailable when the store is unreachable."""
        ...

    async def close(self) -> None:
        """Release connections. Further calls are undefined."""
        ...


@runtime_checkable
class BlobReader(Protocol):
    """An opened blob: iterate for the bytes (bounded chunks), then close.

    ``size`` is the number of bytes the iteration yields: the length of the
    requested byte range (clipped to the stored bytes), else the whole size.
    """

    size: int

    def __aiter__(self) -> AsyncIterator[bytes]: ...

    async def aclose(self) -> None:
        """Release the underlying handle; safe to call twice."""
        ...


@runtime_checkable
class StagedBlob(Protocol):
    """Bytes written to a staging location but not yet visible at their path.

    Exactly one of :meth:`commit` or :meth:`abort` must follow.
    """

    info: BlobInfo

    async def commit(self) -> None:
        """Atomically make the staged bytes the content at the path.

        Raises:
            IsADirectory: a directory exists at the path in the backend.
            BackendUnavailable: storage failed; the previous content is intact.
        """
        ...

    async def abort(self) -> None:
        """Discard the staged bytes; safe to call after a failed commit."""
        ...


@runtime_checkable
class BlobBackendPort(Protocol):
    """Where file bytes live (local disk, S3, a peer).

    Keys are canonical paths. Writes are two-phase so that the engine can
    stream a body without holding a lock and commit under one: ``stage``
    consumes the body and returns its size and SHA-256, ``commit`` makes it
    visible atomically. A failed or aborted stage leaves no trace.
    """

    name: str

    async def open(self, path: FsPath, byte_range: ByteRange | None = None) -> BlobReader:
        """Open the bytes at ``path`` (or ``byte_range`` of them) for streaming.

        The open itself happens here, so a missing blob fails before any byte
        is sent to a client.

        Raises:
            NotFound: nothing is stored at ``path``.
            BackendUnavailable: storage failed.
        """
        ...

    async def stage(self, path: FsPath, chunks: AsyncIterable[bytes]) -> StagedBlob:
        """Consume ``chunks`` into a staging location for ``path``.

        An exception raised by ``chunks`` (client disconnect, size limit,
        digest check) propagates after the staging data was removed.

        Returns:
            The staged blob with its size and SHA-256.
        """
        ...

    async def delete(self, path: FsPath) -> None:
        """Remove the bytes at ``path``; a missing blob is not an error."""
        ...

    async def move(self, source: FsPath, destination: FsPath) -> None:
        """Move the bytes (a file, or a directory with everything below it).

        Raises:
            NotFound: nothing is stored at ``source``.
        """
        ...

    async def stat(self, path: FsPath) -> int | None:
        """Return the stored size at ``path``, or ``None`` when nothing is there."""
        ...

    async def make_directory(self, path: FsPath) -> None:
        """Record a directory (a folder on disk, a marker or nothing elsewhere); idempotent."""
        ...

    async def remove_directory(self, path: FsPath) -> None:
        """Remove an empty directory record; missing or non-empty is not an error."""
        ...

    async def health(self) -> None:
        """Raise BackendUnavailable when the storage cannot be used."""
        ...


class PeerPort(Protocol):
    """Reads bytes that another instance holds on its local disk (api.md §1.10).

    Changes to such entries are not made through this port: the owning
    instance makes them whole (locks, bytes and metadata), so the server
    forwards those requests. Only reads, whose headers come from the shared
    metadata, need the bytes alone, and so does the clean-up after a
    recursive delete, whose metadata is gone already.
    """

    def knows(self, instance_id: str) -> bool:
        """Whether ``instance_id`` is a configured peer."""
        ...

    async def open(
        self,
        instance_id: str,
        path: FsPath,
        byte_range: ByteRange | None = None,
        acting_user: str | None = None,
    ) -> BlobReader:
        """Open the bytes of ``path`` held by ``instance_id`` for streaming.

        Raises:
            NotFound: the owner has no such file.
            PeerUnavailable: the instance is unknown, unreachable, timed out or
                answered with a server error.
        """
        ...

    async def discard(self, instance_id: str, path: FsPath) -> None:
        """Ask ``instance_id`` to remove the bytes it holds at ``path`` after the
        entry's metadata was deleted elsewhere (a recursive delete). The owner
        removes them only if, by then, no entry exists at ``path``.

        Raises:
            PeerUnavailable: as for :meth:`open`, or the owner refused.
        """
        ...


class LockPort(Protocol):
    """Named mutual exclusion, per process (local) or across instances (Redis)."""

    def hold(self, *names: str, timeout: float) -> AbstractAsyncContextManager[None]:
        """Hold every lock in ``names`` for the ``async with`` block.

        Locks are taken in sorted order (so two holders of overlapping sets
        cannot deadlock) and released in reverse order.

        Raises:
            LockTimeout: not all locks were obtained within ``timeout`` seconds;
                none is held then.
            BackendUnavailable: the lock service is unreachable.
        """
        ...

    async def health(self) -> None:
        """Raise BackendUnavailable when the lock service is unreachable."""
        ...


@runtime_checkable
class SharedLockPort(LockPort, Protocol):
    """A :class:`LockPort` that also has shared holds (readers of the same bytes)."""

    def hold_shared(self, name: str, *, timeout: float) -> AbstractAsyncContextManager[None]:
        """Hold ``name`` shared: with other shared holders, never with a :meth:`hold`.

        Raises:
            LockTimeout: not obtained within ``timeout`` seconds.
        """
        ...


class RateLimitPort(Protocol):
    """Per-key (client IP) token buckets shared by every worker of an instance."""

    async def acquire(self, key: str) -> float | None:
        """Take one token for ``key``.

        Returns:
            ``None`` when admitted, else the whole seconds (>= 1) to wait.
        """
        ...

    async def sweep(self) -> None:
        """Forget keys idle for more than 10 minutes."""
        ...


class LinkSigner(Protocol):
    """Signs and verifies single-use link tokens (api.md §4.1)."""

    def sign(self, token_id: str, path: FsPath) -> str:
        """Return the signature of ``token_id`` + canonical ``path``."""
        ...

    def verify(self, token_id: str, path: FsPath, signature: str) -> bool:
        """Compare in constant time; True when ``signature`` is valid."""
        ...


class Clock(Protocol):
    def now(self) -> datetime:
        """The current time, timezone-aware UTC."""
        ...


class IdGenerator(Protocol):
    def token_id(self) -> str:
        """A new link token id: URL-safe base64 with padding of 16 random bytes."""
        ...
