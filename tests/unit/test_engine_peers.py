"""Entries owned by another instance (api.md §1.10) and mixed trees, on the engine.

Two engines share one metadata store, each with its own local storage, like
two instances on one PostgreSQL. A fake peer port reads the other engine's
storage, as the HTTP peer client reads the other instance.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from callfs_adapters.hmac_signer import HmacLinkSigner
from callfs_adapters.local_lock import LocalLockManager
from callfs_adapters.memory_blob import InMemoryBlobBackend
from callfs_adapters.memory_metadata import InMemoryMetadataStore
from callfs_adapters.system import RandomIdGenerator, SystemClock
from callfs_core.engine import Engine, EngineConfig
from callfs_core.errors import (
    ExistsOnPeer,
    InvalidRequest,
    NotFound,
    OwnedByPeer,
    PeerUnavailable,
    PermissionDenied,
    PreconditionFailed,
)
from callfs_core.model import ByteRange, Identity, Preconditions, ReadOptions, WriteMode
from callfs_core.patching import PatchRequest
from callfs_core.paths import FsPath
from callfs_core.ports import BlobReader

pytestmark = pytest.mark.anyio

ALICE = Identity("alice", frozenset({"alice"}))
BOB = Identity("bob", frozenset({"bob"}))
USERS = frozenset({"alice", "bob", "root"})


def P(text: str) -> FsPath:
    return FsPath.parse(text)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class FakePeers:
    """Reads another instance's storage; records every call."""

    def __init__(self, storages: dict[str, InMemoryBlobBackend]) -> None:
        self.storages = storages
        self.owners: dict[str, Engine] = {}  # the engines that answer discard requests
        self.calls: list[tuple[str, str, ByteRange | None, str | None]] = []

    def knows(self, instance_id: str) -> bool:
        return instance_id in self.storages

    async def open(
        self,
        instance_id: str,
        path: FsPath,
        byte_range: ByteRange | None = None,
        acting_user: str | None = None,
    ) -> BlobReader:
        self.calls.append((instance_id, str(path), byte_range, acting_user))
        return await self.storages[instance_id].open(path, byte_range)

    async def discard(self, instance_id: str, path: FsPath) -> None:
        proxy = Identity("internal-proxy", admin=True, forwarded=True)
        await self.owners[instance_id].discard_orphan(proxy, path)


def _engine(
    store: InMemoryMetadataStore,
    instance: str,
    storage: InMemoryBlobBackend,
    peers: FakePeers | None,
    extra: dict[str, InMemoryBlobBackend] | None = None,
    default: str = "localfs",
) -> Engine:
    return Engine(
        metadata=store,
        backends={"localfs": storage, **(extra or {})},
        locks=LocalLockManager(),
        signer=HmacLinkSigner("secret"),
        clock=SystemClock(),
        ids=RandomIdGenerator(),
        config=EngineConfig(
            instance_id=instance,
            default_backend=default,
            users=USERS,
            groups=USERS,
            peers=frozenset({"i1", "i2"} - {instance}),
        ),
        peers=peers,
    )


@pytest.fixture
async def pair() -> tuple[Engine, Engine, InMemoryBlobBackend, FakePeers]:
    store = InMemoryMetadataStore()
    disk1, disk2 = InMemoryBlobBackend("localfs"), InMemoryBlobBackend("localfs")
    peers_of_2 = FakePeers({"i1": disk1})
    one = _engine(store, "i1", disk1, FakePeers({"i2": disk2}))
    two = _engine(store, "i2", disk2, peers_of_2)
    peers_of_2.owners["i1"] = one
    await one.start()
    return one, two, disk1, peers_of_2


async def _stream(data: bytes) -> AsyncIterator[bytes]:
    yield data


async def _never_read() -> AsyncIterator[bytes]:
    raise AssertionError("the body was read, but it belongs to the owning instance")
    yield b""  # pragma: no cover


async def _read(reader: BlobReader | None) -> bytes:
    assert reader is not None
    try:
        return b"".join([chunk async for chunk in reader])
    finally:
        await reader.aclose()


async def _put(engine: Engine, who: Identity, path: str, data: bytes) -> None:
    await engine.write_file(who, P(path), _stream(data), write_mode=WriteMode.UPSERT)


async def test_reads_of_another_instances_file_go_through_the_peer(
    pair: tuple[Engine, Engine, InMemoryBlobBackend, FakePeers],
) -> None:
    one, two, _, peers = pair
    await _put(one, ALICE, "/d/f.txt", b"0123456789")
    result = await two.read(ALICE, P("/d/f.txt"))
    assert result.inode.instance_id == "i1"
    assert await _read(result.reader) == b"0123456789"
    ranged = await two.read(ALICE, P("/d/f.txt"), ReadOptions(range_header="bytes=2-4"))
    assert await _read(ranged.reader) == b"234"
    assert peers.calls == [
        ("i1", "/d/f.txt", None, "alice"),
        ("i1", "/d/f.txt", ByteRange(2, 4), "alice"),
    ]
    # HEAD is answered from the shared metadata alone.
    await two.read(ALICE, P("/d/f.txt"), ReadOptions(head=True))
    assert len(peers.calls) == 2


async def test_changes_are_handed_to_the_owner_after_the_local_checks(
    pair: tuple[Engine, Engine, InMemoryBlobBackend, FakePeers],
) -> None:
    one, two, disk1, _ = pair
    await _put(one, ALICE, "/d/f.txt", b"original")
    with pytest.raises(OwnedByPeer) as owned:
        await two.write_file(ALICE, P("/d/f.txt"), _never_read(), write_mode=WriteMode.UPSERT)
    assert (owned.value.instance_id, owned.value.path) == ("i1", "/d/f.txt")
    # Permissions and preconditions are this instance's to check first.
    with pytest.raises(PermissionDenied):
        await two.write_file(BOB, P("/d/f.txt"), _never_read(), write_mode=WriteMode.UPSERT)
    stale = Preconditions(if_match=('"nope"',))
    with pytest.raises(PreconditionFailed):
        await two.write_file(
            ALICE,
            P("/d/f.txt"),
            _never_read(),
            write_mode=WriteMode.UPSERT,
            preconditions=stale,
        )
    with pytest.raises(OwnedByPeer):
        await two.delete(ALICE, P("/d/f.txt"))
    with pytest.raises(PermissionDenied):
        await two.delete(BOB, P("/d/f.txt"))
    with pytest.raises(OwnedByPeer):
        await two.patch(ALICE, P("/d/f.txt"), PatchRequest(name="g.txt"))
    # Attributes live in the shared metadata: changed here, no forwarding.
    changed = await two.patch(ALICE, P("/d/f.txt"), PatchRequest(mode="0600"))
    assert changed.mode == 0o600
    assert await disk1.stat(P("/d/f.txt")) == len(b"original")


async def test_posts_onto_another_instances_entries_are_cross_server_conflicts(
    pair: tuple[Engine, Engine, InMemoryBlobBackend, FakePeers],
) -> None:
    one, two, _, _ = pair
    await _put(one, ALICE, "/d/f.txt", b"x")
    with pytest.raises(ExistsOnPeer) as raised:
        await two.write_file(ALICE, P("/d/f.txt"), _never_read(), write_mode=WriteMode.CREATE)
    assert raised.value.directory is False
    with pytest.raises(ExistsOnPeer) as raised:
        await two.create_directory(ALICE, P("/d"))
    assert raised.value.directory is True
    # New entries belong to the instance that creates them, inside any directory.
    created = await two.write_file(
        ALICE, P("/d/new.txt"), _stream(b"new"), write_mode=WriteMode.CREATE
    )
    assert created.inode.instance_id == "i2"


async def test_a_forwarded_request_is_never_forwarded_again(
    pair: tuple[Engine, Engine, InMemoryBlobBackend, FakePeers],
) -> None:
    one, two, _, _ = pair
    await _put(one, ALICE, "/f", b"x")
    forwarded = Identity("alice", frozenset({"alice"}), admin=True, forwarded=True)
    with pytest.raises(PeerUnavailable, match="not forwarded again"):
        await two.write_file(forwarded, P("/f"), _never_read(), write_mode=WriteMode.UPSERT)
    with pytest.raises(PeerUnavailable, match="not forwarded again"):
        await two.read(forwarded, P("/f"))


async def test_an_unknown_owner_is_unavailable() -> None:
    store = InMemoryMetadataStore()
    one = _engine(store, "i1", InMemoryBlobBackend("localfs"), None)
    lonely = _engine(store, "i3", InMemoryBlobBackend("localfs"), FakePeers({}))
    await one.start()
    await _put(one, ALICE, "/f", b"x")
    with pytest.raises(PeerUnavailable, match="not a known peer"):
        await lonely.read(ALICE, P("/f"))
    with pytest.raises(PeerUnavailable, match="not a known peer"):
        await lonely.delete(ALICE, P("/f"))


async def test_directories_spanning_instances(
    pair: tuple[Engine, Engine, InMemoryBlobBackend, FakePeers],
) -> None:
    one, two, disk1, _ = pair
    await _put(one, ALICE, "/d/from-one", b"1")
    await _put(two, ALICE, "/d/from-two", b"2")
    with pytest.raises(InvalidRequest, match="across backends or instances"):
        await two.patch(ALICE, P("/d"), PatchRequest(name="e"))
    # A recursive delete removes the metadata at once, then asks the owner of
    # each entry to remove its bytes.
    await two.delete(ALICE, P("/d"), recursive=True)
    with pytest.raises(NotFound):
        await one.stat(ALICE, P("/d/from-one"))
    assert await disk1.stat(P("/d/from-one")) is None


async def test_the_owner_discards_only_bytes_without_an_entry(
    pair: tuple[Engine, Engine, InMemoryBlobBackend, FakePeers],
) -> None:
    one, _, disk1, _ = pair
    proxy = Identity("internal-proxy", admin=True, forwarded=True)
    await _put(one, ALICE, "/kept", b"still described by metadata")
    await one.discard_orphan(proxy, P("/kept"))
    assert await disk1.stat(P("/kept")) is not None
    staged = await disk1.stage(P("/orphan"), _stream(b"no entry"))
    await staged.commit()
    await one.discard_orphan(proxy, P("/orphan"))
    assert await disk1.stat(P("/orphan")) is None
    with pytest.raises(InvalidRequest, match="only for instances"):
        await one.discard_orphan(ALICE, P("/orphan"))


async def test_a_mixed_directory_moves_on_every_backend() -> None:
    """Local files inside an S3 directory (and the reverse) move with it."""
    local, s3 = InMemoryBlobBackend("localfs"), InMemoryBlobBackend("s3")
    engine = _engine(InMemoryMetadataStore(), "i1", local, None, {"s3": s3}, default="s3")
    await engine.start()
    await _put(engine, ALICE, "/m/in-s3.txt", b"object")
    await _put(engine, ALICE, "/m/local.txt", b"file")
    await engine.patch(
        ALICE, P("/m/local.txt"), PatchRequest(destination="/m/local.txt", backend="localfs")
    )
    moved = await engine.patch(ALICE, P("/m"), PatchRequest(name="n"))
    assert str(moved.path) == "/n"
    for name, data in (("in-s3.txt", b"object"), ("local.txt", b"file")):
        assert await _read((await engine.read(ALICE, P(f"/n/{name}"))).reader) == data
    assert await s3.stat(P("/n/in-s3.txt")) == 6
    assert await local.stat(P("/n/local.txt")) == 4
    assert await local.stat(P("/m/local.txt")) is None
