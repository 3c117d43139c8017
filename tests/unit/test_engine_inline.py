"""Small files kept with their metadata entry (``EngineConfig.inline_max_bytes``)."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator

import pytest

from callfs_adapters.hmac_signer import HmacLinkSigner
from callfs_adapters.local_lock import LocalLockManager
from callfs_adapters.memory_blob import InMemoryBlobBackend
from callfs_adapters.memory_metadata import InMemoryMetadataStore
from callfs_adapters.system import RandomIdGenerator, SystemClock
from callfs_core.engine import Engine, EngineConfig
from callfs_core.errors import AlreadyExists, NotFound, PreconditionFailed
from callfs_core.inline import ContentCache
from callfs_core.model import EntryChanges, Identity, Inode, Preconditions, ReadOptions, WriteMode
from callfs_core.patching import PatchRequest
from callfs_core.paths import FsPath

pytestmark = pytest.mark.anyio

ALICE = Identity("alice", frozenset({"alice"}))
LIMIT = 16


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def metadata() -> InMemoryMetadataStore:
    return InMemoryMetadataStore()


@pytest.fixture
def disk() -> InMemoryBlobBackend:
    return InMemoryBlobBackend("localfs")


@pytest.fixture
def s3() -> InMemoryBlobBackend:
    return InMemoryBlobBackend("s3")


async def make_engine(
    metadata: InMemoryMetadataStore, *backends: InMemoryBlobBackend, limit: int = LIMIT
) -> Engine:
    """An engine on these adapters, started (the root seeded once per store)."""
    engine = Engine(
        metadata=metadata,
        backends={backend.name: backend for backend in backends},
        locks=LocalLockManager(),
        signer=HmacLinkSigner("secret"),
        clock=SystemClock(),
        ids=RandomIdGenerator(),
        config=EngineConfig(instance_id="i1", inline_max_bytes=limit),
    )
    await engine.start()
    return engine


@pytest.fixture
async def engine(
    metadata: InMemoryMetadataStore, disk: InMemoryBlobBackend, s3: InMemoryBlobBackend
) -> Engine:
    return await make_engine(metadata, disk, s3)


def P(text: str) -> FsPath:
    return FsPath.parse(text)


async def chunks(*parts: bytes) -> AsyncIterator[bytes]:
    for part in parts:
        yield part


async def put(engine: Engine, path: str, *parts: bytes) -> None:
    await engine.write_file(ALICE, P(path), chunks(*parts), write_mode=WriteMode.UPSERT)


async def read(engine: Engine, path: str, range_header: str | None = None) -> bytes:
    result = await engine.read(ALICE, P(path), ReadOptions(range_header=range_header))
    assert result.reader is not None
    try:
        return b"".join([chunk async for chunk in result.reader])
    finally:
        await result.reader.aclose()


async def on_disk(disk: InMemoryBlobBackend, path: str) -> bytes | None:
    if await disk.stat(P(path)) is None:
        return None
    reader = await disk.open(P(path))
    try:
        return b"".join([chunk async for chunk in reader])
    finally:
        await reader.aclose()


async def test_small_body_is_kept_with_the_entry(
    engine: Engine, metadata: InMemoryMetadataStore, disk: InMemoryBlobBackend
) -> None:
    await put(engine, "/a.txt", b"hello ", b"world")  # 11 bytes in two chunks
    inode = await engine.stat(ALICE, P("/a.txt"))
    assert inode.inline and inode.backend == "localfs" and inode.size == 11
    assert inode.sha256 == hashlib.sha256(b"hello world").hexdigest()
    assert await metadata.read_content(P("/a.txt"), inode.version) == b"hello world"
    assert await on_disk(disk, "/a.txt") is None
    assert await read(engine, "/a.txt") == b"hello world"
    assert await read(engine, "/a.txt", "bytes=6-") == b"world"
    assert await read(engine, "/a.txt", "bytes=-3") == b"rld"


async def test_exactly_the_limit_is_inline_one_byte_more_is_not(
    engine: Engine, disk: InMemoryBlobBackend
) -> None:
    await put(engine, "/at", b"x" * LIMIT)
    await put(engine, "/over", b"y" * 10, b"y" * (LIMIT - 9))  # crosses in the 2nd chunk
    assert (await engine.stat(ALICE, P("/at"))).inline
    over = await engine.stat(ALICE, P("/over"))
    assert not over.inline and over.size == LIMIT + 1
    assert await on_disk(disk, "/over") == b"y" * (LIMIT + 1)
    assert await read(engine, "/over") == b"y" * (LIMIT + 1)


async def test_empty_file_is_inline(engine: Engine) -> None:
    await put(engine, "/empty")
    inode = await engine.stat(ALICE, P("/empty"))
    assert inode.inline and inode.size == 0
    assert await read(engine, "/empty") == b""


async def test_replacing_moves_bytes_between_disk_and_entry(
    engine: Engine, metadata: InMemoryMetadataStore, disk: InMemoryBlobBackend
) -> None:
    big = b"B" * (LIMIT * 4)
    await put(engine, "/f", b"small")
    await put(engine, "/f", big)  # inline -> disk
    inode = await engine.stat(ALICE, P("/f"))
    assert not inode.inline
    assert await metadata.read_content(P("/f"), inode.version) is None
    assert await on_disk(disk, "/f") == big
    await put(engine, "/f", b"tiny")  # disk -> inline: the disk copy goes
    inode = await engine.stat(ALICE, P("/f"))
    assert inode.inline
    assert await on_disk(disk, "/f") is None
    assert await read(engine, "/f") == b"tiny"


async def test_other_backends_never_inline(engine: Engine, s3: InMemoryBlobBackend) -> None:
    await put(engine, "/f", b"on disk")
    await engine.patch(ALICE, P("/f"), PatchRequest(name="f", backend="s3"))
    moved = await engine.stat(ALICE, P("/f"))
    assert moved.backend == "s3" and not moved.inline
    assert await on_disk(s3, "/f") == b"on disk"  # relocated out of the entry
    await put(engine, "/f", b"again")  # replaced on its backend, still s3
    again = await engine.stat(ALICE, P("/f"))
    assert again.backend == "s3" and not again.inline
    assert await read(engine, "/f") == b"again"


async def test_rename_chmod_and_delete_of_inline_files(
    engine: Engine, metadata: InMemoryMetadataStore, disk: InMemoryBlobBackend
) -> None:
    await engine.create_directory(ALICE, P("/d"))
    await put(engine, "/d/f", b"keep")
    await engine.patch(ALICE, P("/d/f"), PatchRequest(name="g", mode="0600"))
    moved = await engine.stat(ALICE, P("/d/g"))
    assert moved.inline and moved.mode == 0o600
    assert await read(engine, "/d/g") == b"keep"
    await engine.patch(ALICE, P("/d"), PatchRequest(name="e"))
    assert await read(engine, "/e/g") == b"keep"
    removed = await engine.delete(ALICE, P("/e"), recursive=True)
    assert removed.path == P("/e")
    with pytest.raises(NotFound):
        await engine.stat(ALICE, P("/e/g"))


async def test_inline_file_moved_over_a_disk_file_removes_the_disk_copy(
    engine: Engine, disk: InMemoryBlobBackend
) -> None:
    await put(engine, "/big", b"D" * (LIMIT * 2))
    await put(engine, "/small", b"s")
    await engine.patch(ALICE, P("/small"), PatchRequest(name="big", overwrite=True))
    inode = await engine.stat(ALICE, P("/big"))
    assert inode.inline
    assert await on_disk(disk, "/big") is None
    assert await read(engine, "/big") == b"s"
    # And the other way round: a disk file moved over an inline one.
    await put(engine, "/x", b"D" * (LIMIT * 2))
    await engine.patch(ALICE, P("/x"), PatchRequest(name="big", overwrite=True))
    inode = await engine.stat(ALICE, P("/big"))
    assert not inode.inline
    assert await on_disk(disk, "/big") == b"D" * (LIMIT * 2)


async def test_limit_zero_keeps_every_file_on_disk(
    metadata: InMemoryMetadataStore, disk: InMemoryBlobBackend
) -> None:
    e = await make_engine(metadata, disk, limit=0)
    await put(e, "/f", b"x")
    assert not (await e.stat(ALICE, P("/f"))).inline
    assert await on_disk(disk, "/f") == b"x"


async def test_new_file_created_by_someone_else_meanwhile(engine: Engine) -> None:
    """The lock-free create of a new small file falls back to the locked commit
    when the path was taken while the body arrived."""

    async def racing_body(rival: bytes, path: str = "/raced") -> AsyncIterator[bytes]:
        yield b"mine"
        await put(engine, path, rival)  # lands between the lookup and the commit

    await engine.write_file(ALICE, P("/raced"), racing_body(b"theirs"), write_mode=WriteMode.UPSERT)
    assert await read(engine, "/raced") == b"mine"  # PUT: replaces
    inode = await engine.stat(ALICE, P("/raced"))
    assert inode.version == 2 and inode.inline

    with pytest.raises(AlreadyExists):
        await engine.write_file(
            ALICE,
            P("/raced-post"),
            racing_body(b"first", "/raced-post"),
            write_mode=WriteMode.CREATE,
        )
    assert await read(engine, "/raced-post") == b"first"  # POST: the first one stays


async def test_another_engine_reads_the_bytes_from_the_store(
    engine: Engine, metadata: InMemoryMetadataStore, disk: InMemoryBlobBackend
) -> None:
    """A second engine on the same store (another worker) has nothing cached."""
    await put(engine, "/shared", b"from the store")
    other = await make_engine(metadata, disk)
    assert await read(other, "/shared", "bytes=5-7") == b"the"
    assert await read(other, "/shared") == b"from the store"
    await put(other, "/shared", b"changed")  # the first engine caches by digest
    assert await read(engine, "/shared") == b"changed"


def test_content_cache_is_keyed_by_digest_and_bounded() -> None:
    cache = ContentCache(budget=160)
    assert cache.get(None) is None
    cache.put(None, b"ignored")
    for index in range(20):
        cache.put(f"sha-{index}", bytes([index]) * 10)  # 200 bytes offered
    assert cache.get("sha-0") is None  # least recently used went first
    assert cache.get("sha-19") == bytes([19]) * 10
    held = [f"sha-{i}" for i in range(20) if cache.get(f"sha-{i}") is not None]
    assert len(held) == 16  # 160 bytes
    cache.put("big", b"x" * 11)  # more than a sixteenth of the budget: not kept
    assert cache.get("big") is None


class RacingMetadata(InMemoryMetadataStore):
    """Before the first create of a file (past the writer's checks, under the
    lock for a body on disk), a small file is written at its path without the
    lock."""

    def __init__(self) -> None:
        super().__init__()
        self.rival: tuple[Engine, str, bytes] | None = None

    async def create(self, inode: Inode, *, content: bytes | None = None) -> Inode:
        if self.rival is not None and inode.is_file:
            engine, path, data = self.rival
            self.rival = None
            await put(engine, path, data)  # lock-free: the path is still free
        return await super().create(inode, content=content)


@pytest.fixture
async def racing(disk: InMemoryBlobBackend) -> tuple[Engine, RacingMetadata]:
    metadata = RacingMetadata()
    e = await make_engine(metadata, disk)
    return e, metadata


@pytest.mark.parametrize("body", [b"L" * (LIMIT * 4), b"small"], ids=["large", "small"])
async def test_locked_new_file_replaces_a_small_file_created_meanwhile(
    racing: tuple[Engine, RacingMetadata], disk: InMemoryBlobBackend, body: bytes
) -> None:
    engine, metadata = racing
    metadata.rival = (engine, "/f", b"rival")
    # A small body takes the lock-free create too, and falls back to the lock.
    await engine.write_file(ALICE, P("/f"), chunks(body), write_mode=WriteMode.UPSERT)
    assert await read(engine, "/f") == body
    inode = await engine.stat(ALICE, P("/f"))
    assert inode.version == 2 and inode.inline == (len(body) <= LIMIT)
    assert await on_disk(disk, "/f") == (None if inode.inline else body)


async def test_locked_post_of_a_large_file_loses_to_a_small_file_created_meanwhile(
    racing: tuple[Engine, RacingMetadata], disk: InMemoryBlobBackend
) -> None:
    engine, metadata = racing
    metadata.rival = (engine, "/f", b"rival")
    with pytest.raises(AlreadyExists, match="use PUT"):
        await engine.write_file(
            ALICE, P("/f"), chunks(b"L" * (LIMIT * 4)), write_mode=WriteMode.CREATE
        )
    assert await read(engine, "/f") == b"rival"
    assert await on_disk(disk, "/f") is None  # the loser's bytes were removed


async def test_locked_put_if_none_match_loses_to_a_small_file_created_meanwhile(
    racing: tuple[Engine, RacingMetadata], disk: InMemoryBlobBackend
) -> None:
    engine, metadata = racing
    metadata.rival = (engine, "/f", b"rival")
    with pytest.raises(PreconditionFailed):
        await engine.write_file(
            ALICE,
            P("/f"),
            chunks(b"L" * (LIMIT * 4)),
            write_mode=WriteMode.UPSERT,
            preconditions=Preconditions(if_none_match=("*",)),
        )
    assert await read(engine, "/f") == b"rival"
    assert await on_disk(disk, "/f") is None


class RacingRename(InMemoryMetadataStore):
    """Before the first rename, a small file is written at its destination
    without the lock (after the move's last check)."""

    def __init__(self) -> None:
        super().__init__()
        self.rival: tuple[Engine, str, bytes] | None = None

    async def rename(
        self,
        source: FsPath,
        destination: FsPath,
        *,
        replace: bool = False,
        changes: EntryChanges | None = None,
    ) -> Inode | None:
        if self.rival is not None:
            engine, path, data = self.rival
            self.rival = None
            await put(engine, path, data)
        return await super().rename(source, destination, replace=replace, changes=changes)


@pytest.mark.parametrize("size", [LIMIT * 4, 5], ids=["on disk", "inline"])
@pytest.mark.parametrize("overwrite", [True, False])
async def test_move_onto_a_small_file_created_meanwhile(
    disk: InMemoryBlobBackend, size: int, overwrite: bool
) -> None:
    metadata = RacingRename()
    engine = await make_engine(metadata, disk)
    data = b"m" * size
    await put(engine, "/src", data)
    metadata.rival = (engine, "/dst", b"rival")
    request = PatchRequest(name="dst", overwrite=overwrite)
    if not overwrite:
        with pytest.raises(AlreadyExists):
            await engine.patch(ALICE, P("/src"), request)
        assert await read(engine, "/src") == data  # the move was undone
        assert await read(engine, "/dst") == b"rival"
        return
    await engine.patch(ALICE, P("/src"), request)
    assert await read(engine, "/dst") == data
    with pytest.raises(NotFound):
        await engine.stat(ALICE, P("/src"))
    assert await on_disk(disk, "/dst") == (data if size > LIMIT else None)
    assert await on_disk(disk, "/src") is None
