"""The engine's state, value types and the steps its use cases share.

Split from :mod:`callfs_core.engine` so that each group of use cases can live
in a module of its own (:mod:`callfs_core.moves` for PATCH); applications use
:class:`callfs_core.engine.Engine`.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Mapping
from contextlib import AbstractAsyncContextManager
from datetime import timedelta
from typing import Any

import attrs

from callfs_core import permissions as perms
from callfs_core.errors import (
    AlreadyExists,
    BackendUnavailable,
    IsADirectory,
    NotADirectory,
    NotFound,
    OwnedByPeer,
    PeerUnavailable,
    PermissionDenied,
)
from callfs_core.inline import BytesReader, ContentCache
from callfs_core.model import (
    ROOT_GROUP,
    ROOT_MODE,
    ROOT_USER,
    ByteRange,
    Identity,
    Inode,
    Kind,
)
from callfs_core.paths import ROOT, FsPath
from callfs_core.ports import (
    BlobBackendPort,
    BlobReader,
    Clock,
    IdGenerator,
    LinkSigner,
    LockPort,
    MetadataPort,
    PeerPort,
    SharedLockPort,
)

__all__ = [
    "DEFAULT_DIR_MODE",
    "DEFAULT_FILE_MODE",
    "MAX_LINK_EXPIRY_SECONDS",
    "MAX_LIST_DEPTH",
    "Digests",
    "EngineBase",
    "EngineConfig",
    "Listing",
    "ReadResult",
    "WriteResult",
]

log = logging.getLogger("callfs.engine")

MAX_LIST_DEPTH = 1000
MAX_LINK_EXPIRY_SECONDS = 86400
DEFAULT_FILE_MODE = 0o644
DEFAULT_DIR_MODE = 0o755


@attrs.frozen
class EngineConfig:
    """Settings the use cases depend on."""

    instance_id: str
    default_backend: str = "localfs"
    file_op_timeout: float = 10.0
    max_upload_bytes: int = 10 * 1024**3
    # Files on the local disk (``localfs``) up to this size are kept by the
    # metadata store with their entry (``Inode.inline``); 0 turns that off.
    inline_max_bytes: int = 0
    # Bytes of inline contents each engine keeps in memory (ContentCache).
    inline_cache_bytes: int = 8 * 1024 * 1024
    link_retention: timedelta = timedelta(hours=24)
    # Names a PATCH may assign: users (owner), groups, and peer instances.
    users: frozenset[str] = frozenset()
    groups: frozenset[str] = frozenset()
    peers: frozenset[str] = frozenset()


@attrs.frozen
class Digests:
    """Digests an uploader announced (raw bytes), verified against the received body.

    Every announced SHA-256 (``Content-Digest`` and ``Repr-Digest`` may both be
    sent) must match.
    """

    sha256: tuple[bytes, ...] = ()
    md5: bytes | None = None


@attrs.frozen
class ReadResult:
    """A read of a file or directory.

    Files: ``reader`` streams the content (``None`` for HEAD), ``byte_range``
    is the satisfied range or ``None`` for the whole file. Directories:
    ``children`` holds the immediate children (``None`` for HEAD).
    """

    inode: Inode
    reader: BlobReader | None = None
    byte_range: ByteRange | None = None
    children: list[Inode] | None = None


@attrs.frozen
class WriteResult:
    inode: Inode
    created: bool


@attrs.frozen
class Listing:
    """One page of a structured listing."""

    directory: Inode
    items: list[Inode]
    next: FsPath | None


@attrs.frozen
class _Lineage:
    """A path's existing ancestors, its target, and the deepest existing ancestor."""

    ancestors: list[Inode]
    target: Inode | None
    complete: bool  # every ancestor exists

    @property
    def deepest(self) -> Inode:
        return self.ancestors[-1]


def _denied(what: str, path: FsPath) -> PermissionDenied:
    return PermissionDenied(path, f"permission denied: {what} on {path}")


class EngineBase:
    """The state and shared steps of the use cases; the constructor's arguments are
    documented on :class:`~callfs_core.engine.Engine`."""

    def __init__(
        self,
        *,
        metadata: MetadataPort,
        backends: Mapping[str, BlobBackendPort],
        locks: LockPort,
        signer: LinkSigner,
        clock: Clock,
        ids: IdGenerator,
        config: EngineConfig,
        commit_locks: LockPort | None = None,
        peers: PeerPort | None = None,
    ) -> None:
        if config.default_backend not in backends:
            raise ValueError(f"default backend {config.default_backend!r} is not configured")
        self.metadata = metadata
        self.backends = dict(backends)
        self.locks = locks
        # Instance-local locks for commits vs. readers; the writers' lock
        # manager when none is given (it is then local too).
        self.commit_locks = commit_locks or locks
        # Checked once: a runtime protocol check costs too much on every read.
        self._shared_locks = (
            self.commit_locks if isinstance(self.commit_locks, SharedLockPort) else None
        )
        self.signer = signer
        self.clock = clock
        self.ids = ids
        self.config = config
        self.peers = peers
        self._contents = ContentCache(config.inline_cache_bytes)

    # -- lifecycle ----------------------------------------------------------------
    async def start(self) -> None:
        """Seed ``/`` (root:root 1777) when the store is empty."""
        if await self.metadata.get(ROOT) is not None:
            return
        now = self.clock.now()
        root = Inode(
            path=ROOT,
            kind=Kind.DIRECTORY,
            owner=ROOT_USER,
            group=ROOT_GROUP,
            mode=ROOT_MODE,
            mtime=now,
            ctime=now,
            backend=self.config.default_backend,
        )
        with contextlib.suppress(AlreadyExists):  # another worker seeded it first
            await self.metadata.create(root)

    # -- helpers ------------------------------------------------------------------
    def _backend(self, name: str) -> BlobBackendPort:
        try:
            return self.backends[name]
        except KeyError:
            raise BackendUnavailable(
                message=f"storage backend {name!r} is not configured"
            ) from None

    async def _lineage(self, identity: Identity, path: FsPath, *, creating: bool) -> _Lineage:
        """Fetch ``path`` and its ancestors; require ``x`` on each existing ancestor.

        A missing ancestor is NotFound unless ``creating``; an ancestor that is a
        file is NotFound for reads and NotADirectory for creates.
        """
        wanted = list(path.iter_lineage())
        found = await self.metadata.get_many(wanted)
        ancestors: list[Inode] = []
        for ancestor_path in wanted[:-1]:
            inode = found.get(ancestor_path)
            if inode is None:
                if creating:
                    return _Lineage(ancestors, None, complete=False)
                raise NotFound(path)
            if not inode.is_dir:
                if creating:
                    raise NotADirectory(path, "a parent of the path is a file")
                raise NotFound(path)
            if not perms.allowed(identity, inode, perms.Access.X):
                raise _denied("search (x) permission is required", ancestor_path)
            ancestors.append(inode)
        return _Lineage(ancestors, found.get(path), complete=True)

    async def _existing(self, identity: Identity, path: FsPath) -> _Lineage:
        lineage = await self._lineage(identity, path, creating=False)
        if lineage.target is None:
            raise NotFound(path)
        return lineage

    def _require(self, identity: Identity, inode: Inode, access: perms.Access, what: str) -> None:
        if not perms.allowed(identity, inode, access):
            raise _denied(what, inode.path)

    def _owner_elsewhere(self, inode: Inode) -> str | None:
        """The other instance holding the bytes of ``inode`` (api.md §1.10), if any."""
        owner = inode.instance_id
        return owner if owner is not None and owner != self.config.instance_id else None

    def _peer_for(self, identity: Identity | None, inode: Inode, owner: str) -> PeerPort:
        """The way to ``owner``, or PeerUnavailable: a forwarded request is never
        forwarded again, and an unknown instance cannot be reached."""
        if identity is not None and identity.forwarded:
            raise PeerUnavailable(
                message=f"{inode.path} is owned by instance {owner!r}, not by this one, "
                "and a forwarded request is not forwarded again"
            )
        if self.peers is None or not self.peers.knows(owner):
            raise PeerUnavailable(
                message=f"{inode.path} is owned by instance {owner!r}, which is not a known peer"
            )
        return self.peers

    def _forward_if_elsewhere(self, identity: Identity, inode: Inode) -> None:
        """Hand a change of an entry whose bytes another instance holds to that
        instance, which makes it whole (locks, bytes, metadata)."""
        owner = self._owner_elsewhere(inode)
        if owner is not None:
            self._peer_for(identity, inode, owner)
            raise OwnedByPeer(owner, inode.path)

    async def _open(
        self, inode: Inode, byte_range: ByteRange | None, identity: Identity | None = None
    ) -> BlobReader:
        owner = self._owner_elsewhere(inode)
        if owner is not None:
            peer = self._peer_for(identity, inode, owner)
            acting = identity.user if identity is not None else None
            return await peer.open(owner, inode.path, byte_range, acting)
        if inode.inline:
            content = self._contents.get(inode.sha256)
            if content is None:
                content = await self.metadata.read_content(inode.path, inode.version)
                if content is None:
                    log.error("inconsistency: inline file without its bytes at %s", inode.path)
                    raise NotFound(inode.path)
                self._contents.put(inode.sha256, content)
            return BytesReader(content, byte_range)
        backend = self._backend(inode.backend)
        try:
            return await backend.open(inode.path, byte_range)
        except NotFound:
            log.error("inconsistency: metadata present but bytes missing for %s", inode.path)
            raise
        except IsADirectory:
            log.error("inconsistency: file metadata but a directory in storage at %s", inode.path)
            raise NotFound(inode.path) from None

    def _instance_for(self, backend: str) -> str | None:
        """The owning instance of an entry stored on ``backend`` (api.md §1.10):
        this one for local disks, none for shared storage."""
        return self.config.instance_id if backend == "localfs" else None

    def _new_inode(
        self,
        identity: Identity,
        path: FsPath,
        parent: Inode,
        kind: Kind,
        mode: int | None,
        backend: str,
        **content: Any,
    ) -> Inode:
        """A new entry owned by the caller (api.md §3.3); ``content``: size, sha256, type."""
        group, final_mode = self._new_attributes(identity, parent, kind, mode)
        now = self.clock.now()
        return Inode(
            path=path,
            kind=kind,
            owner=identity.user,
            group=group,
            mode=final_mode,
            mtime=now,
            ctime=now,
            backend=backend,
            instance_id=self._instance_for(backend),
            **content,
        )

    def _new_attributes(
        self, identity: Identity, parent: Inode, kind: Kind, mode: int | None
    ) -> tuple[str, int]:
        """Group and mode of a new entry (api.md §3.3)."""
        setgid = bool(parent.mode & perms.SETGID)
        group = parent.group if setgid else identity.user
        default = DEFAULT_DIR_MODE if kind is Kind.DIRECTORY else DEFAULT_FILE_MODE
        result = default if mode is None else mode
        if setgid and kind is Kind.DIRECTORY:
            result |= perms.SETGID
        return group, result

    async def _ensure_parents(
        self, identity: Identity, path: FsPath, backend: BlobBackendPort
    ) -> Inode:
        """Create the missing ancestors of ``path`` (owned by the caller); return its parent."""
        ancestors = path.ancestors()
        found = await self.metadata.get_many(ancestors)  # one round trip, however deep
        parent: Inode | None = None
        for ancestor_path in ancestors:
            existing = found.get(ancestor_path)
            if existing is None:
                assert parent is not None  # the root always exists
                existing = await self._create_directory_entry(
                    identity, ancestor_path, parent, None, backend
                )
            if not existing.is_dir:
                raise NotADirectory(path, "a parent of the path is a file")
            parent = existing
        assert parent is not None
        return parent

    async def _create_directory_entry(
        self,
        identity: Identity,
        path: FsPath,
        parent: Inode,
        mode: int | None,
        backend: BlobBackendPort,
    ) -> Inode:
        inode = self._new_inode(identity, path, parent, Kind.DIRECTORY, mode, backend.name)
        await backend.make_directory(path)
        try:
            return await self.metadata.create(inode)
        except AlreadyExists:
            existing = await self.metadata.get(path)
            if existing is None:
                raise
            return existing

    def _commit_lock(self, *paths: FsPath) -> AbstractAsyncContextManager[None]:
        """The short lock between a commit and the readers of the same bytes.

        A commit replaces the bytes and then the metadata under it; a reader
        takes it while it reads the metadata and opens the bytes, so it never
        pairs old metadata (size, ETag) with new bytes. Only the open is
        covered: the transfer runs on the opened handle (an atomic rename
        leaves it on the old content). It is a lock of this instance, not of
        the writers' lock service: the bytes of a local file are committed by
        the instance that holds them, and reads keep working when a shared
        lock service is down.
        """
        names = [f"commit:{p}" for p in paths]
        return self.commit_locks.hold(*names, timeout=self.config.file_op_timeout)

    def _read_lock(self, path: FsPath) -> AbstractAsyncContextManager[None]:
        """The reader's side of :meth:`_commit_lock`: shared when the lock manager
        can, so that readers of one file do not wait for each other."""
        if self._shared_locks is not None:
            return self._shared_locks.hold_shared(
                f"commit:{path}", timeout=self.config.file_op_timeout
            )
        return self._commit_lock(path)

    async def _discard_bytes(self, inode: Inode) -> None:
        if inode.inline:
            return  # the bytes went with the metadata entry
        owner = self._owner_elsewhere(inode)
        if owner is not None:
            await self._discard_on_peer(owner, inode.path)
            return
        try:
            backend = self._backend(inode.backend)
            if inode.is_dir:
                await backend.remove_directory(inode.path)
            else:
                await backend.delete(inode.path)
        except Exception:  # the metadata is gone already: log, never fail the request
            log.exception("could not remove the stored bytes of %s", inode.path)

    async def _discard_on_peer(self, owner: str, path: FsPath) -> None:
        if self.peers is None or not self.peers.knows(owner):
            log.warning("the bytes of %s stay on instance %r (not a known peer)", path, owner)
            return
        try:
            await self.peers.discard(owner, path)
        except Exception:  # the metadata is gone already: log, never fail the request
            log.warning("the bytes of %s stay on instance %r", path, owner, exc_info=True)

    def _check_delete(self, identity: Identity, parent: Inode, target: Inode) -> None:
        self._require(
            identity, parent, perms.Access.WX, "write and search (wx) permission is required"
        )
        if not perms.sticky_allows(identity, parent, target):
            raise _denied("only the owner may delete this entry (sticky directory)", target.path)

    def _lock_name(self, inode: Inode) -> str:
        return f"{'dir' if inode.is_dir else 'file'}:{inode.path}"
