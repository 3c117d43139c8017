"""PATCH: rename, move, relocate between backends, change attributes (api.md §2.9)."""

from __future__ import annotations

import contextlib
from typing import Final

import anyio
import attrs

from callfs_core import permissions as perms
from callfs_core.conditions import evaluate_preconditions
from callfs_core.engine_base import EngineBase, _denied
from callfs_core.errors import (
    AlreadyExists,
    DirectoryNotEmpty,
    InvalidRequest,
    IsADirectory,
    NotADirectory,
    NotFound,
    OwnedByPeer,
    PeerUnavailable,
)
from callfs_core.model import (
    EntryChanges,
    Identity,
    Inode,
    Preconditions,
)
from callfs_core.patching import Directory, PatchPlan, PatchRequest, plan_patch
from callfs_core.paths import FsPath
from callfs_core.ports import (
    BlobBackendPort,
)

__all__ = ["MoveOperations"]


_SEVERAL: Final = "\x00several"  # a subtree whose local files several instances hold


class MoveOperations(EngineBase):
    """The PATCH use case of :class:`~callfs_core.engine.Engine`."""

    # -- rename, move, attributes (PATCH) ------------------------------------------
    async def patch(
        self,
        identity: Identity,
        path: FsPath,
        request: PatchRequest,
        *,
        preconditions: Preconditions = Preconditions(),
    ) -> Inode:
        """Rename, move or relocate an entry and/or change its mode, group or owner.

        A move keeps owner, group, mode, mtime, sha256 and content type; a
        directory moves with its subtree in one metadata transaction. Bytes
        move first; if the metadata cannot follow, the byte move is undone.

        Returns:
            The entry at its final path.

        Raises:
            InvalidRequest, InvalidPath, NotFound, PermissionDenied,
            PreconditionFailed, NotADirectory, AlreadyExists, IsADirectory,
            DirectoryNotEmpty, LockTimeout.
        """
        directory = Directory(
            users=self.config.users,
            groups=self.config.groups,
            backends=frozenset(self.backends),
            instances=self.config.peers | {self.config.instance_id},
        )
        plan = plan_patch(path, request, directory)
        lineage = await self._existing(identity, path)
        source = lineage.target
        assert source is not None
        if plan.moves:
            self._check_delete(identity, lineage.deepest, source)
        self._check_attribute_change(identity, source, plan)
        evaluate_preconditions(preconditions, path, source, safe_method=False)
        if not plan.moves:
            return await self._change_attributes(identity, source, plan, preconditions)
        return await self._move(identity, source, plan, preconditions)

    async def _subtree_holders(self, directory: Inode) -> tuple[set[str], str | None]:
        """The backends holding bytes of the subtree (a mixed tree has local files
        in S3 directories and the reverse), and the one instance whose disk holds
        its local part: ``None`` for none, ``_SEVERAL`` when several instances do
        (such a tree cannot move as one)."""
        backends = {directory.backend}
        if len(self.backends) == 1 and not self.config.peers:
            # One backend, one instance: nothing to find (and no subtree to read).
            return backends, directory.instance_id
        owners = {directory.instance_id} - {None}
        for inode in await self.metadata.list_subtree(directory.path):
            backends.add(inode.backend)
            if inode.instance_id is not None:
                owners.add(inode.instance_id)
        if len(owners) > 1:
            return backends, _SEVERAL
        return backends, next(iter(owners), None)

    def _check_attribute_change(self, identity: Identity, inode: Inode, plan: PatchPlan) -> None:
        if plan.mode is not None and not perms.may_change_mode(identity, inode):
            raise _denied("only the owner may change the mode", inode.path)
        if plan.group is not None and not perms.may_change_group(identity, inode, plan.group):
            raise _denied(
                "only the owner, as a member of the group, may change the group", inode.path
            )
        if plan.owner is not None and not perms.may_change_owner(identity):
            raise _denied("only an administrator may change the owner", inode.path)

    async def _change_attributes(
        self, identity: Identity, source: Inode, plan: PatchPlan, preconditions: Preconditions
    ) -> Inode:
        async with self.locks.hold(self._lock_name(source), timeout=self.config.file_op_timeout):
            current = await self.metadata.get(source.path)
            if current is None:
                raise NotFound(source.path)
            evaluate_preconditions(preconditions, source.path, current, safe_method=False)
            changed = self._changes(plan).apply(current)
            return await self.metadata.update(changed, expected_version=current.version)

    def _changes(self, plan: PatchPlan) -> EntryChanges:
        if not plan.changes_attributes:
            return EntryChanges()
        return EntryChanges(
            mode=plan.mode, group=plan.group, owner=plan.owner, ctime=self.clock.now()
        )

    async def _move(
        self, identity: Identity, source: Inode, plan: PatchPlan, preconditions: Preconditions
    ) -> Inode:
        destination = plan.destination
        assert destination is not None
        backend_name = plan.backend or source.backend
        if plan.instance not in (None, self.config.instance_id):
            raise PeerUnavailable(
                message=f'moving entries to instance "{plan.instance}" is not supported yet'
            )
        relocating = backend_name != source.backend
        if destination == source.path and not relocating:
            raise InvalidRequest("destination is the same as the source")
        replaced = None
        if destination != source.path:
            replaced = await self._check_destination(identity, source, destination, plan)
        holders = {source.backend}
        if source.is_dir:
            holders, owner = await self._subtree_holders(source)
            if relocating or owner is _SEVERAL:
                raise InvalidRequest(
                    "moving a directory across backends or instances is not supported; move its "
                    "files individually or keep it on the same backend/instance"
                )
            if owner is not None and owner != self.config.instance_id:
                self._peer_for(identity, source, owner)
                raise OwnedByPeer(owner, source.path)
        else:
            # The instance holding the bytes moves them, and the metadata with them.
            self._forward_if_elsewhere(identity, source)
        names = {self._lock_name(source), f"{'dir' if source.is_dir else 'file'}:{destination}"}
        async with (
            self.locks.hold(*names, timeout=self.config.file_op_timeout),
            self._commit_lock(source.path, destination),
        ):
            current = await self.metadata.get(source.path)
            if current is None:
                raise NotFound(source.path)
            evaluate_preconditions(preconditions, source.path, current, safe_method=False)
            if destination != source.path:
                now_there = await self.metadata.get(destination)
                if (now_there is None) != (replaced is None):
                    # The destination changed while we were not holding the locks.
                    replaced = await self._check_destination(identity, current, destination, plan)
            target_backend = self._backend(backend_name)
            if plan.create_parents:
                await self._ensure_parents(identity, destination, target_backend)
            with anyio.CancelScope(shield=True):
                try:
                    moved = await self._relocate(
                        current, destination, target_backend, replaced, self._changes(plan), holders
                    )
                except AlreadyExists:
                    if replaced is not None or destination == source.path:
                        raise
                    # A new small file appeared at the destination since the check
                    # (the one create that takes no lock); the failed move was
                    # undone: check again and move as if it had been there.
                    replaced = await self._check_destination(identity, current, destination, plan)
                    if replaced is None:
                        raise
                    moved = await self._relocate(
                        current, destination, target_backend, replaced, self._changes(plan), holders
                    )
                if replaced is not None and (
                    replaced.backend != target_backend.name or moved.inline
                ):
                    # Nothing took the place of the replaced file's stored bytes.
                    await self._discard_bytes(replaced)
        return moved

    async def _check_destination(
        self, identity: Identity, source: Inode, destination: FsPath, plan: PatchPlan
    ) -> Inode | None:
        """Check the destination side of a move; return the entry it would replace."""
        lineage = await self._lineage(identity, destination, creating=True)
        if not lineage.complete and not plan.create_parents:
            raise InvalidRequest(f'destination parent "{destination.parent}" does not exist')
        self._require(
            identity,
            lineage.deepest,
            perms.Access.WX,
            "write and search (wx) permission is required",
        )
        existing = lineage.target
        if existing is None:
            return None
        if not plan.overwrite:
            raise AlreadyExists(destination, "the destination exists")
        if source.is_file and existing.is_dir:
            raise IsADirectory(destination, "the destination is a directory")
        if source.is_dir and existing.is_file:
            raise NotADirectory(destination, "the destination is a file")
        if existing.is_dir and await self.metadata.list_children(destination, limit=1):
            raise DirectoryNotEmpty(destination)
        if not perms.sticky_allows(identity, lineage.deepest, existing):
            raise _denied("only the owner may replace this entry (sticky directory)", destination)
        return existing

    async def _relocate(
        self,
        source: Inode,
        destination: FsPath,
        target: BlobBackendPort,
        replaced: Inode | None,
        changes: EntryChanges,
        holders: set[str],
    ) -> Inode:
        """Move the bytes, then the metadata (path, location and attribute changes in
        one transaction); undo the byte move if the metadata fails.

        ``holders``: the backends holding bytes below a directory, which all move it.
        """
        origin = self._backend(source.backend)
        replace = replaced is not None
        if target.name == origin.name:
            others = [self._backend(name) for name in sorted(holders - {origin.name})]
            moved_on: list[BlobBackendPort] = []  # undone if the metadata fails
            if not source.inline:  # an inline file's bytes move with its entry
                await origin.move(source.path, destination)
                moved_on.append(origin)
            try:
                for other in others:
                    with contextlib.suppress(NotFound):  # nothing of the tree there
                        await other.move(source.path, destination)
                        moved_on.append(other)
                await self.metadata.rename(
                    source.path, destination, replace=replace, changes=changes
                )
            except BaseException:
                for backend in moved_on:
                    await backend.move(destination, source.path)
                raise
            moved = await self.metadata.get(destination)
            assert moved is not None
            return moved
        # Another backend: copy the file, switch the metadata, then drop the old bytes.
        reader = await self._open(source, None)
        try:
            staged = await target.stage(destination, reader)
        finally:
            await reader.aclose()
        try:
            await staged.commit()
        except BaseException:
            await staged.abort()
            raise
        changes = attrs.evolve(changes, location=(target.name, self._instance_for(target.name)))
        try:
            if destination != source.path:
                await self.metadata.rename(
                    source.path, destination, replace=replace, changes=changes
                )
            else:
                await self.metadata.update(changes.apply(source), expected_version=source.version)
        except BaseException:
            await target.delete(destination)
            raise
        await self._discard_bytes(source)
        moved = await self.metadata.get(destination)
        assert moved is not None
        return moved
