"""The engine on in-memory fakes and on SQLite + localfs gives the same answers.

A Hypothesis state machine runs one random sequence of use cases on both
stacks and compares every result, errors included; at the end of each step
the whole visible tree must be the same.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import anyio
import anyio.from_thread
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from callfs_adapters.hmac_signer import HmacLinkSigner
from callfs_adapters.local_lock import LocalLockManager
from callfs_adapters.localfs import LocalFsBackend
from callfs_adapters.memory_blob import InMemoryBlobBackend
from callfs_adapters.memory_metadata import InMemoryMetadataStore
from callfs_adapters.sqlite_metadata import SqliteMetadataStore
from callfs_core.engine import Engine, EngineConfig
from callfs_core.errors import CallFSError
from callfs_core.model import Identity, WriteMode
from callfs_core.patching import PatchRequest
from callfs_core.paths import ROOT, FsPath

USERS = {
    "alice": Identity("alice", frozenset({"alice", "team"})),
    "bob": Identity("bob", frozenset({"bob", "team"})),
    "boss": Identity("boss", frozenset({"boss"}), admin=True),
}
PATHS = ["/a", "/b", "/a/x", "/a/y", "/a/x/z", "/b/é", "/c/d/e"]
NAMES = ["x", "y", "n", "é"]


class FixedClock:
    def now(self) -> datetime:
        return datetime(2026, 4, 11, 8, 0, tzinfo=UTC)


class CountingIds:
    def __init__(self) -> None:
        self.n = 0

    def token_id(self) -> str:
        self.n += 1
        return f"{self.n:022d}=="


def engine(metadata: Any, backend: Any) -> Engine:
    return Engine(
        metadata=metadata,
        backends={"localfs": backend},
        locks=LocalLockManager(),
        signer=HmacLinkSigner("secret"),
        clock=FixedClock(),
        ids=CountingIds(),
        config=EngineConfig(
            instance_id="i1",
            users=frozenset(USERS) | {"root"},
            groups=frozenset(USERS) | {"root", "team"},
        ),
    )


def describe(value: object) -> object:
    """A comparable summary of a use case's result."""
    if isinstance(value, CallFSError):
        return ("error", type(value).__name__)
    if hasattr(value, "inode") and hasattr(value, "created"):
        return ("written", describe(value.inode), value.created)  # type: ignore[attr-defined]
    if hasattr(value, "kind") and hasattr(value, "mode"):
        v: Any = value
        return (str(v.path), v.kind.value, v.size, v.sha256, v.mode, v.owner, v.group)
    if hasattr(value, "items") and hasattr(value, "directory"):
        v = value
        return ("listing", [describe(i) for i in v.items], str(v.next) if v.next else None)
    return value


async def body(data: bytes) -> AsyncIterator[bytes]:
    for start in range(0, len(data), 7):
        yield data[start : start + 7]


class Equivalence(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.folder = tempfile.mkdtemp(prefix="callfs-equivalence-")
        self.portal_cm = anyio.from_thread.start_blocking_portal("asyncio")
        self.portal = self.portal_cm.__enter__()
        self.sqlite = SqliteMetadataStore(f"{self.folder}/meta.sqlite3")
        self.portal.call(self.sqlite.open)
        self.engines = [
            engine(InMemoryMetadataStore(), InMemoryBlobBackend("localfs")),
            engine(self.sqlite, LocalFsBackend(f"{self.folder}/files")),
        ]
        for e in self.engines:
            self.portal.call(e.start)

    def teardown(self) -> None:
        self.portal.call(self.sqlite.close)
        self.portal_cm.__exit__(None, None, None)
        shutil.rmtree(self.folder, ignore_errors=True)

    def both(self, call: Any) -> None:
        results = []
        for e in self.engines:
            try:
                results.append(describe(self.portal.call(call, e)))
            except CallFSError as exc:
                results.append(describe(exc))
        assert results[0] == results[1], results

    @rule(
        user=st.sampled_from(sorted(USERS)),
        path=st.sampled_from(PATHS),
        data=st.binary(max_size=40),
        create=st.booleans(),
        mode=st.sampled_from([None, 0o600, 0o644, 0o666]),
    )
    def write(self, user: str, path: str, data: bytes, create: bool, mode: int | None) -> None:
        write_mode = WriteMode.CREATE if create else WriteMode.UPSERT

        async def call(e: Engine) -> object:
            return await e.write_file(
                USERS[user], FsPath.parse(path), body(data), write_mode=write_mode, mode=mode
            )

        self.both(call)

    @rule(
        user=st.sampled_from(sorted(USERS)),
        path=st.sampled_from(PATHS),
        mode=st.sampled_from([None, 0o700, 0o755, 0o777, 0o1777, 0o2775]),
    )
    def mkdir(self, user: str, path: str, mode: int | None) -> None:
        async def call(e: Engine) -> object:
            return await e.create_directory(USERS[user], FsPath.parse(path), mode=mode)

        self.both(call)

    @rule(user=st.sampled_from(sorted(USERS)), path=st.sampled_from(PATHS), recursive=st.booleans())
    def delete(self, user: str, path: str, recursive: bool) -> None:
        async def call(e: Engine) -> object:
            return await e.delete(USERS[user], FsPath.parse(path), recursive=recursive)

        self.both(call)

    @rule(user=st.sampled_from(sorted(USERS)), path=st.sampled_from(PATHS))
    def read(self, user: str, path: str) -> None:
        async def call(e: Engine) -> object:
            result = await e.read(USERS[user], FsPath.parse(path))
            if result.reader is None:
                return ("dir", [describe(c) for c in result.children or []])
            data = b"".join([chunk async for chunk in result.reader])
            await result.reader.aclose()
            return ("file", data)

        self.both(call)

    @rule(
        user=st.sampled_from(sorted(USERS)),
        path=st.sampled_from(PATHS),
        name=st.one_of(st.none(), st.sampled_from(NAMES)),
        destination=st.one_of(st.none(), st.sampled_from(PATHS)),
        overwrite=st.booleans(),
        mode=st.one_of(st.none(), st.sampled_from(["600", "755", "1777"])),
        group=st.one_of(st.none(), st.sampled_from(["team", "bob", "nope"])),
    )
    def patch(
        self,
        user: str,
        path: str,
        name: str | None,
        destination: str | None,
        overwrite: bool,
        mode: str | None,
        group: str | None,
    ) -> None:
        request = PatchRequest(
            name=name, destination=destination, overwrite=overwrite, mode=mode, group=group
        )

        async def call(e: Engine) -> object:
            return await e.patch(USERS[user], FsPath.parse(path), request)

        self.both(call)

    @rule(user=st.sampled_from(sorted(USERS)), path=st.sampled_from(PATHS))
    def link(self, user: str, path: str) -> None:
        async def call(e: Engine) -> object:
            link = await e.generate_link(USERS[user], FsPath.parse(path), 60)
            first = await e.redeem_link(link.token, client_ip="ip", consume=True)
            assert first.reader is not None
            data = b"".join([chunk async for chunk in first.reader])
            await first.reader.aclose()
            try:
                await e.redeem_link(link.token, client_ip="ip", consume=True)
            except CallFSError as exc:
                return (data, type(exc).__name__)
            return (data, "reused")

        self.both(call)

    @precondition(lambda self: True)
    @invariant()
    def same_tree(self) -> None:
        async def call(e: Engine) -> object:
            return await e.list(USERS["boss"], ROOT, recursive=True)

        self.both(call)


Equivalence.TestCase.settings = settings(max_examples=40, stateful_step_count=25, deadline=None)
TestEquivalence = Equivalence.TestCase
