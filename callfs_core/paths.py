"""Canonical filesystem paths.

Every path that enters CallFS — from a URL, a JSON body, a link record or a peer
request — becomes an :class:`FsPath` exactly once, through one of the
constructors here. Below the edge only canonical paths exist, so metadata keys,
backend keys, locks and permission checks all use the same spelling.

The rules are those of the API specification §1.2 (URL paths) and §1.3 (body
paths and names).
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Iterator
from functools import total_ordering
from typing import Final
from urllib.parse import unquote_to_bytes

from callfs_core.errors import InvalidPath

__all__ = ["MAX_PATH_BYTES", "MAX_SEGMENT_BYTES", "ROOT", "FsPath", "UrlPath"]

MAX_SEGMENT_BYTES: Final = 255
MAX_PATH_BYTES: Final = 4096

_BIDI_CONTROLS: Final = frozenset(
    [chr(c) for c in range(0x202A, 0x202F)] + [chr(c) for c in range(0x2066, 0x206A)]
)


# Every character a path may not contain (api.md §1.2 step 4), plus lone
# surrogates (not encodable as UTF-8); searched in C, classified in Python.
_BAD_CHARACTERS: Final = re.compile(
    "[\\\\\x00-\x08\x0a-\x1f\u202a-\u202e\u2066-\u2069\ud800-\udfff]"
)
# A canonical path: "/" + segments without "/", none of them "." or "..".
_CANONICAL: Final = re.compile(r"(?:/(?!\.\.?(?:/|$))[^/]+)+")


def _bad_character(text: str) -> str | None:
    found = _BAD_CHARACTERS.search(text)
    if found is None:
        return None
    for ch in found.group():
        if ch == "\\":
            return "backslash"
        if ch == "\x00":
            return "NUL character"
        if ch < " " and ch != "\t":
            return "control character"
        if ch in _BIDI_CONTROLS:
            return "bidirectional control character"
        if "\ud800" <= ch <= "\udfff":
            return "lone surrogate (not valid UTF-8)"
    return None


def _check_characters(text: str, original: str) -> None:
    problem = _bad_character(text)
    if problem is not None:
        raise InvalidPath(original, f"path contains a {problem}")


def _check_climb(text: str, original: str) -> None:
    depth = 0
    for segment in text.split("/"):
        if segment in ("", "."):
            continue
        depth = depth - 1 if segment == ".." else depth + 1
        if depth < 0:
            raise InvalidPath(original, "path escapes the root directory")


def _check_lengths(canonical: str, original: str) -> None:
    if len(canonical.encode()) > MAX_PATH_BYTES:
        raise InvalidPath(original, f"path is longer than {MAX_PATH_BYTES} bytes")
    for segment in canonical.split("/"):
        if len(segment.encode()) > MAX_SEGMENT_BYTES:
            raise InvalidPath(original, f"path segment is longer than {MAX_SEGMENT_BYTES} bytes")


def _canonicalise(text: str, original: str) -> str:
    _check_characters(text, original)
    _check_climb(text, original)
    cleaned = posixpath.normpath("/" + text)
    # normpath keeps a leading "//" (POSIX allows it to be special); we do not.
    if cleaned.startswith("//"):
        cleaned = "/" + cleaned.lstrip("/")
    _check_lengths(cleaned, original)
    return cleaned


@total_ordering
class FsPath:
    """An absolute, canonical path: ``/`` or ``/a/b`` (no trailing slash, no dots).

    Construct with :meth:`from_url`, :meth:`from_body` or :meth:`parse`; the
    plain constructor is private to this module. Instances are immutable,
    hashable and compare byte-wise (code-point order).
    """

    __slots__ = ("_value",)
    _value: str

    def __init__(self, canonical: str, *, _token: object = None) -> None:
        if _token is not _PRIVATE:
            raise TypeError("use FsPath.parse, FsPath.from_url or FsPath.from_body")
        object.__setattr__(self, "_value", canonical)

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError("FsPath is immutable")

    # -- constructors ---------------------------------------------------------
    @classmethod
    def from_url(cls, raw: str | bytes) -> UrlPath:
        """Parse the still percent-encoded ``{path}`` part of a URL (api.md §1.2).

        Returns the canonical path and whether the request named a directory
        (a trailing ``/``, or the root).

        Raises:
            InvalidPath: the path breaks a rule of §1.2.
        """
        raw_bytes = raw.encode("latin-1") if isinstance(raw, str) else raw
        shown = raw_bytes.decode("latin-1")
        try:
            text = unquote_to_bytes(raw_bytes).decode("utf-8")
        except UnicodeDecodeError:
            raise InvalidPath(shown, "path is not valid UTF-8") from None
        if text.startswith("/"):
            text = text[1:]
        directory = text.endswith("/")
        if directory:
            text = text[:-1]
        if text in ("", "."):
            return UrlPath(ROOT, True)
        canonical = _canonicalise(text, text)
        if canonical == "/":
            return UrlPath(ROOT, True)
        return UrlPath(cls(canonical, _token=_PRIVATE), directory)

    @classmethod
    def from_body(cls, text: str) -> FsPath:
        """Parse a path from a JSON body or query string (api.md §1.3).

        A leading ``/`` is optional and a trailing ``/`` is dropped; no
        percent-decoding happens.

        Raises:
            InvalidPath: the path breaks a rule of §1.2 steps 4–7.
        """
        return cls(_canonicalise(text, text), _token=_PRIVATE)

    @classmethod
    def parse(cls, canonical: str) -> FsPath:
        """Rebuild a path that is already canonical (from a store or a trusted peer).

        Raises:
            InvalidPath: ``canonical`` is not in canonical form.
        """
        if canonical == "/":
            return ROOT
        if _CANONICAL.fullmatch(canonical):  # the common case: a path read from a store
            _check_characters(canonical, canonical)
            _check_lengths(canonical, canonical)
            return cls(canonical, _token=_PRIVATE)
        value = _canonicalise(canonical, canonical)
        if value != canonical:
            raise InvalidPath(canonical, "path is not canonical")
        return cls(value, _token=_PRIVATE)

    # -- properties -----------------------------------------------------------
    @property
    def is_root(self) -> bool:
        return self._value == "/"

    @property
    def name(self) -> str:
        """The last segment; empty for the root."""
        return self._value.rsplit("/", 1)[1]

    @property
    def parent(self) -> FsPath:
        """The parent directory; the root is its own parent."""
        if self.is_root:
            return self
        head = self._value.rsplit("/", 1)[0]
        return FsPath(head or "/", _token=_PRIVATE)

    @property
    def parts(self) -> tuple[str, ...]:
        """The segments, without the root: ``/a/b`` -> ``("a", "b")``."""
        return () if self.is_root else tuple(self._value[1:].split("/"))

    @property
    def depth(self) -> int:
        return len(self.parts)

    def ancestors(self) -> list[FsPath]:
        """All proper ancestors, from ``/`` down to the parent."""
        result: list[FsPath] = []
        current = self
        while not current.is_root:
            current = current.parent
            result.append(current)
        result.reverse()
        return result

    def iter_lineage(self) -> Iterator[FsPath]:
        """The ancestors followed by the path itself."""
        yield from self.ancestors()
        yield self

    def child(self, name: str) -> FsPath:
        """Append one validated segment (api.md §1.3 rules for a PATCH ``name``).

        Raises:
            InvalidPath: ``name`` is not a single valid segment.
        """
        if name in ("", ".", "..") or "/" in name:
            raise InvalidPath(name, "name must be a single path segment")
        _check_characters(name, name)
        value = ("" if self.is_root else self._value) + "/" + name
        _check_lengths(value, name)
        return FsPath(value, _token=_PRIVATE)

    def is_within(self, other: FsPath) -> bool:
        """True when ``self`` is ``other`` or lies below it."""
        if other.is_root or self._value == other._value:
            return True
        return self._value.startswith(other._value + "/")

    def relative_to(self, other: FsPath) -> str:
        """The part below ``other`` without a leading slash (``""`` for itself)."""
        if not self.is_within(other):
            raise ValueError(f"{self} is not within {other}")
        if self._value == other._value:
            return ""
        return self._value[1:] if other.is_root else self._value[len(other._value) + 1 :]

    def rebase(self, old: FsPath, new: FsPath) -> FsPath:
        """Move this path from below ``old`` to below ``new``."""
        rest = self.relative_to(old)
        if not rest:
            return new
        value = ("" if new.is_root else new._value) + "/" + rest
        _check_lengths(value, value)
        return FsPath(value, _token=_PRIVATE)

    # -- dunder ---------------------------------------------------------------
    def __str__(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return f"FsPath({self._value!r})"

    def __hash__(self) -> int:
        return hash(self._value)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, FsPath):
            return self._value == other._value
        return NotImplemented

    def __lt__(self, other: FsPath) -> bool:
        return self._value < other._value

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (FsPath.parse, (self._value,))


class UrlPath:
    """A URL path after §1.2: the canonical path plus the trailing-slash flag."""

    __slots__ = ("directory", "path")

    def __init__(self, path: FsPath, directory: bool) -> None:
        self.path = path
        self.directory = directory

    def __iter__(self) -> Iterator[object]:
        yield self.path
        yield self.directory

    def __repr__(self) -> str:
        return f"UrlPath({self.path!r}, directory={self.directory})"


_PRIVATE: Final = object()
ROOT: Final = FsPath("/", _token=_PRIVATE)
