"""PATCH requests (api.md §2.9): validation of the request itself, pure.

:func:`plan_patch` applies the checks that need no metadata — field
combinations, names, modes, known users, groups, backends and instances, the
root and moves into oneself — in the order of the specification, and returns
a :class:`PatchPlan` the engine carries out.
"""

from __future__ import annotations

import re
from typing import Final

import attrs

from callfs_core.errors import InvalidPath, InvalidRequest
from callfs_core.paths import FsPath

__all__ = ["Directory", "PatchPlan", "PatchRequest", "plan_patch"]

_MODE: Final = re.compile(r"[0-7]{3,4}")


@attrs.frozen
class PatchRequest:
    """The fields of a PATCH body, as sent (``None`` when absent)."""

    name: str | None = None
    destination: str | None = None
    backend: str | None = None
    instance: str | None = None
    overwrite: bool = False
    create_parents: bool = False
    mode: str | None = None
    group: str | None = None
    owner: str | None = None


@attrs.frozen
class Directory:
    """The names a PATCH may refer to: users, groups, backends and instances."""

    users: frozenset[str] = frozenset()
    groups: frozenset[str] = frozenset()
    backends: frozenset[str] = frozenset()
    instances: frozenset[str] = frozenset()


@attrs.frozen
class PatchPlan:
    """A validated PATCH: where the entry goes (``None``: it stays) and what changes."""

    source: FsPath
    destination: FsPath | None
    backend: str | None
    instance: str | None
    overwrite: bool
    create_parents: bool
    mode: int | None
    group: str | None
    owner: str | None

    @property
    def moves(self) -> bool:
        return self.destination is not None

    @property
    def changes_attributes(self) -> bool:
        return self.mode is not None or self.group is not None or self.owner is not None


def _target(source: FsPath, request: PatchRequest) -> FsPath | None:
    if request.name is not None:
        try:
            return source.parent.child(request.name)
        except InvalidPath:
            raise InvalidPath(request.name, "name must be a single path segment") from None
    if request.destination is not None:
        try:
            return FsPath.from_body(request.destination)
        except InvalidPath:
            raise InvalidPath(request.destination, "destination is not a valid path") from None
    return None


def plan_patch(source: FsPath, request: PatchRequest, directory: Directory) -> PatchPlan:
    """Validate a PATCH request against the rules that need no metadata.

    Raises:
        InvalidRequest: a field combination, mode or name is not acceptable.
        InvalidPath: ``name`` or ``destination`` is not a valid segment or path.
    """
    moving = request.name is not None or request.destination is not None
    if request.name is not None and request.destination is not None:
        raise InvalidRequest('exactly one of "name" or "destination" must be provided')
    if not moving and request.mode is None and request.group is None and request.owner is None:
        raise InvalidRequest(
            'nothing to change: provide "name", "destination", "mode", "group" or "owner"'
        )
    if not moving and (request.backend is not None or request.instance is not None):
        raise InvalidRequest('"backend" and "instance" require "name" or "destination"')
    destination = _target(source, request)
    if request.mode is not None and not _MODE.fullmatch(request.mode):
        raise InvalidRequest("mode must be 3 or 4 octal digits, e.g. 0644")
    if request.group is not None and request.group not in directory.groups:
        raise InvalidRequest(f'unknown group "{request.group}"')
    if request.owner is not None and request.owner not in directory.users:
        raise InvalidRequest(f'unknown user "{request.owner}"')
    if request.backend is not None and request.backend not in directory.backends:
        raise InvalidRequest(f'unknown backend "{request.backend}"')
    if request.instance is not None and request.instance not in directory.instances:
        raise InvalidRequest(f'unknown instance "{request.instance}"')
    if destination is not None:
        if source.is_root or destination.is_root:
            raise InvalidRequest("cannot rename or move the root directory")
        if destination != source and destination.is_within(source):
            raise InvalidRequest("cannot move a path into itself")
    return PatchPlan(
        source=source,
        destination=destination,
        backend=request.backend,
        instance=request.instance,
        overwrite=request.overwrite,
        create_parents=request.create_parents,
        mode=int(request.mode, 8) if request.mode is not None else None,
        group=request.group,
        owner=request.owner,
    )
