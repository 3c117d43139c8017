"""Unix permission rules (api.md §3), as pure functions over inodes and identities.

Nothing here does I/O: the engine gathers the inodes involved and asks.
"""

from __future__ import annotations

import enum

from callfs_core.model import Identity, Inode

__all__ = [
    "SETGID",
    "STICKY",
    "Access",
    "allowed",
    "may_change_group",
    "may_change_mode",
    "may_change_owner",
    "sticky_allows",
]

SETUID = 0o4000
SETGID = 0o2000
STICKY = 0o1000


class Access(enum.IntFlag):
    """Permission bits of one class (owner, group or other)."""

    X = 1
    W = 2
    R = 4
    WX = 3
    RX = 5
    RWX = 7


def _class_bits(identity: Identity, inode: Inode) -> int:
    if identity.user == inode.owner:
        return (inode.mode >> 6) & 0o7
    if identity.in_group(inode.group):
        return (inode.mode >> 3) & 0o7
    return inode.mode & 0o7


def allowed(identity: Identity, inode: Inode, needed: Access) -> bool:
    """May ``identity`` use ``needed`` on ``inode``? Only the caller's class counts."""
    if identity.admin:
        return True
    return (_class_bits(identity, inode) & needed) == needed


def sticky_allows(identity: Identity, directory: Inode, entry: Inode) -> bool:
    """The sticky rule: in a sticky directory only the entry's or the directory's
    owner (or an admin) may delete, rename, move away or replace the entry."""
    if identity.admin or not directory.mode & STICKY:
        return True
    return identity.user in (entry.owner, directory.owner)


def may_change_mode(identity: Identity, inode: Inode) -> bool:
    return identity.admin or identity.user == inode.owner


def may_change_group(identity: Identity, inode: Inode, group: str) -> bool:
    """The owner may pick a group it belongs to; admins any known group."""
    if identity.admin:
        return True
    return identity.user == inode.owner and identity.in_group(group)


def may_change_owner(identity: Identity) -> bool:
    return identity.admin
