"""Metrics decorators and recording methods, the access log line, structured logs and
the redaction of secrets from every log record."""

from __future__ import annotations

import io
import json
import logging
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator

import anyio
import httpx
import pytest
from prometheus_client import ProcessCollector

from callfs_adapters.hmac_signer import HmacLinkSigner
from callfs_adapters.local_lock import LocalLockManager
from callfs_adapters.memory_blob import InMemoryBlobBackend
from callfs_adapters.memory_metadata import InMemoryMetadataStore
from callfs_adapters.metrics import (
    InstrumentedBackend,
    InstrumentedLocks,
    InstrumentedMetadata,
    Metrics,
    ServerProcessCollector,
    error_component,
)
from callfs_adapters.system import RandomIdGenerator, SystemClock
from callfs_cli.config_model import (
    AuthSettings,
    BackendSettings,
    DlmSettings,
    MetadataStoreSettings,
    Settings,
)
from callfs_cli.logs import JsonFormatter, SecretRedactor, configure_logging, secrets_of
from callfs_core.engine import Engine, EngineConfig
from callfs_core.errors import BackendUnavailable, LockTimeout
from callfs_core.model import Inode
from callfs_core.paths import FsPath
from callfs_http.app import create_app
from callfs_http.auth import Authenticator, build_identities
from callfs_http.common import HttpSettings
from callfs_http.middleware import loggable_path

pytestmark = pytest.mark.anyio
KEY = "observability-key-0123456789"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def sample(metrics: Metrics, name: str, **labels: str) -> float:
    value = metrics.registry.get_sample_value(name, labels)
    return 0.0 if value is None else value


# --------------------------------------------------------------------------- metrics


async def test_active_locks_gauge_follows_held_locks() -> None:
    metrics = Metrics()
    locks = InstrumentedLocks(LocalLockManager(), metrics)
    async with locks.hold("file:/a", "file:/b", timeout=1):
        assert sample(metrics, "callfs_active_locks") == 2
        async with locks.hold("file:/c", timeout=1):
            assert sample(metrics, "callfs_active_locks") == 3
    assert sample(metrics, "callfs_active_locks") == 0
    acquired = sample(
        metrics, "callfs_lock_operations_total", operation="acquire", status="success"
    )
    released = sample(
        metrics, "callfs_lock_operations_total", operation="release", status="success"
    )
    assert (acquired, released) == (2, 2)


async def test_lock_timeout_is_counted() -> None:
    metrics = Metrics()
    locks = InstrumentedLocks(LocalLockManager(), metrics)
    outcome: list[BaseException] = []

    async def contender() -> None:
        try:
            async with locks.hold("file:/a", timeout=0.05):
                pass  # pragma: no cover
        except LockTimeout as exc:
            outcome.append(exc)

    async with locks.hold("file:/a", timeout=1), anyio.create_task_group() as group:
        group.start_soon(contender)
    assert len(outcome) == 1
    assert (
        sample(metrics, "callfs_lock_operations_total", operation="acquire", status="timeout") == 1
    )
    assert sample(metrics, "callfs_active_locks") == 0


class _FailingRelease:
    """A lock manager whose release fails (a lost connection to the lock service)."""

    def hold(self, *names: str, timeout: float) -> _FailingRelease:
        return self

    async def __aenter__(self) -> None:
        return None

    async def __aexit__(self, *exc_info: object) -> bool:
        raise BackendUnavailable("the lock service did not answer")

    async def health(self) -> None:
        return None


async def test_failed_release_is_counted_as_a_lock_error() -> None:
    metrics = Metrics()
    locks = InstrumentedLocks(_FailingRelease(), metrics)
    with pytest.raises(BackendUnavailable) as raised:
        async with locks.hold("file:/a", timeout=1):
            pass
    assert error_component(raised.value) == "lock"
    assert sample(metrics, "callfs_lock_operations_total", operation="release", status="error") == 1
    assert sample(metrics, "callfs_active_locks") == 0


class FailingMetadata(InMemoryMetadataStore):
    """A metadata store that cannot be reached."""

    async def get(self, path: FsPath) -> None:  # type: ignore[override]
        raise BackendUnavailable("the metadata store is unreachable")

    async def get_many(self, paths: object) -> None:  # type: ignore[override]
        raise BackendUnavailable("the metadata store is unreachable")


class SlowMetadata(InMemoryMetadataStore):
    """``get`` answers after ``delay`` seconds (None: never); ``/boom`` fails after a wait."""

    def __init__(self, delay: float | None) -> None:
        super().__init__()
        self.delay = delay
        self.cleaned_up = 0

    async def get(self, path: FsPath) -> Inode | None:
        if self.delay == 0:
            return await super().get(path)  # no suspension at all
        try:
            if self.delay is None:
                await anyio.sleep_forever()
            await anyio.sleep(self.delay)
            if path == FsPath.parse("/boom"):
                raise BackendUnavailable("failed after waiting")
            return await super().get(path)
        finally:
            self.cleaned_up += 1


async def test_metadata_call_that_never_suspends() -> None:
    metrics = Metrics()
    store = InstrumentedMetadata(SlowMetadata(0), metrics, timeout=5)
    assert await store.get(FsPath.parse("/x")) is None
    assert sample(metrics, "callfs_metadata_db_queries_total", operation="get") == 1


async def test_metadata_call_that_suspends_answers_or_fails() -> None:
    metrics = Metrics()
    inner = SlowMetadata(0.01)
    store = InstrumentedMetadata(inner, metrics, timeout=5)
    assert await store.get(FsPath.parse("/x")) is None
    with pytest.raises(BackendUnavailable, match="failed after waiting") as raised:
        await store.get(FsPath.parse("/boom"))
    assert error_component(raised.value) == "metadata"
    assert inner.cleaned_up == 2
    assert sample(metrics, "callfs_metadata_db_queries_total", operation="get") == 2


async def test_metadata_timeout_and_cancellation_reach_a_suspended_call() -> None:
    metrics = Metrics()
    inner = SlowMetadata(None)
    store = InstrumentedMetadata(inner, metrics, timeout=0.05)
    with pytest.raises(BackendUnavailable, match="did not answer in time") as raised:
        await store.get(FsPath.parse("/x"))
    assert error_component(raised.value) == "metadata"
    assert inner.cleaned_up == 1  # the store's coroutine was cancelled, not abandoned
    patient = InstrumentedMetadata(inner, metrics, timeout=60)
    with anyio.move_on_after(0.05) as scope:
        await patient.get(FsPath.parse("/x"))
    assert scope.cancelled_caught
    assert inner.cleaned_up == 2
    assert sample(metrics, "callfs_metadata_db_queries_total", operation="get") == 2


async def test_decorators_name_the_failing_component() -> None:
    metrics = Metrics()
    store = InstrumentedMetadata(FailingMetadata(), metrics, timeout=5)
    with pytest.raises(BackendUnavailable) as raised:
        await store.get(FsPath.parse("/x"))
    assert error_component(raised.value) == "metadata"
    assert sample(metrics, "callfs_metadata_db_queries_total", operation="get") == 1

    class Stuck(InMemoryBlobBackend):
        async def stat(self, path: FsPath) -> int | None:
            await anyio.sleep_forever()
            return None  # pragma: no cover

    backend = InstrumentedBackend(Stuck("localfs"), metrics, timeout=0.05)
    with pytest.raises(BackendUnavailable) as raised:
        await backend.stat(FsPath.parse("/x"))
    assert error_component(raised.value) == "backend"
    assert (
        sample(metrics, "callfs_backend_ops_total", backend_type="localfs", operation="stat") == 1
    )


def _app(metadata: InMemoryMetadataStore, metrics: Metrics) -> httpx.AsyncClient:
    engine = Engine(
        metadata=InstrumentedMetadata(metadata, metrics, timeout=5),
        backends={"localfs": InstrumentedBackend(InMemoryBlobBackend("localfs"), metrics, 5)},
        locks=InstrumentedLocks(LocalLockManager(), metrics),
        signer=HmacLinkSigner("s"),
        clock=SystemClock(),
        ids=RandomIdGenerator(),
        config=EngineConfig(instance_id="i1"),
    )
    app = create_app(
        engine,
        HttpSettings(download_rps=0, generate_rps=0),
        authenticator=Authenticator(
            build_identities(
                api_keys=[],
                api_key_users={"alice": KEY},
                internal_proxy_secret="internal-proxy-secret",
                groups={},
                admin_users=[],
            )
        ),
        metrics=metrics,
    )
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app, client=("192.0.2.7", 4711)),
        base_url="https://testserver",
        headers={"Authorization": f"Bearer {KEY}"},
    )


async def test_metadata_5xx_is_counted_as_metadata_error() -> None:
    metrics = Metrics()
    async with _app(FailingMetadata(), metrics) as client:
        response = await client.get("/v1/files/x")
    assert response.status_code == 503
    assert (
        sample(
            metrics, "callfs_errors_total", component="metadata", error_type="BACKEND_UNAVAILABLE"
        )
        == 1
    )


# --------------------------------------------------------------------------- access log


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    store = InMemoryMetadataStore()
    async with _app(store, Metrics()) as c:
        # The engine seeds "/" on start; here the store is empty, so do it by hand.
        await c._transport.app.state.services.engine.start()  # type: ignore[attr-defined]
        yield c


def access_records(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "callfs.access"]


async def test_one_access_line_per_request(
    client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, "callfs.access"):
        put = await client.put("/v1/files/a%20b.txt", content=b"12345")
        got = await client.get("/v1/files/a%20b.txt")
        anonymous = await client.get("/v1/files/a%20b.txt", headers={"Authorization": ""})
        link = await client.post(
            "/v1/links/generate", json={"path": "/a b.txt", "expiry_seconds": 60}
        )
        token = link.json()["token"]
        download = await client.get(f"/download/{token}", headers={"Authorization": ""})
    assert [put.status_code, got.status_code, anonymous.status_code] == [201, 200, 401]
    assert download.content == b"12345"
    records = access_records(caplog)
    assert len(records) == 5
    fields = [
        {key: getattr(r, key) for key in ("user", "method", "route", "path", "status", "bytes")}
        for r in records
    ]
    assert fields == [
        {
            "user": "alice",
            "method": "PUT",
            "route": "/v1/files/*",
            "path": "/v1/files/a%20b.txt",
            "status": 201,
            "bytes": 0,
        },
        {
            "user": "alice",
            "method": "GET",
            "route": "/v1/files/*",
            "path": "/v1/files/a%20b.txt",
            "status": 200,
            "bytes": 5,
        },
        {
            "user": "-",
            "method": "GET",
            "route": "/v1/files/*",
            "path": "/v1/files/a%20b.txt",
            "status": 401,
            "bytes": len(anonymous.content),
        },
        {
            "user": "alice",
            "method": "POST",
            "route": "/v1/links/generate",
            "path": "/v1/links/generate",
            "status": 201,
            "bytes": len(link.content),
        },
        {
            "user": "-",
            "method": "GET",
            "route": "/download/{token}",
            "path": f"/download/{token[:8]}…",
            "status": 200,
            "bytes": 5,
        },
    ]
    for record, response in zip(records, [put, got, anonymous, link, download], strict=True):
        assert record.request_id == response.headers["x-request-id"]  # type: ignore[attr-defined]
        assert record.client_ip == "192.0.2.7"  # type: ignore[attr-defined]
        assert record.duration_ms >= 0  # type: ignore[attr-defined]
        assert not hasattr(record, "trace_id")  # tracing is off
        assert token not in record.getMessage()
    assert records[1].getMessage().startswith('192.0.2.7 alice "GET /v1/files/a%20b.txt" 200 5B ')


async def test_no_access_line_below_its_level(
    client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, "callfs.access"):
        assert (await client.get("/health")).status_code == 200
    assert access_records(caplog) == []


@pytest.mark.parametrize(
    ("path", "raw", "shown"),
    [
        ("/v1/files/a b", b"/v1/files/a%20b", "/v1/files/a%20b"),
        ("/v1/files/a\nb", b"/v1/files/a%0Ab", "/v1/files/a%0Ab"),
        ("/v1/files/x", b"/v1/files/x?recursive=true", "/v1/files/x"),
        ("/v1/files/a\nb", None, "/v1/files/a\\nb"),
        (
            "/download/abcdefghijklmnop.sig",
            b"/download/abcdefghijklmnop.sig",
            "/download/abcdefgh…",
        ),
        ("/download/abc", b"/download/abc", "/download/abc…"),
        # The route decides (the decoded path), whatever the spelling on the wire.
        ("/download/abcdefghijkl", b"/%64ownload/abcdefghijkl", "/download/abcdefgh…"),
    ],
)
def test_loggable_path(path: str, raw: bytes | None, shown: str) -> None:
    scope = {"path": path, "raw_path": raw} if raw is not None else {"path": path}
    assert loggable_path(scope) == shown


# --------------------------------------------------------------------------- log format and secrets


def _record(message: str, *args: object, **extra: object) -> logging.LogRecord:
    record = logging.LogRecord("callfs.test", logging.WARNING, __file__, 1, message, args, None)
    for key, value in extra.items():
        setattr(record, key, value)
    return record


def test_json_formatter_writes_extra_fields() -> None:
    record = _record("%s done", "upload", user="alice", status=201, duration_ms=1.5)
    entry = json.loads(JsonFormatter().format(record))
    assert entry["message"] == "upload done"
    assert entry["level"] == "warning"
    assert entry["logger"] == "callfs.test"
    assert (entry["user"], entry["status"], entry["duration_ms"]) == ("alice", 201, 1.5)
    assert "args" not in entry
    # uvicorn adds a copy of its messages with terminal colours: not a field.
    coloured = _record("Started server process [%d]", 7, color_message="\x1b[36m%d\x1b[0m")
    assert "color_message" not in json.loads(JsonFormatter().format(coloured))


def test_redactor_removes_secrets_everywhere() -> None:
    dsn_password = "pg-pa$$word(1)"
    redactor = SecretRedactor(["api-key-0123456789abcdef", dsn_password, "ab", ""])
    try:
        raise ConnectionError(f"connection to postgresql://callfs:{dsn_password}@db/callfs failed")
    except ConnectionError:
        record = _record(
            "key %s rejected", "api-key-0123456789abcdef", path="/api-key-0123456789abcdef/x"
        )
        record.exc_info = sys.exc_info()
    assert redactor.filter(record)
    for formatter in (JsonFormatter(), logging.Formatter("%(message)s")):
        text = formatter.format(record)
        assert "api-key-0123456789abcdef" not in text
        assert dsn_password not in text
        assert "***" in text
    entry = json.loads(JsonFormatter().format(record))
    assert entry["message"] == "key *** rejected"
    assert entry["path"] == "/***/x"
    assert "postgresql://callfs:***@db/callfs" in entry["error"]
    # Too short to search for: left alone.
    assert redactor.redact("abc") == "abc"


def test_redactor_survives_a_malformed_call() -> None:
    redactor = SecretRedactor(["a-secret-value"])
    record = _record("%s and %s", "only one")
    assert redactor.filter(record)


def test_secrets_of_settings() -> None:
    settings = Settings(
        auth=AuthSettings(
            api_keys=("positional-key-0123456789",),
            api_key_users={"alice": "alice-key-0123456789abc"},
            internal_proxy_secret="internal-secret",
            single_use_link_secret="link-secret",
        ),
        metadata_store=MetadataStoreSettings(
            type="postgres", dsn="postgresql://callfs:p%40ss%2Fword@db:5432/callfs"
        ),
        dlm=DlmSettings(type="redis", redis_addr="redis:6379", redis_password="redis-pass"),
        backend=BackendSettings(s3_secret_key="s3-secret-key"),
    )
    found = set(secrets_of(settings))
    assert {
        "positional-key-0123456789",
        "alice-key-0123456789abc",
        "internal-secret",
        "link-secret",
        "p%40ss%2Fword",
        "p@ss/word",
        "redis-pass",
        "s3-secret-key",
    } <= found
    keyword = Settings(
        metadata_store=MetadataStoreSettings(
            type="postgres", dsn=r"host=db user=callfs password='it\'s secret' dbname=x"
        )
    )
    assert "it's secret" in secrets_of(keyword)
    plain = Settings(
        metadata_store=MetadataStoreSettings(type="postgres", dsn="host=db password=hunter22")
    )
    assert "hunter22" in secrets_of(plain)
    # SQLite: the (default) DSN is not used, its password is no secret.
    assert "callfs" not in secrets_of(Settings())


@pytest.fixture
def root_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


@pytest.mark.parametrize("fmt", ["json", "console"])
def test_configure_logging(fmt: str, root_logging: None, monkeypatch: pytest.MonkeyPatch) -> None:
    stream = io.StringIO()
    monkeypatch.setattr(sys, "stderr", stream)
    configure_logging("warn", fmt, ["the-link-secret"])
    log = logging.getLogger("callfs.test")
    log.info("not shown")
    log.warning("secret is %s", "the-link-secret")
    lines = stream.getvalue().splitlines()
    assert len(lines) == 1
    assert "the-link-secret" not in lines[0]
    if fmt == "json":
        assert json.loads(lines[0])["message"] == "secret is ***"
    else:
        assert lines[0].endswith("WARNING callfs.test: secret is ***")


def test_process_metrics_of_a_multi_worker_server_cover_every_process() -> None:
    # This test process plays the supervisor; two sleeping children its workers.
    children = [
        subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"]) for _ in range(2)
    ]
    try:
        alone = {f.name: f.samples[0].value for f in ProcessCollector(registry=None).collect()}
        resident, fds = "process_resident_memory_bytes", "process_open_fds"
        deadline = time.monotonic() + 20
        while True:  # until both children have started (a Python holds several MB)
            merged = {
                f.name: f.samples[0].value for f in ServerProcessCollector(os.getpid()).collect()
            }
            if merged[resident] > alone[resident] + 2 * 2**21 and merged[fds] > alone[fds] + 4:
                break
            # A collector that only read this process would never get here.
            assert time.monotonic() < deadline, (merged, alone)
            time.sleep(0.05)
        assert merged["process_start_time_seconds"] == alone["process_start_time_seconds"]
        assert merged["process_max_fds"] == alone["process_max_fds"]
    finally:
        for child in children:
            child.kill()
            child.wait()
