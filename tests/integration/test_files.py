"""``/v1/files/{path}``: GET, HEAD, POST, PUT and DELETE on the real server (api.md §2.5–2.8)."""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime, parsedate_to_datetime
from typing import Any

import httpx
import pytest
from conftest import OWNING_INSTANCE
from helpers import FILEINFO_KEYS, assert_error, mkdir, put, raw_request

MTIME_RE = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$")
ALPHABET = b"abcdefghijklmnopqrstuvwxyz"  # 26 bytes, used for range tests
EMPTY_SHA = hashlib.sha256(b"").hexdigest()


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def b64(digest: bytes) -> str:
    return base64.b64encode(digest).decode()


def sha_b64(data: bytes) -> str:
    return b64(hashlib.sha256(data).digest())


def md5_b64(data: bytes) -> str:
    return b64(hashlib.md5(data).digest())


def parse_mtime(value: str) -> datetime:
    assert MTIME_RE.match(value), value
    return datetime.strptime(value, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)


def assert_recent(value: str) -> None:
    when = parse_mtime(value)
    now = datetime.now(UTC)
    assert now - timedelta(seconds=60) <= when <= now + timedelta(seconds=2), value


# --------------------------------------------------------------------------- GET / HEAD of a file


def assert_file_headers(
    resp: httpx.Response,
    data: bytes,
    *,
    owner: str = "alice",
    mode: str = "0644",
    content_type: str = "text/plain",
) -> None:
    h = resp.headers
    digest = sha(data)
    assert h["content-type"] == content_type
    assert h["content-length"] == str(len(data))
    assert h["etag"] == f'"{digest}"'
    assert h["accept-ranges"] == "bytes"
    assert h["repr-digest"] == f"sha-256=:{sha_b64(data)}:"
    assert h["x-callfs-type"] == "file"
    assert h["x-callfs-size"] == str(len(data))
    assert h["x-callfs-mode"] == mode
    assert h["x-callfs-owner"] == owner
    assert h["x-callfs-group"] == owner
    assert h["x-callfs-sha256"] == digest
    assert h.get("x-callfs-instance-id") == OWNING_INSTANCE
    assert_recent(h["x-callfs-mtime"])
    # Last-Modified is the mtime as an IMF-fixdate.
    assert h["last-modified"] == format_datetime(parse_mtime(h["x-callfs-mtime"]), usegmt=True)


def test_get_file_returns_content_and_all_headers(alice: httpx.Client, unique: str) -> None:
    data = b"hello, world\n"
    put(alice, f"{unique}/notes.txt", data)
    resp = alice.get(f"/v1/files/{unique}/notes.txt")
    assert resp.status_code == 200
    assert resp.content == data
    assert_file_headers(resp, data)


def test_head_file_has_get_headers_and_no_body(alice: httpx.Client, unique: str) -> None:
    data = b"0123456789" * 7
    put(alice, f"{unique}/h.txt", data)
    get = alice.get(f"/v1/files/{unique}/h.txt")
    head = alice.head(f"/v1/files/{unique}/h.txt")
    assert head.status_code == 200
    assert head.content == b""
    assert_file_headers(head, data)
    for name in (
        "content-type",
        "content-length",
        "etag",
        "last-modified",
        "accept-ranges",
        "repr-digest",
        "x-callfs-type",
        "x-callfs-size",
        "x-callfs-mode",
        "x-callfs-owner",
        "x-callfs-group",
        "x-callfs-mtime",
        "x-callfs-sha256",
        "x-callfs-instance-id",
    ):
        assert head.headers.get(name) == get.headers.get(name), name


def test_empty_file(alice: httpx.Client, unique: str) -> None:
    resp = alice.put(f"/v1/files/{unique}/empty.txt", content=b"")
    assert resp.status_code == 201
    assert resp.headers["x-callfs-sha256"] == EMPTY_SHA
    get = alice.get(f"/v1/files/{unique}/empty.txt")
    assert get.status_code == 200
    assert get.content == b""
    assert get.headers["content-length"] == "0"
    assert get.headers["x-callfs-size"] == "0"
    assert get.headers["etag"] == f'"{EMPTY_SHA}"'


def test_get_missing_is_404(alice: httpx.Client, unique: str) -> None:
    assert_error(alice.get(f"/v1/files/{unique}/nope.txt"), 404, "FILE_NOT_FOUND")
    mkdir(alice, unique)
    assert_error(alice.get(f"/v1/files/{unique}/nope.txt"), 404, "FILE_NOT_FOUND")
    head = alice.head(f"/v1/files/{unique}/nope.txt")
    assert head.status_code == 404
    assert head.content == b""


def test_get_below_a_file_is_404(alice: httpx.Client, unique: str) -> None:
    put(alice, f"{unique}/f.txt", b"x")
    assert_error(alice.get(f"/v1/files/{unique}/f.txt/child"), 404, "FILE_NOT_FOUND")


def test_trailing_slash_irrelevant_on_get(alice: httpx.Client, unique: str) -> None:
    put(alice, f"{unique}/f.txt", b"abc")
    resp = alice.get(f"/v1/files/{unique}/f.txt/")
    assert resp.status_code == 200
    assert resp.content == b"abc"
    assert resp.headers["x-callfs-type"] == "file"
    head = alice.head(f"/v1/files/{unique}/f.txt/")
    assert head.status_code == 200
    assert head.headers["content-length"] == "3"
    listing = alice.get(f"/v1/files/{unique}")  # directory without trailing slash
    assert listing.status_code == 200
    assert listing.headers["x-callfs-type"] == "directory"
    assert [i["name"] for i in listing.json()] == ["f.txt"]


def test_query_parameters_ignored_on_get(alice: httpx.Client, unique: str) -> None:
    put(alice, f"{unique}/f.txt", b"whole")
    resp = alice.get(
        f"/v1/files/{unique}/f.txt",
        params={"manifest": "true", "erasure": "rs", "data_shards": "4", "x": "y"},
    )
    assert resp.status_code == 200
    assert resp.content == b"whole"
    assert resp.headers["content-type"] == "text/plain"


def test_root_directory_attributes(alice: httpx.Client) -> None:
    resp = alice.head("/v1/files/")
    assert resp.status_code == 200
    assert resp.headers["x-callfs-type"] == "directory"
    assert resp.headers["x-callfs-owner"] == "root"
    assert resp.headers["x-callfs-group"] == "root"
    assert resp.headers["x-callfs-mode"] == "1777"
    assert resp.headers["x-callfs-size"] == "0"
    assert "x-callfs-instance-id" not in resp.headers


# ------------------------------------------------------------------------ GET / HEAD of a directory


def test_get_directory_lists_children_in_order(alice: httpx.Client, unique: str) -> None:
    files = ["b.txt", "a.txt", "B.txt", "é.txt", "a-b", "a.b", "\uff21", "\U0001f600"]
    dirs = ["zdir", "Adir", "_dir", "ü"]
    for name in files:
        put(alice, f"{unique}/{name}", name.encode())
    for name in dirs:
        mkdir(alice, f"{unique}/{name}")
    put(alice, f"{unique}/zdir/deep.txt", b"deep")  # grandchildren are not listed
    resp = alice.get(f"/v1/files/{unique}/")
    assert resp.status_code == 200
    assert resp.headers["content-type"] == "application/json"
    assert not resp.content.endswith(b"\n")
    body = resp.json()
    assert isinstance(body, list)
    names = [i["name"] for i in body]
    assert names == sorted(files) + sorted(dirs)
    # code point order: fullwidth A (U+FF21) sorts before the emoji (U+1F600)
    assert names.index("\uff21") < names.index("\U0001f600")
    by_name = {i["name"]: i for i in body}
    for item in body:
        assert set(item) == FILEINFO_KEYS
        assert item["path"] == f"/{unique}/{item['name']}"
        assert item["owner"] == "alice"
        assert item["group"] == "alice"
        assert_recent(item["mtime"])
    f = by_name["a.txt"]
    assert (f["type"], f["size"], f["mode"], f["sha256"]) == ("file", 5, "0644", sha(b"a.txt"))
    d = by_name["zdir"]
    assert (d["type"], d["size"], d["mode"], d["sha256"]) == ("directory", 0, "0755", None)


def test_get_directory_headers(alice: httpx.Client, unique: str) -> None:
    mkdir(alice, f"{unique}/d")
    for method in ("GET", "HEAD"):
        resp = alice.request(method, f"/v1/files/{unique}/d")
        assert resp.status_code == 200
        h = resp.headers
        assert h["content-type"] == "application/json"
        assert h["x-callfs-type"] == "directory"
        assert h["x-callfs-size"] == "0"
        assert h["x-callfs-mode"] == "0755"
        assert h["x-callfs-owner"] == "alice"
        assert h["x-callfs-group"] == "alice"
        assert h.get("x-callfs-instance-id") == OWNING_INSTANCE
        assert_recent(h["x-callfs-mtime"])
        for absent in ("etag", "last-modified", "x-callfs-sha256", "repr-digest"):
            assert absent not in h, (method, absent)
        if method == "GET":
            assert resp.content == b"[]"
        else:
            assert resp.content == b""
            assert "content-length" not in h


# --------------------------------------------------------------------------- content types (§1.8)


@pytest.mark.parametrize(
    ("name", "sent", "stored"),
    [
        ("page.html", None, "text/html"),
        ("page.HTM", None, "text/html"),
        ("style.css", None, "text/css"),
        ("app.js", None, "application/javascript"),
        ("data.JSON", None, "application/json"),
        ("doc.xml", None, "application/xml"),
        ("doc.pdf", None, "application/pdf"),
        ("pic.jpeg", None, "image/jpeg"),
        ("pic.Jpg", None, "image/jpeg"),
        ("pic.png", None, "image/png"),
        ("pic.gif", None, "image/gif"),
        ("pic.svg", None, "image/svg+xml"),
        ("pic.webp", None, "image/webp"),
        ("read.md", None, "text/markdown"),
        ("t.csv", None, "text/csv"),
        ("a.zip", None, "application/zip"),
        ("archive.tar.gz", None, "application/gzip"),
        ("a.tar", None, "application/x-tar"),
        ("c.yaml", None, "application/yaml"),
        ("c.yml", None, "application/yaml"),
        ("s.mp3", None, "audio/mpeg"),
        ("v.mp4", None, "video/mp4"),
        ("m.wasm", None, "application/wasm"),
        (".bashrc", None, "application/octet-stream"),
        ("noext", None, "application/octet-stream"),
        ("weird.xyz", None, "application/octet-stream"),
        ("f.txt", "application/octet-stream", "text/plain"),
        ("f.txt", "application/x-www-form-urlencoded", "text/plain"),
        ("f.txt", "not a type", "text/plain"),
        ("f.bin", "Text/HTML; charset=UTF-8", "text/html; charset=UTF-8"),
        ("f.txt", "application/vnd.custom+json", "application/vnd.custom+json"),
        ("f.json", "image/png", "image/png"),
    ],
)
def test_content_type_stored(
    alice: httpx.Client, unique: str, name: str, sent: str | None, stored: str
) -> None:
    headers = {"Content-Type": sent} if sent is not None else {}
    resp = alice.post(f"/v1/files/{unique}/{name}", content=b"data", headers=headers)
    assert resp.status_code == 201, resp.text
    for method in ("GET", "HEAD"):
        got = alice.request(method, f"/v1/files/{unique}/{name}")
        assert got.status_code == 200
        assert got.headers["content-type"] == stored, method


def test_content_type_replaced_by_put(alice: httpx.Client, unique: str) -> None:
    put(alice, f"{unique}/f.dat", b"1", headers={"Content-Type": "text/csv"})
    assert alice.head(f"/v1/files/{unique}/f.dat").headers["content-type"] == "text/csv"
    put(alice, f"{unique}/f.dat", b"2", headers={"Content-Type": "image/png"})
    assert alice.head(f"/v1/files/{unique}/f.dat").headers["content-type"] == "image/png"
    put(alice, f"{unique}/f.dat", b"3")
    assert alice.head(f"/v1/files/{unique}/f.dat").headers["content-type"] == (
        "application/octet-stream"
    )


def test_upload_stored_byte_for_byte(alice: httpx.Client, server: Any, unique: str) -> None:
    data = bytes(range(256)) * 4 + b"\x1f\x8b\x08\x00"
    resp = alice.put(
        f"/v1/files/{unique}/raw.gz", content=data, headers={"Content-Encoding": "gzip"}
    )
    assert resp.status_code == 201
    got = alice.get(f"/v1/files/{unique}/raw.gz", headers={"Accept-Encoding": "identity"})
    assert got.content == data
    assert "content-encoding" not in got.headers
    assert server.storage.read(f"{unique}/raw.gz") == data


# --------------------------------------------------------------------------- POST


def test_post_file_created(alice: httpx.Client, server: Any, unique: str) -> None:
    data = b"new file"
    resp = alice.post(f"/v1/files/{unique}/new.txt", content=data)
    assert resp.status_code == 201
    assert resp.content == b""
    assert resp.headers["etag"] == f'"{sha(data)}"'
    assert resp.headers["x-callfs-sha256"] == sha(data)
    get = alice.get(f"/v1/files/{unique}/new.txt")
    assert get.content == data
    assert_file_headers(get, data)
    assert server.storage.read(f"{unique}/new.txt") == data


def test_post_directory_then_again(alice: httpx.Client, server: Any, unique: str) -> None:
    first = alice.post(f"/v1/files/{unique}/d/", content=b"ignored body")
    assert first.status_code == 201
    assert first.content == b""
    again = alice.post(f"/v1/files/{unique}/d/")
    assert again.status_code == 200
    assert again.content == b""
    head = alice.head(f"/v1/files/{unique}/d")
    assert head.headers["x-callfs-type"] == "directory"
    assert head.headers["x-callfs-mode"] == "0755"
    assert server.storage.holds_directory(f"{unique}/d")
    # the directory is still empty: the body was ignored
    assert alice.get(f"/v1/files/{unique}/d").json() == []


def test_post_existing_directory_needs_no_parent_permission(
    alice: httpx.Client, bob: httpx.Client, unique: str
) -> None:
    mkdir(alice, f"{unique}/d")
    resp = bob.post(f"/v1/files/{unique}/d/")
    assert resp.status_code == 200
    assert alice.head(f"/v1/files/{unique}/d").headers["x-callfs-owner"] == "alice"


def test_post_file_on_file_conflict(alice: httpx.Client, unique: str) -> None:
    put(alice, f"{unique}/f.txt", b"original")
    resp = alice.post(f"/v1/files/{unique}/f.txt", content=b"other")
    assert_error(resp, 409, "FILE_ALREADY_EXISTS", message="file already exists, use PUT to update")
    assert alice.get(f"/v1/files/{unique}/f.txt").content == b"original"


def test_post_directory_on_file_conflict(alice: httpx.Client, unique: str) -> None:
    put(alice, f"{unique}/f.txt", b"original")
    resp = alice.post(f"/v1/files/{unique}/f.txt/")
    assert_error(resp, 409, "FILE_ALREADY_EXISTS", message="a file exists at this path")
    head = alice.head(f"/v1/files/{unique}/f.txt")
    assert head.headers["x-callfs-type"] == "file"


def test_post_file_on_directory_conflict(alice: httpx.Client, unique: str) -> None:
    mkdir(alice, f"{unique}/d")
    resp = alice.post(f"/v1/files/{unique}/d", content=b"data")
    assert_error(resp, 409, "IS_A_DIRECTORY", message="a directory exists at this path")
    assert alice.head(f"/v1/files/{unique}/d").headers["x-callfs-type"] == "directory"


def test_post_creates_missing_parents(alice: httpx.Client, server: Any, unique: str) -> None:
    resp = alice.post(
        f"/v1/files/{unique}/a/b/c/file.txt", content=b"deep", headers={"X-CallFS-Mode": "0600"}
    )
    assert resp.status_code == 201
    for parent in (unique, f"{unique}/a", f"{unique}/a/b", f"{unique}/a/b/c"):
        head = alice.head(f"/v1/files/{parent}")
        assert head.status_code == 200, parent
        assert head.headers["x-callfs-type"] == "directory"
        assert head.headers["x-callfs-mode"] == "0755"  # X-CallFS-Mode not for parents
        assert head.headers["x-callfs-owner"] == "alice"
    assert alice.head(f"/v1/files/{unique}/a/b/c/file.txt").headers["x-callfs-mode"] == "0600"
    assert server.storage.read(f"{unique}/a/b/c/file.txt") == b"deep"


def test_post_directory_creates_missing_parents(alice: httpx.Client, unique: str) -> None:
    resp = alice.post(f"/v1/files/{unique}/x/y/z/", headers={"X-CallFS-Mode": "0700"})
    assert resp.status_code == 201
    assert alice.head(f"/v1/files/{unique}/x/y/z").headers["x-callfs-mode"] == "0700"
    assert alice.head(f"/v1/files/{unique}/x/y").headers["x-callfs-mode"] == "0755"


def test_post_below_a_file_is_not_a_directory(alice: httpx.Client, unique: str) -> None:
    put(alice, f"{unique}/f.txt", b"x")
    assert_error(
        alice.post(f"/v1/files/{unique}/f.txt/child", content=b"y"), 400, "NOT_A_DIRECTORY"
    )
    assert_error(alice.post(f"/v1/files/{unique}/f.txt/a/b/"), 400, "NOT_A_DIRECTORY")


@pytest.mark.parametrize(
    ("sent", "stored"),
    [
        ("644", "0644"),
        ("0600", "0600"),
        ("600", "0600"),
        ("0444", "0444"),
        ("4644", "4644"),
        ("000", "0000"),
    ],
)
def test_post_file_mode(alice: httpx.Client, unique: str, sent: str, stored: str) -> None:
    resp = alice.post(f"/v1/files/{unique}/f.txt", content=b"m", headers={"X-CallFS-Mode": sent})
    assert resp.status_code == 201
    listing = alice.get(f"/v1/files/{unique}").json()
    assert listing[0]["mode"] == stored
    if stored[-3] in "4567":  # owner can read
        assert alice.head(f"/v1/files/{unique}/f.txt").headers["x-callfs-mode"] == stored


@pytest.mark.parametrize(
    ("sent", "stored"), [("755", "0755"), ("0700", "0700"), ("2775", "2775"), ("1777", "1777")]
)
def test_post_directory_mode(alice: httpx.Client, unique: str, sent: str, stored: str) -> None:
    resp = alice.post(f"/v1/files/{unique}/d/", headers={"X-CallFS-Mode": sent})
    assert resp.status_code == 201
    assert alice.head(f"/v1/files/{unique}/d").headers["x-callfs-mode"] == stored


@pytest.mark.parametrize(
    "mode", ["888", "64", "12345", "abc", "", "0o644", "+644", "644x", "０６４４"]
)
def test_post_invalid_mode(alice: httpx.Client, unique: str, mode: str) -> None:
    headers: dict[str, Any] = {"X-CallFS-Mode": mode.encode()}  # bytes: non-ASCII digits too
    assert_error(
        alice.post(f"/v1/files/{unique}/f.txt", content=b"m", headers=headers), 400, "BAD_REQUEST"
    )
    assert_error(alice.post(f"/v1/files/{unique}/d/", headers=headers), 400, "BAD_REQUEST")
    assert_error(
        alice.put(f"/v1/files/{unique}/g.txt", content=b"m", headers=headers), 400, "BAD_REQUEST"
    )
    assert alice.get(f"/v1/files/{unique}").status_code == 404  # nothing created


def test_post_ignores_erasure_options(alice: httpx.Client, unique: str) -> None:
    resp = alice.post(
        f"/v1/files/{unique}/e.txt",
        content=b"whole",
        params={"erasure": "true", "data_shards": "4", "parity_shards": "2"},
        headers={"X-CallFS-Erasure": "true"},
    )
    assert resp.status_code == 201
    assert alice.get(f"/v1/files/{unique}/e.txt").content == b"whole"


# --------------------------------------------------------------------------- PUT


def test_put_create_then_replace(alice: httpx.Client, server: Any, unique: str) -> None:
    v1, v2 = b"version one", b"version two, longer"
    created = alice.put(f"/v1/files/{unique}/f.txt", content=v1, headers={"X-CallFS-Mode": "0640"})
    assert created.status_code == 201
    assert created.content == b""
    assert created.headers["etag"] == f'"{sha(v1)}"'
    assert created.headers["x-callfs-sha256"] == sha(v1)
    before = alice.head(f"/v1/files/{unique}/f.txt").headers
    assert before["x-callfs-mode"] == "0640"

    with server.client("boss") as boss:  # admin replaces alice's file
        replaced = boss.put(
            f"/v1/files/{unique}/f.txt", content=v2, headers={"X-CallFS-Mode": "0600"}
        )
    assert replaced.status_code == 200
    assert replaced.content == b""
    assert replaced.headers["etag"] == f'"{sha(v2)}"'
    assert replaced.headers["x-callfs-sha256"] == sha(v2)
    after = alice.get(f"/v1/files/{unique}/f.txt")
    assert after.content == v2
    h = after.headers
    assert h["x-callfs-owner"] == "alice"
    assert h["x-callfs-group"] == "alice"
    assert h["x-callfs-mode"] == "0640"  # X-CallFS-Mode applies only on creation
    assert h["x-callfs-size"] == str(len(v2))
    assert h["x-callfs-sha256"] == sha(v2)
    assert h["etag"] == f'"{sha(v2)}"'
    assert parse_mtime(h["x-callfs-mtime"]) >= parse_mtime(before["x-callfs-mtime"])
    assert server.storage.read(f"{unique}/f.txt") == v2


def test_put_creates_missing_parents(alice: httpx.Client, unique: str) -> None:
    resp = alice.put(f"/v1/files/{unique}/p/q/r.txt", content=b"r")
    assert resp.status_code == 201
    assert alice.head(f"/v1/files/{unique}/p/q").headers["x-callfs-type"] == "directory"


def test_put_to_directory_url_is_bad_request(alice: httpx.Client, unique: str) -> None:
    resp = alice.put(f"/v1/files/{unique}/d/", content=b"x")
    assert_error(resp, 400, "BAD_REQUEST", message="PUT cannot target a directory path")
    assert alice.get(f"/v1/files/{unique}").status_code == 404
    mkdir(alice, f"{unique}/d")
    assert_error(
        alice.put(f"/v1/files/{unique}/d/", content=b"x"),
        400,
        "BAD_REQUEST",
        message="PUT cannot target a directory path",
    )


def test_put_onto_directory_is_a_directory(alice: httpx.Client, unique: str) -> None:
    mkdir(alice, f"{unique}/d")
    assert_error(alice.put(f"/v1/files/{unique}/d", content=b"x"), 400, "IS_A_DIRECTORY")
    assert alice.head(f"/v1/files/{unique}/d").headers["x-callfs-type"] == "directory"


def test_put_below_a_file_is_not_a_directory(alice: httpx.Client, unique: str) -> None:
    put(alice, f"{unique}/f.txt", b"x")
    assert_error(alice.put(f"/v1/files/{unique}/f.txt/child", content=b"y"), 400, "NOT_A_DIRECTORY")
    assert_error(alice.put(f"/v1/files/{unique}/f.txt/a/b/c", content=b"y"), 400, "NOT_A_DIRECTORY")
    assert alice.get(f"/v1/files/{unique}/f.txt").content == b"x"


# --------------------------------------------------------------------------- DELETE


def test_delete_file(alice: httpx.Client, server: Any, unique: str) -> None:
    put(alice, f"{unique}/f.txt", b"x")
    resp = alice.delete(f"/v1/files/{unique}/f.txt")
    assert resp.status_code == 204
    assert resp.content == b""
    assert_error(alice.get(f"/v1/files/{unique}/f.txt"), 404, "FILE_NOT_FOUND")
    assert server.storage.absent(f"{unique}/f.txt")
    assert alice.get(f"/v1/files/{unique}").json() == []


def test_delete_trailing_slash_irrelevant(alice: httpx.Client, unique: str) -> None:
    put(alice, f"{unique}/f.txt", b"x")
    mkdir(alice, f"{unique}/d")
    assert alice.delete(f"/v1/files/{unique}/f.txt/").status_code == 204
    assert alice.delete(f"/v1/files/{unique}/d").status_code == 204
    assert alice.get(f"/v1/files/{unique}").json() == []


def test_delete_missing_is_404(alice: httpx.Client, unique: str) -> None:
    assert_error(alice.delete(f"/v1/files/{unique}/nope"), 404, "FILE_NOT_FOUND")
    mkdir(alice, unique)
    assert_error(alice.delete(f"/v1/files/{unique}/nope"), 404, "FILE_NOT_FOUND")
    assert_error(
        alice.delete(f"/v1/files/{unique}/nope", params={"recursive": "true"}),
        404,
        "FILE_NOT_FOUND",
    )


def test_delete_non_empty_directory(alice: httpx.Client, server: Any, unique: str) -> None:
    put(alice, f"{unique}/d/a.txt", b"a")
    put(alice, f"{unique}/d/sub/b.txt", b"b")
    mkdir(alice, f"{unique}/d/sub/empty")
    for params in (
        {},
        {"recursive": "false"},
        {"recursive": "1"},
        {"recursive": "True"},
        {"recursive": "yes"},
    ):
        resp = alice.delete(f"/v1/files/{unique}/d", params=params)
        assert_error(resp, 409, "DIRECTORY_NOT_EMPTY")
    assert alice.get(f"/v1/files/{unique}/d/sub/b.txt").content == b"b"

    resp = alice.delete(f"/v1/files/{unique}/d", params={"recursive": "true"})
    assert resp.status_code == 204
    assert resp.content == b""
    for gone in ("d", "d/a.txt", "d/sub", "d/sub/b.txt", "d/sub/empty"):
        assert_error(alice.get(f"/v1/files/{unique}/{gone}"), 404, "FILE_NOT_FOUND")
    assert alice.get(f"/v1/files/{unique}").json() == []
    assert server.storage.absent(f"{unique}/d")
    assert server.storage.children(unique) == []


def test_delete_empty_directory(alice: httpx.Client, server: Any, unique: str) -> None:
    mkdir(alice, f"{unique}/d")
    assert alice.delete(f"/v1/files/{unique}/d/").status_code == 204
    assert_error(alice.get(f"/v1/files/{unique}/d"), 404, "FILE_NOT_FOUND")
    assert server.storage.absent(f"{unique}/d")


def test_recursive_delete_of_a_file(alice: httpx.Client, unique: str) -> None:
    put(alice, f"{unique}/f.txt", b"x")
    resp = alice.delete(f"/v1/files/{unique}/f.txt", params={"recursive": "true"})
    assert resp.status_code == 204
    assert alice.get(f"/v1/files/{unique}/f.txt").status_code == 404


@pytest.mark.parametrize("path", ["", ".", "./", "a/..", "a/../", "//"])
def test_delete_root_is_bad_request(server: Any, alice: httpx.Client, path: str) -> None:
    msg = "the root directory cannot be deleted"
    assert_error(
        raw_request(server, "DELETE", f"/v1/files/{path}"), 400, "BAD_REQUEST", message=msg
    )
    # admins do not bypass validation
    assert_error(
        raw_request(server, "DELETE", f"/v1/files/{path}?recursive=true", user="boss"),
        400,
        "BAD_REQUEST",
        message=msg,
    )
    assert alice.head("/v1/files/").status_code == 200


# --------------------------------------------------------------------------- ranges (§1.7)


@pytest.fixture
def alphabet(alice: httpx.Client, unique: str) -> str:
    put(alice, f"{unique}/abc.txt", ALPHABET)
    return f"/v1/files/{unique}/abc.txt"


@pytest.mark.parametrize(
    ("header", "first", "last"),
    [
        ("bytes=0-4", 0, 4),
        ("bytes=5-5", 5, 5),
        ("bytes=10-", 10, 25),
        ("bytes=25-", 25, 25),
        ("bytes=20-1000", 20, 25),
        ("bytes=-5", 21, 25),
        ("bytes=-26", 0, 25),
        ("bytes=-100", 0, 25),
        ("bytes=0-", 0, 25),
    ],
)
def test_range(alice: httpx.Client, alphabet: str, header: str, first: int, last: int) -> None:
    resp = alice.get(alphabet, headers={"Range": header})
    assert resp.status_code == 206
    assert resp.content == ALPHABET[first : last + 1]
    assert resp.headers["content-range"] == f"bytes {first}-{last}/26"
    assert resp.headers["content-length"] == str(last - first + 1)
    assert resp.headers["x-callfs-size"] == "26"
    assert resp.headers["etag"] == f'"{sha(ALPHABET)}"'
    assert resp.headers["accept-ranges"] == "bytes"
    assert resp.headers["content-type"] == "text/plain"
    assert resp.headers["repr-digest"] == f"sha-256=:{sha_b64(ALPHABET)}:"


@pytest.mark.parametrize("header", ["bytes=26-", "bytes=100-200", "bytes=-0", "bytes=26-30"])
def test_range_not_satisfiable(alice: httpx.Client, alphabet: str, header: str) -> None:
    resp = alice.get(alphabet, headers={"Range": header})
    assert_error(resp, 416, "RANGE_NOT_SATISFIABLE")
    assert resp.headers["content-range"] == "bytes */26"


@pytest.mark.parametrize(
    "header",
    [
        "bytes=0-1,3-4",
        "bytes=0-1, 5-",
        "items=0-4",
        "bytes=abc",
        "bytes=",
        "bytes 0-4",
        "0-4",
        "bytes=--5",
    ],
)
def test_range_ignored(alice: httpx.Client, alphabet: str, header: str) -> None:
    resp = alice.get(alphabet, headers={"Range": header})
    assert resp.status_code == 200
    assert resp.content == ALPHABET
    assert "content-range" not in resp.headers
    assert resp.headers["content-length"] == "26"


def test_range_ignored_on_head(alice: httpx.Client, alphabet: str) -> None:
    for header in ("bytes=0-4", "bytes=-5", "bytes=30-"):
        head = alice.head(alphabet, headers={"Range": header})
        assert head.status_code == 200, header
        assert head.headers["content-length"] == "26"
        assert "content-range" not in head.headers
        assert head.content == b""


def test_range_ignored_on_empty_file(alice: httpx.Client, unique: str) -> None:
    put(alice, f"{unique}/empty", b"")
    for header in ("bytes=0-4", "bytes=-1", "bytes=0-", "bytes=-0", "bytes=5-"):
        resp = alice.get(f"/v1/files/{unique}/empty", headers={"Range": header})
        assert resp.status_code == 200, header
        assert resp.content == b""
        assert "content-range" not in resp.headers


def test_if_range(alice: httpx.Client, alphabet: str) -> None:
    etag = f'"{sha(ALPHABET)}"'
    last_modified = alice.head(alphabet).headers["last-modified"]
    cases = [
        (etag, 206),
        ('"0000"', 200),
        (f"W/{etag}", 200),  # weak tags never match strongly
        (last_modified, 206),
        ("Mon, 01 Jan 2001 00:00:00 GMT", 200),
    ]
    for value, status in cases:
        resp = alice.get(alphabet, headers={"Range": "bytes=0-1", "If-Range": value})
        assert resp.status_code == status, value
        assert resp.content == (b"ab" if status == 206 else ALPHABET), value


# --------------------------------------------------------------------------- conditionals (§1.7)


def test_if_none_match_get_304(alice: httpx.Client, alphabet: str) -> None:
    etag = f'"{sha(ALPHABET)}"'
    full = alice.get(alphabet)
    for value in (etag, f"W/{etag}", f'"nope", {etag}', "*"):
        for method in ("GET", "HEAD"):
            resp = alice.request(method, alphabet, headers={"If-None-Match": value})
            assert resp.status_code == 304, (method, value)
            assert resp.content == b""
            for name in (
                "etag",
                "last-modified",
                "x-callfs-type",
                "x-callfs-size",
                "x-callfs-mode",
                "x-callfs-owner",
                "x-callfs-group",
                "x-callfs-mtime",
                "x-callfs-sha256",
            ):
                assert resp.headers[name] == full.headers[name], (value, name)
    resp = alice.get(alphabet, headers={"If-None-Match": '"other"'})
    assert resp.status_code == 200
    assert resp.content == ALPHABET


def test_if_modified_since(alice: httpx.Client, alphabet: str) -> None:
    last_modified = alice.head(alphabet).headers["last-modified"]
    lm = parsedate_to_datetime(last_modified)
    resp = alice.get(alphabet, headers={"If-Modified-Since": last_modified})
    assert resp.status_code == 304
    assert resp.content == b""
    later = format_datetime(lm + timedelta(days=1), usegmt=True)
    assert alice.get(alphabet, headers={"If-Modified-Since": later}).status_code == 304
    earlier = format_datetime(lm - timedelta(seconds=1), usegmt=True)
    resp = alice.get(alphabet, headers={"If-Modified-Since": earlier})
    assert resp.status_code == 200
    assert resp.content == ALPHABET
    assert alice.get(alphabet, headers={"If-Modified-Since": "garbage"}).status_code == 200
    # If-None-Match takes precedence over If-Modified-Since
    both = alice.get(
        alphabet, headers={"If-Modified-Since": last_modified, "If-None-Match": '"other"'}
    )
    assert both.status_code == 200


def test_if_match_and_if_unmodified_since_on_get(alice: httpx.Client, alphabet: str) -> None:
    etag = f'"{sha(ALPHABET)}"'
    assert_error(alice.get(alphabet, headers={"If-Match": '"nope"'}), 412, "PRECONDITION_FAILED")
    assert alice.get(alphabet, headers={"If-Match": etag}).status_code == 200
    assert alice.get(alphabet, headers={"If-Match": f'"x", {etag}'}).status_code == 200
    assert alice.get(alphabet, headers={"If-Match": "*"}).status_code == 200
    # strong comparison: a weak tag does not match
    assert_error(alice.get(alphabet, headers={"If-Match": f"W/{etag}"}), 412, "PRECONDITION_FAILED")
    lm = parsedate_to_datetime(alice.head(alphabet).headers["last-modified"])
    old = format_datetime(lm - timedelta(hours=1), usegmt=True)
    assert_error(
        alice.get(alphabet, headers={"If-Unmodified-Since": old}), 412, "PRECONDITION_FAILED"
    )
    same = format_datetime(lm, usegmt=True)
    assert alice.get(alphabet, headers={"If-Unmodified-Since": same}).status_code == 200


def test_conditionals_on_directories(alice: httpx.Client, unique: str) -> None:
    mkdir(alice, f"{unique}/d")
    url = f"/v1/files/{unique}/d"
    resp = alice.get(url, headers={"If-None-Match": "*"})
    assert resp.status_code == 304
    assert resp.headers["x-callfs-type"] == "directory"
    assert alice.get(url, headers={"If-None-Match": '"abc"'}).status_code == 200
    assert_error(alice.get(url, headers={"If-Match": '"abc"'}), 412, "PRECONDITION_FAILED")
    assert alice.get(url, headers={"If-Match": "*"}).status_code == 200
    future = "Fri, 01 Jan 2100 00:00:00 GMT"
    assert alice.get(url, headers={"If-Modified-Since": future}).status_code == 200


def test_put_if_match(alice: httpx.Client, unique: str) -> None:
    url = f"/v1/files/{unique}/f.txt"
    put(alice, f"{unique}/f.txt", b"one")
    assert_error(
        alice.put(url, content=b"two", headers={"If-Match": '"nope"'}), 412, "PRECONDITION_FAILED"
    )
    assert alice.get(url).content == b"one"
    ok = alice.put(url, content=b"two", headers={"If-Match": f'"{sha(b"one")}"'})
    assert ok.status_code == 200
    assert alice.get(url).content == b"two"
    # If-Match never creates
    missing = f"/v1/files/{unique}/missing.txt"
    for value in ("*", f'"{sha(b"two")}"'):
        assert_error(
            alice.put(missing, content=b"x", headers={"If-Match": value}),
            412,
            "PRECONDITION_FAILED",
        )
    assert alice.get(missing).status_code == 404


def test_put_if_none_match_star_only_creates(alice: httpx.Client, unique: str) -> None:
    url = f"/v1/files/{unique}/f.txt"
    created = alice.put(url, content=b"one", headers={"If-None-Match": "*"})
    assert created.status_code == 201
    assert_error(
        alice.put(url, content=b"two", headers={"If-None-Match": "*"}), 412, "PRECONDITION_FAILED"
    )
    assert alice.get(url).content == b"one"
    assert_error(
        alice.put(url, content=b"two", headers={"If-None-Match": f'"{sha(b"one")}"'}),
        412,
        "PRECONDITION_FAILED",
    )
    assert alice.get(url).content == b"one"


def test_put_if_unmodified_since(alice: httpx.Client, unique: str) -> None:
    url = f"/v1/files/{unique}/f.txt"
    put(alice, f"{unique}/f.txt", b"one")
    lm = parsedate_to_datetime(alice.head(url).headers["last-modified"])
    old = format_datetime(lm - timedelta(hours=1), usegmt=True)
    assert_error(
        alice.put(url, content=b"two", headers={"If-Unmodified-Since": old}),
        412,
        "PRECONDITION_FAILED",
    )
    assert alice.get(url).content == b"one"


def test_delete_if_match(alice: httpx.Client, unique: str) -> None:
    url = f"/v1/files/{unique}/f.txt"
    put(alice, f"{unique}/f.txt", b"one")
    assert_error(alice.delete(url, headers={"If-Match": '"nope"'}), 412, "PRECONDITION_FAILED")
    assert alice.get(url).content == b"one"
    assert_error(alice.delete(url, headers={"If-None-Match": "*"}), 412, "PRECONDITION_FAILED")
    assert alice.delete(url, headers={"If-Match": f'"{sha(b"one")}"'}).status_code == 204
    assert alice.get(url).status_code == 404


def test_preconditions_after_existence(alice: httpx.Client, unique: str) -> None:
    # Order: existence (404) before preconditions (412) for reads and deletes.
    url = f"/v1/files/{unique}/missing.txt"
    assert_error(alice.get(url, headers={"If-Match": '"x"'}), 404, "FILE_NOT_FOUND")
    assert_error(alice.delete(url, headers={"If-Match": '"x"'}), 404, "FILE_NOT_FOUND")


# --------------------------------------------------------------------------- digests (§1.8)


@pytest.mark.parametrize(
    "headers",
    [
        {"Content-Digest": f"sha-256=:{sha_b64(b'payload')}:"},
        {"Repr-Digest": f"sha-256=:{sha_b64(b'payload')}:"},
        {
            "Content-Digest": f"sha-512=:{b64(hashlib.sha512(b'x').digest())}:, "
            f"sha-256=:{sha_b64(b'payload')}:"
        },
        {"Content-Digest": f"sha-512=:{b64(hashlib.sha512(b'other').digest())}:"},
        {"Content-MD5": md5_b64(b"payload")},
        {"Content-MD5": md5_b64(b"payload"), "Repr-Digest": f"sha-256=:{sha_b64(b'payload')}:"},
    ],
    ids=["content-digest", "repr-digest", "dictionary", "other-algorithm-ignored", "md5", "both"],
)
def test_digest_ok(alice: httpx.Client, unique: str, headers: dict[str, str]) -> None:
    resp = alice.post(f"/v1/files/{unique}/f.txt", content=b"payload", headers=headers)
    assert resp.status_code == 201, resp.text
    assert alice.get(f"/v1/files/{unique}/f.txt").content == b"payload"
    resp = alice.put(f"/v1/files/{unique}/f.txt", content=b"payload", headers=headers)
    assert resp.status_code == 200, resp.text


@pytest.mark.parametrize(
    "headers",
    [
        {"Content-Digest": f"sha-256=:{sha_b64(b'something else')}:"},
        {"Repr-Digest": f"sha-256=:{sha_b64(b'something else')}:"},
        {"Content-MD5": md5_b64(b"something else")},
        {
            "Content-Digest": f"sha-256=:{sha_b64(b'payload')}:",
            "Content-MD5": md5_b64(b"something else"),
        },
    ],
    ids=["content-digest", "repr-digest", "md5", "one-of-two"],
)
def test_digest_mismatch(
    alice: httpx.Client, server: Any, unique: str, headers: dict[str, str]
) -> None:
    resp = alice.post(f"/v1/files/{unique}/new.txt", content=b"payload", headers=headers)
    assert_error(resp, 400, "DIGEST_MISMATCH")
    assert_error(alice.get(f"/v1/files/{unique}/new.txt"), 404, "FILE_NOT_FOUND")
    assert server.storage.absent(f"{unique}/new.txt")
    # replace: nothing changes
    put(alice, f"{unique}/old.txt", b"old content", headers={"Content-Type": "text/csv"})
    before = alice.head(f"/v1/files/{unique}/old.txt").headers
    resp = alice.put(
        f"/v1/files/{unique}/old.txt",
        content=b"payload",
        headers={**headers, "Content-Type": "image/png"},
    )
    assert_error(resp, 400, "DIGEST_MISMATCH")
    after = alice.get(f"/v1/files/{unique}/old.txt")
    assert after.content == b"old content"
    for name in ("etag", "x-callfs-size", "x-callfs-mtime", "content-type", "x-callfs-sha256"):
        assert after.headers[name] == before[name], name
    assert server.storage.read(f"{unique}/old.txt") == b"old content"
    assert server.storage.leftovers() == []


@pytest.mark.parametrize(
    "headers",
    [
        {"Content-Digest": "sha-256=abc"},
        {"Content-Digest": "sha-256=:not base64!:"},
        {"Content-Digest": f"sha-256=:{b64(hashlib.md5(b'payload').digest())}:"},  # 16 bytes
        {"Repr-Digest": "garbage"},
        {"Repr-Digest": f"sha-256={sha_b64(b'payload')}"},  # not a byte sequence
        {"Content-MD5": "not base64!"},
        {"Content-MD5": sha_b64(b"payload")},  # 32 bytes
    ],
    ids=[
        "token",
        "bad-base64",
        "short",
        "no-dictionary",
        "no-colons",
        "md5-bad-base64",
        "md5-length",
    ],
)
def test_digest_malformed(
    alice: httpx.Client, server: Any, unique: str, headers: dict[str, str]
) -> None:
    assert_error(
        alice.post(f"/v1/files/{unique}/f.txt", content=b"payload", headers=headers),
        400,
        "BAD_REQUEST",
    )
    assert_error(
        alice.put(f"/v1/files/{unique}/f.txt", content=b"payload", headers=headers),
        400,
        "BAD_REQUEST",
    )
    assert alice.get(f"/v1/files/{unique}").status_code == 404
    assert server.storage.absent(unique)


def test_digest_ignored_on_directory_request(alice: httpx.Client, unique: str) -> None:
    resp = alice.post(
        f"/v1/files/{unique}/d/",
        headers={
            "Content-Digest": f"sha-256=:{sha_b64(b'nothing')}:",
            "Content-MD5": md5_b64(b"no"),
        },
    )
    assert resp.status_code == 201
    assert alice.head(f"/v1/files/{unique}/d").headers["x-callfs-type"] == "directory"


# --------------------------------------------------------------------------- connection handling


def test_keep_alive_connection_usable_after_early_error(
    alice: httpx.Client, bob: httpx.Client, unique: str
) -> None:
    """An error sent before the body was read must not leave a dead keep-alive connection:
    either the body is drained, or the response says ``Connection: close`` (§1.9: the server
    MAY close the connection after an early error, so it has to announce it)."""
    mkdir(alice, f"{unique}/d")
    failures = []
    for i in range(300):
        body = b"b" * (1, 8192, 65536)[i % 3]
        try:
            resp = bob.post(f"/v1/files/{unique}/d/n{i}.txt", content=body)
        except httpx.TransportError as exc:
            failures.append(f"request {i}: {exc!r}")
            continue
        assert_error(resp, 403, "PERMISSION_DENIED")
    assert failures == []


# --------------------------------------------------------------------------- upload limit (§1.9)


def chunks(total: int, size: int = 100) -> Iterator[bytes]:
    sent = 0
    while sent < total:
        n = min(size, total - sent)
        yield b"z" * n
        sent += n


def test_upload_size_limit(make_server: Any) -> None:
    srv = make_server({"server": {"max_upload_bytes": 1000}})
    with srv.client("alice") as c:
        exact = c.put("/v1/files/lim/exact.bin", content=b"e" * 1000)
        assert exact.status_code == 201
        assert c.head("/v1/files/lim/exact.bin").headers["content-length"] == "1000"

        assert_error(c.put("/v1/files/lim/big.bin", content=b"b" * 1001), 413, "PAYLOAD_TOO_LARGE")
        assert_error(
            c.post("/v1/files/lim/big2.bin", content=b"b" * 5000), 413, "PAYLOAD_TOO_LARGE"
        )
        assert_error(
            c.put("/v1/files/lim/exact.bin", content=b"b" * 1001), 413, "PAYLOAD_TOO_LARGE"
        )
        assert c.get("/v1/files/lim/big.bin").status_code == 404
        assert c.get("/v1/files/lim/big2.bin").status_code == 404

        # chunked, limit not exceeded
        ok = c.put("/v1/files/lim/chunked.bin", content=chunks(1000))
        assert ok.status_code == 201
        assert c.get("/v1/files/lim/chunked.bin").content == b"z" * 1000

        # chunked, over the limit: 413 when crossed, previous content intact
        put(c, "lim/keep.txt", b"previous")
        try:
            resp = c.put("/v1/files/lim/keep.txt", content=chunks(1500))
        except httpx.TransportError:  # the server MAY close the connection early
            resp = None
        if resp is not None:
            assert_error(resp, 413, "PAYLOAD_TOO_LARGE")
        try:
            resp = c.post("/v1/files/lim/fresh.bin", content=chunks(3000))
        except httpx.TransportError:
            resp = None
        if resp is not None:
            assert_error(resp, 413, "PAYLOAD_TOO_LARGE")

    with srv.client("alice") as c:
        assert c.get("/v1/files/lim/keep.txt").content == b"previous"
        assert c.get("/v1/files/lim/fresh.bin").status_code == 404
        assert c.get("/v1/files/lim/chunked.bin").content == b"z" * 1000
        names = sorted(i["name"] for i in c.get("/v1/files/lim").json())
        assert names == ["chunked.bin", "exact.bin", "keep.txt"]
    assert srv.storage.read("lim/keep.txt") == b"previous"
    assert srv.storage.absent("lim/fresh.bin")
    assert srv.storage.leftovers() == []
    assert srv.storage.children("lim") == [
        "chunked.bin",
        "exact.bin",
        "keep.txt",
    ]


def test_chunked_over_limit_always_answers_413(make_server: Any) -> None:
    """The server reads a chunked body until the limit is crossed and answers 413."""
    srv = make_server({"server": {"max_upload_bytes": 1000}})
    with srv.client("alice") as c:
        resp = c.put("/v1/files/over.bin", content=chunks(1001, size=1001))
        assert_error(resp, 413, "PAYLOAD_TOO_LARGE")
        assert c.get("/v1/files/over.bin").status_code == 404
    assert srv.storage.leftovers() == []
