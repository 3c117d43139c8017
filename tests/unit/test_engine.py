"""The engine's use cases on in-memory adapters: state, errors and permissions."""

from __future__ import annotations

import base64
import hashlib
import itertools
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest

from callfs_adapters.hmac_signer import HmacLinkSigner
from callfs_adapters.local_lock import LocalLockManager
from callfs_adapters.memory_blob import InMemoryBlobBackend
from callfs_adapters.memory_metadata import InMemoryMetadataStore
from callfs_core.engine import Digests, Engine, EngineConfig
from callfs_core.errors import (
    AlreadyExists,
    DigestMismatch,
    DirectoryNotEmpty,
    InvalidRequest,
    IsADirectory,
    LinkAlreadyUsed,
    LinkExpired,
    LinkInvalid,
    LinkNotFound,
    NotADirectory,
    NotFound,
    NotModified,
    PayloadTooLarge,
    PermissionDenied,
    PreconditionFailed,
)
from callfs_core.model import Identity, Preconditions, ReadOptions, WriteMode
from callfs_core.paths import ROOT, FsPath

pytestmark = pytest.mark.anyio

ALICE = Identity("alice", frozenset({"alice", "team"}))
BOB = Identity("bob", frozenset({"bob"}))
CAROL = Identity("carol", frozenset({"carol", "team"}))
ADMIN = Identity("boss", frozenset({"boss"}), admin=True)


class FakeClock:
    def __init__(self) -> None:
        self.current = datetime(2026, 4, 11, 8, 0, tzinfo=UTC)

    def now(self) -> datetime:
        return self.current


class CountingIds:
    def __init__(self) -> None:
        self._n = itertools.count()

    def token_id(self) -> str:
        return base64.urlsafe_b64encode(next(self._n).to_bytes(16, "big")).decode()


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def engine(clock: FakeClock) -> Engine:
    e = Engine(
        metadata=InMemoryMetadataStore(),
        backends={"localfs": InMemoryBlobBackend("localfs")},
        locks=LocalLockManager(),
        signer=HmacLinkSigner("secret"),
        clock=clock,
        ids=CountingIds(),
        config=EngineConfig(instance_id="i1", max_upload_bytes=1000),
    )
    await e.start()
    return e


def P(text: str) -> FsPath:
    return FsPath.parse(text)


async def body(*chunks: bytes) -> AsyncIterator[bytes]:
    for chunk in chunks:
        yield chunk


async def put(engine: Engine, who: Identity, path: str, data: bytes, **kw: object) -> None:
    await engine.write_file(who, P(path), body(data), write_mode=WriteMode.UPSERT, **kw)  # type: ignore[arg-type]


async def content(engine: Engine, who: Identity, path: str) -> bytes:
    result = await engine.read(who, P(path))
    assert result.reader is not None
    data = b"".join([c async for c in result.reader])
    await result.reader.aclose()
    return data


async def test_root_is_seeded(engine: Engine) -> None:
    root = await engine.stat(ALICE, ROOT)
    assert (root.owner, root.group, root.mode) == ("root", "root", 0o1777)
    await engine.start()  # idempotent


async def test_create_read_replace(engine: Engine, clock: FakeClock) -> None:
    result = await engine.write_file(
        ALICE, P("/a/b/f.txt"), body(b"he", b"llo"), write_mode=WriteMode.CREATE, mode=0o640
    )
    assert result.created
    inode = result.inode
    assert inode.sha256 == hashlib.sha256(b"hello").hexdigest()
    assert (inode.size, inode.mode, inode.owner, inode.group) == (5, 0o640, "alice", "alice")
    assert inode.content_type == "text/plain"
    assert inode.instance_id == "i1"
    parent = await engine.stat(ALICE, P("/a/b"))
    assert parent.is_dir and parent.mode == 0o755 and parent.owner == "alice"
    assert await content(engine, ALICE, "/a/b/f.txt") == b"hello"
    clock.current += timedelta(seconds=5)
    await put(engine, ALICE, "/a/b/f.txt", b"bye", content_type="application/json")
    replaced = await engine.stat(ALICE, P("/a/b/f.txt"))
    assert (replaced.size, replaced.mode, replaced.content_type) == (3, 0o640, "application/json")
    assert replaced.mtime == clock.current
    assert await content(engine, ALICE, "/a/b/f.txt") == b"bye"


async def test_create_conflicts(engine: Engine) -> None:
    await put(engine, ALICE, "/f", b"x")
    await engine.create_directory(ALICE, P("/d"))
    with pytest.raises(AlreadyExists, match="use PUT"):
        await engine.write_file(ALICE, P("/f"), body(b"y"), write_mode=WriteMode.CREATE)
    with pytest.raises(IsADirectory):
        await engine.write_file(ALICE, P("/d"), body(b"y"), write_mode=WriteMode.CREATE)
    with pytest.raises(IsADirectory):
        await put(engine, ALICE, "/d", b"y")
    with pytest.raises(AlreadyExists, match="a file exists"):
        await engine.create_directory(ALICE, P("/f"))
    with pytest.raises(NotADirectory):
        await put(engine, ALICE, "/f/child", b"y")
    again = await engine.create_directory(BOB, P("/d"))
    assert not again.created


async def test_read_ranges_and_preconditions(engine: Engine) -> None:
    await put(engine, ALICE, "/r.bin", bytes(range(100)))
    inode = await engine.stat(ALICE, P("/r.bin"))
    result = await engine.read(ALICE, P("/r.bin"), ReadOptions(range_header="bytes=10-19"))
    assert result.reader is not None
    assert b"".join([c async for c in result.reader]) == bytes(range(10, 20))
    await result.reader.aclose()
    with pytest.raises(NotModified):
        await engine.read(
            ALICE,
            P("/r.bin"),
            ReadOptions(preconditions=Preconditions(if_none_match=(inode.etag or "",))),
        )
    with pytest.raises(PreconditionFailed):
        await put(engine, ALICE, "/r.bin", b"z", preconditions=Preconditions(if_match=('"nope"',)))
    with pytest.raises(PreconditionFailed):
        await put(engine, ALICE, "/r.bin", b"z", preconditions=Preconditions(if_none_match=("*",)))
    await put(engine, ALICE, "/new.bin", b"z", preconditions=Preconditions(if_none_match=("*",)))
    with pytest.raises(PreconditionFailed):
        await put(engine, ALICE, "/missing", b"z", preconditions=Preconditions(if_match=("*",)))
    assert await content(engine, ALICE, "/r.bin") == bytes(range(100))


async def test_digests_and_limit(engine: Engine) -> None:
    await put(engine, ALICE, "/d.bin", b"old")
    good = hashlib.sha256(b"new").digest()
    await put(engine, ALICE, "/d.bin", b"new", digests=Digests(sha256=(good,)))
    with pytest.raises(DigestMismatch):
        await put(engine, ALICE, "/d.bin", b"evil", digests=Digests(sha256=(good,)))
    with pytest.raises(DigestMismatch):
        await put(engine, ALICE, "/d.bin", b"evil", digests=Digests(md5=hashlib.md5(b"x").digest()))
    await put(engine, ALICE, "/d.bin", b"md5", digests=Digests(md5=hashlib.md5(b"md5").digest()))
    with pytest.raises(PayloadTooLarge):
        await engine.write_file(
            ALICE, P("/d.bin"), body(b"x" * 600, b"x" * 600), write_mode=WriteMode.UPSERT
        )
    assert await content(engine, ALICE, "/d.bin") == b"md5"
    with pytest.raises(NotFound):
        await engine.stat(ALICE, P("/big"))


async def test_permissions(engine: Engine) -> None:
    await put(engine, ALICE, "/alice.txt", b"a")
    await engine.create_directory(ALICE, P("/home"))
    await put(engine, BOB, "/bob.txt", b"b")  # root is 1777: anyone creates top-level entries
    assert await content(engine, BOB, "/alice.txt") == b"a"
    with pytest.raises(PermissionDenied, match=r"^permission denied"):
        await put(engine, BOB, "/alice.txt", b"x")
    with pytest.raises(PermissionDenied):
        await engine.delete(BOB, P("/alice.txt"))  # sticky root
    with pytest.raises(PermissionDenied):
        await put(engine, BOB, "/home/x", b"x")
    with pytest.raises(PermissionDenied):
        await put(engine, BOB, "/home/deep/x", b"x")  # deepest existing ancestor
    await engine.write_file(ALICE, P("/private/secret"), body(b"s"), write_mode=WriteMode.CREATE)
    await put(engine, ADMIN, "/private/secret", b"admin")  # admins pass
    await engine.delete(ADMIN, P("/alice.txt"))


async def test_search_permission_hides_existence(engine: Engine) -> None:
    await engine.create_directory(ALICE, P("/vault"), mode=0o700)
    await put(engine, ALICE, "/vault/x", b"x")
    with pytest.raises(PermissionDenied):
        await engine.stat(BOB, P("/vault/missing"))
    with pytest.raises(PermissionDenied):
        await engine.stat(BOB, P("/vault/x"))


async def test_group_class(engine: Engine) -> None:
    await engine.create_directory(ALICE, P("/shared"), mode=0o2770)
    shared = await engine.stat(ALICE, P("/shared"))
    assert shared.group == "alice"
    await engine.create_directory(ALICE, P("/shared/sub"))
    sub = await engine.stat(ALICE, P("/shared/sub"))
    assert sub.group == "alice" and sub.mode & 0o2000  # setgid inherited


async def test_delete(engine: Engine) -> None:
    await put(engine, ALICE, "/t/a/1", b"1")
    await put(engine, ALICE, "/t/b", b"2")
    with pytest.raises(DirectoryNotEmpty):
        await engine.delete(ALICE, P("/t"))
    with pytest.raises(InvalidRequest):
        await engine.delete(ADMIN, ROOT)
    await engine.delete(ALICE, P("/t"), recursive=True)
    with pytest.raises(NotFound):
        await engine.stat(ALICE, P("/t/a/1"))
    with pytest.raises(NotFound):
        await engine.delete(ALICE, P("/t"))


async def test_recursive_delete_checks_whole_subtree(engine: Engine) -> None:
    await engine.create_directory(BOB, P("/bt"), mode=0o777)
    await engine.create_directory(ALICE, P("/bt/alice"), mode=0o755)
    await put(engine, ALICE, "/bt/alice/f", b"f")
    with pytest.raises(PermissionDenied):
        await engine.delete(BOB, P("/bt"), recursive=True)
    assert await content(engine, BOB, "/bt/alice/f") == b"f"


async def test_links(engine: Engine, clock: FakeClock) -> None:
    await put(engine, ALICE, "/l.txt", b"link")
    await engine.create_directory(ALICE, P("/ld"))
    with pytest.raises(IsADirectory):
        await engine.generate_link(ALICE, P("/ld"), 60)
    for bad in (None, 0, -1, 86401):
        with pytest.raises(InvalidRequest):
            await engine.generate_link(ALICE, P("/l.txt"), bad)
    link = await engine.generate_link(ALICE, P("/l.txt"), 60)
    assert len(link.token) == 69
    head = await engine.redeem_link(link.token, client_ip="1.2.3.4", consume=False)
    assert head.reader is None and head.inode.size == 4
    got = await engine.redeem_link(link.token, client_ip="1.2.3.4", consume=True)
    assert got.reader is not None
    assert b"".join([c async for c in got.reader]) == b"link"
    await got.reader.aclose()
    with pytest.raises(LinkAlreadyUsed):
        await engine.redeem_link(link.token, client_ip="1.2.3.4", consume=True)
    with pytest.raises(LinkNotFound):
        await engine.redeem_link("nope", client_ip="1.2.3.4", consume=True)
    second = await engine.generate_link(ALICE, P("/l.txt"), 60)
    with pytest.raises(LinkInvalid):
        await engine.redeem_link(
            second.token_id + ".x" + second.signature[2:], client_ip="", consume=True
        )
    clock.current += timedelta(seconds=61)
    with pytest.raises(LinkExpired):
        await engine.redeem_link(second.token, client_ip="", consume=True)
    clock.current += timedelta(days=2)
    assert await engine.cleanup_links() == 2


async def test_link_to_deleted_file_stays_active(engine: Engine) -> None:
    await put(engine, ALICE, "/gone.txt", b"x")
    link = await engine.generate_link(ALICE, P("/gone.txt"), 60)
    await engine.delete(ALICE, P("/gone.txt"))
    with pytest.raises(NotFound):
        await engine.redeem_link(link.token, client_ip="", consume=True)
    await put(engine, ALICE, "/gone.txt", b"back")
    result = await engine.redeem_link(link.token, client_ip="", consume=True)
    assert result.reader is not None
    await result.reader.aclose()


TREE = [
    "/ls/z.txt",
    "/ls/a.txt",
    "/ls/B.txt",
    "/ls/é.txt",
    "/ls/dir2/x",
    "/ls/dir1/y",
    "/ls/dir1/sub/z",
    "/ls/dir1/sub/deeper/w",
    "/ls/dir1/a",
]
EXPECTED = [
    "/ls/B.txt",
    "/ls/a.txt",
    "/ls/z.txt",
    "/ls/é.txt",
    "/ls/dir1",
    "/ls/dir2",
    "/ls/dir1/a",
    "/ls/dir1/y",
    "/ls/dir1/sub",
    "/ls/dir1/sub/z",
    "/ls/dir1/sub/deeper",
    "/ls/dir1/sub/deeper/w",
    "/ls/dir2/x",
]


async def test_recursive_listing_order_and_depth(engine: Engine) -> None:
    for path in TREE:
        await put(engine, ALICE, path, b"x")
    listing = await engine.list(ALICE, P("/ls"), recursive=True)
    assert [str(i.path) for i in listing.items] == EXPECTED
    assert listing.next is None
    shallow = await engine.list(ALICE, P("/ls"), recursive=True, max_depth=0)
    assert [str(i.path) for i in shallow.items] == EXPECTED[:6]
    one = await engine.list(ALICE, P("/ls"), recursive=True, max_depth=1)
    assert [str(i.path) for i in one.items] == [p for p in EXPECTED if p.count("/") <= 3]
    flat = await engine.list(ALICE, P("/ls"))
    assert [str(i.path) for i in flat.items] == EXPECTED[:6]


@pytest.mark.parametrize("limit", [1, 2, 3, 5, 13, 20])
async def test_pagination_reproduces_the_listing(engine: Engine, limit: int) -> None:
    for path in TREE:
        await put(engine, ALICE, path, b"x")
    seen: list[str] = []
    after = None
    while True:
        page = await engine.list(ALICE, P("/ls"), recursive=True, after=after, limit=limit)
        seen += [str(i.path) for i in page.items]
        assert len(page.items) <= limit
        if page.next is None:
            break
        after = page.next
    assert seen == EXPECTED


@pytest.mark.parametrize("index", range(len(EXPECTED)))
async def test_after_any_item(engine: Engine, index: int) -> None:
    for path in TREE:
        await put(engine, ALICE, path, b"x")
    page = await engine.list(ALICE, P("/ls"), recursive=True, after=P(EXPECTED[index]))
    assert [str(i.path) for i in page.items] == EXPECTED[index + 1 :]


async def test_after_that_no_longer_exists_is_placed_as_a_file(engine: Engine) -> None:
    for path in TREE:
        await put(engine, ALICE, path, b"x")
    page = await engine.list(ALICE, P("/ls"), recursive=True, after=P("/ls/dir1/b"))
    assert [str(i.path) for i in page.items] == EXPECTED[7:]


async def test_listing_errors(engine: Engine) -> None:
    await put(engine, ALICE, "/lf", b"x")
    with pytest.raises(NotADirectory):
        await engine.list(ALICE, P("/lf"))
    with pytest.raises(NotFound):
        await engine.list(ALICE, P("/nope"))
    with pytest.raises(InvalidRequest):
        await engine.list(ALICE, P("/ls"), after=P("/elsewhere/x"))
    with pytest.raises(InvalidRequest):
        await engine.list(ALICE, ROOT, after=P("/a/b"))  # not a child, not recursive


async def test_unreadable_subdirectories_are_listed_not_descended(engine: Engine) -> None:
    await put(engine, ALICE, "/pv/open/x", b"x")
    await engine.create_directory(ALICE, P("/pv/closed"), mode=0o700)
    await put(engine, ALICE, "/pv/closed/y", b"y")
    listing = await engine.list(BOB, P("/pv"), recursive=True)
    assert [str(i.path) for i in listing.items] == ["/pv/closed", "/pv/open", "/pv/open/x"]


async def test_health(engine: Engine) -> None:
    assert await engine.check_health() == {
        "metadata_store": "ok",
        "lock_service": "ok",
        "backend:localfs": "ok",
    }
