"""Conditional requests and byte ranges (RFC 9110 §13 and §14; api.md §1.7), pure."""

from __future__ import annotations

import re
from datetime import datetime

from callfs_core.errors import NotModified, PreconditionFailed, RangeNotSatisfiable
from callfs_core.model import ByteRange, Inode, Preconditions

__all__ = ["evaluate_preconditions", "resolve_range"]

_RANGE = re.compile(r"bytes=(\d*)-(\d*)")


def _opaque(tag: str) -> str:
    return tag[2:] if tag.startswith("W/") else tag


def _strong_match(tags: tuple[str, ...], inode: Inode) -> bool:
    etag = inode.etag
    return etag is not None and any(tag == etag for tag in tags)


def _weak_match(tags: tuple[str, ...], inode: Inode) -> bool:
    etag = inode.etag
    return etag is not None and any(_opaque(tag) == etag for tag in tags)


def _seconds(value: datetime) -> int:
    return int(value.timestamp())


def evaluate_preconditions(
    pre: Preconditions, path: object, inode: Inode | None, *, safe_method: bool
) -> None:
    """Evaluate If-Match, If-Unmodified-Since, If-None-Match and If-Modified-Since in
    RFC 9110 §13.2.2 order against ``inode`` (``None`` when the target is missing).

    Raises:
        PreconditionFailed: a condition is false (412).
        NotModified: If-None-Match / If-Modified-Since is false on GET or HEAD (304).
    """
    if pre.empty:
        return
    if pre.if_match is not None:
        if inode is None:
            raise PreconditionFailed(path)
        if pre.if_match != ("*",) and not _strong_match(pre.if_match, inode):
            raise PreconditionFailed(path)
    elif (
        pre.if_unmodified_since is not None
        and inode is not None
        and inode.is_file
        and _seconds(inode.mtime) > _seconds(pre.if_unmodified_since)
    ):
        raise PreconditionFailed(path)
    if pre.if_none_match is not None:
        matched = inode is not None and (
            pre.if_none_match == ("*",) or _weak_match(pre.if_none_match, inode)
        )
        if matched:
            if safe_method:
                raise NotModified(path, inode)
            raise PreconditionFailed(path)
    elif (
        safe_method
        and pre.if_modified_since is not None
        and inode is not None
        and inode.is_file
        and _seconds(inode.mtime) <= _seconds(pre.if_modified_since)
    ):
        raise NotModified(path, inode)


def _if_range_matches(if_range: str | datetime, inode: Inode) -> bool:
    if isinstance(if_range, datetime):
        return _seconds(if_range) == _seconds(inode.mtime)
    return inode.etag is not None and if_range == inode.etag


def resolve_range(
    header: str | None, if_range: str | datetime | None, inode: Inode
) -> ByteRange | None:
    """Resolve one ``Range`` header value against a file.

    Returns ``None`` when the whole file is to be sent: no header, several
    ranges, another unit, bad syntax, an empty file, or an ``If-Range`` that
    does not match.

    Raises:
        RangeNotSatisfiable: the first byte is past the end, or ``bytes=-0``.
    """
    size = inode.size
    if header is None or size == 0:
        return None
    if if_range is not None and not _if_range_matches(if_range, inode):
        return None
    match = _RANGE.fullmatch(header.strip())
    if match is None:
        return None
    first, last = match.groups()
    if not first:
        if not last:
            return None
        suffix = int(last)
        if suffix == 0:
            raise RangeNotSatisfiable(inode.path, size)
        return ByteRange(max(0, size - suffix), size - 1)
    start = int(first)
    if last and int(last) < start:
        return None
    end = int(last) if last else size - 1
    if start >= size:
        raise RangeNotSatisfiable(inode.path, size)
    return ByteRange(start, min(end, size - 1))
