"""The Unix permission rules of api.md §3, table-driven."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from callfs_core.model import Identity, Inode, Kind
from callfs_core.paths import FsPath
from callfs_core.permissions import (
    Access,
    allowed,
    may_change_group,
    may_change_mode,
    may_change_owner,
    sticky_allows,
)

NOW = datetime(2026, 1, 1, tzinfo=UTC)
ALICE = Identity("alice", frozenset({"alice", "team"}))
BOB = Identity("bob", frozenset({"bob"}))
CAROL = Identity("carol", frozenset({"carol", "team"}))
ADMIN = Identity("boss", frozenset({"boss"}), admin=True)


def inode(mode: int, owner: str = "alice", group: str = "team", path: str = "/x") -> Inode:
    return Inode(FsPath.parse(path), Kind.FILE, owner, group, mode, NOW, NOW)


R, W, X = Access.R, Access.W, Access.X


@pytest.mark.parametrize(
    ("mode", "who", "access", "expected"),
    [
        # owner class uses the owner bits only
        (0o644, ALICE, R, True),
        (0o644, ALICE, W, True),
        (0o644, ALICE, X, False),
        (0o044, ALICE, R, False),  # owner bits win even if group/other allow
        # group class
        (0o640, CAROL, R, True),
        (0o640, CAROL, W, False),
        (0o604, CAROL, R, False),  # group bits, not other bits, count for members
        # other class
        (0o644, BOB, R, True),
        (0o644, BOB, W, False),
        (0o640, BOB, R, False),
        (0o647, BOB, Access.RWX, True),
        (0o646, BOB, Access.RWX, False),
        (0o755, BOB, Access.RX, True),
        (0o751, BOB, Access.RX, False),
        (0o753, BOB, Access.WX, True),
        # admins pass every check
        (0o000, ADMIN, Access.RWX, True),
    ],
)
def test_allowed(mode: int, who: Identity, access: Access, expected: bool) -> None:
    assert allowed(who, inode(mode), access) is expected


def test_primary_group_membership() -> None:
    # The primary group is the user's own name even when not listed in groups.
    bare = Identity("dave")
    assert allowed(bare, inode(0o070, owner="x", group="dave"), Access.RWX)


@pytest.mark.parametrize(
    ("dir_mode", "dir_owner", "entry_owner", "who", "expected"),
    [
        (0o1777, "root", "alice", ALICE, True),  # entry owner
        (0o1777, "root", "alice", BOB, False),  # neither owner
        (0o1777, "bob", "alice", BOB, True),  # directory owner
        (0o0777, "root", "alice", BOB, True),  # no sticky bit
        (0o1777, "root", "alice", ADMIN, True),  # admin
    ],
)
def test_sticky(
    dir_mode: int, dir_owner: str, entry_owner: str, who: Identity, expected: bool
) -> None:
    directory = Inode(FsPath.parse("/d"), Kind.DIRECTORY, dir_owner, dir_owner, dir_mode, NOW, NOW)
    entry = inode(0o644, owner=entry_owner, path="/d/x")
    assert sticky_allows(who, directory, entry) is expected


def test_attribute_changes() -> None:
    file = inode(0o644)
    assert may_change_mode(ALICE, file)
    assert not may_change_mode(BOB, file)
    assert may_change_mode(ADMIN, file)
    assert may_change_group(ALICE, file, "team")
    assert not may_change_group(ALICE, file, "bob")
    assert not may_change_group(CAROL, file, "team")  # not the owner
    assert may_change_group(ADMIN, file, "anything")
    assert may_change_owner(ADMIN)
    assert not may_change_owner(ALICE)
