"""The use cases of CallFS, orchestrating the ports.

Every use case follows the same shape: canonical path -> metadata of the path
and its ancestors -> permissions -> preconditions -> (body) -> lock -> re-check
-> backend -> metadata -> unlock. The engine never touches HTTP: callers pass
parsed values and receive inodes, readers and core errors.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable
from datetime import datetime, timedelta

import anyio
import attrs

from callfs_core import permissions as perms
from callfs_core.conditions import evaluate_preconditions, resolve_range
from callfs_core.content_types import choose_content_type
from callfs_core.engine_base import (
    MAX_LINK_EXPIRY_SECONDS,
    MAX_LIST_DEPTH,
    Digests,
    EngineConfig,
    Listing,
    ReadResult,
    WriteResult,
    _denied,
)
from callfs_core.errors import (
    AlreadyExists,
    Conflict,
    DigestMismatch,
    DirectoryNotEmpty,
    ExistsOnPeer,
    InvalidRequest,
    IsADirectory,
    LinkAlreadyUsed,
    LinkExpired,
    LinkInvalid,
    LinkNotFound,
    NotADirectory,
    NotFound,
    PayloadTooLarge,
)
from callfs_core.inline import InlineBlob, stage_small
from callfs_core.listing import child_cursor, listing_key, subtree_may_follow
from callfs_core.model import (
    Identity,
    Inode,
    Kind,
    Link,
    LinkStatus,
    Preconditions,
    ReadOptions,
    WriteMode,
)
from callfs_core.moves import MoveOperations
from callfs_core.paths import FsPath
from callfs_core.ports import (
    BlobBackendPort,
    StagedBlob,
)

__all__ = [
    "MAX_LINK_EXPIRY_SECONDS",
    "MAX_LIST_DEPTH",
    "Digests",
    "Engine",
    "EngineConfig",
    "Listing",
    "ReadResult",
    "WriteResult",
]

log = logging.getLogger("callfs.engine")


class _BytesPlaced(Exception):
    """A new file's bytes were committed at its path, but its metadata create
    found the path taken (see ``Engine._commit_over_lock_free_create``)."""


class Engine(MoveOperations):
    """The CallFS use cases. Construct it with adapters for every port.

    Args:
        metadata: the metadata store (source of truth for the tree).
        backends: blob backends by name (``localfs``, ``s3``, ...).
        locks: the lock manager serialising writers.
        signer: signs and verifies link tokens.
        clock: the time source.
        ids: the id generator.
        config: the engine settings.
        commit_locks: locks of this instance that order commits and reads of
            the same bytes (default: ``locks``).
    """

    # -- reads --------------------------------------------------------------------
    async def stat(self, identity: Identity, path: FsPath) -> Inode:
        """Return the inode at ``path``; needs ``r`` on it and ``x`` on its ancestors.

        Raises:
            NotFound, PermissionDenied.
        """
        lineage = await self._existing(identity, path)
        assert lineage.target is not None
        self._require(identity, lineage.target, perms.Access.R, "read (r) permission is required")
        return lineage.target

    async def read(
        self, identity: Identity, path: FsPath, options: ReadOptions = ReadOptions()
    ) -> ReadResult:
        """Read a file (optionally a byte range) or the children of a directory.

        Raises:
            NotFound, PermissionDenied, PreconditionFailed, NotModified,
            RangeNotSatisfiable, BackendUnavailable.
        """
        if options.head:  # HEAD ignores Range (api.md §1.7)
            inode = await self.stat(identity, path)
            evaluate_preconditions(options.preconditions, path, inode, safe_method=True)
            return ReadResult(inode)
        async with self._read_lock(path):
            # Under the lock the bytes opened are those the metadata describes.
            inode = await self.stat(identity, path)
            evaluate_preconditions(options.preconditions, path, inode, safe_method=True)
            if not inode.is_dir:
                byte_range = resolve_range(options.range_header, options.if_range, inode)
                reader = await self._open(inode, byte_range, identity)
                return ReadResult(inode, reader=reader, byte_range=byte_range)
        return ReadResult(inode, children=await self.metadata.list_children(path))

    async def list(
        self,
        identity: Identity,
        path: FsPath,
        *,
        recursive: bool = False,
        max_depth: int = 100,
        after: FsPath | None = None,
        limit: int | None = None,
    ) -> Listing:
        """A structured listing page (api.md §2.10).

        Raises:
            InvalidRequest: ``after`` is not a path this listing could contain.
            NotFound, NotADirectory, PermissionDenied.
        """
        if after is not None:
            inside = after.is_within(path) and after != path
            if not inside or (not recursive and after.parent != path):
                raise InvalidRequest(f"after {str(after)!r} is not an entry of this listing")
        lineage = await self._lineage(identity, path, creating=False)
        directory = lineage.target
        if directory is not None:
            self._require(identity, directory, perms.Access.R, "read (r) permission is required")
        if directory is None:
            raise NotFound(path)
        if not directory.is_dir:
            raise NotADirectory(path)
        max_depth = min(max(max_depth, 0), MAX_LIST_DEPTH)
        items: list[Inode] = []
        more = False
        wanted = None if limit is None else limit + 1
        async for inode in self._walk(identity, path, recursive, max_depth, after, wanted):
            items.append(inode)
            if wanted is not None and len(items) >= wanted:
                more = True
                items.pop()
                break
        next_cursor = items[-1].path if more and items else None
        return Listing(directory, items, next_cursor)

    async def _walk(
        self,
        identity: Identity,
        base: FsPath,
        recursive: bool,
        max_depth: int,
        after: FsPath | None,
        wanted: int | None = None,
    ) -> AsyncIterator[Inode]:
        """Yield the listing of ``base`` in order, skipping what precedes ``after``.

        ``wanted``: the caller stops after that many items, so no directory's
        children are fetched beyond it (except to find subdirectories to descend).
        """
        key = None
        if after is not None:
            # An ``after`` that no longer exists is placed as if it were a file.
            existing = await self.metadata.get(after)
            key = listing_key(base, after, existing is not None and existing.is_dir)
        # Each queue entry: (directory path, its segments below base, its depth).
        pending: list[tuple[FsPath, tuple[str, ...], int]] = [(base, (), 0)]
        while pending:
            directory, parts, depth = pending.pop(0)
            cursor = None if key is None else child_cursor(key, parts)
            children = await self.metadata.list_children(directory, after=cursor, limit=wanted)
            subdirs: list[tuple[FsPath, tuple[str, ...], int]] = []
            for child in children:
                if key is None or listing_key(base, child.path, child.is_dir) > key:
                    yield child
            if not recursive:
                return
            if cursor is not None or (wanted is not None and len(children) >= wanted):
                # Directories skipped by the cursor or cut off by the page size
                # may still hold later blocks: descend from the full list.
                children = await self.metadata.list_children(directory)
            for child in children:
                if not child.is_dir or depth + 1 > max_depth:
                    continue
                if not perms.allowed(identity, child, perms.Access.RX):
                    continue
                child_parts = (*parts, child.path.name)
                if key is not None and not subtree_may_follow(key, child_parts):
                    continue
                subdirs.append((child.path, child_parts, depth + 1))
            # Pre-order of directories: this directory's subdirectories come
            # before the directories queued after it.
            pending[0:0] = subdirs

    # -- writes -------------------------------------------------------------------
    async def create_directory(
        self, identity: Identity, path: FsPath, *, mode: int | None = None
    ) -> WriteResult:
        """Create a directory and any missing parents (POST to a URL ending in ``/``).

        Returns:
            ``created`` False when a directory already existed (nothing changes).

        Raises:
            AlreadyExists: a file exists at the path.
            NotADirectory, PermissionDenied, LockTimeout.
        """
        lineage = await self._lineage(identity, path, creating=True)
        if lineage.target is not None:
            return self._existing_directory(lineage.target)
        self._require(
            identity,
            lineage.deepest,
            perms.Access.WX,
            "write and search (wx) permission is required",
        )
        backend = self._backend(self.config.default_backend)
        async with self.locks.hold(f"dir:{path}", timeout=self.config.file_op_timeout):
            current = await self.metadata.get(path)
            if current is not None:
                return self._existing_directory(current)
            parent = await self._ensure_parents(identity, path, backend)
            inode = await self._create_directory_entry(identity, path, parent, mode, backend)
        if not inode.is_dir:
            raise AlreadyExists(path, "a file exists at this path")
        return WriteResult(inode, created=True)

    def _existing_directory(self, inode: Inode) -> WriteResult:
        if self._owner_elsewhere(inode) is not None:
            raise ExistsOnPeer(inode, directory=True)
        if not inode.is_dir:
            raise AlreadyExists(inode.path, "a file exists at this path")
        return WriteResult(inode, created=False)

    async def write_file(
        self,
        identity: Identity,
        path: FsPath,
        body: AsyncIterable[bytes],
        *,
        write_mode: WriteMode,
        mode: int | None = None,
        content_type: str | None = None,
        digests: Digests = Digests(),
        preconditions: Preconditions = Preconditions(),
    ) -> WriteResult:
        """Create (POST, ``WriteMode.CREATE``) or create-or-replace (PUT,
        ``WriteMode.UPSERT``) a file from a streamed body.

        Headers, permissions and preconditions are checked before the body is
        read; the body is staged without a lock; the commit happens under the
        path lock after re-checking existence and preconditions. A new file
        small enough to be kept inline (``EngineConfig.inline_max_bytes``) is
        created without a lock: one atomic create of entry and bytes, which
        fails if the path was taken since the lookup, and then the locked
        commit decides. Any failure leaves the previous content intact.

        Raises:
            AlreadyExists / IsADirectory: the path is taken (CREATE), or is a directory.
            NotADirectory, PermissionDenied, PreconditionFailed, PayloadTooLarge,
            DigestMismatch, LockTimeout, BackendUnavailable.
        """
        lineage = await self._lineage(identity, path, creating=True)
        target = lineage.target
        self._check_write_target(path, target, write_mode)
        if target is None:
            self._require(
                identity,
                lineage.deepest,
                perms.Access.WX,
                "write and search (wx) permission is required",
            )
        else:
            self._require(identity, target, perms.Access.W, "write (w) permission is required")
        evaluate_preconditions(preconditions, path, target, safe_method=False)
        if target is not None:
            self._forward_if_elsewhere(identity, target)
        backend = self._backend(
            target.backend if target is not None else self.config.default_backend
        )
        staged = await self._stage(backend, path, body, digests)
        if target is None and isinstance(staged, InlineBlob):
            # A new small file takes no lock: its entry and its bytes appear in
            # one atomic create, which fails if anything took the path since the
            # lookup; then the locked commit below decides, as for any body.
            with contextlib.suppress(AlreadyExists):
                return await self._commit(identity, path, backend, staged, None, mode, content_type)
        try:
            async with (
                self.locks.hold(f"file:{path}", timeout=self.config.file_op_timeout),
                self._commit_lock(path),
            ):
                current = await self.metadata.get(path)
                self._recheck(path, current, write_mode, preconditions)
                try:
                    result = await self._commit(
                        identity, path, backend, staged, current, mode, content_type
                    )
                except (AlreadyExists, _BytesPlaced) as taken:
                    if current is not None:
                        raise
                    # A new small file was created without the lock since
                    # `current` was read (nothing else creates without it):
                    # decide again against it, as if it had been there before.
                    result = await self._commit_over_lock_free_create(
                        path,
                        backend,
                        staged,
                        content_type,
                        write_mode,
                        preconditions,
                        placed=isinstance(taken, _BytesPlaced),
                    )
        except BaseException:
            await staged.abort()
            raise
        return result

    def _recheck(
        self,
        path: FsPath,
        current: Inode | None,
        write_mode: WriteMode,
        preconditions: Preconditions,
    ) -> None:
        """The checks a commit repeats under the path lock, against the entry there now."""
        self._check_write_target(path, current, write_mode)
        if current is not None and self._owner_elsewhere(current) is not None:
            # Recreated through another instance while this body arrived.
            raise Conflict(path, "the file was replaced through another instance")
        evaluate_preconditions(preconditions, path, current, safe_method=False)

    async def _commit_over_lock_free_create(
        self,
        path: FsPath,
        backend: BlobBackendPort,
        staged: StagedBlob,
        content_type: str | None,
        write_mode: WriteMode,
        preconditions: Preconditions,
        *,
        placed: bool,
    ) -> WriteResult:
        """Finish a locked write whose create found the path taken by a new
        inline file. ``placed``: this write's bytes are already at the path on
        the backend (the other file has none there); they stay for a
        replacement and go when this write fails."""
        try:
            current = await self.metadata.get(path)
            if current is None:  # only a locked writer deletes, and we hold the lock
                raise Conflict(path, "the file changed while it was written")
            self._recheck(path, current, write_mode, preconditions)
            stored_type = choose_content_type(content_type, path.name)
            with anyio.CancelScope(shield=True):
                result = await self._commit_replacement(
                    backend, staged, current, self.clock.now(), stored_type, placed=placed
                )
        except BaseException:
            if placed:
                with anyio.CancelScope(shield=True):
                    await backend.delete(path)
            raise
        return result

    def _check_write_target(
        self, path: FsPath, target: Inode | None, write_mode: WriteMode
    ) -> None:
        if target is None:
            return
        if write_mode is WriteMode.CREATE and self._owner_elsewhere(target) is not None:
            raise ExistsOnPeer(target, directory=False)
        if target.is_dir:
            raise IsADirectory(path, "a directory exists at this path")
        if write_mode is WriteMode.CREATE:
            raise AlreadyExists(path, "file already exists, use PUT to update")

    async def _stage(
        self,
        backend: BlobBackendPort,
        path: FsPath,
        body: AsyncIterable[bytes],
        digests: Digests,
    ) -> StagedBlob:
        md5 = hashlib.md5(usedforsecurity=False) if digests.md5 is not None else None
        limit = self.config.max_upload_bytes

        async def guarded() -> AsyncIterator[bytes]:
            received = 0
            async for chunk in body:
                received += len(chunk)
                if received > limit:
                    raise PayloadTooLarge(limit)
                if md5 is not None:
                    md5.update(chunk)
                yield chunk

        if self.config.inline_max_bytes > 0 and backend.name == "localfs":
            staged = await stage_small(
                guarded(),
                self.config.inline_max_bytes,
                lambda chunks: backend.stage(path, chunks),
            )
        else:
            staged = await backend.stage(path, guarded())
        mismatch = any(d.hex() != staged.info.sha256 for d in digests.sha256) or (
            md5 is not None and md5.digest() != digests.md5
        )
        if mismatch:
            await staged.abort()
            raise DigestMismatch(path)
        return staged

    async def _commit(
        self,
        identity: Identity,
        path: FsPath,
        backend: BlobBackendPort,
        staged: StagedBlob,
        current: Inode | None,
        mode: int | None,
        content_type: str | None,
    ) -> WriteResult:
        stored_type = choose_content_type(content_type, path.name)
        if current is not None:
            with anyio.CancelScope(shield=True):
                # Bytes and metadata change together, even if the client goes away now.
                return await self._commit_replacement(
                    backend, staged, current, self.clock.now(), stored_type
                )
        return await self._commit_new(identity, path, backend, staged, mode, stored_type)

    async def _commit_replacement(
        self,
        backend: BlobBackendPort,
        staged: StagedBlob,
        current: Inode,
        now: datetime,
        stored_type: str,
        *,
        placed: bool = False,
    ) -> WriteResult:
        content = staged.content if isinstance(staged, InlineBlob) else None
        if content is None and not placed:
            await staged.commit()
        updated = attrs.evolve(
            current,
            size=staged.info.size,
            sha256=staged.info.sha256,
            content_type=stored_type,
            mtime=now,
            ctime=now,
            backend=backend.name,
            inline=content is not None,
        )
        inode = await self.metadata.update(
            updated, expected_version=current.version, content=content
        )
        if content is not None:
            self._contents.put(inode.sha256, content)
        if current.backend != backend.name or (content is not None and not current.inline):
            await self._discard_bytes(current)
        return WriteResult(inode, created=False)

    async def _commit_new(
        self,
        identity: Identity,
        path: FsPath,
        backend: BlobBackendPort,
        staged: StagedBlob,
        mode: int | None,
        stored_type: str,
    ) -> WriteResult:
        parent = await self._ensure_parents(identity, path, backend)
        inode = self._new_inode(
            identity,
            path,
            parent,
            Kind.FILE,
            mode,
            backend.name,
            size=staged.info.size,
            content_type=stored_type,
            sha256=staged.info.sha256,
        )
        with anyio.CancelScope(shield=True):
            if isinstance(staged, InlineBlob):
                inode = attrs.evolve(inode, inline=True)
                created = await self.metadata.create(inode, content=staged.content)
                self._contents.put(created.sha256, staged.content)
                return WriteResult(created, created=True)
            await staged.commit()
            try:
                created = await self.metadata.create(inode)
            except AlreadyExists:
                # Taken by a new inline file created without the lock (it has no
                # bytes at the path): the caller decides, these bytes in place.
                raise _BytesPlaced(path) from None
            except BaseException:
                await backend.delete(path)
                raise
        return WriteResult(created, created=True)

    async def delete(
        self,
        identity: Identity,
        path: FsPath,
        *,
        recursive: bool = False,
        preconditions: Preconditions = Preconditions(),
    ) -> Inode:
        """Delete a file or directory (a whole subtree with ``recursive``).

        The metadata goes in one atomic step; bytes are removed afterwards and
        failures there are only logged.

        Raises:
            InvalidRequest: the path is ``/``.
            NotFound, PermissionDenied, PreconditionFailed, DirectoryNotEmpty, LockTimeout.
        """
        if path.is_root:
            raise InvalidRequest("the root directory cannot be deleted")
        lineage = await self._existing(identity, path)
        target = lineage.target
        assert target is not None
        parent = lineage.deepest
        self._check_delete(identity, parent, target)
        if recursive and target.is_dir:
            await self._check_subtree_delete(identity, target)
        evaluate_preconditions(preconditions, path, target, safe_method=False)
        if target.is_dir and not recursive and await self.metadata.list_children(path, limit=1):
            raise DirectoryNotEmpty(path)
        if not recursive or not target.is_dir:
            self._forward_if_elsewhere(identity, target)
        lock = f"{'dir' if target.is_dir else 'file'}:{path}"
        async with self.locks.hold(lock, timeout=self.config.file_op_timeout):
            current = await self.metadata.get(path)
            if current is None:
                raise NotFound(path)
            evaluate_preconditions(preconditions, path, current, safe_method=False)
            removed = await self.metadata.delete(path, recursive=recursive)
        for inode in removed:
            await self._discard_bytes(inode)
        return target

    async def discard_orphan(self, identity: Identity, path: FsPath) -> None:
        """Remove the bytes this instance holds at ``path`` unless an entry of this
        instance exists there: the clean-up another instance asks for after a
        recursive delete (api.md §2.8). Bytes of an entry created here again
        since are kept.

        Raises:
            InvalidRequest: the caller is not another instance of the cluster.
            LockTimeout, BackendUnavailable.
        """
        if not identity.forwarded:
            raise InvalidRequest("X-CallFS-Discard is only for instances of a cluster")
        backend = self._backend("localfs")
        names = (f"file:{path}", f"dir:{path}")
        async with self.locks.hold(*names, timeout=self.config.file_op_timeout):
            current = await self.metadata.get(path)
            if current is not None and current.instance_id == self.config.instance_id:
                return  # the bytes of an entry created here again since
            if await backend.stat(path) is not None:
                await backend.delete(path)
            else:
                await backend.remove_directory(path)

    async def _check_subtree_delete(self, identity: Identity, top: Inode) -> None:
        if identity.admin:
            return
        subtree = await self.metadata.list_subtree(top.path)
        directories = {top.path: top} | {i.path: i for i in subtree if i.is_dir}
        for directory in directories.values():
            self._require(
                identity,
                directory,
                perms.Access.RWX,
                "read, write and search (rwx) permission is required",
            )
        for inode in subtree:
            parent = directories[inode.path.parent]
            if not perms.sticky_allows(identity, parent, inode):
                raise _denied("only the owner may delete this entry (sticky directory)", inode.path)

    # -- links --------------------------------------------------------------------
    async def generate_link(
        self, identity: Identity, path: FsPath, expiry_seconds: int | None
    ) -> Link:
        """Create a single-use download link for a file the caller may read.

        ``expiry_seconds`` is ``None`` when the client sent no integer.

        Raises:
            NotFound, PermissionDenied, IsADirectory, InvalidRequest (expiry).
        """
        inode = await self.stat(identity, path)
        if inode.is_dir:
            raise IsADirectory(path, "links can only be generated for files")
        if expiry_seconds is None or not 0 < expiry_seconds <= MAX_LINK_EXPIRY_SECONDS:
            raise InvalidRequest(
                f"expiry_seconds must be an integer between 1 and {MAX_LINK_EXPIRY_SECONDS}"
            )
        now = self.clock.now()
        token_id = self.ids.token_id()
        link = Link(
            token_id=token_id,
            path=path,
            signature=self.signer.sign(token_id, path),
            expires_at=now + timedelta(seconds=expiry_seconds),
            created_at=now,
            created_by=identity.user,
        )
        await self.metadata.create_link(link)
        return link

    async def redeem_link(self, token: str, *, client_ip: str, consume: bool) -> ReadResult:
        """Check a download token and open its file (api.md §2.12).

        With ``consume`` (GET) the link is marked used atomically after the
        file was opened; without (HEAD) it stays active and nothing is opened.

        Raises:
            LinkNotFound, LinkExpired, LinkAlreadyUsed, NotFound, BackendUnavailable.
        """
        token_id, dot, signature = token.partition(".")
        if not dot or not token_id or not signature or len(token) > 256:
            raise LinkNotFound()
        link = await self.metadata.get_link(token_id)
        if link is None:
            raise LinkNotFound()
        now = self.clock.now()
        if now >= link.expires_at:
            raise LinkExpired()
        if link.status is LinkStatus.USED:
            raise LinkAlreadyUsed()
        if not self.signer.verify(token_id, link.path, signature):
            raise LinkInvalid()
        inode = await self.metadata.get(link.path)
        if inode is None or not inode.is_file:
            raise NotFound(link.path)
        if not consume:
            return ReadResult(inode)
        async with self._read_lock(link.path):
            inode = await self.metadata.get(link.path)
            if inode is None or not inode.is_file:
                raise NotFound(link.path)
            reader = await self._open(inode, None)
        try:
            won = await self.metadata.consume_link(token_id, used_at=now, client_ip=client_ip)
        except BaseException:
            await reader.aclose()
            raise
        if not won:
            await reader.aclose()
            raise LinkAlreadyUsed()
        return ReadResult(inode, reader=reader)

    async def cleanup_links(self) -> int:
        """Delete expired active links and links used before the retention period."""
        now = self.clock.now()
        return await self.metadata.cleanup_links(
            now=now, used_before=now - self.config.link_retention
        )

    # -- health -------------------------------------------------------------------
    async def check_health(self, probe_timeout: float = 2.0) -> dict[str, str]:
        """Probe the metadata store, the lock service and each backend concurrently.

        Returns:
            ``{"metadata_store": ..., "lock_service": ..., "backend:<name>": ...}``
            with ``ok``, ``unavailable`` or ``timeout`` (not answered within ``probe_timeout`` s).
        """
        probes: dict[str, Callable[[], Awaitable[None]]] = {
            "metadata_store": self.metadata.health,
            "lock_service": self.locks.health,
        }
        probes |= {f"backend:{name}": b.health for name, b in self.backends.items()}
        results = dict.fromkeys(probes, "timeout")

        async def run(name: str, probe: Callable[[], Awaitable[None]]) -> None:
            with anyio.move_on_after(probe_timeout):
                try:
                    await probe()
                    results[name] = "ok"
                except Exception:
                    log.warning("readiness check %s failed", name, exc_info=True)
                    results[name] = "unavailable"

        async with anyio.create_task_group() as group:
            for name, probe in probes.items():
                group.start_soon(run, name, probe)
        return results
