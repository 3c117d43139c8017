"""The one table mapping core errors to HTTP statuses and error codes (api.md §1.5)."""

from __future__ import annotations

import json
from typing import Final

from callfs_core import errors as e

__all__ = ["ErrorReply", "error_body", "reply_for"]

# Most specific classes first: the first match wins.
_TABLE: Final[list[tuple[type[e.CallFSError], int, str]]] = [
    (e.InvalidPath, 400, "INVALID_PATH"),
    (e.PayloadTooLarge, 413, "PAYLOAD_TOO_LARGE"),
    (e.InvalidRequest, 400, "BAD_REQUEST"),
    (e.NotADirectory, 400, "NOT_A_DIRECTORY"),
    (e.IsADirectory, 400, "IS_A_DIRECTORY"),
    (e.DigestMismatch, 400, "DIGEST_MISMATCH"),
    (e.AuthenticationFailed, 401, "AUTHENTICATION_FAILED"),
    (e.PermissionDenied, 403, "PERMISSION_DENIED"),
    (e.NotFound, 404, "FILE_NOT_FOUND"),
    (e.LinkNotFound, 404, "LINK_NOT_FOUND"),
    (e.AlreadyExists, 409, "FILE_ALREADY_EXISTS"),
    (e.DirectoryNotEmpty, 409, "DIRECTORY_NOT_EMPTY"),
    (e.LinkExpired, 410, "LINK_EXPIRED"),
    (e.LinkAlreadyUsed, 410, "LINK_ALREADY_USED"),
    (e.PreconditionFailed, 412, "PRECONDITION_FAILED"),
    (e.RangeNotSatisfiable, 416, "RANGE_NOT_SATISFIABLE"),
    (e.PeerUnavailable, 502, "PEER_UNAVAILABLE"),
    (e.LockTimeout, 503, "LOCK_TIMEOUT"),
    # An optimistic update that lost a race: the client may simply retry.
    (e.Conflict, 503, "LOCK_TIMEOUT"),
    (e.BackendUnavailable, 503, "BACKEND_UNAVAILABLE"),
    (e.ServiceError, 503, "BACKEND_UNAVAILABLE"),
]
_RETRY_AFTER: Final = {"LOCK_TIMEOUT": "1", "BACKEND_UNAVAILABLE": "5"}
# A file would be created where a directory exists: a conflict for POST and
# PATCH of /v1/files (elsewhere, e.g. link generation, a plain bad request).
_CONFLICT_METHODS: Final = frozenset({"POST", "PATCH"})
_CONFLICT_PREFIX: Final = "/v1/files/"


class ErrorReply:
    __slots__ = ("code", "headers", "message", "status")

    def __init__(self, status: int, code: str, message: str, headers: dict[str, str]) -> None:
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers


def error_body(code: str, message: str) -> bytes:
    return json.dumps({"code": code, "message": message}, separators=(",", ":")).encode()


def reply_for(exc: e.CallFSError, method: str, path: str = "") -> ErrorReply:
    """The status, code, message and extra headers for a core error on ``method path``."""
    status, code = next(
        ((status, code) for cls, status, code in _TABLE if isinstance(exc, cls)),
        (500, "INTERNAL_ERROR"),
    )
    creating = method in _CONFLICT_METHODS and path.startswith(_CONFLICT_PREFIX)
    if isinstance(exc, e.IsADirectory) and creating:
        status = 409
    headers: dict[str, str] = {}
    if code in _RETRY_AFTER:
        headers["Retry-After"] = _RETRY_AFTER[code]
    if isinstance(exc, e.RangeNotSatisfiable):
        headers["Content-Range"] = f"bytes */{exc.size}"
    if isinstance(exc, e.AuthenticationFailed):
        headers["WWW-Authenticate"] = 'Bearer realm="callfs"'
    return ErrorReply(status, code, exc.message, headers)
