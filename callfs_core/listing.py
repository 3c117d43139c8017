"""Listing order and cursors (api.md §2.10), pure.

A directory's children are all files, then all directories, each by name in
code-point order. A recursive listing is the directory's children followed,
for each child directory in that order, by its recursive listing. That makes
the position of any path ``P`` below the listed directory ``B`` the key
``(segments of P's parent below B, P is a directory, P's name)``: the blocks
of children appear in pre-order of their parent directories, and tuple
comparison puts a prefix first, exactly as pre-order does.
"""

from __future__ import annotations

from callfs_core.paths import FsPath

__all__ = ["ListingKey", "child_cursor", "listing_key", "subtree_may_follow"]

ListingKey = tuple[tuple[str, ...], bool, str]


def listing_key(base: FsPath, path: FsPath, is_dir: bool) -> ListingKey:
    """The sort key of ``path`` in a (recursive) listing of ``base``."""
    parent = path.parent.relative_to(base)
    return (tuple(parent.split("/")) if parent else (), is_dir, path.name)


def child_cursor(key: ListingKey, directory_parts: tuple[str, ...]) -> tuple[bool, str] | None:
    """The ``after`` cursor for listing the children of the directory whose
    segments below the base are ``directory_parts``, given the page cursor
    ``key``: only children sorting after the cursor are wanted."""
    return (key[1], key[2]) if key[0] == directory_parts else None


def subtree_may_follow(key: ListingKey, directory_parts: tuple[str, ...]) -> bool:
    """Can anything at or below the directory ``directory_parts`` come after ``key``?

    The blocks of the directory and its descendants have keys starting with
    ``directory_parts``; they all precede ``key`` when that tuple sorts before
    the cursor's parent and is not one of its prefixes.
    """
    cursor_parent = key[0]
    if cursor_parent[: len(directory_parts)] == directory_parts:
        return True
    return directory_parts > cursor_parent
