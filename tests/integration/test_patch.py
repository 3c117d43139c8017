"""PATCH /v1/files/{path} against the real server: renames, moves, attributes (api.md §2.9)."""

from __future__ import annotations

import json

import httpx
import pytest
from conftest import Server
from helpers import assert_error


def test_rename_moves_bytes_and_keeps_attributes(
    server: Server, alice: httpx.Client, unique: str
) -> None:
    assert alice.put(f"/v1/files/{unique}/a.txt", content=b"hello").status_code == 201
    before = alice.head(f"/v1/files/{unique}/a.txt").headers
    response = alice.patch(f"/v1/files/{unique}/a.txt", json={"name": "b.txt"})
    assert response.status_code == 200
    assert (
        response.content
        == json.dumps({"path": f"/{unique}/b.txt"}).replace(" ", "").encode() + b"\n"
    )
    assert response.headers["content-type"] == "application/json"
    after = alice.head(f"/v1/files/{unique}/b.txt").headers
    for header in ("etag", "x-callfs-mtime", "x-callfs-owner", "x-callfs-mode", "content-type"):
        assert after[header] == before[header]
    assert alice.get(f"/v1/files/{unique}/a.txt").status_code == 404
    assert server.storage.read(f"{unique}/b.txt") == b"hello"
    assert server.storage.absent(f"{unique}/a.txt")


def test_move_directory_subtree(server: Server, alice: httpx.Client, unique: str) -> None:
    for name in ("x", "sub/y", "sub/deeper/z"):
        assert alice.put(f"/v1/files/{unique}/src/{name}", content=name.encode()).status_code == 201
    response = alice.patch(
        f"/v1/files/{unique}/src",
        json={"destination": f"{unique}/dst/moved", "create_parents": True},
    )
    assert response.json() == {"path": f"/{unique}/dst/moved"}
    for name in ("x", "sub/y", "sub/deeper/z"):
        assert alice.get(f"/v1/files/{unique}/dst/moved/{name}").content == name.encode()
        assert server.storage.read(f"{unique}/dst/moved/{name}") == name.encode()
    assert alice.get(f"/v1/files/{unique}/src").status_code == 404
    listing = alice.get(f"/v1/directories/{unique}?recursive=true").json()
    assert [i["path"] for i in listing["items"]][:1] == [f"/{unique}/dst"]


def test_overwrite_in_body_or_query(alice: httpx.Client, unique: str) -> None:
    for name in ("a", "b", "c"):
        alice.put(f"/v1/files/{unique}/{name}", content=name.encode())
    assert_error(
        alice.patch(f"/v1/files/{unique}/a", json={"name": "b"}), 409, "FILE_ALREADY_EXISTS"
    )
    assert (
        alice.patch(f"/v1/files/{unique}/a", json={"name": "b", "overwrite": True}).status_code
        == 200
    )
    assert alice.get(f"/v1/files/{unique}/b").content == b"a"
    assert (
        alice.patch(f"/v1/files/{unique}/b?overwrite=true", json={"name": "c"}).status_code == 200
    )
    assert alice.get(f"/v1/files/{unique}/c").content == b"a"


def test_attributes(alice: httpx.Client, bob: httpx.Client, server: Server, unique: str) -> None:
    alice.put(f"/v1/files/{unique}/f", content=b"1")
    response = alice.patch(f"/v1/files/{unique}/f", json={"mode": "600", "group": "team"})
    assert response.status_code == 200
    headers = alice.head(f"/v1/files/{unique}/f").headers
    assert (headers["x-callfs-mode"], headers["x-callfs-group"]) == ("0600", "team")
    assert bob.get(f"/v1/files/{unique}/f").status_code == 403
    assert_error(
        alice.patch(f"/v1/files/{unique}/f", json={"owner": "bob"}), 403, "PERMISSION_DENIED"
    )
    with server.client("boss") as boss:
        assert boss.patch(f"/v1/files/{unique}/f", json={"owner": "bob"}).status_code == 200
        assert boss.head(f"/v1/files/{unique}/f").headers["x-callfs-owner"] == "bob"
    # 0600 owned by bob: alice, only in the group class now, may no longer read it.
    assert alice.get(f"/v1/files/{unique}/f").status_code == 403
    assert bob.get(f"/v1/files/{unique}/f").content == b"1"


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        (b"not json", 400, "BAD_REQUEST"),
        (b"[1]", 400, "BAD_REQUEST"),
        (b'{"name": 5}', 400, "BAD_REQUEST"),
        (b'{"overwrite": "yes", "name": "x"}', 400, "BAD_REQUEST"),
        (b'{"name": "x", "destination": "/y"}', 400, "BAD_REQUEST"),
        (b"{}", 400, "BAD_REQUEST"),
        (b'{"name": "a/b"}', 400, "INVALID_PATH"),
        (b'{"destination": "../../etc"}', 400, "INVALID_PATH"),
        (b'{"mode": "888"}', 400, "BAD_REQUEST"),
        (b'{"group": "nobody-knows"}', 400, "BAD_REQUEST"),
        (b'{"owner": "nobody-knows"}', 400, "BAD_REQUEST"),
        (b'{"name": "x", "backend": "gcs"}', 400, "BAD_REQUEST"),
        (b'{"name": "x", "instance": "elsewhere"}', 400, "BAD_REQUEST"),
    ],
)
def test_bad_requests(
    alice: httpx.Client, unique: str, body: bytes, status: int, code: str
) -> None:
    alice.put(f"/v1/files/{unique}/f", content=b"1")
    assert_error(alice.patch(f"/v1/files/{unique}/f", content=body), status, code)
    assert alice.get(f"/v1/files/{unique}/f").content == b"1"


def test_oversized_body(alice: httpx.Client, unique: str) -> None:
    alice.put(f"/v1/files/{unique}/f", content=b"1")
    big = json.dumps({"name": "x", "pad": "a" * (1024 * 1024)}).encode()
    assert_error(alice.patch(f"/v1/files/{unique}/f", content=big), 400, "BAD_REQUEST")


def test_root_and_self(alice: httpx.Client, unique: str) -> None:
    alice.post(f"/v1/files/{unique}/d/")
    assert_error(alice.patch("/v1/files/", json={"name": "x"}), 400, "BAD_REQUEST")
    assert_error(
        alice.patch(f"/v1/files/{unique}/d", json={"destination": f"{unique}/d/in"}),
        400,
        "BAD_REQUEST",
    )
    assert_error(
        alice.patch(f"/v1/files/{unique}/d", json={"destination": f"/{unique}/d"}),
        400,
        "BAD_REQUEST",
    )
    assert_error(
        alice.patch(f"/v1/files/{unique}/missing", json={"name": "x"}), 404, "FILE_NOT_FOUND"
    )
    assert_error(
        alice.patch(f"/v1/files/{unique}/d", json={"destination": f"/{unique}/no/such/d"}),
        400,
        "BAD_REQUEST",
    )


def test_if_match_protects_read_modify_write(alice: httpx.Client, unique: str) -> None:
    alice.put(f"/v1/files/{unique}/f", content=b"1")
    etag = alice.head(f"/v1/files/{unique}/f").headers["etag"]
    stale = alice.patch(f"/v1/files/{unique}/f", json={"name": "g"}, headers={"If-Match": '"0"'})
    assert_error(stale, 412, "PRECONDITION_FAILED")
    ok = alice.patch(f"/v1/files/{unique}/f", json={"name": "g"}, headers={"If-Match": etag})
    assert ok.status_code == 200


def test_sticky_root_protects_other_users_entries(
    bob: httpx.Client, alice: httpx.Client, unique: str
) -> None:
    alice.put(f"/v1/files/{unique}", content=b"top")
    assert_error(
        bob.patch(f"/v1/files/{unique}", json={"name": f"{unique}-stolen"}),
        403,
        "PERMISSION_DENIED",
    )
    assert alice.get(f"/v1/files/{unique}").content == b"top"
    alice.delete(f"/v1/files/{unique}")
