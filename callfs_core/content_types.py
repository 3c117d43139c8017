"""Content types of stored files (api.md §1.8), pure."""

from __future__ import annotations

from typing import Final

__all__ = ["DEFAULT_CONTENT_TYPE", "choose_content_type", "guess_content_type"]

DEFAULT_CONTENT_TYPE: Final = "application/octet-stream"

_BY_EXTENSION: Final = {
    "html": "text/html",
    "htm": "text/html",
    "css": "text/css",
    "js": "application/javascript",
    "json": "application/json",
    "xml": "application/xml",
    "pdf": "application/pdf",
    "jpg": "image/jpeg",
    "jpeg": "image/jpeg",
    "png": "image/png",
    "gif": "image/gif",
    "svg": "image/svg+xml",
    "txt": "text/plain",
    "md": "text/markdown",
    "csv": "text/csv",
    "webp": "image/webp",
    "zip": "application/zip",
    "gz": "application/gzip",
    "tar": "application/x-tar",
    "yaml": "application/yaml",
    "yml": "application/yaml",
    "mp3": "audio/mpeg",
    "mp4": "video/mp4",
    "wasm": "application/wasm",
}
_IGNORED: Final = frozenset({DEFAULT_CONTENT_TYPE, "application/x-www-form-urlencoded"})
_TOKEN_CHARS: Final = frozenset("!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyz")


def guess_content_type(name: str) -> str:
    """The type for a file name's extension (after the last ``.``; ``.bashrc`` has none)."""
    stem, dot, extension = name.rpartition(".")
    if not dot or not stem:
        return DEFAULT_CONTENT_TYPE
    return _BY_EXTENSION.get(extension.lower(), DEFAULT_CONTENT_TYPE)


def _normalise(header: str) -> str | None:
    if len(header) > 255:
        return None
    media, sep, params = header.partition(";")
    kind, slash, subtype = media.strip().lower().partition("/")
    if not slash or not kind or not subtype:
        return None
    if not set(kind) <= _TOKEN_CHARS or not set(subtype) <= _TOKEN_CHARS:
        return None
    value = f"{kind}/{subtype}"
    if sep:
        value += ";" + params
    return value


def choose_content_type(header: str | None, name: str) -> str:
    """The content type to store for an upload: the request's, unless absent,
    unparsable or a generic client default; else a guess from the name."""
    if header:
        value = _normalise(header)
        if value is not None and value.split(";", 1)[0] not in _IGNORED:
            return value
    return guess_content_type(name)
