"""Small files kept by the metadata store with their entry (``Inode.inline``).

A file whose whole body fits in ``EngineConfig.inline_max_bytes`` and that
would be stored on the instance's local disk is not written to the backend:
its bytes go into the metadata store in the same transaction as its entry
(``MetadataPort.create``/``update`` with ``content``). That write is atomic with
the attributes by construction (no temporary file, no rename, no window where
bytes and attributes disagree) and costs one database transaction instead of a
file creation, two fsyncs and a rename. Larger bodies go to the backend as before;
the decision is made while the body arrives, holding at most the limit plus one
chunk in memory.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable

import attrs

from callfs_core.model import BlobInfo, ByteRange
from callfs_core.ports import StagedBlob

__all__ = ["BytesReader", "ContentCache", "InlineBlob", "stage_small"]


@attrs.define
class InlineBlob:
    """A complete small body held in memory until the metadata commit stores it.

    Satisfies ``StagedBlob``; ``commit`` and ``abort`` do nothing, because the
    bytes become visible with the metadata change itself.
    """

    content: bytes
    info: BlobInfo = attrs.field(init=False)

    def __attrs_post_init__(self) -> None:
        self.info = BlobInfo(
            size=len(self.content), sha256=hashlib.sha256(self.content).hexdigest()
        )

    async def commit(self) -> None:
        return None

    async def abort(self) -> None:
        return None


class BytesReader:
    """A ``BlobReader`` over bytes already in memory (an inline file's content)."""

    def __init__(self, data: bytes, byte_range: ByteRange | None = None) -> None:
        if byte_range is not None:
            data = data[byte_range.start : byte_range.end + 1]
        self._data: bytes | None = data
        self.size = len(data)

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self._chunks()

    async def _chunks(self) -> AsyncIterator[bytes]:
        data, self._data = self._data, None
        if data:
            yield data

    async def aclose(self) -> None:
        self._data = None


async def stage_small(
    chunks: AsyncIterable[bytes],
    limit: int,
    stage: Callable[[AsyncIterable[bytes]], Awaitable[StagedBlob]],
) -> StagedBlob:
    """Read ``chunks`` up to ``limit`` bytes: a body that ends within it becomes an
    :class:`InlineBlob`; a longer one is handed to ``stage`` (the backend), the
    bytes read so far first."""
    iterator = aiter(chunks)
    held: list[bytes] = []
    size = 0
    async for chunk in iterator:
        held.append(chunk)
        size += len(chunk)
        if size > limit:
            return await stage(_replay(held, iterator))
    return InlineBlob(b"".join(held))


async def _replay(held: list[bytes], rest: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    while held:
        yield held.pop(0)
    async for chunk in rest:
        yield chunk


class ContentCache:
    """Recently read or written inline contents, keyed by their SHA-256, at most
    ``budget`` bytes (least recently used out first).

    Keyed by digest, an entry can never be stale: the bytes whose SHA-256 an
    inode names are those bytes, whichever path, version or process wrote
    them. So it needs no invalidation, and it is safe where the metadata cache
    is not (instances sharing PostgreSQL), where it saves a database round trip
    per read of a small file.
    """

    def __init__(self, budget: int) -> None:
        self.budget = budget
        self._held = 0
        self._entries: OrderedDict[str, bytes] = OrderedDict()

    def get(self, sha256: str | None) -> bytes | None:
        if sha256 is None:
            return None
        data = self._entries.get(sha256)
        if data is not None:
            self._entries.move_to_end(sha256)
        return data

    def put(self, sha256: str | None, data: bytes) -> None:
        if sha256 is None or len(data) > self.budget // 16 or sha256 in self._entries:
            return
        self._entries[sha256] = data
        self._held += len(data)
        while self._held > self.budget:
            _, dropped = self._entries.popitem(last=False)
            self._held -= len(dropped)
