"""The CallFS error taxonomy. HTTP-free: ``callfs_http`` maps each class to a
status code and error code in one table.

Adapters translate the exceptions of their libraries into these classes at
their boundary (one context manager per adapter), chaining the cause.

::

    CallFSError
    ├── InvalidRequest                  a request value is malformed
    │   ├── InvalidPath                 a path breaks the path rules
    │   └── PayloadTooLarge             an upload is over the size limit
    ├── FsError                         an operation on a path failed
    │   ├── NotFound (FileNotFoundError)
    │   ├── AlreadyExists (FileExistsError)
    │   ├── NotADirectory (NotADirectoryError)
    │   ├── IsADirectory (IsADirectoryError)
    │   ├── DirectoryNotEmpty
    │   ├── PermissionDenied (PermissionError)
    │   ├── PreconditionFailed
    │   ├── NotModified
    │   ├── RangeNotSatisfiable
    │   ├── DigestMismatch
    │   ├── Conflict                    an optimistic update lost a race
    │   └── ExistsOnPeer                POST onto an entry another instance owns
    ├── OwnedByPeer                     not a failure: forward the change to its owner
    ├── AuthenticationFailed
    ├── LinkError
    │   ├── LinkNotFound
    │   ├── LinkExpired
    │   │   └── LinkInvalid             the signature no longer verifies
    │   └── LinkAlreadyUsed
    └── ServiceError                    a dependency failed; retrying may help
        ├── LockTimeout
        ├── BackendUnavailable
        └── PeerUnavailable
"""

from __future__ import annotations

__all__ = [
    "AlreadyExists",
    "AuthenticationFailed",
    "BackendUnavailable",
    "CallFSError",
    "Conflict",
    "DigestMismatch",
    "DirectoryNotEmpty",
    "ExistsOnPeer",
    "FsError",
    "InvalidPath",
    "InvalidRequest",
    "IsADirectory",
    "LinkAlreadyUsed",
    "LinkError",
    "LinkExpired",
    "LinkInvalid",
    "LinkNotFound",
    "LockTimeout",
    "NotADirectory",
    "NotFound",
    "NotModified",
    "OwnedByPeer",
    "PayloadTooLarge",
    "PeerUnavailable",
    "PermissionDenied",
    "PreconditionFailed",
    "RangeNotSatisfiable",
    "ServiceError",
]


class CallFSError(Exception):
    """Base of every error CallFS raises on purpose.

    ``message`` is an English sentence safe to show to clients: it never
    contains on-disk locations, DSNs, keys or stack traces.
    """

    default_message = "operation failed"

    def __init__(self, message: str | None = None) -> None:
        self.message = message or self.default_message
        super().__init__(self.message)


class InvalidRequest(CallFSError):
    """A request field, header or query value is malformed."""

    default_message = "invalid request"


class InvalidPath(InvalidRequest):
    """A path breaks the rules of api.md §1.2/§1.3."""

    def __init__(self, path: str, reason: str = "invalid path") -> None:
        self.path = path
        super().__init__(f"invalid path: {reason}")


class PayloadTooLarge(InvalidRequest):
    """An upload body is larger than the configured limit."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        super().__init__(f"upload is larger than the limit of {limit} bytes")


class FsError(CallFSError):
    """An operation on a path failed; ``path`` is the canonical path (a string)."""

    def __init__(self, path: object, message: str | None = None) -> None:
        self.path = str(path)
        super().__init__(message)


class NotFound(FsError, FileNotFoundError):
    default_message = "file or directory not found"


class AlreadyExists(FsError, FileExistsError):
    default_message = "file already exists"


class NotADirectory(FsError, NotADirectoryError):
    default_message = "not a directory"


class IsADirectory(FsError, IsADirectoryError):
    default_message = "is a directory"


class DirectoryNotEmpty(FsError):
    default_message = "directory is not empty"


class PermissionDenied(FsError, PermissionError):
    default_message = "permission denied"


class PreconditionFailed(FsError):
    default_message = "precondition failed"


class NotModified(FsError):
    """A conditional GET/HEAD matched: the client's copy is current."""

    default_message = "not modified"

    def __init__(self, path: object, inode: object = None) -> None:
        self.inode = inode
        super().__init__(path)


class RangeNotSatisfiable(FsError):
    default_message = "requested range not satisfiable"

    def __init__(self, path: object, size: int) -> None:
        self.size = size
        super().__init__(path)


class DigestMismatch(FsError):
    default_message = "the uploaded content does not match its digest"


class Conflict(FsError):
    """An update expected another version of the entry (optimistic concurrency)."""

    default_message = "the entry was changed concurrently"


class ExistsOnPeer(FsError):
    """A create (POST) met an entry owned by another instance (api.md §2.6).

    ``inode`` is the existing entry; ``directory`` tells whether a directory was
    to be created.
    """

    default_message = "Resource exists on another server"

    def __init__(self, inode: object, directory: bool) -> None:
        self.inode = inode
        self.directory = directory
        super().__init__(getattr(inode, "path", ""))


class OwnedByPeer(CallFSError):
    """The entry's bytes live on another instance, which must make this change
    (api.md §1.10). Raised after the receiving instance's own checks
    (permissions, preconditions) and before any request body is read; the
    server forwards the request to ``instance_id``. Never shown to clients.
    """

    default_message = "the entry is owned by another instance"

    def __init__(self, instance_id: str, path: object) -> None:
        self.instance_id = instance_id
        self.path = str(path)
        super().__init__(f"{self.path} is owned by instance {instance_id!r}")


class AuthenticationFailed(CallFSError):
    default_message = "authentication failed"


class LinkError(CallFSError):
    """A single-use link cannot be redeemed."""


class LinkNotFound(LinkError):
    default_message = "link not found"


class LinkExpired(LinkError):
    default_message = "link has expired"


class LinkInvalid(LinkExpired):
    """The stored link no longer verifies (e.g. the link secret changed)."""

    default_message = "link is no longer valid"


class LinkAlreadyUsed(LinkError):
    default_message = "link has already been used"


class ServiceError(CallFSError):
    """A dependency (database, lock service, storage, peer) failed."""


class LockTimeout(ServiceError):
    default_message = "timed out waiting for a lock on the path"


class BackendUnavailable(ServiceError):
    default_message = "a storage or metadata service is unavailable"


class PeerUnavailable(ServiceError):
    default_message = "the owning instance is unavailable"
