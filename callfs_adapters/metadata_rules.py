"""Rules every metadata store applies the same way, whatever its storage."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from typing import Any

from callfs_core.errors import InvalidRequest
from callfs_core.model import Inode, Kind
from callfs_core.paths import FsPath

__all__ = ["check_rename", "deepest_first", "inode_from_row", "subtree_bounds"]


def subtree_bounds(root: FsPath) -> tuple[str, str]:
    """Exclusive bounds of the paths strictly below ``root`` ('0' follows '/').

    With byte-wise ordering, ``low < path < high`` selects exactly the subtree:
    ``/a/…`` but not ``/ab`` or ``/a b``.
    """
    if root.is_root:
        return "/", "0"
    return f"{root}/", f"{root}0"


def check_rename(source: FsPath, destination: FsPath) -> None:
    """The rename rules that need no data (MetadataPort.rename)."""
    if source.is_root or destination.is_root:
        raise InvalidRequest("cannot rename or move the root directory")
    if destination != source and destination.is_within(source):
        raise InvalidRequest("cannot move a path into itself")


def deepest_first(inodes: Iterable[Inode]) -> list[Inode]:
    """Removed entries in the order their bytes can be removed (children first)."""
    return sorted(inodes, key=lambda node: (-node.path.depth, str(node.path)))


def inode_from_row(row: Sequence[Any], moment: Callable[[Any], datetime]) -> Inode:
    """An inode from the columns ``path, is_dir, owner, group, mode, size, mtime,
    ctime, content_type, sha256, backend, instance_id, version[, inline]``."""
    return Inode(
        path=FsPath.parse(row[0]),
        kind=Kind.DIRECTORY if row[1] else Kind.FILE,
        owner=row[2],
        group=row[3],
        mode=row[4],
        size=row[5],
        mtime=moment(row[6]),
        ctime=moment(row[7]),
        content_type=row[8],
        sha256=row[9],
        backend=row[10],
        instance_id=row[11],
        version=row[12],
        inline=len(row) > 13 and bool(row[13]),
    )
