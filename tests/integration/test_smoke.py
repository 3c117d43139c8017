"""A first round trip through the real server: upload, download, list, delete."""

from __future__ import annotations

import httpx


def test_round_trip(alice: httpx.Client, unique: str) -> None:
    put = alice.put(f"/v1/files/{unique}/hello.txt", content=b"hello")
    assert put.status_code == 201, put.text
    get = alice.get(f"/v1/files/{unique}/hello.txt")
    assert get.status_code == 200
    assert get.content == b"hello"
    assert get.headers["content-type"] == "text/plain"
    listing = alice.get(f"/v1/directories/{unique}").json()
    assert [i["name"] for i in listing["items"]] == ["hello.txt"]
    assert alice.delete(f"/v1/files/{unique}/hello.txt").status_code == 204
    assert alice.get(f"/v1/files/{unique}/hello.txt").status_code == 404
