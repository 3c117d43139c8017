"""Single-use links against the real server: ``POST /v1/links/generate`` and
``GET|HEAD /download/{token}`` (api.md §2.11, §2.12, §4)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from conftest import LINK_SECRET, Server
from helpers import assert_error, put

GENERATE = "/v1/links/generate"
EXPIRES_RE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$")
TOKEN_ID_RE = re.compile(r"^[A-Za-z0-9_-]{22}==$")
SIGNATURE_RE = re.compile(r"^[A-Za-z0-9_-]{43}=$")
RATE_LIMIT_BODY = b'{"code":"RATE_LIMIT_EXCEEDED","message":"Rate limit exceeded"}'


# --------------------------------------------------------------------------- helpers


def generate(client: httpx.Client, path: str, expiry: Any = 60) -> httpx.Response:
    return client.post(GENERATE, json={"path": path, "expiry_seconds": expiry})


def token_for(client: httpx.Client, path: str, expiry: int = 60) -> str:
    response = generate(client, path, expiry)
    assert response.status_code == 201, response.text
    token: str = response.json()["token"]
    return token


def expected_signature(token_id: str, canonical_path: str, secret: str = LINK_SECRET) -> str:
    key = hashlib.sha256(secret.encode()).digest()
    mac = hmac.new(key, (token_id + canonical_path).encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(mac).decode()


def expected_disposition(name: str) -> str:
    ascii_name = "".join("_" if not (0x20 <= ord(ch) <= 0x7E) or ch in '"\\' else ch for ch in name)
    attr_char = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789!#$&+-.^_`|~")
    encoded = "".join(chr(b) if chr(b) in attr_char else f"%{b:02X}" for b in name.encode("utf-8"))
    return f"attachment; filename=\"{ascii_name}\"; filename*=UTF-8''{encoded}"


# --------------------------------------------------------------------------- generation


def test_generate_body_shape_token_format_and_url(
    server: Server, alice: httpx.Client, unique: str
) -> None:
    put(alice, f"{unique}/report.txt", b"report body")
    before = datetime.now(UTC)
    # A leading slash is optional and a trailing slash is dropped (§1.3); the token is
    # signed over the canonical path.
    response = generate(alice, f"{unique}/report.txt/", 120)
    after = datetime.now(UTC)
    assert response.status_code == 201, response.text
    assert response.headers["content-type"] == "application/json"
    assert response.content.endswith(b"}\n")
    assert not response.content.endswith(b"\n\n")
    body = json.loads(response.content)
    assert list(body) == ["url", "token", "expires"]
    # Compact JSON, as everywhere else.
    assert response.content == json.dumps(body, separators=(",", ":")).encode() + b"\n"

    token = body["token"]
    assert len(token) == 69
    token_id, dot, signature = token.partition(".")
    assert dot == "."
    assert TOKEN_ID_RE.match(token_id), token_id
    assert len(base64.urlsafe_b64decode(token_id)) == 16
    assert SIGNATURE_RE.match(signature), signature
    assert signature == expected_signature(token_id, f"/{unique}/report.txt")

    assert body["url"] == f"{server.config['server']['external_url']}/download/{token}"

    assert EXPIRES_RE.match(body["expires"]), body["expires"]
    expires = datetime.strptime(body["expires"], "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)
    assert before + timedelta(seconds=119) <= expires <= after + timedelta(seconds=121)


def test_generated_token_ids_are_unique(alice: httpx.Client, unique: str) -> None:
    put(alice, f"{unique}/f.txt", b"x")
    tokens = {token_for(alice, f"/{unique}/f.txt") for _ in range(5)}
    assert len(tokens) == 5
    assert len({t.split(".")[0] for t in tokens}) == 5


@pytest.mark.parametrize(
    ("external_url", "expected_base"),
    [
        ("http://files.example:8080/", "http://files.example:8080"),
        ("  files.example:9000/ ", "https://files.example:9000"),
    ],
)
def test_url_built_from_external_url(
    make_server: Any, external_url: str, expected_base: str
) -> None:
    srv = make_server({"server": {"external_url": external_url}})
    with srv.client("alice") as client, srv.client(None) as anon:
        put(client, "dir/a.txt", b"abc")
        body = generate(client, "dir/a.txt").json()
        assert body["url"] == f"{expected_base}/download/{body['token']}"
        # The path part of the URL works on the server itself.
        path = body["url"][len(expected_base) :]
        download = anon.get(path)
        assert download.status_code == 200
        assert download.content == b"abc"


def test_generate_requires_authentication(anon: httpx.Client, server: Server) -> None:
    # Authentication runs before everything, including body parsing.
    for content in (b'{"path":"/x","expiry_seconds":60}', b"not json"):
        response = anon.post(GENERATE, content=content)
        body = assert_error(response, 401, "AUTHENTICATION_FAILED")
        assert body["message"] == "authentication failed"
        assert response.headers["www-authenticate"] == 'Bearer realm="callfs"'
    with server.client(None, headers={"Authorization": "Bearer wrong-key-0123456789"}) as bad:
        assert_error(bad.post(GENERATE, content=b"not json"), 401, "AUTHENTICATION_FAILED")


@pytest.mark.parametrize(
    "content",
    [
        pytest.param(b"not json", id="not-json"),
        pytest.param(b"", id="empty-body"),
        pytest.param(b'{"path": "/a", ', id="truncated-json"),
        pytest.param(b'["/a", 60]', id="array"),
        pytest.param(b'"/a"', id="string"),
        pytest.param(b"null", id="null"),
        pytest.param(b'{"path": 5, "expiry_seconds": 60}', id="path-number"),
        pytest.param(b'{"path": ["/a"], "expiry_seconds": 60}', id="path-list"),
        pytest.param(b'{"path": true, "expiry_seconds": 60}', id="path-bool"),
    ],
)
def test_generate_malformed_body(alice: httpx.Client, content: bytes) -> None:
    response = alice.post(GENERATE, content=content, headers={"Content-Type": "application/json"})
    assert_error(response, 400, "BAD_REQUEST")


def test_generate_body_over_4096_bytes(alice: httpx.Client, unique: str) -> None:
    put(alice, f"{unique}/f.txt", b"x")

    def body_of(size: int) -> bytes:
        base = {"path": f"/{unique}/f.txt", "expiry_seconds": 60, "pad": ""}
        raw = json.dumps(base).encode()
        base["pad"] = "p" * (size - len(raw))
        raw = json.dumps(base).encode()
        assert len(raw) == size
        return raw

    # Exactly 4096 bytes is accepted (unknown fields are ignored) ...
    assert alice.post(GENERATE, content=body_of(4096)).status_code == 201
    # ... one byte more is not, whether announced by Content-Length or sent chunked.
    assert_error(alice.post(GENERATE, content=body_of(4097)), 400, "BAD_REQUEST")

    def chunks() -> Any:
        raw = body_of(10000)
        for i in range(0, len(raw), 1000):
            yield raw[i : i + 1000]

    assert_error(alice.post(GENERATE, content=chunks()), 400, "BAD_REQUEST")


@pytest.mark.parametrize(
    "payload",
    [
        pytest.param({"expiry_seconds": 60}, id="missing"),
        pytest.param({"path": "", "expiry_seconds": 60}, id="empty"),
        pytest.param({"path": None, "expiry_seconds": 60}, id="null"),
        pytest.param({"path": ""}, id="empty-no-expiry"),
    ],
)
def test_generate_missing_or_empty_path(alice: httpx.Client, payload: dict[str, Any]) -> None:
    assert_error(alice.post(GENERATE, json=payload), 400, "BAD_REQUEST")


@pytest.mark.parametrize("path", ["../x", "a/../../x", "a\\b", "a\x00b", "a\x01b", "a\u202eb"])
def test_generate_invalid_path(alice: httpx.Client, path: str) -> None:
    # INVALID_PATH comes before the expiry check, so a bad expiry does not change it.
    assert_error(generate(alice, path, 60), 400, "INVALID_PATH")
    assert_error(generate(alice, path, 0), 400, "INVALID_PATH")


def test_generate_missing_file(alice: httpx.Client, unique: str) -> None:
    assert_error(generate(alice, f"/{unique}/nope.txt"), 404, "FILE_NOT_FOUND")
    # Existence is checked before expiry_seconds.
    assert_error(generate(alice, f"/{unique}/nope.txt", 0), 404, "FILE_NOT_FOUND")
    assert_error(generate(alice, f"/{unique}/nope/deeper.txt", -1), 404, "FILE_NOT_FOUND")


def test_generate_needs_read_permission(
    alice: httpx.Client, bob: httpx.Client, unique: str
) -> None:
    put(alice, f"{unique}/secret.txt", b"s", headers={"X-CallFS-Mode": "0600"})
    body = assert_error(generate(bob, f"/{unique}/secret.txt"), 403, "PERMISSION_DENIED")
    assert body["message"].startswith("permission denied")
    # Permission comes before the expiry check.
    assert_error(generate(bob, f"/{unique}/secret.txt", 0), 403, "PERMISSION_DENIED")
    # The owner may.
    assert generate(alice, f"/{unique}/secret.txt").status_code == 201
    # Readable by others (0644): bob may generate.
    put(alice, f"{unique}/public.txt", b"p")
    assert generate(bob, f"/{unique}/public.txt").status_code == 201


def test_generate_needs_search_permission_on_ancestors(
    alice: httpx.Client, bob: httpx.Client, unique: str
) -> None:
    closed = alice.post(f"/v1/files/{unique}/closed/", headers={"X-CallFS-Mode": "0700"})
    assert closed.status_code == 201, closed.text
    put(alice, f"{unique}/closed/f.txt", b"f")
    assert_error(generate(bob, f"/{unique}/closed/f.txt"), 403, "PERMISSION_DENIED")
    # Even for a missing target behind the unsearchable directory.
    assert_error(generate(bob, f"/{unique}/closed/missing.txt"), 403, "PERMISSION_DENIED")


def test_generate_for_directory(alice: httpx.Client, unique: str) -> None:
    put(alice, f"{unique}/d/f.txt", b"x")
    assert_error(generate(alice, f"/{unique}/d"), 400, "IS_A_DIRECTORY")
    assert_error(generate(alice, f"/{unique}/d/"), 400, "IS_A_DIRECTORY")
    assert_error(generate(alice, "/"), 400, "IS_A_DIRECTORY")
    # IS_A_DIRECTORY comes before the expiry check.
    assert_error(generate(alice, f"/{unique}/d", 0), 400, "IS_A_DIRECTORY")


@pytest.mark.parametrize(
    "expiry",
    [
        pytest.param(0, id="zero"),
        pytest.param(-1, id="negative"),
        pytest.param(86401, id="over-a-day"),
        pytest.param("60", id="string"),
        pytest.param(1.5, id="float"),
        pytest.param(True, id="bool"),
        pytest.param(None, id="null"),
        pytest.param([60], id="list"),
    ],
)
def test_generate_bad_expiry(alice: httpx.Client, unique: str, expiry: Any) -> None:
    put(alice, f"{unique}/f.txt", b"x")
    assert_error(generate(alice, f"/{unique}/f.txt", expiry), 400, "BAD_REQUEST")


def test_generate_expiry_missing(alice: httpx.Client, unique: str) -> None:
    put(alice, f"{unique}/f.txt", b"x")
    response = alice.post(GENERATE, json={"path": f"/{unique}/f.txt"})
    assert_error(response, 400, "BAD_REQUEST")


@pytest.mark.parametrize("expiry", [1, 86400])
def test_generate_expiry_bounds_accepted(alice: httpx.Client, unique: str, expiry: int) -> None:
    put(alice, f"{unique}/f.txt", b"x")
    response = generate(alice, f"/{unique}/f.txt", expiry)
    assert response.status_code == 201, response.text
    expires = datetime.strptime(response.json()["expires"], "%Y-%m-%dT%H:%M:%S.%fZ")
    delta = expires.replace(tzinfo=UTC) - datetime.now(UTC)
    assert timedelta(seconds=expiry - 5) < delta <= timedelta(seconds=expiry)


# --------------------------------------------------------------------------- download


def test_download_headers_and_body(alice: httpx.Client, anon: httpx.Client, unique: str) -> None:
    content = b"a,b\n1,2\n" * 100
    put(alice, f"{unique}/data.csv", content, headers={"Content-Type": "Text/CSV; charset=utf-8"})
    digest = hashlib.sha256(content).hexdigest()
    token = token_for(alice, f"/{unique}/data.csv")
    response = anon.get(f"/download/{token}")
    assert response.status_code == 200, response.text
    assert response.content == content
    headers = response.headers
    assert headers["content-type"] == "text/csv; charset=utf-8"
    assert headers["content-length"] == str(len(content))
    assert headers["etag"] == f'"{digest}"'
    assert headers["x-callfs-sha256"] == digest
    assert headers["cache-control"] == "no-store"
    assert headers["content-disposition"] == (
        "attachment; filename=\"data.csv\"; filename*=UTF-8''data.csv"
    )
    assert headers.get_list("content-disposition") == [headers["content-disposition"]]
    callfs = sorted(k for k in headers if k.lower().startswith("x-callfs-"))
    assert callfs == ["x-callfs-sha256"]


def test_download_guessed_content_type(
    alice: httpx.Client, anon: httpx.Client, unique: str
) -> None:
    put(alice, f"{unique}/page.html", b"<p>hi</p>")
    response = anon.get(f"/download/{token_for(alice, f'/{unique}/page.html')}")
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/html"


@pytest.mark.parametrize(
    "name",
    [
        "plain-name_1.txt",
        'naïve "quoted" résumé.txt',
        "日本語 ファイル.pdf",
        "a;b,c=d%e'f(g)*h.bin",
        "emoji-😀-{x}[y].txt",
    ],
)
def test_download_content_disposition(
    alice: httpx.Client, anon: httpx.Client, unique: str, name: str
) -> None:
    put(alice, f"{unique}/{quote(name, safe='')}", b"payload")
    token = token_for(alice, f"/{unique}/{name}")
    response = anon.get(f"/download/{token}")
    assert response.status_code == 200, response.text
    assert response.content == b"payload"
    assert response.headers["content-disposition"] == expected_disposition(name)


def test_content_disposition_examples() -> None:
    # Guards the expectation helper itself against a spec misreading.
    assert expected_disposition('naïve "q".txt') == (
        "attachment; filename=\"na_ve _q_.txt\"; filename*=UTF-8''na%C3%AFve%20%22q%22.txt"
    )


def test_second_download_is_already_used(
    alice: httpx.Client, anon: httpx.Client, unique: str
) -> None:
    put(alice, f"{unique}/once.txt", b"once")
    token = token_for(alice, f"/{unique}/once.txt")
    assert anon.get(f"/download/{token}").status_code == 200
    assert_error(anon.get(f"/download/{token}"), 410, "LINK_ALREADY_USED")
    head = anon.head(f"/download/{token}")
    assert head.status_code == 410
    assert head.content == b""
    assert_error(anon.get(f"/download/{token}"), 410, "LINK_ALREADY_USED")


def test_head_does_not_consume(alice: httpx.Client, anon: httpx.Client, unique: str) -> None:
    content = b"head me" * 10
    put(alice, f"{unique}/h.txt", content)
    token = token_for(alice, f"/{unique}/h.txt")
    for _ in range(2):
        head = anon.head(f"/download/{token}")
        assert head.status_code == 200
        assert head.content == b""
        assert head.headers["content-length"] == str(len(content))
        assert head.headers["x-callfs-sha256"] == hashlib.sha256(content).hexdigest()
        assert head.headers["cache-control"] == "no-store"
    get = anon.get(f"/download/{token}")
    assert get.status_code == 200
    assert get.content == content
    assert_error(anon.get(f"/download/{token}"), 410, "LINK_ALREADY_USED")


def test_download_ignores_range_and_conditionals(
    alice: httpx.Client, anon: httpx.Client, unique: str
) -> None:
    content = b"0123456789" * 10
    put(alice, f"{unique}/r.txt", content)
    etag = f'"{hashlib.sha256(content).hexdigest()}"'
    token = token_for(alice, f"/{unique}/r.txt")
    response = anon.get(
        f"/download/{token}",
        headers={"Range": "bytes=0-4", "If-None-Match": etag, "If-Match": '"nope"'},
    )
    assert response.status_code == 200
    assert response.content == content
    assert "content-range" not in response.headers


def test_download_needs_no_auth_and_ignores_a_bad_key(
    alice: httpx.Client, server: Server, unique: str
) -> None:
    put(alice, f"{unique}/f.txt", b"free")
    token = token_for(alice, f"/{unique}/f.txt")
    with server.client(None, headers={"Authorization": "Bearer not-a-configured-key"}) as c:
        response = c.get(f"/download/{token}")
    assert response.status_code == 200
    assert response.content == b"free"


def test_download_token_carries_creator_permission(
    alice: httpx.Client, anon: httpx.Client, unique: str
) -> None:
    put(alice, f"{unique}/private.txt", b"mine", headers={"X-CallFS-Mode": "0600"})
    token = token_for(alice, f"/{unique}/private.txt")
    response = anon.get(f"/download/{token}")
    assert response.status_code == 200
    assert response.content == b"mine"


def test_empty_file_download(alice: httpx.Client, anon: httpx.Client, unique: str) -> None:
    put(alice, f"{unique}/empty.txt", b"")
    response = anon.get(f"/download/{token_for(alice, f'/{unique}/empty.txt')}")
    assert response.status_code == 200
    assert response.content == b""
    assert response.headers["content-length"] == "0"
    assert response.headers["x-callfs-sha256"] == hashlib.sha256(b"").hexdigest()


@pytest.mark.parametrize(
    "token",
    [
        pytest.param("AAAAAAAAAAAAAAAAAAAAAA==." + "A" * 43 + "=", id="well-formed-unknown"),
        pytest.param("abc", id="short"),
        pytest.param("no-dot-at-all-" + "x" * 55, id="no-dot"),
        pytest.param("%2E%2E", id="dots"),
        pytest.param("x" * 300, id="long"),
    ],
)
def test_unknown_or_malformed_token(anon: httpx.Client, token: str) -> None:
    assert_error(anon.get(f"/download/{token}"), 404, "LINK_NOT_FOUND")
    head = anon.head(f"/download/{token}")
    assert head.status_code == 404
    assert head.content == b""


def test_unknown_id_with_real_signature_format(
    alice: httpx.Client, anon: httpx.Client, unique: str
) -> None:
    # A fresh id with a correctly computed signature is still unknown.
    token_id = base64.urlsafe_b64encode(b"\x01" * 16).decode()
    token = f"{token_id}.{expected_signature(token_id, f'/{unique}/f.txt')}"
    assert_error(anon.get(f"/download/{token}"), 404, "LINK_NOT_FOUND")


def test_expired_link(alice: httpx.Client, anon: httpx.Client, unique: str) -> None:
    put(alice, f"{unique}/short.txt", b"short")
    token = token_for(alice, f"/{unique}/short.txt", 1)
    time.sleep(1.2)
    assert anon.head(f"/download/{token}").status_code == 410
    assert_error(anon.get(f"/download/{token}"), 410, "LINK_EXPIRED")
    assert_error(anon.get(f"/download/{token}"), 410, "LINK_EXPIRED")


def test_expiry_checked_before_used_status(
    alice: httpx.Client, anon: httpx.Client, unique: str
) -> None:
    put(alice, f"{unique}/short.txt", b"short")
    token = token_for(alice, f"/{unique}/short.txt", 1)
    assert anon.get(f"/download/{token}").status_code == 200
    time.sleep(1.2)
    assert_error(anon.get(f"/download/{token}"), 410, "LINK_EXPIRED")


def _tamper(token: str) -> str:
    token_id, _, signature = token.partition(".")
    # Flip one character in the middle of the signature, keeping the format valid.
    ch = signature[10]
    signature = signature[:10] + ("B" if ch != "B" else "C") + signature[11:]
    return f"{token_id}.{signature}"


def test_tampered_signature(alice: httpx.Client, anon: httpx.Client, unique: str) -> None:
    put(alice, f"{unique}/t.txt", b"tamper")
    token = token_for(alice, f"/{unique}/t.txt")
    bad = _tamper(token)
    assert bad != token and len(bad) == 69
    body = assert_error(anon.get(f"/download/{bad}"), 410, "LINK_EXPIRED")
    assert body["message"] == "link is no longer valid"
    assert anon.head(f"/download/{bad}").status_code == 410
    # Signed for another path with the real key: still not valid for this record.
    token_id = token.split(".")[0]
    other = f"{token_id}.{expected_signature(token_id, f'/{unique}/other.txt')}"
    assert_error(anon.get(f"/download/{other}"), 410, "LINK_EXPIRED")
    # Failures before step 7 leave the token active.
    good = anon.get(f"/download/{token}")
    assert good.status_code == 200
    assert good.content == b"tamper"


def test_file_deleted_after_generation(
    alice: httpx.Client, anon: httpx.Client, unique: str
) -> None:
    put(alice, f"{unique}/gone.txt", b"first")
    token = token_for(alice, f"/{unique}/gone.txt")
    assert alice.delete(f"/v1/files/{unique}/gone.txt").status_code == 204
    assert_error(anon.get(f"/download/{token}"), 404, "FILE_NOT_FOUND")
    assert anon.head(f"/download/{token}").status_code == 404
    assert_error(anon.get(f"/download/{token}"), 404, "FILE_NOT_FOUND")
    # Now a directory at that path: still FILE_NOT_FOUND.
    assert alice.post(f"/v1/files/{unique}/gone.txt/").status_code == 201
    assert_error(anon.get(f"/download/{token}"), 404, "FILE_NOT_FOUND")
    assert alice.delete(f"/v1/files/{unique}/gone.txt").status_code == 204
    # The token stayed active: recreate the file and it downloads the new content.
    put(alice, f"{unique}/gone.txt", b"second")
    response = anon.get(f"/download/{token}")
    assert response.status_code == 200
    assert response.content == b"second"
    assert_error(anon.get(f"/download/{token}"), 410, "LINK_ALREADY_USED")


def test_download_serves_content_at_download_time(
    alice: httpx.Client, anon: httpx.Client, unique: str
) -> None:
    put(alice, f"{unique}/v.txt", b"version one")
    token = token_for(alice, f"/{unique}/v.txt")
    put(alice, f"{unique}/v.txt", b"version two, longer")
    response = anon.get(f"/download/{token}")
    assert response.content == b"version two, longer"
    assert response.headers["content-length"] == str(len(b"version two, longer"))


def test_concurrent_downloads_exactly_one_wins(
    server: Server, alice: httpx.Client, unique: str
) -> None:
    content = bytes(range(256)) * 64
    put(alice, f"{unique}/race.bin", content)
    token = token_for(alice, f"/{unique}/race.bin")
    count = 20
    barrier = threading.Barrier(count)
    results: list[tuple[int, bytes] | BaseException] = [None] * count  # type: ignore[list-item]

    def worker(index: int) -> None:
        try:
            with server.client(None) as client:
                client.get("/health")  # open the connection before the race
                barrier.wait(timeout=30)
                response = client.get(f"/download/{token}")
                results[index] = (response.status_code, response.content)
        except BaseException as exc:  # reported below
            results[index] = exc

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not any(isinstance(r, BaseException) for r in results), results
    statuses = sorted(r[0] for r in results if isinstance(r, tuple))
    assert statuses == [200] + [410] * (count - 1), statuses
    for status, body in (r for r in results if isinstance(r, tuple)):
        if status == 200:
            assert body == content
        else:
            assert json.loads(body)["code"] == "LINK_ALREADY_USED"


# --------------------------------------------------------------------------- rate limits

LIMITED = {
    "rate_limit": {
        "download_rps": 1,
        "download_burst": 2,
        "generate_rps": 1,
        "generate_burst": 1,
    }
}


def assert_rate_limited(response: httpx.Response) -> None:
    assert response.status_code == 429, response.text
    # HEAD errors carry headers only (§1.5).
    assert response.content == (b"" if response.request.method == "HEAD" else RATE_LIMIT_BODY)
    assert response.headers["content-type"] == "application/json"
    # Whole seconds until a request would be admitted, at least 1; at 1 token per second
    # that is never more than 1.
    assert response.headers["retry-after"] == "1"


def test_rate_limits(make_server: Any) -> None:
    srv = make_server(LIMITED)
    with srv.client("alice") as alice, srv.client(None) as anon, srv.client("bob") as bob:
        put(alice, "rl/f.txt", b"limited")

        # Unauthenticated generate requests use no tokens.
        for _ in range(5):
            unauthenticated = anon.post(GENERATE, json={"path": "/rl/f.txt"})
            assert_error(unauthenticated, 401, "AUTHENTICATION_FAILED")
        first = generate(alice, "/rl/f.txt")
        assert first.status_code == 201, first.text
        # Burst 1: the next one is limited, whoever asks (the limit is per IP) ...
        assert_rate_limited(generate(alice, "/rl/f.txt"))
        assert_rate_limited(generate(bob, "/rl/f.txt"))
        # ... and the limit comes before body validation.
        assert_rate_limited(alice.post(GENERATE, content=b"not json"))
        # Still 401 without a key, even while limited.
        assert_error(anon.post(GENERATE, content=b"{}"), 401, "AUTHENTICATION_FAILED")
        time.sleep(1.1)
        second = generate(alice, "/rl/f.txt")
        assert second.status_code == 201, second.text

        # Downloads: burst 2 admitted (HEAD and unknown tokens count), then 429.
        token = first.json()["token"]
        assert anon.head(f"/download/{token}").status_code == 200
        assert_error(anon.get("/download/unknown-token"), 404, "LINK_NOT_FOUND")
        limited = anon.get(f"/download/{token}")
        assert_rate_limited(limited)
        assert_rate_limited(anon.head(f"/download/{token}"))
        # The limited GET did not consume the token.
        time.sleep(int(limited.headers["retry-after"]) + 0.1)
        ok = anon.get(f"/download/{token}")
        assert ok.status_code == 200
        assert ok.content == b"limited"
        # /health is never limited.
        for _ in range(5):
            assert anon.get("/health").status_code == 200


def test_rate_limit_generate_unauthenticated_never_drains(make_server: Any) -> None:
    srv = make_server(LIMITED)
    with srv.client("alice") as alice, srv.client(None) as anon:
        put(alice, "rl/f.txt", b"x")
        with srv.client(None, headers={"Authorization": "Bearer bogus-key-0123456789"}) as bad:
            for _ in range(10):
                assert bad.post(GENERATE, json={"path": "/rl/f.txt"}).status_code == 401
                assert anon.post(GENERATE, json={"path": "/rl/f.txt"}).status_code == 401
        assert generate(alice, "/rl/f.txt").status_code == 201
