"""The CallFS data model: frozen values passed between the engine and its ports."""

from __future__ import annotations

import enum
from datetime import datetime

import attrs

from callfs_core.paths import FsPath

__all__ = [
    "ROOT_GROUP",
    "ROOT_MODE",
    "ROOT_USER",
    "BlobInfo",
    "ByteRange",
    "EntryChanges",
    "Identity",
    "Inode",
    "Kind",
    "Link",
    "LinkStatus",
    "Preconditions",
    "ReadOptions",
    "WriteMode",
]

ROOT_USER = "root"
ROOT_GROUP = "root"
ROOT_MODE = 0o1777


class Kind(enum.Enum):
    FILE = "file"
    DIRECTORY = "directory"


@attrs.frozen
class Inode:
    """One entry of the tree, as recorded in the metadata store.

    ``version`` increases with every update and supports optimistic
    concurrency (``MetadataPort.update(expected_version=...)``).
    ``sha256`` and ``content_type`` are ``None`` for directories;
    ``instance_id`` names the instance holding the bytes (``None`` for shared
    backends and for ``/``). ``inline``: the file's bytes are kept by the
    metadata store with the entry (small files, see
    ``MetadataPort.read_content``) instead of by ``backend``.
    """

    path: FsPath
    kind: Kind
    owner: str
    group: str
    mode: int
    mtime: datetime
    ctime: datetime
    size: int = 0
    content_type: str | None = None
    sha256: str | None = None
    backend: str = "localfs"
    instance_id: str | None = None
    version: int = 1
    inline: bool = False

    @property
    def is_dir(self) -> bool:
        return self.kind is Kind.DIRECTORY

    @property
    def is_file(self) -> bool:
        return self.kind is Kind.FILE

    @property
    def etag(self) -> str | None:
        """The strong entity tag (quoted SHA-256) of a file; ``None`` for directories."""
        return f'"{self.sha256}"' if self.is_file and self.sha256 else None


@attrs.frozen
class EntryChanges:
    """Attribute changes applied to an entry (PATCH), possibly together with a rename.

    ``None`` leaves an attribute as it is; ``location`` is a new
    ``(backend, instance_id)`` pair.
    """

    mode: int | None = None
    group: str | None = None
    owner: str | None = None
    location: tuple[str, str | None] | None = None
    ctime: datetime | None = None

    @property
    def empty(self) -> bool:
        return self == EntryChanges()

    def apply(self, inode: Inode) -> Inode:
        backend, instance_id = self.location or (inode.backend, inode.instance_id)
        return attrs.evolve(
            inode,
            mode=inode.mode if self.mode is None else self.mode,
            group=self.group or inode.group,
            owner=self.owner or inode.owner,
            backend=backend,
            instance_id=instance_id,
            ctime=self.ctime or inode.ctime,
            # Relocated bytes are the new location's, no longer the entry's own.
            inline=inode.inline and self.location is None,
        )


@attrs.frozen
class Identity:
    """An authenticated caller: a user name, its groups and the admin flag.

    ``forwarded``: the request came from another instance on behalf of ``user``
    (api.md §1.10); it runs with admin rights and is never forwarded again.
    """

    user: str
    groups: frozenset[str] = frozenset()
    admin: bool = False
    forwarded: bool = False

    def in_group(self, group: str) -> bool:
        return group == self.user or group in self.groups


class LinkStatus(enum.Enum):
    ACTIVE = "active"
    USED = "used"


@attrs.frozen
class Link:
    """A single-use download link record (api.md §4.2)."""

    token_id: str
    path: FsPath
    signature: str
    expires_at: datetime
    created_at: datetime
    status: LinkStatus = LinkStatus.ACTIVE
    used_at: datetime | None = None
    used_by_ip: str | None = None
    created_by: str | None = None

    @property
    def token(self) -> str:
        return f"{self.token_id}.{self.signature}"


@attrs.frozen
class BlobInfo:
    """What a backend knows about stored bytes: their size and SHA-256 (lowercase hex)."""

    size: int
    sha256: str


@attrs.frozen
class ByteRange:
    """An inclusive byte range ``start..end`` already resolved against a size."""

    start: int
    end: int

    @property
    def length(self) -> int:
        return self.end - self.start + 1


@attrs.frozen
class Preconditions:
    """Parsed conditional request headers (RFC 9110 §13).

    Tag lists hold the entity tags as sent (quoted, possibly ``W/``-prefixed);
    ``"*"`` is represented by ``any_match``/``any_none_match``.
    """

    if_match: tuple[str, ...] | None = None
    if_none_match: tuple[str, ...] | None = None
    if_modified_since: datetime | None = None
    if_unmodified_since: datetime | None = None

    @property
    def empty(self) -> bool:
        return (
            self.if_match is None
            and self.if_none_match is None
            and self.if_modified_since is None
            and self.if_unmodified_since is None
        )


@attrs.frozen
class ReadOptions:
    """How to read a file: an optional raw Range header value, If-Range
    (an entity tag or a date) and preconditions."""

    range_header: str | None = None
    if_range: str | datetime | None = None
    preconditions: Preconditions = Preconditions()
    head: bool = False


class WriteMode(enum.Enum):
    """How a write treats an existing entry."""

    CREATE = "create"  # fail if the path exists (POST)
    UPSERT = "upsert"  # create or replace (PUT)
