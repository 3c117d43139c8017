"""Cross-cutting behaviour of the real server: response headers (api.md §1.1), errors (§1.5),
``/health`` (§2.1), routing (404/405) and ``/metrics`` (§2.3, §5)."""

from __future__ import annotations

import json
import re
import threading
from collections import Counter
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from conftest import DEFAULT_BACKEND, Server
from helpers import assert_error

SECURITY_HEADERS = {
    "content-security-policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "object-src 'none'; base-uri 'self'; form-action 'self'"
    ),
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "strict-origin-when-cross-origin",
    "permissions-policy": (
        "geolocation=(), microphone=(), camera=(), payment=(), usb=(), magnetometer=(), "
        "gyroscope=(), accelerometer=()"
    ),
    "cross-origin-opener-policy": "same-origin",
    "cross-origin-embedder-policy": "require-corp",
}
HSTS = "max-age=31536000; includeSubDomains; preload"
REQUEST_ID_RE = re.compile(r"^[0-9a-f]{16}$")
AUTH_FAILED = b'{"code":"AUTHENTICATION_FAILED","message":"authentication failed"}'

ROUTE_TEMPLATES = {
    "/health",
    "/ready",
    "/metrics",
    "/openapi.json",
    "/v1/files/*",
    "/v1/files/ws/*",
    "/v1/directories/*",
    "/v1/links/generate",
    "/download/{token}",
    "unmatched",
}
DEFAULT_BUCKETS = ["0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1", "2.5", "5", "10"]


# --------------------------------------------------------------------------- helpers


def assert_json_error(response: httpx.Response, status: int, code: str) -> str:
    """The exact error envelope of §1.5 (:func:`helpers.assert_error`), also compact and
    UTF-8 without escapes; returns the message."""
    body = assert_error(response, status, code)
    assert response.content == json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()
    message: str = body["message"]
    return message


def assert_common_headers(response: httpx.Response, *, tls: bool = True) -> str:
    headers = response.headers
    request_id = headers.get("x-request-id", "")
    assert REQUEST_ID_RE.match(request_id), (response.request.url, request_id)
    assert len(headers.get_list("x-request-id")) == 1
    for name, value in SECURITY_HEADERS.items():
        assert headers.get_list(name) == [value], (response.request.url, name)
    if tls:
        assert headers.get_list("strict-transport-security") == [HSTS]
    else:
        assert "strict-transport-security" not in headers
    return request_id


def sample_requests(
    client: Callable[[str | None], httpx.Client], unique: str
) -> list[httpx.Response]:
    """A spread of successes and errors, GET and HEAD, with and without a key."""
    responses: list[httpx.Response] = []
    with client("alice") as alice, client(None) as anon:
        responses.append(anon.get("/health"))
        responses.append(anon.head("/health"))
        responses.append(anon.get(f"/v1/files/{unique}/x"))  # 401
        responses.append(alice.put(f"/v1/files/{unique}/f.txt", content=b"hello"))  # 201
        responses.append(alice.get(f"/v1/files/{unique}/f.txt"))  # 200
        responses.append(alice.head(f"/v1/files/{unique}/f.txt"))  # 200
        responses.append(alice.get(f"/v1/files/{unique}/missing"))  # 404
        responses.append(alice.head(f"/v1/files/{unique}/missing"))  # 404, no body
        responses.append(alice.get("/v1/files/..%2Fx"))  # 400
        responses.append(alice.get(f"/v1/directories/{unique}"))  # 200
        responses.append(anon.get("/no/such/endpoint"))  # 404
        responses.append(anon.patch("/health"))  # 405
        responses.append(anon.get("/download/unknown"))  # 404
        responses.append(alice.get("/metrics"))  # 200
        responses.append(anon.get("/metrics"))  # 401
        responses.append(alice.delete(f"/v1/files/{unique}/f.txt"))  # 204
    return responses


Sample = tuple[str, dict[str, str], float]


def parse_metrics(text: str) -> tuple[dict[str, str], list[Sample]]:
    """``# TYPE`` declarations and samples ``(name, labels, value)`` of text format 0.0.4."""
    types: dict[str, str] = {}
    samples: list[Sample] = []
    label_re = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')
    line_re = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)(?:\s+\S+)?$")
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ", 3)
            types[name] = kind
        elif line and not line.startswith("#"):
            match = line_re.match(line)
            assert match, line
            labels = dict(label_re.findall(match.group(2) or ""))
            samples.append((match.group(1), labels, float(match.group(3))))
    return types, samples


def metric_values(samples: list[Sample], name: str) -> dict[frozenset[tuple[str, str]], float]:
    return {frozenset(labels.items()): value for n, labels, value in samples if n == name}


def value_of(samples: list[Sample], name: str, **labels: str) -> float:
    return metric_values(samples, name).get(frozenset(labels.items()), 0.0)


def scrape(client: httpx.Client) -> tuple[dict[str, str], list[Sample]]:
    response = client.get("/metrics")
    assert response.status_code == 200, response.text
    return parse_metrics(response.text)


# --------------------------------------------------------------------------- headers


def test_headers_on_every_response(server: Server, unique: str) -> None:
    responses = sample_requests(server.client, unique)
    statuses = [r.status_code for r in responses]
    assert statuses == [
        200,
        200,
        401,
        201,
        200,
        200,
        404,
        404,
        400,
        200,
        404,
        405,
        404,
        200,
        401,
        204,
    ]
    ids = [assert_common_headers(r) for r in responses]
    assert len(set(ids)) == len(ids)


def test_incoming_request_id_is_ignored(server: Server) -> None:
    with server.client(None) as anon:
        for incoming in ("0123456789abcdef", "not-a-request-id", "ffffffffffffffff"):
            response = anon.get("/health", headers={"X-Request-ID": incoming})
            request_id = assert_common_headers(response)
            assert request_id != incoming
        ids = {anon.get("/health").headers["x-request-id"] for _ in range(20)}
        assert len(ids) == 20


def test_plain_http_has_no_hsts(make_server: Any, unique: str) -> None:
    srv = make_server({"server": {"protocol": "http"}})
    assert srv.base_url.startswith("http://")
    responses = sample_requests(srv.client, unique)
    assert [r.status_code for r in responses][:6] == [200, 200, 401, 201, 200, 200]
    assert responses[4].content == b"hello"
    ids = [assert_common_headers(r, tls=False) for r in responses]
    assert len(set(ids)) == len(ids)
    # The listener really is plain HTTP: a TLS handshake fails.
    with httpx.Client(verify=False) as client, pytest.raises(httpx.TransportError):
        client.get(f"https://{srv.config['server']['listen_addr']}/health", timeout=5)


# --------------------------------------------------------------------------- /health


def test_health(server: Server, anon: httpx.Client) -> None:
    response = anon.get("/health")
    assert response.status_code == 200
    assert response.content == b'{"status":"ok"}'
    assert response.headers["content-type"] == "application/json"
    assert anon.get("/health?verbose=1").content == b'{"status":"ok"}'
    head = anon.head("/health")
    assert head.status_code == 200
    assert head.content == b""
    assert head.headers["content-type"] == "application/json"
    # No auth needed, and a bad key does not matter.
    with server.client(None, headers={"Authorization": "Bearer wrong-key-0123456789"}) as bad:
        assert bad.get("/health").content == b'{"status":"ok"}'


# --------------------------------------------------------------------------- routing


@pytest.mark.parametrize(
    "url",
    ["/", "/nope", "/v2/files/x", "/healthz", "/health/extra", "/metrics/x", "/download"],
)
def test_unknown_url_is_404(anon: httpx.Client, url: str) -> None:
    assert_json_error(anon.get(url), 404, "NOT_FOUND")
    head = anon.head(url)
    assert head.status_code == 404
    assert head.content == b""


@pytest.mark.parametrize(
    "url", ["/v1/nope", "/v1/", "/v1/internal/raft/join", "/v1/shards/x", "/v1/files"]
)
def test_unknown_v1_url(alice: httpx.Client, anon: httpx.Client, url: str) -> None:
    # Authentication runs first under /v1/.
    response = anon.get(url)
    assert_json_error(response, 401, "AUTHENTICATION_FAILED")
    assert response.content == AUTH_FAILED
    assert response.headers["www-authenticate"] == 'Bearer realm="callfs"'
    assert_json_error(alice.get(url), 404, "NOT_FOUND")


def _allow(response: httpx.Response) -> set[str]:
    return {m.strip() for m in response.headers["allow"].split(",")}


@pytest.mark.parametrize(
    ("method", "url", "allowed"),
    [
        ("PATCH", "/health", {"GET", "HEAD"}),
        ("POST", "/health", {"GET", "HEAD"}),
        ("DELETE", "/health", {"GET", "HEAD"}),
        ("PUT", "/download/sometoken", {"GET", "HEAD"}),
        ("POST", "/download/sometoken", {"GET", "HEAD"}),
    ],
)
def test_wrong_method_public(anon: httpx.Client, method: str, url: str, allowed: set[str]) -> None:
    response = anon.request(method, url)
    assert_json_error(response, 405, "METHOD_NOT_ALLOWED")
    assert _allow(response) == allowed
    assert_common_headers(response)


@pytest.mark.parametrize(
    ("method", "url", "allowed"),
    [
        ("DELETE", "/v1/directories/x", {"GET", "HEAD"}),
        ("POST", "/v1/directories/x", {"GET", "HEAD"}),
        ("PUT", "/v1/directories/", {"GET", "HEAD"}),
        ("GET", "/v1/links/generate", {"POST"}),
        ("DELETE", "/v1/links/generate", {"POST"}),
    ],
)
def test_wrong_method_v1(
    alice: httpx.Client, anon: httpx.Client, method: str, url: str, allowed: set[str]
) -> None:
    # Without a key: 401 first.
    assert_json_error(anon.request(method, url), 401, "AUTHENTICATION_FAILED")
    response = alice.request(method, url)
    assert_json_error(response, 405, "METHOD_NOT_ALLOWED")
    assert _allow(response) == allowed


def test_error_bodies_are_exact(alice: httpx.Client, anon: httpx.Client, unique: str) -> None:
    assert alice.put(f"/v1/files/{unique}/f.txt", content=b"x").status_code == 201
    assert anon.get("/v1/files/x").content == AUTH_FAILED
    assert_json_error(anon.get("/v1/files/x"), 401, "AUTHENTICATION_FAILED")
    assert_json_error(alice.get(f"/v1/files/{unique}/nope"), 404, "FILE_NOT_FOUND")
    assert_json_error(alice.get("/v1/files/a%00b"), 400, "INVALID_PATH")
    assert_json_error(alice.put(f"/v1/files/{unique}/"), 400, "BAD_REQUEST")
    assert_json_error(
        alice.post(f"/v1/files/{unique}/f.txt", content=b"y"), 409, "FILE_ALREADY_EXISTS"
    )
    assert_json_error(alice.get(f"/v1/directories/{unique}/f.txt"), 400, "NOT_A_DIRECTORY")
    assert_json_error(alice.post("/v1/links/generate", content=b"{"), 400, "BAD_REQUEST")
    assert_json_error(anon.get("/download/nope"), 404, "LINK_NOT_FOUND")
    # A non-ASCII name in a message stays UTF-8 (compact JSON, ensure_ascii off).
    message = assert_json_error(alice.get(f"/v1/files/{unique}/ünïcødé"), 404, "FILE_NOT_FOUND")
    assert "\\u" not in message


# --------------------------------------------------------------------------- /metrics


def test_metrics_requires_a_key(server: Server, anon: httpx.Client) -> None:
    for method in ("GET", "POST", "HEAD"):
        response = anon.request(method, "/metrics")
        assert response.status_code == 401
        assert response.headers["www-authenticate"] == 'Bearer realm="callfs"'
        if method != "HEAD":
            assert response.content == AUTH_FAILED
    # Any method (§2.3); the OpenAPI document can only list GET, so no document check here.
    with server.client("alice", check_openapi=False) as unchecked:
        for method in ("GET", "POST", "PUT"):
            response = unchecked.request(method, "/metrics")
            assert response.status_code == 200, (method, response.text)
            assert response.headers["content-type"].startswith("text/plain;")
            assert "# TYPE callfs_http_requests_total counter" in response.text
            assert_common_headers(response)
    # Any valid key works, including the positional one.
    with server.client("api-user-0") as positional:
        assert positional.get("/metrics").status_code == 200


def test_metrics_content_type_is_text_format_0_0_4(server: Server, alice: httpx.Client) -> None:
    # §2.3: Prometheus text format 0.0.4, on the API port and on the metrics listener.
    address = server.config["metrics"]["listen_addr"]
    with httpx.Client(base_url=f"http://{address}", timeout=10) as plain:
        for response in (alice.get("/metrics"), plain.get("/metrics")):
            assert response.status_code == 200
            content_type = response.headers["content-type"]
            params = [p.strip() for p in content_type.split(";")]
            assert params[0] == "text/plain", content_type
            assert "version=0.0.4" in params[1:], content_type


def test_histograms_use_default_buckets(alice: httpx.Client, unique: str) -> None:
    # §5: ".005 .01 .025 .05 .1 .25 .5 1 2.5 5 10" for every histogram.
    assert alice.put(f"/v1/files/{unique}/h.txt", content=b"h").status_code == 201
    assert alice.get(f"/v1/files/{unique}/h.txt").status_code == 200
    _, samples = scrape(alice)
    expected = [float(b) for b in DEFAULT_BUCKETS] + [float("inf")]
    for name in (
        "callfs_http_request_duration_seconds",
        "callfs_backend_op_duration_seconds",
        "callfs_metadata_db_query_duration_seconds",
        "callfs_lock_operation_duration_seconds",
    ):
        series: dict[frozenset[tuple[str, str]], list[float]] = {}
        for n, labels, _ in samples:
            if n == f"{name}_bucket":
                key = frozenset((k, v) for k, v in labels.items() if k != "le")
                series.setdefault(key, []).append(float(labels["le"]))
        assert series, name
        for key, les in series.items():
            assert sorted(les) == expected, (name, dict(key), les)


# Larger than backend.localfs_inline_max_bytes: the bytes go through the storage
# backend, whose metrics are checked too.
ONE, TWO = b"1" * 20_000, b"2" * 20_000


def _traffic(alice: httpx.Client, anon: httpx.Client, unique: str) -> None:
    assert alice.put(f"/v1/files/{unique}/m.txt", content=ONE).status_code == 201
    assert alice.put(f"/v1/files/{unique}/m.txt", content=TWO).status_code == 200
    assert alice.get(f"/v1/files/{unique}/m.txt").content == TWO
    assert alice.head(f"/v1/files/{unique}/m.txt").status_code == 200
    assert alice.get(f"/v1/directories/{unique}").status_code == 200
    link = alice.post("/v1/links/generate", json={"path": f"/{unique}/m.txt", "expiry_seconds": 60})
    assert link.status_code == 201
    token = link.json()["token"]
    assert anon.head(f"/download/{token}").status_code == 200
    assert anon.get(f"/download/{token}").status_code == 200
    assert anon.get(f"/download/{token}").status_code == 410
    assert anon.get("/download/unknown-token").status_code == 404
    assert anon.head("/download/unknown-token").status_code == 404
    assert anon.get("/not/a/route").status_code == 404
    assert alice.delete(f"/v1/files/{unique}/m.txt").status_code == 204
    for _ in range(3):
        assert anon.get("/health").status_code == 200


def test_metrics_after_traffic(alice: httpx.Client, anon: httpx.Client, unique: str) -> None:
    _, before = scrape(alice)
    _traffic(alice, anon, unique)
    types, samples = scrape(alice)

    expected_types = {
        "callfs_http_requests_total": "counter",
        "callfs_http_request_duration_seconds": "histogram",
        "callfs_backend_ops_total": "counter",
        "callfs_backend_op_duration_seconds": "histogram",
        "callfs_metadata_db_queries_total": "counter",
        "callfs_metadata_db_query_duration_seconds": "histogram",
        "callfs_single_use_link_generations_total": "counter",
        "callfs_single_use_link_consumptions_total": "counter",
        "callfs_lock_operations_total": "counter",
        "callfs_lock_operation_duration_seconds": "histogram",
        "callfs_active_locks": "gauge",
        "callfs_file_operations_total": "counter",
    }
    for name, kind in expected_types.items():
        assert types.get(name) == kind, name
    # The client library's standard process collector.
    assert any(n == "process_resident_memory_bytes" for n, _, _ in samples)

    def delta(name: str, **labels: str) -> float:
        return value_of(samples, name, **labels) - value_of(before, name, **labels)

    # Request counter: labels method/path/status_code, route templates only.
    requests = [(n, labels) for n, labels, _ in samples if n == "callfs_http_requests_total"]
    assert requests
    for _, labels in requests:
        assert set(labels) == {"method", "path", "status_code"}, labels
        assert labels["path"] in ROUTE_TEMPLATES, labels
        assert labels["status_code"].isdigit()
    assert not [s for s in samples if unique in json.dumps(s[1])]
    http = "callfs_http_requests_total"
    assert delta(http, method="GET", path="/health", status_code="200") == 3
    assert delta(http, method="PUT", path="/v1/files/*", status_code="201") == 1
    assert delta(http, method="PUT", path="/v1/files/*", status_code="200") == 1
    assert delta(http, method="GET", path="/v1/files/*", status_code="200") == 1
    assert delta(http, method="HEAD", path="/v1/files/*", status_code="200") == 1
    assert delta(http, method="DELETE", path="/v1/files/*", status_code="204") == 1
    assert delta(http, method="GET", path="/v1/directories/*", status_code="200") == 1
    assert delta(http, method="POST", path="/v1/links/generate", status_code="201") == 1
    assert delta(http, method="GET", path="/download/{token}", status_code="200") == 1
    assert delta(http, method="GET", path="/download/{token}", status_code="410") == 1
    assert delta(http, method="GET", path="/download/{token}", status_code="404") == 1
    assert delta(http, method="HEAD", path="/download/{token}", status_code="404") == 1
    assert delta(http, method="GET", path="unmatched", status_code="404") == 1
    # The scrape before this one was counted once it finished.
    assert delta(http, method="GET", path="/metrics", status_code="200") == 1

    # Duration histogram: labels method/path (buckets: test_histograms_use_default_buckets).
    buckets = [
        labels
        for n, labels, _ in samples
        if n == "callfs_http_request_duration_seconds_bucket"
        and labels.get("path") == "/v1/files/*"
        and labels.get("method") == "PUT"
    ]
    assert {k for b in buckets for k in b} == {"method", "path", "le"}
    assert (
        delta("callfs_http_request_duration_seconds_count", method="PUT", path="/v1/files/*") == 2
    )

    # File operations (successful ones), by operation and backend.
    files = "callfs_file_operations_total"
    for n, labels, _ in samples:
        if n == files:
            assert set(labels) == {"operation", "backend_type"}
            assert labels["operation"] in {"create", "read", "update", "delete", "move"}
    assert delta(files, operation="create", backend_type=DEFAULT_BACKEND) == 1
    assert delta(files, operation="update", backend_type=DEFAULT_BACKEND) == 1
    # A completed GET and a link download; HEAD is not a read.
    assert delta(files, operation="read", backend_type=DEFAULT_BACKEND) == 2
    assert delta(files, operation="delete", backend_type=DEFAULT_BACKEND) == 1

    backend_ops = {"open", "create", "update", "delete", "move", "stat", "mkdir"}
    seen_backend = set()
    for n, labels, _ in samples:
        if n == "callfs_backend_ops_total":
            assert set(labels) == {"backend_type", "operation"}
            assert labels["backend_type"] in {"localfs", "s3", "internalproxy"}
            assert labels["operation"] in backend_ops, labels
            seen_backend.add(labels["operation"])
    assert {"open", "delete"} <= seen_backend
    assert seen_backend & {"create", "update"}
    opens = "callfs_backend_op_duration_seconds_count"
    assert delta(opens, backend_type=DEFAULT_BACKEND, operation="open") >= 2

    metadata_ops = {
        "get", "create", "update", "delete", "rename", "list_children",
        "create_link", "get_link", "consume_link", "cleanup_links",
    }  # fmt: skip
    seen_metadata = set()
    for n, labels, _ in samples:
        if n == "callfs_metadata_db_queries_total":
            assert set(labels) == {"operation"}
            assert labels["operation"] in metadata_ops, labels
            seen_metadata.add(labels["operation"])
    assert {
        "get",
        "create",
        "delete",
        "list_children",
        "create_link",
        "consume_link",
    } <= seen_metadata
    assert delta("callfs_metadata_db_queries_total", operation="create_link") == 1

    for n, labels, _ in samples:
        if n == "callfs_lock_operations_total":
            assert set(labels) == {"operation", "status"}
            assert labels["operation"] in {"acquire", "renew", "release"}
            assert labels["status"] in {"success", "timeout", "error"}
    acquired = delta("callfs_lock_operations_total", operation="acquire", status="success")
    released = delta("callfs_lock_operations_total", operation="release", status="success")
    assert acquired >= 3  # create, update, delete
    assert acquired == released
    assert value_of(samples, "callfs_active_locks") == 0

    assert delta("callfs_single_use_link_generations_total") == 1
    consumptions = "callfs_single_use_link_consumptions_total"
    assert delta(consumptions, status="success") == 1
    assert delta(consumptions, status="invalid") == 1  # already used
    assert delta(consumptions, status="not_found") == 1  # HEAD is not counted


def test_link_consumption_statuses(alice: httpx.Client, anon: httpx.Client, unique: str) -> None:
    assert alice.put(f"/v1/files/{unique}/c.txt", content=b"c").status_code == 201

    def token() -> str:
        body = {"path": f"/{unique}/c.txt", "expiry_seconds": 60}
        response = alice.post("/v1/links/generate", json=body)
        assert response.status_code == 201
        value: str = response.json()["token"]
        return value

    tampered_source = token()
    token_id, _, signature = tampered_source.partition(".")
    tampered = f"{token_id}.{'A' if signature[0] != 'A' else 'B'}{signature[1:]}"
    deleted = token()
    _, before = scrape(alice)
    assert anon.get(f"/download/{tampered}").status_code == 410  # failed HMAC: invalid
    assert alice.delete(f"/v1/files/{unique}/c.txt").status_code == 204
    assert anon.get(f"/download/{deleted}").status_code == 404  # file missing: not_found
    _, after = scrape(alice)
    name = "callfs_single_use_link_consumptions_total"
    for status, expected in (("invalid", 1), ("not_found", 1), ("success", 0), ("expired", 0)):
        got = value_of(after, name, status=status) - value_of(before, name, status=status)
        assert got == expected, status


def test_errors_total_counts_5xx(make_server: Any) -> None:
    # A 1 ms lock wait makes concurrent writers to one path time out: 503 LOCK_TIMEOUT.
    # (Without S3: 1 ms would be too short for any S3 call as well.)
    local_only = {"default_backend": "localfs", "s3_bucket_name": ""}
    srv = make_server({"server": {"file_op_timeout": "1ms"}, "backend": local_only})
    count = 30
    results: list[httpx.Response | BaseException] = []
    barrier = threading.Barrier(count)
    body = b"z" * (1 << 20)

    def writer() -> None:
        try:
            with srv.client("alice") as client:
                client.get("/health")
                barrier.wait(timeout=30)
                results.append(client.put("/v1/files/busy/f.bin", content=body))
        except BaseException as exc:
            results.append(exc)

    threads = [threading.Thread(target=writer) for _ in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    responses = [r for r in results if isinstance(r, httpx.Response)]
    assert len(responses) == count, results
    statuses = Counter(r.status_code for r in responses)
    assert set(statuses) <= {200, 201, 503}, statuses
    assert statuses[201] == 1
    timeouts = [r for r in responses if r.status_code == 503]
    if not timeouts:
        pytest.skip("no lock contention happened on this machine")
    for response in timeouts:
        assert_json_error(response, 503, "LOCK_TIMEOUT")
        assert response.headers["retry-after"] == "1"
        assert_common_headers(response)

    with srv.client("alice") as client:
        types, samples = scrape(client)
    assert types.get("callfs_errors_total") == "counter"
    errors = metric_values(samples, "callfs_errors_total")
    for labels in errors:
        assert {k for k, _ in labels} == {"component", "error_type"}
    by_type = {dict(labels)["error_type"]: value for labels, value in errors.items()}
    assert by_type == {"LOCK_TIMEOUT": len(timeouts)}
    components = {dict(labels)["component"] for labels in errors}
    assert components <= {"http", "metadata", "backend", "lock", "proxy", "links"}
    assert value_of(
        samples, "callfs_http_requests_total", method="PUT", path="/v1/files/*", status_code="503"
    ) == len(timeouts)
    assert value_of(
        samples, "callfs_lock_operations_total", operation="acquire", status="timeout"
    ) == len(timeouts)
    assert value_of(samples, "callfs_active_locks") == 0


def test_metrics_listener(server: Server, alice: httpx.Client) -> None:
    address = server.config["metrics"]["listen_addr"]
    with httpx.Client(base_url=f"http://{address}", timeout=10) as plain:
        _, before = scrape(alice)
        for _ in range(3):
            response = plain.get("/metrics")
            assert response.status_code == 200
            assert response.headers["content-type"].startswith("text/plain;")
            assert "# TYPE callfs_http_requests_total counter" in response.text
            # No security headers, no request id.
            for name in (*SECURITY_HEADERS, "strict-transport-security", "x-request-id"):
                assert name not in response.headers, name
        assert plain.get("/health").status_code == 404  # only /metrics
        _, after = scrape(alice)

    # Requests to the listener are not counted: between the two API scrapes only the first
    # API scrape itself was added.
    def total(samples: list[Sample]) -> float:
        return sum(v for n, _, v in samples if n == "callfs_http_requests_total")

    assert total(after) - total(before) == 1
