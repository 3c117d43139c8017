"""OpenTelemetry traces, in-process: the app is built by the real Container (SQLite
metadata, localfs storage under tmp) with an in-memory span exporter and driven with
httpx.ASGITransport."""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator, Iterator, Sequence
from pathlib import Path

import httpx
import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from callfs_adapters.metrics import InstrumentedBackend, InstrumentedLocks, InstrumentedMetadata
from callfs_adapters.tracing import (
    TracedBackend,
    TracedEngine,
    TracedLocks,
    TracedMetadata,
    active_tracer,
    inject_trace_context,
    setup_tracing,
    shutdown_tracing,
    tracing_requested,
)
from callfs_cli.config import load_settings
from callfs_cli.config_model import Settings
from callfs_cli.container import Container, close_resources, open_resources
from callfs_core.engine import Engine

pytestmark = pytest.mark.anyio
KEY = "tracing-test-key-0123456789"
INSTANCE = "trace-test-1"
BASE_URL = "https://callfs.test:8443"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def make_settings(folder: Path) -> Settings:
    (folder / "data").mkdir()
    loaded = load_settings(
        environ={
            "CALLFS_SERVER_DATA_DIR": str(folder / "data"),
            "CALLFS_SERVER_WORKERS": "1",
            "CALLFS_SERVER_EXTERNAL_URL": BASE_URL,
            "CALLFS_AUTH_API_KEY_USERS": json.dumps({"alice": KEY}),
            "CALLFS_AUTH_INTERNAL_PROXY_SECRET": "internal-secret-for-tracing",
            "CALLFS_AUTH_SINGLE_USE_LINK_SECRET": "link-secret-for-tracing",
            "CALLFS_INSTANCE_DISCOVERY_INSTANCE_ID": INSTANCE,
            "CALLFS_RATE_LIMIT_GENERATE_RPS": "0",
            "CALLFS_RATE_LIMIT_DOWNLOAD_RPS": "0",
            # The spans followed here are those of bytes on disk, even for small files.
            "CALLFS_BACKEND_LOCALFS_INLINE_MAX_BYTES": "0",
        },
        cwd=str(folder),
    )
    return loaded.settings


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    assert setup_tracing(INSTANCE, exporter=exporter)
    yield exporter
    shutdown_tracing()


async def _client(settings: Settings) -> AsyncIterator[tuple[Container, httpx.AsyncClient]]:
    container = Container(settings=settings)
    await open_resources(container)
    try:
        await container.engine().start()
        transport = httpx.ASGITransport(app=container.app())
        headers = {"Authorization": f"Bearer {KEY}", "User-Agent": "tracing-test/1.0"}
        async with httpx.AsyncClient(
            transport=transport, base_url=BASE_URL, headers=headers
        ) as client:
            yield container, client
    finally:
        await close_resources(container)


@pytest.fixture
async def traced(
    tmp_path: Path, spans: InMemorySpanExporter
) -> AsyncIterator[tuple[Container, httpx.AsyncClient]]:
    async for pair in _client(make_settings(tmp_path)):
        spans.clear()  # start-up spans (engine.start) are not what the tests look at
        yield pair


@pytest.fixture
async def client(traced: tuple[Container, httpx.AsyncClient]) -> httpx.AsyncClient:
    return traced[1]


def only(spans: Sequence[ReadableSpan], name: str) -> ReadableSpan:
    found = [s for s in spans if s.name == name]
    assert len(found) == 1, (name, [s.name for s in spans])
    return found[0]


def parent_of(spans: Sequence[ReadableSpan], span: ReadableSpan) -> ReadableSpan | None:
    if span.parent is None:
        return None
    by_id = {s.context.span_id: s for s in spans}
    return by_id.get(span.parent.span_id)


def ancestry(spans: Sequence[ReadableSpan], span: ReadableSpan) -> list[str]:
    """Names from ``span``'s parent up to the root of the tree."""
    names = []
    current = parent_of(spans, span)
    while current is not None:
        names.append(current.name)
        current = parent_of(spans, current)
    return names


# --------------------------------------------------------------------------- span trees


async def test_put_span_tree(client: httpx.AsyncClient, spans: InMemorySpanExporter) -> None:
    response = await client.put("/v1/files/docs/a.txt", content=b"hello")
    assert response.status_code == 201
    finished = spans.get_finished_spans()

    server = only(finished, "PUT /v1/files/*")
    assert server.kind is SpanKind.SERVER
    assert server.parent is None
    assert {s.context.trace_id for s in finished} == {server.context.trace_id}
    attributes = dict(server.attributes or {})
    assert attributes["http.request.method"] == "PUT"
    assert attributes["http.route"] == "/v1/files/*"
    assert attributes["url.path"] == "/v1/files/docs/a.txt"
    assert attributes["url.scheme"] == "https"
    assert attributes["http.response.status_code"] == 201
    assert attributes["server.address"] == "callfs.test"
    assert attributes["server.port"] == 8443
    assert attributes["user_agent.original"] == "tracing-test/1.0"
    assert attributes["callfs.request_id"] == response.headers["x-request-id"]
    assert "error.type" not in attributes
    assert server.status.status_code is StatusCode.UNSET
    assert server.resource.attributes["service.name"] == "callfs"
    assert server.resource.attributes["service.instance.id"] == INSTANCE

    write = only(finished, "engine.write_file")
    assert parent_of(finished, write) is server
    assert dict(write.attributes or {})["callfs.path"] == "/docs/a.txt"
    # Ancestors looked up and the body staged before any lock is taken.
    lineage = [s for s in finished if s.name == "metadata.get_many"]
    assert parent_of(finished, lineage[0]) is write
    stage = only(finished, "backend.stage")
    assert parent_of(finished, stage) is write
    # Then: the path lock (its wait a child of its own), and under it the commit.
    file_lock = next(
        s
        for s in finished
        if s.name == "lock.hold"
        and "file:/docs/a.txt" in (s.attributes or {}).get("callfs.lock.names", ())
    )
    assert parent_of(finished, file_lock) is write
    acquire = [s for s in finished if s.name == "lock.acquire"]
    assert any(parent_of(finished, s) is file_lock for s in acquire)
    commit = only(finished, "backend.commit")
    assert ancestry(finished, commit)[-3:] == ["lock.hold", "engine.write_file", server.name]
    created = [
        s
        for s in finished
        if s.name == "metadata.create" and (s.attributes or {}).get("callfs.path") == "/docs/a.txt"
    ]
    assert len(created) == 1
    assert ancestry(finished, created[0])[-3:] == [
        "lock.hold",
        "engine.write_file",
        server.name,
    ]
    # The parent folder was created on the way, under the same lock.
    mkdir = only(finished, "backend.make_directory")
    assert "lock.hold" in ancestry(finished, mkdir)
    # Every span ended inside its parent's time.
    for span in finished:
        parent = parent_of(finished, span)
        if parent is not None:
            assert parent.start_time <= span.start_time  # type: ignore[operator]
            assert span.end_time <= parent.end_time  # type: ignore[operator]


async def test_incoming_traceparent_is_continued(
    client: httpx.AsyncClient, spans: InMemorySpanExporter
) -> None:
    assert (await client.put("/v1/files/p.txt", content=b"p")).status_code == 201
    spans.clear()
    trace_id = "4bf92f3577b34da6a3ce929d0e0e4736"
    parent_id = "00f067aa0ba902b7"
    response = await client.get(
        "/v1/files/p.txt", headers={"traceparent": f"00-{trace_id}-{parent_id}-01"}
    )
    assert response.status_code == 200
    finished = spans.get_finished_spans()
    server = only(finished, "GET /v1/files/*")
    assert format(server.context.trace_id, "032x") == trace_id
    assert server.parent is not None
    assert server.parent.span_id == int(parent_id, 16)
    assert server.parent.is_remote
    assert {format(s.context.trace_id, "032x") for s in finished} == {trace_id}
    read = only(finished, "engine.read")
    assert parent_of(finished, read) is server
    assert parent_of(finished, only(finished, "backend.open")) is not None


async def test_without_traceparent_each_request_starts_a_trace(
    client: httpx.AsyncClient, spans: InMemorySpanExporter
) -> None:
    for _ in range(2):
        assert (await client.get("/health")).status_code == 200
    servers = [s for s in spans.get_finished_spans() if s.kind is SpanKind.SERVER]
    assert [s.name for s in servers] == ["GET /health", "GET /health"]
    assert servers[0].context.trace_id != servers[1].context.trace_id
    assert all(s.parent is None for s in servers)


async def test_download_token_never_reaches_a_span(
    client: httpx.AsyncClient, spans: InMemorySpanExporter
) -> None:
    assert (await client.put("/v1/files/shared.txt", content=b"s")).status_code == 201
    link = await client.post(
        "/v1/links/generate", json={"path": "/shared.txt", "expiry_seconds": 60}
    )
    assert link.status_code == 201
    token = link.json()["token"]
    token_id = token.partition(".")[0]
    anonymous = {"Authorization": ""}
    assert (await client.get(f"/download/{token}", headers=anonymous)).status_code == 200
    assert (await client.get(f"/download/{token}", headers=anonymous)).status_code == 410
    finished = spans.get_finished_spans()
    downloads = [s for s in finished if s.name == "GET /download/{token}"]
    assert len(downloads) == 2
    for span in downloads:
        assert dict(span.attributes or {})["url.path"] == "/download/{token}"
        assert dict(span.attributes or {})["http.route"] == "/download/{token}"
    assert len([s for s in finished if s.name == "engine.redeem_link"]) == 2
    for span in finished:
        text = span.to_json()
        assert token_id not in text, span.name
        assert token.rpartition(".")[2] not in text, span.name


async def test_errors_on_spans(
    traced: tuple[Container, httpx.AsyncClient], spans: InMemorySpanExporter
) -> None:
    container, client = traced
    # 4xx: an answer, not a failure of the server.
    assert (await client.get("/v1/files/missing.txt")).status_code == 404
    finished = spans.get_finished_spans()
    server = only(finished, "GET /v1/files/*")
    assert server.status.status_code is StatusCode.UNSET
    assert "error.type" not in (server.attributes or {})
    read = only(finished, "engine.read")
    assert (read.attributes or {})["error.type"] == "NotFound"
    assert read.status.status_code is StatusCode.UNSET

    # 5xx: the stored bytes cannot be opened (a symlink loop on disk).
    assert (await client.put("/v1/files/broken.txt", content=b"b")).status_code == 201
    disk = Path(container.settings().backend.localfs_root_path) / "broken.txt"
    disk.unlink()
    os.symlink(disk.name, disk)
    spans.clear()
    response = await client.get("/v1/files/broken.txt")
    assert response.status_code == 503
    finished = spans.get_finished_spans()
    server = only(finished, "GET /v1/files/*")
    assert (server.attributes or {})["error.type"] == "503"
    assert (server.attributes or {})["http.response.status_code"] == 503
    assert server.status.status_code is StatusCode.ERROR
    opened = only(finished, "backend.open")
    assert (opened.attributes or {})["error.type"] == "BackendUnavailable"
    assert opened.status.status_code is StatusCode.ERROR
    assert [e.name for e in opened.events] == ["exception"]


async def test_unmatched_route_span_is_named_by_method(
    client: httpx.AsyncClient, spans: InMemorySpanExporter
) -> None:
    assert (await client.get("/no/such/route")).status_code == 404
    server = only(spans.get_finished_spans(), "GET")
    assert "http.route" not in (server.attributes or {})


# --------------------------------------------------------------------------- wiring


async def test_decorators_installed_when_tracing_is_on(
    traced: tuple[Container, httpx.AsyncClient],
) -> None:
    container = traced[0]
    assert isinstance(container.engine(), TracedEngine)
    assert isinstance(container.locks(), TracedLocks)
    assert all(isinstance(b, TracedBackend) for b in container.backends().values())
    store = container.metadata()
    store = getattr(store, "inner", store)  # under the metadata cache
    assert isinstance(store, TracedMetadata)


async def test_nothing_installed_when_tracing_is_off(tmp_path: Path) -> None:
    assert active_tracer() is None
    async for container, client in _client(make_settings(tmp_path)):
        assert type(container.engine()) is Engine
        assert isinstance(container.locks(), InstrumentedLocks)
        assert all(isinstance(b, InstrumentedBackend) for b in container.backends().values())
        store = container.metadata()
        assert isinstance(getattr(store, "inner", store), InstrumentedMetadata)
        names = [m.cls.__name__ for m in container.app().user_middleware]  # type: ignore[attr-defined]
        assert names == ["EdgeMiddleware"]
        # An incoming traceparent changes nothing and costs nothing.
        response = await client.get(
            "/health",
            headers={"traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"},
        )
        assert response.status_code == 200


def test_inject_trace_context(spans: InMemorySpanExporter) -> None:
    tracer = active_tracer()
    assert tracer is not None
    with tracer.start_as_current_span("outgoing") as span:
        headers: dict[str, str] = {"Accept": "application/json"}
        inject_trace_context(headers)
        context = span.get_span_context()
    version, trace_id, span_id, flags = headers["traceparent"].split("-")
    assert version == "00"
    assert int(flags, 16) & 1  # sampled
    assert trace_id == format(context.trace_id, "032x")
    assert span_id == format(context.span_id, "016x")
    assert headers["Accept"] == "application/json"


def test_inject_trace_context_without_tracing() -> None:
    assert active_tracer() is None
    headers: dict[str, str] = {}
    inject_trace_context(headers)
    assert headers == {}


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({}, False),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"}, True),
        ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://collector:4318/v1/traces"}, True),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "  "}, False),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318", "OTEL_SDK_DISABLED": "TRUE"}, False),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318", "OTEL_SDK_DISABLED": "false"}, True),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318", "OTEL_TRACES_EXPORTER": "none"}, False),
        ({"OTEL_SERVICE_NAME": "callfs"}, False),
    ],
)
def test_tracing_requested(environ: dict[str, str], expected: bool) -> None:
    assert tracing_requested(environ) is expected


def test_setup_without_endpoint_leaves_tracing_off(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("OTEL_"):
            monkeypatch.delenv(name)
    assert setup_tracing(INSTANCE) is False
    assert active_tracer() is None


def test_setup_with_endpoint_uses_otlp_http(monkeypatch: pytest.MonkeyPatch) -> None:
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    import callfs_adapters.tracing as tracing

    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:9")
    monkeypatch.setenv("OTEL_SERVICE_NAME", "callfs-eu-1")
    monkeypatch.delenv("OTEL_SDK_DISABLED", raising=False)
    try:
        assert setup_tracing(INSTANCE) is True
        provider = tracing._provider
        assert provider is not None
        assert provider.resource.attributes["service.name"] == "callfs-eu-1"
        assert provider.resource.attributes["service.instance.id"] == INSTANCE
        processors = provider._active_span_processor._span_processors
        assert len(processors) == 1
        assert isinstance(processors[0], BatchSpanProcessor)
        assert isinstance(processors[0].span_exporter, OTLPSpanExporter)
    finally:
        # Nothing was recorded: shutting down sends nothing.
        shutdown_tracing()
    assert active_tracer() is None
