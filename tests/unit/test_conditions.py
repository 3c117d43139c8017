"""Preconditions (RFC 9110 §13.2.2 order) and Range resolution (api.md §1.7)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from callfs_core.conditions import evaluate_preconditions, resolve_range
from callfs_core.errors import NotModified, PreconditionFailed, RangeNotSatisfiable
from callfs_core.model import ByteRange, Inode, Kind, Preconditions
from callfs_core.paths import FsPath

MTIME = datetime(2026, 4, 11, 8, 0, 0, 500000, tzinfo=UTC)
FILE = Inode(FsPath.parse("/f"), Kind.FILE, "a", "a", 0o644, MTIME, MTIME, size=100, sha256="ab")
DIR = Inode(FsPath.parse("/d"), Kind.DIRECTORY, "a", "a", 0o755, MTIME, MTIME)
TAG = '"ab"'
EARLIER = MTIME - timedelta(hours=1)
LATER = MTIME + timedelta(hours=1)
SAME_SECOND = MTIME.replace(microsecond=0)


def run(pre: Preconditions, inode: Inode | None, safe: bool) -> str:
    try:
        evaluate_preconditions(pre, "/f", inode, safe_method=safe)
    except PreconditionFailed:
        return "412"
    except NotModified:
        return "304"
    return "pass"


@pytest.mark.parametrize(
    ("pre", "inode", "safe", "expected"),
    [
        (Preconditions(), FILE, True, "pass"),
        (Preconditions(if_match=(TAG,)), FILE, False, "pass"),
        (Preconditions(if_match=('"zz"',)), FILE, False, "412"),
        (Preconditions(if_match=("W/" + TAG,)), FILE, False, "412"),  # strong comparison
        (Preconditions(if_match=("*",)), FILE, False, "pass"),
        (Preconditions(if_match=("*",)), None, False, "412"),
        (Preconditions(if_match=(TAG,)), None, False, "412"),
        (Preconditions(if_match=(TAG,)), DIR, False, "412"),  # tag lists never match dirs
        (Preconditions(if_match=("*",)), DIR, False, "pass"),
        (Preconditions(if_unmodified_since=EARLIER), FILE, False, "412"),
        (Preconditions(if_unmodified_since=SAME_SECOND), FILE, False, "pass"),
        (Preconditions(if_unmodified_since=EARLIER, if_match=(TAG,)), FILE, False, "pass"),
        (Preconditions(if_unmodified_since=EARLIER), DIR, False, "pass"),
        (Preconditions(if_none_match=(TAG,)), FILE, True, "304"),
        (Preconditions(if_none_match=("W/" + TAG,)), FILE, True, "304"),  # weak comparison
        (Preconditions(if_none_match=(TAG,)), FILE, False, "412"),
        (Preconditions(if_none_match=("*",)), FILE, False, "412"),
        (Preconditions(if_none_match=("*",)), None, False, "pass"),
        (Preconditions(if_none_match=('"zz"',)), FILE, True, "pass"),
        (Preconditions(if_modified_since=SAME_SECOND), FILE, True, "304"),
        (Preconditions(if_modified_since=EARLIER), FILE, True, "pass"),
        (Preconditions(if_modified_since=LATER), FILE, False, "pass"),  # unsafe: ignored
        (Preconditions(if_modified_since=LATER, if_none_match=('"zz"',)), FILE, True, "pass"),
        (Preconditions(if_match=('"zz"',), if_none_match=(TAG,)), FILE, True, "412"),  # order
    ],
)
def test_preconditions(pre: Preconditions, inode: Inode | None, safe: bool, expected: str) -> None:
    assert run(pre, inode, safe) == expected


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("bytes=0-9", ByteRange(0, 9)),
        ("bytes=90-", ByteRange(90, 99)),
        ("bytes=90-1000", ByteRange(90, 99)),
        ("bytes=-10", ByteRange(90, 99)),
        ("bytes=-1000", ByteRange(0, 99)),
        ("bytes=99-99", ByteRange(99, 99)),
        ("bytes=0-1,5-6", None),
        ("items=0-1", None),
        ("bytes=5-1", None),
        ("bytes=x-1", None),
        ("bytes=-", None),
        (None, None),
    ],
)
def test_ranges(header: str | None, expected: ByteRange | None) -> None:
    assert resolve_range(header, None, FILE) == expected


@pytest.mark.parametrize("header", ["bytes=100-", "bytes=200-300", "bytes=-0"])
def test_unsatisfiable(header: str) -> None:
    with pytest.raises(RangeNotSatisfiable) as info:
        resolve_range(header, None, FILE)
    assert info.value.size == 100


def test_empty_file_ignores_range() -> None:
    empty = Inode(FsPath.parse("/e"), Kind.FILE, "a", "a", 0o644, MTIME, MTIME, size=0, sha256="cd")
    assert resolve_range("bytes=0-0", None, empty) is None


def test_if_range() -> None:
    assert resolve_range("bytes=0-0", TAG, FILE) == ByteRange(0, 0)
    assert resolve_range("bytes=0-0", '"other"', FILE) is None
    assert resolve_range("bytes=0-0", "W/" + TAG, FILE) is None
    assert resolve_range("bytes=0-0", SAME_SECOND, FILE) == ByteRange(0, 0)
    assert resolve_range("bytes=0-0", EARLIER, FILE) is None
