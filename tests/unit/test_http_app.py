"""The Starlette app in-process (httpx.ASGITransport) on in-memory adapters."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator

import anyio
import httpx
import pytest

from callfs_adapters.hmac_signer import HmacLinkSigner
from callfs_adapters.local_lock import LocalLockManager
from callfs_adapters.memory_blob import InMemoryBlobBackend
from callfs_adapters.memory_metadata import InMemoryMetadataStore
from callfs_adapters.metrics import Metrics
from callfs_adapters.system import RandomIdGenerator, SystemClock
from callfs_core.engine import Engine, EngineConfig
from callfs_core.errors import BackendUnavailable
from callfs_http.app import create_app
from callfs_http.auth import Authenticator, build_identities
from callfs_http.common import HttpSettings

pytestmark = pytest.mark.anyio
KEY = "unit-test-key-0123456789"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class SlowLocks(LocalLockManager):
    async def health(self) -> None:
        await anyio.sleep(10)


class BrokenBackend(InMemoryBlobBackend):
    async def health(self) -> None:
        raise BackendUnavailable("disk gone")


async def client_for(engine: Engine) -> httpx.AsyncClient:
    await engine.start()
    app = create_app(
        engine,
        HttpSettings(),
        authenticator=Authenticator(
            build_identities(
                api_keys=[KEY],
                api_key_users={},
                internal_proxy_secret="internal",
                groups={},
                admin_users=[],
            )
        ),
        metrics=Metrics(),
    )
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app),
        base_url="https://testserver",
        headers={"Authorization": f"Bearer {KEY}"},
    )


def make_engine(**overrides: object) -> Engine:
    parts: dict[str, object] = {
        "metadata": InMemoryMetadataStore(),
        "backends": {"localfs": InMemoryBlobBackend("localfs")},
        "locks": LocalLockManager(),
        "signer": HmacLinkSigner("s"),
        "clock": SystemClock(),
        "ids": RandomIdGenerator(),
        "config": EngineConfig(instance_id="i1"),
    }
    parts.update(overrides)
    return Engine(**parts)  # type: ignore[arg-type]


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with await client_for(make_engine()) as c:
        yield c


async def test_ready_when_everything_answers(client: httpx.AsyncClient) -> None:
    response = await client.get("/ready")
    assert response.status_code == 200
    assert response.headers["cache-control"] == "no-store"
    assert response.content == (
        b'{"status":"ready","checks":{"metadata_store":"ok","lock_service":"ok",'
        b'"backend:localfs":"ok"}}'
    )


async def test_not_ready_names_the_failing_dependency() -> None:
    engine = make_engine(locks=SlowLocks(), backends={"localfs": BrokenBackend("localfs")})
    async with await client_for(engine) as c:
        with anyio.fail_after(5):  # each check is bounded by 2 s, all run concurrently
            response = await c.get("/ready")
    assert response.status_code == 503
    assert response.json() == {
        "status": "not_ready",
        "checks": {
            "metadata_store": "ok",
            "lock_service": "timeout",
            "backend:localfs": "unavailable",
        },
    }


async def test_upload_and_read_back_in_process(client: httpx.AsyncClient) -> None:
    put = await client.put("/v1/files/a/b.json", content=b'{"x":1}')
    assert put.status_code == 201
    got = await client.get("/v1/files/a/b.json")
    assert got.content == b'{"x":1}'
    assert got.headers["content-type"] == "application/json"
    digest = base64.b64decode(got.headers["repr-digest"].split(":")[1])
    assert digest.hex() == got.headers["x-callfs-sha256"]


async def test_internal_error_is_opaque(
    client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def explode(*args: object, **kwargs: object) -> None:
        raise RuntimeError("/secret/on-disk/location is broken")

    monkeypatch.setattr(Engine, "stat", explode)
    monkeypatch.setattr(Engine, "read", explode)
    response = await client.get("/v1/files/x")
    assert response.status_code == 500
    request_id = response.headers["x-request-id"]
    assert response.json() == {
        "code": "INTERNAL_ERROR",
        "message": f"an internal error occurred (request id {request_id})",
    }
    metrics = (await client.get("/metrics")).text
    assert 'callfs_errors_total{component="http",error_type="INTERNAL_ERROR"} 1.0' in metrics
