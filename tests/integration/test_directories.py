"""``GET /v1/directories/{path}``: structured, paginated listings (api.md §2.10)."""

from __future__ import annotations

import os
import time
from typing import Any

import httpx
import pytest
from helpers import FILEINFO_KEYS, assert_error, mkdir, put, raw_request


def listing(client: httpx.Client, path: str, **params: Any) -> dict[str, Any]:
    resp = client.get(f"/v1/directories/{path}", params=params)
    assert resp.status_code == 200, resp.text
    assert resp.headers["content-type"] == "application/json"
    assert not resp.content.endswith(b"\n")
    body: dict[str, Any] = resp.json()
    assert resp.headers["x-callfs-type"] == "directory"
    assert resp.headers["x-callfs-count"] == str(len(body["items"]))
    assert body["count"] == len(body["items"])
    assert resp.headers["x-callfs-recursive"] == ("true" if body["recursive"] else "false")
    assert body["type"] == "directory"
    return body


def paths(body: dict[str, Any]) -> list[str]:
    return [i["path"] for i in body["items"]]


# The tree used by most tests (relative to /dirs-<pid>-<n>/t):
#
#   b.txt  A.txt  a-b  a.b  é.txt  Ａ(U+FF21)  😀(U+1F600)      (files)
#   dirB/  x.txt, sub/ (deep.txt, deeper/ (d.txt))
#   Zdir/  (empty)
#   _d/    y.txt
#   dirA/  z.txt, q/ (empty)
TREE_FILES = [
    "b.txt",
    "A.txt",
    "a-b",
    "a.b",
    "é.txt",
    "\uff21",
    "\U0001f600",
    "dirB/x.txt",
    "dirB/sub/deep.txt",
    "dirB/sub/deeper/d.txt",
    "_d/y.txt",
    "dirA/z.txt",
]
TREE_DIRS = ["Zdir", "dirA/q"]

TOP = [
    "A.txt",
    "a-b",
    "a.b",
    "b.txt",
    "é.txt",
    "\uff21",
    "\U0001f600",
    "Zdir",
    "_d",
    "dirA",
    "dirB",
]
# Recursive order: children, then the recursive listing of each child directory in order.
RECURSIVE = [
    *TOP,
    # Zdir: empty
    "_d/y.txt",
    "dirA/z.txt",
    "dirA/q",
    # dirA/q: empty
    "dirB/x.txt",
    "dirB/sub",
    "dirB/sub/deep.txt",
    "dirB/sub/deeper",
    "dirB/sub/deeper/d.txt",
]


@pytest.fixture(scope="module")
def tree(server: Any) -> str:
    """Built once per module; the tests only read it."""
    base = f"dirs-{os.getpid()}-{time.monotonic_ns() % 10**9}/t"
    with server.client("alice") as alice:
        for name in TREE_FILES:
            put(alice, f"{base}/{name}", name.encode())
        for name in TREE_DIRS:
            mkdir(alice, f"{base}/{name}")
    return f"/{base}"


def rel(base: str, names: list[str]) -> list[str]:
    return [f"{base}/{n}" for n in names]


def test_non_recursive_listing(alice: httpx.Client, tree: str) -> None:
    resp = alice.get(f"/v1/directories{tree}")
    body = listing(alice, tree.lstrip("/"))
    assert list(body) == ["path", "type", "recursive", "count", "items", "next"]
    assert body["path"] == tree
    assert body["recursive"] is False
    assert body["next"] is None
    assert paths(body) == rel(tree, TOP)
    assert resp.headers["x-callfs-count"] == str(len(TOP))
    assert resp.headers["x-callfs-recursive"] == "false"
    for item in body["items"]:
        assert set(item) == FILEINFO_KEYS
        assert item["name"] == item["path"].rsplit("/", 1)[1]
        assert item["owner"] == "alice"
        assert item["group"] == "alice"
    by_name = {i["name"]: i for i in body["items"]}
    assert by_name["b.txt"]["type"] == "file"
    assert by_name["b.txt"]["size"] == 5
    assert by_name["b.txt"]["mode"] == "0644"
    assert len(by_name["b.txt"]["sha256"]) == 64
    assert by_name["dirA"]["type"] == "directory"
    assert by_name["dirA"]["size"] == 0
    assert by_name["dirA"]["mode"] == "0755"
    assert by_name["dirA"]["sha256"] is None


def test_files_listing_equals_directories_listing(alice: httpx.Client, tree: str) -> None:
    body = listing(alice, tree.lstrip("/"))
    array = alice.get(f"/v1/files{tree}/").json()
    assert array == body["items"]


def test_recursive_listing_order(alice: httpx.Client, tree: str) -> None:
    body = listing(alice, tree.lstrip("/"), recursive="true")
    assert list(body) == ["path", "type", "recursive", "max_depth", "count", "items", "next"]
    assert body["recursive"] is True
    assert body["max_depth"] == 100
    assert body["next"] is None
    assert paths(body) == rel(tree, RECURSIVE)
    deep = {i["path"]: i for i in body["items"]}[f"{tree}/dirB/sub/deeper/d.txt"]
    assert deep["name"] == "d.txt"
    assert deep["size"] == len(b"dirB/sub/deeper/d.txt")


@pytest.mark.parametrize("flag", ["1", "True", "yes", "TRUE", ""])
def test_recursive_only_when_exactly_true(alice: httpx.Client, tree: str, flag: str) -> None:
    resp = alice.get(f"/v1/directories{tree}", params={"recursive": flag})
    assert resp.status_code == 200
    assert resp.headers["x-callfs-recursive"] == "false"
    body = resp.json()
    assert body["recursive"] is False
    assert "max_depth" not in body
    assert paths(body) == rel(tree, TOP)


def test_max_depth_zero_lists_children_only(alice: httpx.Client, tree: str) -> None:
    body = listing(alice, tree.lstrip("/"), recursive="true", max_depth="0")
    assert list(body) == ["path", "type", "recursive", "count", "items", "next"]
    assert body["recursive"] is True
    assert paths(body) == rel(tree, TOP)


def test_max_depth_one_lists_two_levels(alice: httpx.Client, tree: str) -> None:
    body = listing(alice, tree.lstrip("/"), recursive="true", max_depth="1")
    assert body["max_depth"] == 1
    expected = [*TOP, "_d/y.txt", "dirA/z.txt", "dirA/q", "dirB/x.txt", "dirB/sub"]
    assert paths(body) == rel(tree, expected)


def test_max_depth_two_lists_three_levels(alice: httpx.Client, tree: str) -> None:
    body = listing(alice, tree.lstrip("/"), recursive="true", max_depth="2")
    assert body["max_depth"] == 2
    assert paths(body) == rel(tree, [p for p in RECURSIVE if p != "dirB/sub/deeper/d.txt"])


@pytest.mark.parametrize(
    ("value", "reported"),
    [
        ("abc", 100),
        ("-1", 100),
        ("-100", 100),
        ("1.5", 100),
        ("", 100),
        ("1000", 1000),
        ("1001", 1000),
        ("999999", 1000),
        ("3", 3),
    ],
)
def test_max_depth_normalised(alice: httpx.Client, tree: str, value: str, reported: int) -> None:
    body = listing(alice, tree.lstrip("/"), recursive="true", max_depth=value)
    assert body["max_depth"] == reported
    assert paths(body) == rel(tree, RECURSIVE)


def test_max_depth_absent_when_not_recursive(alice: httpx.Client, tree: str) -> None:
    body = listing(alice, tree.lstrip("/"), max_depth="5")
    assert "max_depth" not in body


def test_empty_directory(alice: httpx.Client, unique: str) -> None:
    mkdir(alice, f"{unique}/empty")
    for params in ({}, {"recursive": "true"}, {"limit": "1"}):
        resp = alice.get(f"/v1/directories/{unique}/empty/", params=params)
        assert resp.status_code == 200
        body = resp.json()
        assert body["path"] == f"/{unique}/empty"
        assert body["items"] == []
        assert body["count"] == 0
        assert body["next"] is None
        assert resp.headers["x-callfs-count"] == "0"


def test_trailing_slash_optional_and_root(alice: httpx.Client, server: Any, tree: str) -> None:
    assert paths(listing(alice, tree.lstrip("/") + "/")) == rel(tree, TOP)
    for spelling in ("", ".", "./", "a/..", "/", f"{tree.lstrip('/')}/../.."):
        resp = raw_request(server, "GET", f"/v1/directories/{spelling}")
        assert resp.status == 200, (spelling, resp.content)
        root = resp.json()
        assert root["path"] == "/"
        assert resp.headers["x-callfs-count"] == str(root["count"])
        top = {i["path"]: i for i in root["items"]}[tree.rsplit("/", 1)[0]]
        assert top["type"] == "directory"
    resp = raw_request(server, "GET", f"/v1/directories{tree}/./dirB/sub/..")
    assert resp.status == 200
    assert resp.json()["path"] == f"{tree}/dirB"


def walk_pages(client: httpx.Client, path: str, limit: int, **params: Any) -> list[list[str]]:
    pages: list[list[str]] = []
    after: str | None = None
    for _ in range(100):
        query = dict(params, limit=str(limit))
        if after is not None:
            query["after"] = after
        body = listing(client, path, **query)
        page = paths(body)
        assert 0 < len(page) <= limit
        pages.append(page)
        if body["next"] is None:
            return pages
        assert body["next"] == page[-1]
        assert len(page) == limit
        after = body["next"]
    raise AssertionError("pagination did not end")


@pytest.mark.parametrize("limit", [1, 2, 3, 5, 10])
def test_pagination_non_recursive(alice: httpx.Client, tree: str, limit: int) -> None:
    pages = walk_pages(alice, tree.lstrip("/"), limit)
    assert [p for page in pages for p in page] == rel(tree, TOP)
    assert len(pages) == -(-len(TOP) // limit)


@pytest.mark.parametrize("limit", [1, 2, 4, 7, 19])
def test_pagination_recursive(alice: httpx.Client, tree: str, limit: int) -> None:
    pages = walk_pages(alice, tree.lstrip("/"), limit, recursive="true")
    assert [p for page in pages for p in page] == rel(tree, RECURSIVE)


def test_pagination_recursive_with_max_depth(alice: httpx.Client, tree: str) -> None:
    pages = walk_pages(alice, tree.lstrip("/"), 3, recursive="true", max_depth="1")
    expected = [*TOP, "_d/y.txt", "dirA/z.txt", "dirA/q", "dirB/x.txt", "dirB/sub"]
    assert [p for page in pages for p in page] == rel(tree, expected)


def test_next_null_when_page_ends_exactly(alice: httpx.Client, tree: str) -> None:
    n = len(TOP)
    body = listing(alice, tree.lstrip("/"), limit=str(n))
    assert body["next"] is None
    assert paths(body) == rel(tree, TOP)
    body = listing(alice, tree.lstrip("/"), limit=str(n - 1))
    assert body["next"] == f"{tree}/{TOP[n - 2]}"
    last = listing(alice, tree.lstrip("/"), limit=str(n - 1), after=body["next"])
    assert paths(last) == [f"{tree}/{TOP[-1]}"]
    assert last["next"] is None
    whole = listing(alice, tree.lstrip("/"), limit="10000", recursive="true")
    assert whole["next"] is None
    assert paths(whole) == rel(tree, RECURSIVE)


def test_after_alone_and_spellings(alice: httpx.Client, tree: str) -> None:
    # `after` without limit; leading slash optional, trailing slash dropped (§1.3)
    for after in (f"{tree}/dirA", f"{tree.lstrip('/')}/dirA", f"{tree}/dirA/"):
        body = listing(alice, tree.lstrip("/"), after=after)
        assert paths(body) == [f"{tree}/dirB"], after
        assert body["next"] is None
    body = listing(alice, tree.lstrip("/"), after=f"{tree}/dirA", recursive="true")
    assert paths(body) == rel(tree, RECURSIVE[RECURSIVE.index("dirA") + 1 :])
    body = listing(alice, tree.lstrip("/"), after=f"{tree}/dirB/sub/deep.txt", recursive="true")
    assert paths(body) == rel(tree, ["dirB/sub/deeper", "dirB/sub/deeper/d.txt"])


def test_after_missing_entry_placed_as_file(alice: httpx.Client, tree: str) -> None:
    # "b.txt0" would sort after "b.txt" and before "é.txt" among files.
    body = listing(alice, tree.lstrip("/"), after=f"{tree}/b.txt0")
    assert paths(body) == rel(tree, TOP[TOP.index("é.txt") :])
    # a missing U+1F601 sorts after every file but before the directories
    body = listing(alice, tree.lstrip("/"), after=f"{tree}/\U0001f601")
    assert paths(body) == rel(tree, ["Zdir", "_d", "dirA", "dirB"])
    # a missing name placed as a file inside dirB, recursively
    body = listing(alice, tree.lstrip("/"), after=f"{tree}/dirB/zzz", recursive="true")
    assert paths(body) == rel(
        tree, ["dirB/sub", "dirB/sub/deep.txt", "dirB/sub/deeper", "dirB/sub/deeper/d.txt"]
    )


@pytest.mark.parametrize("limit", ["0", "10001", "abc", "-1", "", "1.5"])
def test_invalid_limit(alice: httpx.Client, tree: str, limit: str) -> None:
    resp = alice.get(f"/v1/directories{tree}", params={"limit": limit})
    assert_error(resp, 400, "BAD_REQUEST")


def test_after_outside_listing(alice: httpx.Client, tree: str) -> None:
    url = f"/v1/directories{tree}"
    top = tree.rsplit("/", 1)[0]
    for after in (
        f"{top}/other",
        top,
        tree,
        "/",
        f"{tree}x/a.txt",
        f"{tree}/dirB/x.txt",
    ):  # a grandchild is not in a non-recursive listing
        assert_error(alice.get(url, params={"after": after}), 400, "BAD_REQUEST")
    for after in (f"{top}/other/x", tree, top, f"{tree}x/dirB/x.txt"):
        assert_error(
            alice.get(url, params={"after": after, "recursive": "true"}), 400, "BAD_REQUEST"
        )


@pytest.mark.parametrize(
    "after", ["../x", "..", "a/../../b", "a\\b", "a\x00b", "a\x01b", "a\u202eb", "x" * 256]
)
def test_invalid_after(alice: httpx.Client, tree: str, after: str) -> None:
    resp = alice.get(f"/v1/directories{tree}", params={"after": after})
    assert_error(resp, 400, "INVALID_PATH")


def test_listing_a_file_is_not_a_directory(alice: httpx.Client, tree: str) -> None:
    assert_error(alice.get(f"/v1/directories{tree}/b.txt"), 400, "NOT_A_DIRECTORY")
    assert_error(
        alice.get(f"/v1/directories{tree}/b.txt/", params={"recursive": "true"}),
        400,
        "NOT_A_DIRECTORY",
    )


def test_listing_missing_is_404(alice: httpx.Client, tree: str, unique: str) -> None:
    assert_error(alice.get(f"/v1/directories{tree}/nope"), 404, "FILE_NOT_FOUND")
    assert_error(alice.get(f"/v1/directories/{unique}-missing/a/b"), 404, "FILE_NOT_FOUND")
    head = alice.head(f"/v1/directories{tree}/nope")
    assert head.status_code == 404
    assert head.content == b""


def test_query_checked_before_existence(alice: httpx.Client, unique: str) -> None:
    # Order: path -> query (400) -> ... -> missing (404)
    assert_error(
        alice.get(f"/v1/directories/{unique}/nope", params={"limit": "0"}), 400, "BAD_REQUEST"
    )


def test_head_listing(alice: httpx.Client, tree: str) -> None:
    resp = alice.head(f"/v1/directories{tree}")
    assert resp.status_code == 200
    assert resp.content == b""
    assert resp.headers["x-callfs-type"] == "directory"
    assert resp.headers["x-callfs-count"] == str(len(TOP))
    assert resp.headers["x-callfs-recursive"] == "false"


def test_unreadable_subdirectories_not_descended(
    alice: httpx.Client, bob: httpx.Client, unique: str
) -> None:
    base = f"{unique}/shared"
    put(alice, f"{base}/top.txt")
    mkdir(alice, f"{base}/private", mode="0700")
    put(alice, f"{base}/private/secret.txt")
    mkdir(alice, f"{base}/noread", mode="0711")  # x but no r
    put(alice, f"{base}/noread/hidden.txt")
    mkdir(alice, f"{base}/nosearch", mode="0744")  # r but no x
    put(alice, f"{base}/nosearch/hidden.txt")
    put(alice, f"{base}/public/p.txt")
    put(alice, f"{base}/public/inner/q.txt")

    body = listing(bob, base, recursive="true")
    assert paths(body) == [
        f"/{base}/top.txt",
        f"/{base}/noread",
        f"/{base}/nosearch",
        f"/{base}/private",
        f"/{base}/public",
        f"/{base}/public/p.txt",
        f"/{base}/public/inner",
        f"/{base}/public/inner/q.txt",
    ]
    # paging bob's view reproduces it
    pages = walk_pages(bob, base, 2, recursive="true")
    assert [p for page in pages for p in page] == paths(body)
    # the owner sees everything
    everything = paths(listing(alice, base, recursive="true"))
    for hidden in ("private/secret.txt", "noread/hidden.txt", "nosearch/hidden.txt"):
        assert f"/{base}/{hidden}" in everything
    # listing the private directory directly is denied
    assert_error(bob.get(f"/v1/directories/{base}/private"), 403, "PERMISSION_DENIED")
    assert_error(bob.get(f"/v1/directories/{base}/noread"), 403, "PERMISSION_DENIED")
