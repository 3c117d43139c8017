"""Observability of the real server: every metric of api.md §5 is recorded (none is
registered and never moved), structured access logs without secrets, and traces sent
over OTLP/HTTP by each worker process."""

from __future__ import annotations

import gzip
import json
import os
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from conftest import INTERNAL_SECRET, KEYS, LINK_SECRET, POSITIONAL_KEY, Server
from prometheus_client import generate_latest
from test_system import Sample, parse_metrics, scrape, value_of

from callfs_adapters.metrics import Metrics

# Every file on disk, small ones too: these tests follow the storage backend's
# metrics and spans, and break stored files behind the server's back.
LOCALFS = {"backend": {"default_backend": "localfs", "localfs_inline_max_bytes": 0}}


def registered_families() -> dict[str, str]:
    """Name -> type of every metric family :class:`Metrics` registers."""
    types, _ = parse_metrics(generate_latest(Metrics().registry).decode())
    return {name: kind for name, kind in types.items() if name.startswith("callfs_")}


def break_on_disk(server: Server, path: str) -> None:
    """Make the stored bytes of ``path`` unreadable (a symlink loop): reading them
    fails with 503 BACKEND_UNAVAILABLE while the metadata still lists the file."""
    disk = server.files_root / path.lstrip("/")
    disk.unlink()
    os.symlink(disk.name, disk)


# --------------------------------------------------------------------------- metrics


class Deltas:
    """Changes of the samples between two scrapes; records which families were checked."""

    def __init__(self, before: list[Sample], after: list[Sample], types: dict[str, str]) -> None:
        self.before = before
        self.after = after
        self.types = types
        self.checked: set[str] = set()

    def __call__(self, family: str, sample: str | None = None, **labels: str) -> float:
        self.checked.add(family)
        name = sample or family
        return value_of(self.after, name, **labels) - value_of(self.before, name, **labels)

    def by_label(self, family: str, label: str, sample: str | None = None) -> dict[str, float]:
        """Delta per value of ``label`` (summed over the other labels)."""
        self.checked.add(family)
        name = sample or family
        result: dict[str, float] = {}
        for samples, sign in ((self.after, 1), (self.before, -1)):
            for n, labels, value in samples:
                if n == name and label in labels:
                    result[labels[label]] = result.get(labels[label], 0.0) + sign * value
        return {k: v for k, v in result.items() if v}

    def total(self, family: str, sample: str | None = None) -> float:
        self.checked.add(family)
        name = sample or family
        return sum(v for n, _, v in self.after if n == name) - sum(
            v for n, _, v in self.before if n == name
        )


def test_every_metric_family_moves(make_server: Any) -> None:
    srv = make_server(LOCALFS)
    requests = 0
    with srv.client("alice") as alice, srv.client(None) as anon:

        def call(client: httpx.Client, method: str, url: str, status: int, **kw: Any) -> Any:
            nonlocal requests
            response = client.request(method, url, **kw)
            requests += 1
            assert response.status_code == status, (method, url, response.text)
            return response

        _, before = scrape(alice)
        call(alice, "PUT", "/v1/files/o/m.txt", 201, content=b"one")  # create
        call(alice, "PUT", "/v1/files/o/m.txt", 200, content=b"two")  # update
        call(alice, "GET", "/v1/files/o/m.txt", 200)  # read
        call(alice, "HEAD", "/v1/files/o/m.txt", 200)  # not a read
        call(alice, "GET", "/v1/directories/o", 200)
        call(alice, "PATCH", "/v1/files/o/m.txt", 200, json={"name": "n.txt"})  # move
        link = call(
            alice,
            "POST",
            "/v1/links/generate",
            201,
            json={"path": "/o/n.txt", "expiry_seconds": 60},
        )
        token = link.json()["token"]
        call(anon, "HEAD", f"/download/{token}", 200)  # not a consumption
        call(anon, "GET", f"/download/{token}", 200)  # success, a read
        call(anon, "GET", f"/download/{token}", 410)  # invalid (already used)
        call(anon, "GET", "/download/unknown.token", 404)  # not_found
        call(anon, "GET", "/v1/files/o/n.txt", 401)
        call(alice, "PUT", "/v1/files/o/broken.txt", 201, content=b"b")  # create
        break_on_disk(srv, "/o/broken.txt")
        call(alice, "GET", "/v1/files/o/broken.txt", 503)  # a backend error
        call(alice, "DELETE", "/v1/files/o/n.txt", 204)  # delete
        types, after = scrape(alice)

    delta = Deltas(before, after, types)
    # HTTP: every request once (and the first scrape, counted when it had finished).
    assert delta.total("callfs_http_requests_total") == requests + 1
    assert (
        delta("callfs_http_requests_total", method="GET", path="/metrics", status_code="200") == 1
    )
    assert (
        delta("callfs_http_requests_total", method="PUT", path="/v1/files/*", status_code="201")
        == 2
    )
    assert (
        delta("callfs_http_requests_total", method="GET", path="/v1/files/*", status_code="503")
        == 1
    )
    assert (
        delta.total(
            "callfs_http_request_duration_seconds", "callfs_http_request_duration_seconds_count"
        )
        == requests + 1
    )

    # Storage calls by operation; the duration histogram counts the same calls.
    backend = delta.by_label("callfs_backend_ops_total", "operation")
    assert backend.get("create") == 3, backend  # three uploads staged
    assert backend.get("open") == 3, backend  # GET, the link download, the broken GET
    assert backend.get("move") == 1, backend
    assert backend.get("delete") == 1, backend
    assert backend.get("mkdir") == 1, backend  # /o
    assert set(backend) <= {"open", "create", "update", "delete", "move", "stat", "mkdir"}
    assert delta.by_label("callfs_backend_ops_total", "backend_type") == {
        "localfs": sum(backend.values())
    }
    assert (
        delta.by_label(
            "callfs_backend_op_duration_seconds",
            "operation",
            "callfs_backend_op_duration_seconds_count",
        )
        == backend
    )

    # Metadata store calls by operation, and their durations.
    metadata = delta.by_label("callfs_metadata_db_queries_total", "operation")
    assert metadata.get("create_link") == 1, metadata
    assert metadata.get("consume_link") == 1, metadata  # only the successful download consumes
    assert metadata.get("get_link") == 4, metadata  # HEAD, two GETs, the unknown token
    assert metadata.get("rename") == 1, metadata
    assert metadata.get("delete") == 1, metadata
    assert metadata.get("create", 0) >= 3, metadata  # /o, m.txt, broken.txt
    assert metadata.get("update") == 1, metadata
    assert metadata.get("get", 0) >= 1, metadata
    assert metadata.get("list_children") == 1, metadata
    assert (
        delta.by_label(
            "callfs_metadata_db_query_duration_seconds",
            "operation",
            "callfs_metadata_db_query_duration_seconds_count",
        )
        == metadata
    )

    # Links.
    assert delta("callfs_single_use_link_generations_total") == 1
    consumptions = delta.by_label("callfs_single_use_link_consumptions_total", "status")
    assert consumptions == {"success": 1, "invalid": 1, "not_found": 1}

    # Locks: every acquisition released; the gauge is back to zero.
    locks = {
        (op, status): delta("callfs_lock_operations_total", operation=op, status=status)
        for op in ("acquire", "release")
        for status in ("success", "timeout", "error")
    }
    writers = 5  # three PUTs, the PATCH, the DELETE (plus commit locks and reads)
    assert locks[("acquire", "success")] >= writers, locks
    assert locks[("acquire", "success")] == locks[("release", "success")], locks
    assert {k: v for k, v in locks.items() if v and k[1] != "success"} == {}
    lock_durations = delta.by_label(
        "callfs_lock_operation_duration_seconds",
        "operation",
        "callfs_lock_operation_duration_seconds_count",
    )
    assert lock_durations == {
        "acquire": locks[("acquire", "success")],
        "release": locks[("release", "success")],
    }
    # The gauge went up and down with each of those (its movement while a lock is
    # held: tests/unit/test_observability.py); here it is back where it was.
    assert value_of(before, "callfs_active_locks") == 0
    assert delta("callfs_active_locks") == 0

    # Successful file operations.
    files = delta.by_label("callfs_file_operations_total", "operation")
    assert files == {"create": 2, "update": 1, "read": 2, "move": 1, "delete": 1}

    # Errors: the one 5xx, from the storage backend.
    assert delta("callfs_errors_total", component="backend", error_type="BACKEND_UNAVAILABLE") == 1
    assert delta.total("callfs_errors_total") == 1

    # Every registered family was checked.
    registered = registered_families()
    assert delta.checked == set(registered)
    for name, kind in registered.items():
        assert types.get(name) == kind, name


# --------------------------------------------------------------------------- logs


def _json_lines(path: Path) -> list[dict[str, Any]]:
    entries = []
    text = path.read_text(errors="replace")
    # The server may be writing a line right now: only complete lines count.
    for line in text[: text.rfind("\n") + 1].splitlines():
        if line.startswith("{"):
            entries.append(json.loads(line))
    return entries


def _wait_for(check: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError("timed out")
        time.sleep(0.05)


def configured_secrets(server: Server) -> list[str]:
    """Every secret of ``server``'s configuration (keys, secrets, passwords)."""
    config = server.config
    found = [*KEYS.values(), POSITIONAL_KEY, INTERNAL_SECRET, LINK_SECRET]
    dsn = config.get("metadata_store", {}).get("dsn")
    if dsn:
        found += [p for p in [urlsplit(dsn).password] if p]
        found += [part.partition("=")[2] for part in dsn.split() if part.startswith("password=")]
    found.append(config.get("dlm", {}).get("redis_password", ""))
    found.append(config.get("backend", {}).get("s3_secret_key", ""))
    return [s for s in found if s]


def test_json_logs_have_access_lines_and_no_secrets(make_server: Any) -> None:
    srv = make_server({**LOCALFS, "log": {"level": "debug", "format": "json"}})
    responses: list[tuple[httpx.Response, str]] = []  # (response, expected user)
    with srv.client("alice") as alice, srv.client(None) as anon:

        def call(client: httpx.Client, user: str, method: str, url: str, **kw: Any) -> Any:
            response = client.request(method, url, **kw)
            responses.append((response, user))
            return response

        assert (
            call(alice, "alice", "PUT", "/v1/files/logs/a.txt", content=b"hello").status_code == 201
        )
        assert call(alice, "alice", "GET", "/v1/files/logs/a.txt").content == b"hello"
        # Authentication failures: no key, a wrong key, a key where it does not belong.
        assert call(anon, "-", "GET", "/v1/files/logs/a.txt").status_code == 401
        wrong = {"Authorization": f"Bearer {KEYS['bob']}x"}
        assert call(anon, "-", "GET", "/v1/files/logs/a.txt", headers=wrong).status_code == 401
        basic = {"Authorization": f"Basic {KEYS['carol']}"}
        assert call(anon, "-", "GET", "/metrics", headers=basic).status_code == 401
        # The internal proxy secret is a valid key, of internal-proxy.
        proxy = {"Authorization": f"Bearer {INTERNAL_SECRET}"}
        assert (
            call(anon, "internal-proxy", "GET", "/v1/files/logs/a.txt", headers=proxy).status_code
            == 200
        )
        # Links: generation, download, reuse, a tampered token.
        link = call(
            alice,
            "alice",
            "POST",
            "/v1/links/generate",
            json={"path": "/logs/a.txt", "expiry_seconds": 60},
        )
        assert link.status_code == 201
        token = link.json()["token"]
        assert call(anon, "-", "GET", f"/download/{token}").content == b"hello"
        assert call(anon, "-", "GET", f"/download/{token}").status_code == 410
        assert call(anon, "-", "GET", f"/download/{token}x").status_code == 410
        # Errors: 4xx, and a 5xx that is logged with its request.
        assert call(alice, "alice", "GET", "/v1/files/logs/missing").status_code == 404
        # A key where nothing expects one (the path): the log filter removes it.
        assert call(alice, "alice", "GET", f"/v1/files/logs/{KEYS['bob']}").status_code == 404
        assert call(alice, "alice", "PUT", "/v1/files/logs/b.txt", content=b"b").status_code == 201
        break_on_disk(srv, "/logs/b.txt")
        assert call(alice, "alice", "GET", "/v1/files/logs/b.txt").status_code == 503
        link_b = call(
            alice,
            "alice",
            "POST",
            "/v1/links/generate",
            json={"path": "/logs/b.txt", "expiry_seconds": 60},
        )
        token_b = link_b.json()["token"]
        assert call(anon, "-", "GET", f"/download/{token_b}").status_code == 503

    ids = {r.headers["x-request-id"] for r, _ in responses}
    _wait_for(
        lambda: (
            ids
            <= {
                e.get("request_id")
                for e in _json_lines(srv.log_path)
                if e["logger"] == "callfs.access"
            }
        )
    )
    text = srv.log_path.read_text(errors="replace")
    for secret in configured_secrets(srv):
        assert secret not in text, "a secret is in the log"
    for full in (token, token_b):
        token_id, _, signature = full.partition(".")
        assert full not in text
        assert token_id not in text
        assert signature not in text
        assert full[:8] in text  # shown by its first characters

    entries = _json_lines(srv.log_path)
    assert entries, text
    for entry in entries:
        assert {"time", "level", "logger", "message"} <= set(entry), entry
    access = {e["request_id"]: e for e in entries if e["logger"] == "callfs.access"}
    for response, user in responses:
        entry = access[response.headers["x-request-id"]]
        request = response.request
        assert entry["level"] == "info"
        assert entry["method"] == request.method
        assert entry["status"] == response.status_code
        assert entry["user"] == user
        assert entry["client_ip"] == "127.0.0.1"
        assert isinstance(entry["duration_ms"], float | int)
        assert entry["duration_ms"] >= 0
        assert entry["bytes"] == len(response.content)
        assert "trace_id" not in entry  # tracing is off
        path = request.url.raw_path.decode().split("?")[0]
        if path.startswith("/download/"):
            assert entry["route"] == "/download/{token}"
            assert entry["path"] == f"/download/{path[len('/download/') :][:8]}…"
        else:
            assert entry["path"] == path.replace(KEYS["bob"], "***")
            assert entry["route"] in {"/v1/files/*", "/metrics", "/v1/links/generate"}
    # The 5xx responses are logged with the request, tokens cut there too.
    warnings = [
        e for e in entries if e["level"] == "warning" and "BACKEND_UNAVAILABLE" in e["message"]
    ]
    assert len(warnings) == 2, warnings
    assert any(f"/download/{token_b[:8]}…" in e["message"] for e in warnings)


def test_console_logs_have_one_access_line_per_request(make_server: Any) -> None:
    srv = make_server({"log": {"level": "info", "format": "console"}})
    with srv.client("alice") as alice:
        response = alice.put("/v1/files/console.txt", content=b"c")
    request_id = response.headers["x-request-id"]

    def access_lines() -> list[str]:
        return [
            line
            for line in srv.log_path.read_text().splitlines()
            if "callfs.access" in line and request_id in line
        ]

    _wait_for(lambda: len(access_lines()) == 1)
    line = access_lines()[0]
    assert '127.0.0.1 alice "PUT /v1/files/console.txt" 201 0B ' in line
    assert f"request_id={request_id}" in line


def test_access_lines_follow_log_level(make_server: Any) -> None:
    srv = make_server({"log": {"level": "warn", "format": "json"}})
    with srv.client("alice") as alice:
        assert alice.get("/v1/files/").status_code == 200
        assert alice.get("/v1/files/missing").status_code == 404
    time.sleep(0.5)
    assert [e for e in _json_lines(srv.log_path) if e["logger"] == "callfs.access"] == []


# --------------------------------------------------------------------------- traces


class FakeCollector:
    """An OTLP/HTTP receiver on loopback: keeps each ExportTraceServiceRequest."""

    def __init__(self) -> None:
        from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
            ExportTraceServiceRequest,
        )

        received: list[Any] = []
        self.received = received

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                if self.headers.get("Content-Encoding") == "gzip":
                    body = gzip.decompress(body)
                message = ExportTraceServiceRequest()
                message.ParseFromString(body)
                received.append((self.path, message))
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def spans(self) -> list[tuple[dict[str, Any], Any]]:
        """(resource attributes, span) of everything received."""
        found = []
        for _, message in list(self.received):
            for resource_spans in message.resource_spans:
                resource = {
                    a.key: getattr(a.value, a.value.WhichOneof("value"))
                    for a in resource_spans.resource.attributes
                }
                for scope_spans in resource_spans.scope_spans:
                    found += [(resource, span) for span in scope_spans.spans]
        return found

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def collector() -> Iterator[FakeCollector]:
    receiver = FakeCollector()
    yield receiver
    receiver.close()


def test_traces_are_sent_over_otlp_by_each_worker(
    make_server: Any, collector: FakeCollector
) -> None:
    srv = make_server(
        {**LOCALFS, "server": {"workers": 2}, "log": {"format": "json"}},
        env={
            "OTEL_EXPORTER_OTLP_ENDPOINT": collector.url,
            "OTEL_BSP_SCHEDULE_DELAY": "50",
            "OTEL_SDK_DISABLED": "false",
        },
    )
    trace_ids = []
    request_ids = []
    for index in range(8):  # new connections: both workers answer some
        trace_id = f"{index + 1:032x}"
        trace_ids.append(trace_id)
        with srv.client("alice") as alice:
            response = alice.put(
                f"/v1/files/traced/{index}.txt",
                content=b"t",
                headers={"traceparent": f"00-{trace_id}-{index + 1:016x}-01"},
            )
        assert response.status_code == 201
        request_ids.append(response.headers["x-request-id"])

    def server_spans() -> dict[str, tuple[dict[str, Any], Any]]:
        return {
            span.trace_id.hex(): (resource, span)
            for resource, span in collector.spans()
            if span.name == "PUT /v1/files/*"
        }

    _wait_for(lambda: set(trace_ids) <= set(server_spans()), timeout=20)
    assert {path for path, _ in collector.received} == {"/v1/traces"}
    found = server_spans()
    pids = set()
    for index, trace_id in enumerate(trace_ids):
        resource, span = found[trace_id]
        assert resource["service.name"] == "callfs"
        assert resource["service.instance.id"] == srv.config.get("instance_discovery", {}).get(
            "instance_id", "callfs-instance-1"
        )
        pids.add(resource["process.pid"])
        assert span.parent_span_id.hex() == f"{index + 1:016x}"
        attributes = {a.key: a.value for a in span.attributes}
        assert attributes["http.response.status_code"].int_value == 201
        assert attributes["callfs.request_id"].string_value == request_ids[index]
    # Child spans of the same traces came along.
    names = {span.name for _, span in collector.spans() if span.trace_id.hex() in trace_ids}
    assert {"engine.write_file", "backend.stage", "lock.hold", "metadata.create"} <= names
    assert len(pids) >= 1
    # The access lines carry the trace id.
    access = {
        e["request_id"]: e for e in _json_lines(srv.log_path) if e["logger"] == "callfs.access"
    }
    for request_id, trace_id in zip(request_ids, trace_ids, strict=True):
        assert access[request_id]["trace_id"] == trace_id
