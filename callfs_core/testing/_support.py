"""Small helpers shared by the contract suites."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable
from datetime import UTC, datetime

import anyio.lowlevel

from callfs_core.paths import FsPath

T0 = datetime(2026, 1, 2, 3, 4, 5, 123456, tzinfo=UTC)
"""A fixed, microsecond-precise instant used for stored datetimes."""


def p(text: str) -> FsPath:
    """A canonical path from a literal in a test."""
    return FsPath.parse(text)


async def stream(pieces: Iterable[bytes]) -> AsyncIterator[bytes]:
    """An async body yielding ``pieces``, with a checkpoint before each."""
    for piece in pieces:
        await anyio.lowlevel.checkpoint()
        yield piece


def split(data: bytes, sizes: Iterable[int]) -> list[bytes]:
    """Cut ``data`` into pieces of the given sizes, cycling; the rest is the last piece."""
    pieces: list[bytes] = []
    sizes = list(sizes)
    offset = 0
    index = 0
    while offset < len(data):
        size = sizes[index % len(sizes)]
        pieces.append(data[offset : offset + size])
        offset += size
        index += 1
    return pieces
