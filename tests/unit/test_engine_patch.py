"""PATCH on the engine: renames, moves, relocation between backends, attributes."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest

from callfs_adapters.hmac_signer import HmacLinkSigner
from callfs_adapters.local_lock import LocalLockManager
from callfs_adapters.memory_blob import InMemoryBlobBackend
from callfs_adapters.memory_metadata import InMemoryMetadataStore
from callfs_adapters.system import RandomIdGenerator
from callfs_core.engine import Engine, EngineConfig
from callfs_core.errors import (
    AlreadyExists,
    DirectoryNotEmpty,
    InvalidPath,
    InvalidRequest,
    IsADirectory,
    NotADirectory,
    NotFound,
    PermissionDenied,
    PreconditionFailed,
)
from callfs_core.model import Identity, Preconditions, WriteMode
from callfs_core.patching import PatchRequest as R
from callfs_core.paths import FsPath

pytestmark = pytest.mark.anyio

ALICE = Identity("alice", frozenset({"alice", "team"}))
BOB = Identity("bob", frozenset({"bob"}))
ADMIN = Identity("boss", frozenset({"boss"}), admin=True)


class Clock:
    def __init__(self) -> None:
        self.current = datetime(2026, 4, 11, 8, 0, tzinfo=UTC)

    def now(self) -> datetime:
        return self.current


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
async def engine(clock: Clock) -> Engine:
    e = Engine(
        metadata=InMemoryMetadataStore(),
        backends={"localfs": InMemoryBlobBackend("localfs"), "s3": InMemoryBlobBackend("s3")},
        locks=LocalLockManager(),
        signer=HmacLinkSigner("secret"),
        clock=clock,
        ids=RandomIdGenerator(),
        config=EngineConfig(
            instance_id="i1",
            users=frozenset({"alice", "bob", "boss", "root"}),
            groups=frozenset({"alice", "bob", "boss", "root", "team"}),
        ),
    )
    await e.start()
    return e


def P(text: str) -> FsPath:
    return FsPath.parse(text)


async def put(engine: Engine, who: Identity, path: str, data: bytes = b"x") -> None:
    async def body() -> AsyncIterator[bytes]:
        yield data

    await engine.write_file(who, P(path), body(), write_mode=WriteMode.UPSERT)


async def content(engine: Engine, path: str) -> bytes:
    result = await engine.read(ADMIN, P(path))
    assert result.reader is not None
    data = b"".join([c async for c in result.reader])
    await result.reader.aclose()
    return data


async def test_rename_keeps_attributes(engine: Engine, clock: Clock) -> None:
    await put(engine, ALICE, "/d/a.txt", b"hello")
    before = await engine.stat(ALICE, P("/d/a.txt"))
    clock.current += timedelta(minutes=5)
    moved = await engine.patch(ALICE, P("/d/a.txt"), R(name="b.txt"))
    assert moved.path == P("/d/b.txt")
    for field in ("owner", "group", "mode", "mtime", "sha256", "content_type", "size"):
        assert getattr(moved, field) == getattr(before, field)
    assert await content(engine, "/d/b.txt") == b"hello"
    with pytest.raises(NotFound):
        await engine.stat(ALICE, P("/d/a.txt"))


async def test_move_directory_with_subtree(engine: Engine) -> None:
    for path in ("/src/a", "/src/sub/b", "/src/sub/deep/c"):
        await put(engine, ALICE, path, path.encode())
    await engine.create_directory(ALICE, P("/dst"))
    moved = await engine.patch(ALICE, P("/src"), R(destination="dst/moved"))
    assert moved.path == P("/dst/moved")
    for path in ("/dst/moved/a", "/dst/moved/sub/b", "/dst/moved/sub/deep/c"):
        assert await content(engine, path) == path.replace("/dst/moved", "/src").encode()
    listing = await engine.list(ALICE, P("/"), recursive=True)
    assert not any(str(i.path).startswith("/src") for i in listing.items)


async def test_request_validation_order() -> None:
    from callfs_core.patching import Directory, plan_patch

    names = Directory(
        users=frozenset({"alice"}),
        groups=frozenset({"team"}),
        backends=frozenset({"localfs"}),
        instances=frozenset({"i1"}),
    )
    src = P("/a/b")
    cases: list[tuple[R, type[Exception], str]] = [
        (R(name="x", destination="/y"), InvalidRequest, "exactly one of"),
        (R(), InvalidRequest, "nothing to change"),
        (R(backend="localfs"), InvalidRequest, "nothing to change"),
        (R(backend="localfs", mode="644"), InvalidRequest, "require"),
        (R(name="x/y"), InvalidPath, "single path segment"),
        (R(name=".."), InvalidPath, "single path segment"),
        (R(destination="../x"), InvalidPath, "destination is not a valid path"),
        (R(mode="999"), InvalidRequest, "mode"),
        (R(group="nope"), InvalidRequest, 'unknown group "nope"'),
        (R(owner="nope"), InvalidRequest, 'unknown user "nope"'),
        (R(name="c", backend="s9"), InvalidRequest, 'unknown backend "s9"'),
        (R(name="c", instance="i9"), InvalidRequest, 'unknown instance "i9"'),
        (R(destination="/"), InvalidRequest, "root directory"),
        (R(destination="/a/b/c"), InvalidRequest, "into itself"),
    ]
    for request, error, text in cases:
        with pytest.raises(error, match=text):
            plan_patch(src, request, names)
    with pytest.raises(InvalidRequest, match="root directory"):
        plan_patch(P("/"), R(name="x"), names)
    plan = plan_patch(src, R(mode="644", group="team"), names)
    assert (plan.mode, plan.group, plan.moves) == (0o644, "team", False)


async def test_destination_rules(engine: Engine) -> None:
    await put(engine, ALICE, "/f")
    await put(engine, ALICE, "/g")
    await put(engine, ALICE, "/full/x")
    await engine.create_directory(ALICE, P("/empty"))
    await engine.create_directory(ALICE, P("/d"))
    with pytest.raises(InvalidRequest, match="same as the source"):
        await engine.patch(ALICE, P("/f"), R(destination="/f"))
    with pytest.raises(InvalidRequest, match='destination parent "/no" does not exist'):
        await engine.patch(ALICE, P("/f"), R(destination="/no/f"))
    with pytest.raises(NotADirectory):
        await engine.patch(ALICE, P("/f"), R(destination="/g/f"))
    with pytest.raises(AlreadyExists):
        await engine.patch(ALICE, P("/f"), R(destination="/g"))
    with pytest.raises(IsADirectory):
        await engine.patch(ALICE, P("/f"), R(destination="/empty", overwrite=True))
    with pytest.raises(NotADirectory):
        await engine.patch(ALICE, P("/d"), R(destination="/f", overwrite=True))
    with pytest.raises(DirectoryNotEmpty):
        await engine.patch(ALICE, P("/d"), R(destination="/full", overwrite=True))
    with pytest.raises(InvalidRequest, match="across backends"):
        await engine.patch(ALICE, P("/d"), R(name="d2", backend="s3"))
    assert await content(engine, "/g") == b"x"


async def test_overwrite_and_create_parents(engine: Engine) -> None:
    await put(engine, ALICE, "/one", b"1")
    await put(engine, ALICE, "/two", b"2")
    moved = await engine.patch(ALICE, P("/one"), R(destination="/two", overwrite=True))
    assert moved.path == P("/two")
    assert await content(engine, "/two") == b"1"
    await engine.patch(ALICE, P("/two"), R(destination="/new/deep/two", create_parents=True))
    parent = await engine.stat(ALICE, P("/new/deep"))
    assert parent.owner == "alice" and parent.is_dir
    await engine.create_directory(ALICE, P("/e1"))
    await engine.create_directory(ALICE, P("/e2"))
    await engine.patch(ALICE, P("/e1"), R(destination="/e2", overwrite=True))  # empty dir replaced


async def test_move_permissions_and_sticky(engine: Engine) -> None:
    await put(engine, ALICE, "/alice.txt")
    await engine.create_directory(BOB, P("/bobs"), mode=0o755)
    with pytest.raises(PermissionDenied):  # sticky root: bob may not move alice's entry away
        await engine.patch(BOB, P("/alice.txt"), R(name="mine.txt"))
    with pytest.raises(PermissionDenied):  # no w on bob's directory
        await engine.patch(ALICE, P("/alice.txt"), R(destination="/bobs/a.txt"))
    await put(engine, BOB, "/bob.txt")
    with pytest.raises(PermissionDenied):  # would replace alice's entry in a sticky directory
        await engine.patch(BOB, P("/bob.txt"), R(destination="/alice.txt", overwrite=True))
    await engine.patch(ADMIN, P("/alice.txt"), R(destination="/bobs/a.txt"))


async def test_attribute_changes(engine: Engine, clock: Clock) -> None:
    await put(engine, ALICE, "/attr.txt", b"data")
    before = await engine.stat(ALICE, P("/attr.txt"))
    clock.current += timedelta(hours=1)
    after = await engine.patch(ALICE, P("/attr.txt"), R(mode="600", group="team"))
    assert (after.mode, after.group) == (0o600, "team")
    assert (after.mtime, after.sha256) == (before.mtime, before.sha256)
    with pytest.raises(PermissionDenied):
        await engine.patch(ALICE, P("/attr.txt"), R(group="bob"))  # not a member
    with pytest.raises(PermissionDenied):
        await engine.patch(ALICE, P("/attr.txt"), R(owner="bob"))  # admins only
    with pytest.raises(PermissionDenied):
        await engine.patch(BOB, P("/attr.txt"), R(mode="777"))
    owned = await engine.patch(ADMIN, P("/attr.txt"), R(owner="bob", group="bob"))
    assert (owned.owner, owned.group) == ("bob", "bob")
    renamed = await engine.patch(BOB, P("/attr.txt"), R(name="b.txt", mode="0640"))
    assert (renamed.path, renamed.mode) == (P("/b.txt"), 0o640)


async def test_preconditions(engine: Engine) -> None:
    await put(engine, ALICE, "/pre.txt")
    with pytest.raises(PreconditionFailed):
        await engine.patch(
            ALICE,
            P("/pre.txt"),
            R(name="x"),
            preconditions=Preconditions(if_match=('"other"',)),
        )
    etag = (await engine.stat(ALICE, P("/pre.txt"))).etag
    assert etag is not None
    moved = await engine.patch(
        ALICE, P("/pre.txt"), R(name="x"), preconditions=Preconditions(if_match=(etag,))
    )
    assert moved.path == P("/x")


async def test_relocate_between_backends(engine: Engine) -> None:
    await put(engine, ALICE, "/rel.bin", b"payload")
    moved = await engine.patch(ALICE, P("/rel.bin"), R(destination="/rel.bin", backend="s3"))
    assert (moved.backend, moved.instance_id) == ("s3", None)
    assert await content(engine, "/rel.bin") == b"payload"
    assert await engine.backends["localfs"].stat(P("/rel.bin")) is None
    assert await engine.backends["s3"].stat(P("/rel.bin")) == 7
    back = await engine.patch(
        ALICE, P("/rel.bin"), R(name="home.bin", backend="localfs", mode="600")
    )
    assert (back.path, back.backend, back.instance_id) == (P("/home.bin"), "localfs", "i1")
    assert back.mode == 0o600
    assert await content(engine, "/home.bin") == b"payload"
    assert await engine.backends["s3"].stat(P("/rel.bin")) is None


async def test_move_to_another_instance_is_refused(engine: Engine) -> None:
    from callfs_core.errors import PeerUnavailable

    engine.config = engine.config.__class__(
        instance_id="i1", users=engine.config.users, peers=frozenset({"i2"})
    )
    await put(engine, ALICE, "/stay.txt")
    with pytest.raises(PeerUnavailable):
        await engine.patch(ALICE, P("/stay.txt"), R(name="go.txt", instance="i2"))
    assert await content(engine, "/stay.txt") == b"x"


async def test_missing_source(engine: Engine) -> None:
    with pytest.raises(NotFound):
        await engine.patch(ALICE, P("/nothing"), R(name="x"))
