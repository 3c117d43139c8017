"""Path safety and canonicalisation on the real server (api.md §1.2, §1.3).

httpx removes dot segments from URLs, so every request whose spelling matters is sent
with ``http.client`` exactly as written here.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from conftest import STACK
from helpers import Raw, RawClient, assert_error

# This module sends hundreds of raw requests: unlike helpers.raw_request (a connection per
# request), its raw_request keeps one connection per server alive, closed after each test.
_clients: dict[int, RawClient] = {}


def raw_request(server: Any, method: str, path: str, **options: Any) -> Raw:
    """Send ``path`` byte-for-byte as the request target, on this server's kept-alive
    connection; ``options``: those of :meth:`helpers.RawClient.request`."""
    client = _clients.get(id(server))
    if client is None or client.server is not server:
        client = _clients[id(server)] = RawClient(server)
    return client.request(method, path, **options)


def close_raw_clients() -> None:
    for client in _clients.values():
        client.close()
    _clients.clear()


@pytest.fixture(autouse=True)
def _close_raw_clients() -> Iterator[None]:
    yield
    close_raw_clients()


def assert_invalid(resp: Raw | httpx.Response, what: object = "") -> None:
    if isinstance(resp, Raw) and not resp.content:  # HEAD
        assert resp.status == 400, (what, resp.status)
        return
    assert_error(resp, 400, "INVALID_PATH", what)


# --------------------------------------------------------------------------- invalid paths

LONG_PATH = "/".join(["p" * 200] * 21)  # 4220 bytes
INVALID = [
    "..",
    "../",
    "../x",
    "a/../..",
    "dir/../../../etc/passwd",
    "./..",
    "a/./../..",
    "x/../../y/z",
    "a%5Cb",
    "%5C",
    "a%00b",
    "a%01b",
    "a%0Ab",
    "a%0Db",
    "a%1Bb",
    "a%1Fb",
    "a%E2%80%AAb",
    "a%E2%80%ACb",
    "a%E2%80%AEb",
    "a%E2%81%A6b",
    "a%E2%81%A9b",
    "a%FF",
    "a%C3%28",
    "%C0%AE%C0%AE",
    "%ED%A0%80",  # an encoded surrogate is not UTF-8
    "%2e%2e",
    "%2E%2E/x",
    "a/%2e%2e/%2e%2e",
    "..%2Fx",
    "a%2F..%2F..",
    "a" * 256,
    quote("é" * 128),  # 256 bytes in UTF-8
    f"ok/{'b' * 256}/c",
    LONG_PATH,
]
INVALID_IDS = [p if len(p) < 40 else f"long-{len(p)}" for p in INVALID]


@pytest.mark.parametrize("spelling", INVALID, ids=INVALID_IDS)
def test_invalid_path_rejected_everywhere(
    server: Any, alice: httpx.Client, unique: str, spelling: str
) -> None:
    requests = [
        ("GET", f"/v1/files/{spelling}", None),
        ("HEAD", f"/v1/files/{spelling}", None),
        ("PUT", f"/v1/files/{spelling}", b"pwned"),
        ("POST", f"/v1/files/{spelling}", b"pwned"),
        ("POST", f"/v1/files/{spelling}/", None),
        ("DELETE", f"/v1/files/{spelling}", None),
        ("DELETE", f"/v1/files/{spelling}?recursive=true", None),
        ("GET", f"/v1/directories/{spelling}", None),
        ("GET", f"/v1/directories/{spelling}?recursive=true", None),
        ("HEAD", f"/v1/directories/{spelling}", None),
    ]
    if ".." not in spelling and "%2e" not in spelling.lower():
        # climbing spellings may be valid below a directory; the others never are
        requests += [
            ("GET", f"/v1/files/{unique}/{spelling}", None),
            ("PUT", f"/v1/files/{unique}/{spelling}", b"pwned"),
            ("DELETE", f"/v1/files/{unique}/{spelling}", None),
            ("GET", f"/v1/directories/{unique}/{spelling}", None),
        ]
    mkdir = alice.post(f"/v1/files/{unique}/")
    assert mkdir.status_code == 201
    for method, path, body in requests:
        resp = raw_request(server, method, path, body=body)
        if method == "HEAD":
            assert resp.status == 400, (method, path, resp.status)
            assert resp.content == b""
        else:
            assert_invalid(resp, (method, path))
    assert alice.get(f"/v1/files/{unique}").json() == []


def test_climb_below_a_directory(server: Any, alice: httpx.Client, unique: str) -> None:
    # "a/../.." is invalid on its own, but "u/a/../.." is "/" (a directory request)
    resp = raw_request(server, "GET", f"/v1/files/{unique}/a/../..")
    assert resp.status == 200
    assert resp.headers["x-callfs-type"] == "directory"
    assert resp.headers["x-callfs-owner"] == "root"
    assert_invalid(raw_request(server, "GET", f"/v1/files/{unique}/../.."))
    assert_invalid(raw_request(server, "GET", f"/v1/files/{unique}/%2e%2e/%2e%2e/x"))


def test_invalid_path_needs_authentication_first(server: Any) -> None:
    resp = raw_request(server, "GET", "/v1/files/../secret.txt", user=None)
    assert resp.status == 401
    assert json.loads(resp.content)["code"] == "AUTHENTICATION_FAILED"


def test_segment_and_path_length_limits(server: Any, alice: httpx.Client, unique: str) -> None:
    ok_ascii = "a" * 255
    ok_utf8 = "é" * 127 + "a"  # 255 bytes
    for name in (ok_ascii, ok_utf8):
        resp = alice.put(f"/v1/files/{unique}/{name}", content=b"long")
        assert resp.status_code == 201, resp.text
        assert alice.get(f"/v1/files/{unique}/{name}").content == b"long"
    names = sorted(i["name"] for i in alice.get(f"/v1/files/{unique}").json())
    assert names == sorted([ok_ascii, ok_utf8])
    assert_invalid(alice.put(f"/v1/files/{unique}/{'a' * 256}", content=b"x"))
    assert_invalid(alice.put(f"/v1/files/{unique}/{'é' * 127}ab", content=b"x"))

    # canonical path of exactly 4096 bytes is valid (missing: 404), 4097 is not
    prefix = f"/{unique}/"
    count = (4096 - len(prefix)) // 201
    rest = 4096 - len(prefix) - 201 * count
    if rest == 0:
        count, rest = count - 1, 201
    path = prefix + ("c" * 200 + "/") * count + "c" * rest
    assert len(path.encode()) == 4096
    assert_error(alice.get(f"/v1/files{path}"), 404, "FILE_NOT_FOUND")
    assert_error(alice.get(f"/v1/directories{path}"), 404, "FILE_NOT_FOUND")
    assert_invalid(alice.get(f"/v1/files{path}d"))
    assert_invalid(alice.get(f"/v1/directories{path}d"))
    # the limit applies to the canonical path, not the raw one
    padded = f"/v1/files/{unique}/" + "./" * 2500 + "x"
    assert_error(raw_request(server, "GET", padded), 404, "FILE_NOT_FOUND")
    padded = f"/v1/files/{unique}/" + "/" * 4200 + "x"
    assert_error(raw_request(server, "GET", padded), 404, "FILE_NOT_FOUND")


# --------------------------------------------------------------------------- canonicalisation


@pytest.mark.parametrize(
    ("spelling", "canonical"),
    [
        ("dir/../secret.txt", "secret.txt"),
        ("./secret.txt", "secret.txt"),
        ("a/b/../../secret.txt", "secret.txt"),
        ("a/./b", "a/b"),
        ("a//b", "a/b"),
        ("a/b/.", "a/b"),
        ("a///b////c", "a/b/c"),
        ("x/%2e%2e/y.txt", "y.txt"),
        ("x/%2E/y.txt", "x/y.txt"),
        ("enc%2Fsub%2Ff.txt", "enc/sub/f.txt"),
        ("%252e", "%2e"),
        ("%252e%252e", "%2e%2e"),
        ("a%252Fb", "a%2Fb"),
        ("file+plus.txt", "file+plus.txt"),
        ("file%20with%20spaces.txt", "file with spaces.txt"),
        ("tab%09name", "tab\tname"),
        ("caf%C3%A9", "café"),
        ("a%EF%BC%8Fb", "a\uff0fb"),
    ],
)
def test_file_spellings_are_canonicalised(
    server: Any, alice: httpx.Client, unique: str, spelling: str, canonical: str
) -> None:
    data = f"via {spelling}".encode()
    resp = raw_request(server, "PUT", f"/v1/files/{unique}/{spelling}", body=data)
    assert resp.status == 201, resp.content
    got = alice.get(f"/v1/files/{unique}/{quote(canonical)}")
    assert got.status_code == 200, got.text
    assert got.content == data
    # same file through the spelling again, and through the listing
    again = raw_request(server, "GET", f"/v1/files/{unique}/{spelling}")
    assert again.status == 200
    assert again.content == data
    parent, _, name = f"/{unique}/{canonical}".rpartition("/")
    items = alice.get(f"/v1/directories{quote(parent)}").json()["items"]
    assert [(i["name"], i["path"]) for i in items] == [(name, f"/{unique}/{canonical}")]
    assert server.storage.read(f"{unique}/{canonical}") == data
    # a second spelling for the same path is the same file
    assert_error(
        raw_request(server, "POST", f"/v1/files/{unique}/{spelling}", body=b"x"),
        409,
        "FILE_ALREADY_EXISTS",
    )
    assert raw_request(server, "DELETE", f"/v1/files/{unique}/{spelling}").status == 204
    assert_error(alice.get(f"/v1/files/{unique}/{quote(canonical)}"), 404, "FILE_NOT_FOUND")


@pytest.mark.parametrize(
    ("spelling", "canonical"),
    [
        ("a/./b/", "a/b"),
        ("dir/../other/", "other"),
        ("x//y///", "x/y"),
        ("n/./", "n"),
    ],
)
def test_directory_spellings_are_canonicalised(
    server: Any, alice: httpx.Client, unique: str, spelling: str, canonical: str
) -> None:
    resp = raw_request(server, "POST", f"/v1/files/{unique}/{spelling}", body=b"")
    assert resp.status == 201, resp.content
    head = alice.head(f"/v1/files/{unique}/{canonical}")
    assert head.status_code == 200
    assert head.headers["x-callfs-type"] == "directory"
    assert server.storage.holds_directory(f"{unique}/{canonical}")
    listing = raw_request(server, "GET", f"/v1/directories/{unique}/{spelling}")
    assert listing.status == 200
    assert listing.json()["path"] == f"/{unique}/{canonical}"
    assert raw_request(server, "POST", f"/v1/files/{unique}/{spelling}").status == 200
    # PUT to a directory URL is refused whatever the spelling
    assert_error(
        raw_request(server, "PUT", f"/v1/files/{unique}/{spelling}", body=b"x"), 400, "BAD_REQUEST"
    )


@pytest.mark.parametrize("spelling", ["", "/", ".", "./", "a/..", "a/../", "//"])
def test_root_spellings(server: Any, spelling: str) -> None:
    resp = raw_request(server, "GET", f"/v1/directories/{spelling}")
    assert resp.status == 200, resp.content
    assert resp.json()["path"] == "/"
    head = raw_request(server, "HEAD", f"/v1/files/{spelling}")
    assert head.status == 200
    assert head.headers["x-callfs-owner"] == "root"
    assert head.headers["x-callfs-mode"] == "1777"
    assert_error(raw_request(server, "PUT", f"/v1/files/{spelling}", body=b"x"), 400, "BAD_REQUEST")


@pytest.mark.parametrize(
    "name",
    [
        "...",
        ".hidden",
        "trailing-dots...",
        "file with spaces.txt",
        "archive.tar.gz",
        "file+plus.txt",
        "a@b",
        "a\uff0fb",
        "..a",
        "a..",
        ". x",
        "%",
        "100%25",
        "~user",
        "semi;colon",
        "q?mark",
        "hash#tag",
        "ünïcödé",
        "\U0001f600.txt",
        "tab\tname",
    ],
)
def test_literal_names(server: Any, alice: httpx.Client, unique: str, name: str) -> None:
    encoded = quote(name, safe="")
    data = name.encode()
    resp = raw_request(server, "PUT", f"/v1/files/{unique}/{encoded}", body=data)
    assert resp.status == 201, resp.content
    got = raw_request(server, "GET", f"/v1/files/{unique}/{encoded}")
    assert got.status == 200
    assert got.content == data
    items = alice.get(f"/v1/directories/{unique}").json()["items"]
    assert [(i["name"], i["path"]) for i in items] == [(name, f"/{unique}/{name}")]
    assert server.storage.read(f"{unique}/{name}") == data
    assert raw_request(server, "DELETE", f"/v1/files/{unique}/{encoded}").status == 204
    assert server.storage.absent(f"{unique}/{name}")


def test_paths_are_case_sensitive(alice: httpx.Client, unique: str) -> None:
    assert alice.put(f"/v1/files/{unique}/File.txt", content=b"upper").status_code == 201
    assert alice.put(f"/v1/files/{unique}/file.txt", content=b"lower").status_code == 201
    assert alice.get(f"/v1/files/{unique}/File.txt").content == b"upper"
    assert alice.get(f"/v1/files/{unique}/file.txt").content == b"lower"
    assert_error(alice.get(f"/v1/files/{unique}/FILE.txt"), 404, "FILE_NOT_FOUND")


# --------------------------------------------------------------------------- escaping the root

SECRET = b"top secret: must never be served, replaced or deleted\n"


def snapshot(folder: Path, files_root: Path) -> dict[str, str]:
    """Every entry under ``folder`` outside the localfs root, with a digest for files.

    SQLite side files, the server log and the state the workers of a multi-worker
    server share (``data/run``: metrics, rate limits, the lock file) change on
    their own and are left out."""
    result: dict[str, str] = {}
    shared_state = folder / "data" / "run"
    for entry in sorted(folder.rglob("*")):
        if entry == files_root or files_root in entry.parents:
            continue
        if entry == shared_state or shared_state in entry.parents:
            continue
        name = entry.name
        if name == "server.log" or ".sqlite" in name or name.endswith(("-wal", "-shm", "-journal")):
            continue
        rel = str(entry.relative_to(folder))
        if entry.is_dir():
            result[rel] = "dir"
        else:
            result[rel] = hashlib.sha256(entry.read_bytes()).hexdigest()
    return result


# (spelling after /v1/files/, canonical path inside the root or None for INVALID_PATH)
ESCAPES: list[tuple[str, str | None]] = [
    ("../secret.txt", None),
    ("../../secret.txt", None),
    ("../files/../secret.txt", None),
    ("..%2Fsecret.txt", None),
    ("..%2fsecret.txt", None),
    ("%2e%2e/secret.txt", None),
    ("%2E%2E%2Fsecret.txt", None),
    ("%2e%2e%2f%2e%2e%2fsecret.txt", None),
    (".%2e/secret.txt", None),
    ("%2e./secret.txt", None),
    ("a/../../secret.txt", None),
    ("a/b/../../../secret.txt", None),
    ("a%2F..%2F..%2Fsecret.txt", None),
    ("./../secret.txt", None),
    (".././secret.txt", None),
    ("..//secret.txt", None),
    ("/../secret.txt", None),
    ("//../../secret.txt", None),
    ("..%5Csecret.txt", None),
    ("%5C..%5Csecret.txt", None),
    ("..%5C..%5Csecret.txt", None),
    ("..%00/secret.txt", None),
    ("secret.txt%00/../../secret.txt", None),
    ("%C0%AE%C0%AE/secret.txt", None),
    ("%E0%80%AE%E0%80%AE/secret.txt", None),
    ("..%E2%80%AE/secret.txt", None),
    # spellings that stay inside the root
    ("%252e%252e/secret.txt", "/%2e%2e/secret.txt"),
    ("%252e%252e%252fsecret.txt", "/%2e%2e%2fsecret.txt"),
    ("....//secret.txt", "/..../secret.txt"),
    ("...%2Fsecret.txt", "/.../secret.txt"),
    ("..%E2%88%95secret.txt", "/..\u2215secret.txt"),
    ("..%EF%BC%8Fsecret.txt", "/..\uff0fsecret.txt"),
    ("..;/secret.txt", "/..;/secret.txt"),
    ("a/../secret.txt", "/secret.txt"),
]


@pytest.fixture
def planted(make_server: Any) -> Iterator[tuple[Any, list[Path]]]:
    srv = make_server()
    outside = [
        srv.files_root.parent / "secret.txt",
        srv.data_dir.parent / "secret.txt",
        srv.files_root.parent / "files2" / "secret.txt",
    ]
    for path in outside:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(SECRET)
    yield srv, outside
    close_raw_clients()  # before the server stops: it waits for open connections


def assert_untouched(srv: Any, outside: list[Path], before: dict[str, str]) -> None:
    for path in outside:
        assert path.read_bytes() == SECRET, path
    assert snapshot(srv.folder, srv.files_root) == before
    if STACK == "embedded":
        assert (srv.data_dir / "callfs.sqlite3").exists()


def test_cannot_escape_the_root_via_url(planted: tuple[Any, list[Path]]) -> None:
    srv, outside = planted
    abs_secret = str(outside[0])
    escapes = [
        *ESCAPES,
        # absolute on-disk locations are just names inside the root
        ("/" + quote(abs_secret.lstrip("/")), abs_secret),
        (quote(abs_secret, safe=""), abs_secret),
        ("%2F" + quote(abs_secret.lstrip("/")), abs_secret),
    ]
    assert len(escapes) >= 15
    before = snapshot(srv.folder, srv.files_root)
    with srv.client("boss") as boss:
        for user in ("alice", "boss"):  # admins pass permissions, never path validation
            for spelling, canonical in escapes:
                url = f"/v1/files/{spelling}"
                what = (user, spelling)
                reads = [
                    raw_request(srv, "GET", url, user=user),
                    raw_request(srv, "GET", f"/v1/directories/{spelling}", user=user),
                    raw_request(srv, "DELETE", url, user=user),
                    raw_request(srv, "DELETE", url + "?recursive=true", user=user),
                ]
                head = raw_request(srv, "HEAD", url, user=user)
                if canonical is None:
                    for resp in reads:
                        assert_invalid(resp, what)
                    assert head.status == 400, what
                    for method in ("PUT", "POST"):
                        assert_invalid(
                            raw_request(srv, method, url, user=user, body=b"pwned"), (method, *what)
                        )
                    assert_invalid(raw_request(srv, "POST", url + "/", user=user), what)
                    continue
                for resp in reads:
                    assert_error(resp, 404, "FILE_NOT_FOUND", what)
                assert head.status == 404, what
                # writes land inside the root, at the canonical path
                put = raw_request(srv, "PUT", url, user=user, body=b"pwned")
                assert put.status == 201, (what, put.content)
                stored = canonical.lstrip("/")
                assert srv.storage.read(stored) == b"pwned", what
                got = boss.get(f"/v1/files{quote(canonical)}")
                assert got.content == b"pwned", what
                assert raw_request(srv, "GET", url, user=user).content == b"pwned"
                assert_error(
                    raw_request(srv, "POST", url, user=user, body=b"again"),
                    409,
                    "FILE_ALREADY_EXISTS",
                    what,
                )
                assert raw_request(srv, "DELETE", url, user=user).status == 204, what
                assert srv.storage.absent(stored)
                top = canonical.split("/")[1]
                if top != canonical.lstrip("/"):
                    resp = boss.delete(f"/v1/files/{quote(top)}", params={"recursive": "true"})
                    assert resp.status_code == 204
                assert_untouched(srv, outside, before)
        assert_untouched(srv, outside, before)
        # the root contains nothing after the clean-up
        assert boss.get("/v1/files/").json() == []
    assert srv.storage.children("") == []


def test_cannot_escape_the_root_via_body_paths(planted: tuple[Any, list[Path]]) -> None:
    srv, outside = planted
    before = snapshot(srv.folder, srv.files_root)
    invalid = [
        "../secret.txt",
        "../../secret.txt",
        "/../secret.txt",
        "a/../../secret.txt",
        "..",
        "../",
        "./../secret.txt",
        "../files/../secret.txt",
        "..\\secret.txt",
        "\\..\\secret.txt",
        "secret.txt\x00",
        "..\x00/secret.txt",
        "..\u202e/secret.txt",
        "x/../../../etc/passwd",
        "//../secret.txt",
        "a/b/../../../secret.txt",
    ]
    inside = [
        "%2e%2e/secret.txt",
        "..%2Fsecret.txt",
        "%2E%2E%2Fsecret.txt",
        "....//secret.txt",
        "secret.txt",
        "/secret.txt",
        str(outside[0]),
        "files2/secret.txt",
        "..\u2215secret.txt",
    ]
    with srv.client("alice") as alice, srv.client("boss") as boss:
        for client in (alice, boss):
            for path in invalid:
                resp = client.post("/v1/links/generate", json={"path": path, "expiry_seconds": 60})
                assert_error(resp, 400, "INVALID_PATH", path)
            for path in inside:
                resp = client.post("/v1/links/generate", json={"path": path, "expiry_seconds": 60})
                assert_error(resp, 404, "FILE_NOT_FOUND", path)
            # cursors are body-style paths too
            assert alice.post("/v1/files/d/").status_code in (200, 201)
            for after in invalid:
                resp = client.get("/v1/directories/d", params={"after": after})
                assert_error(resp, 400, "INVALID_PATH", after)
        # a body path is canonicalised, and the link serves the file inside the root
        assert alice.put("/v1/files/d/real.txt", content=b"inside").status_code == 201
        resp = alice.post(
            "/v1/links/generate", json={"path": "x/../d/./real.txt", "expiry_seconds": 60}
        )
        assert resp.status_code == 201, resp.text
        token = resp.json()["token"]
    with httpx.Client(base_url=srv.base_url, verify=False) as anon:
        download = anon.get(f"/download/{token}")
        assert download.status_code == 200
        assert download.content == b"inside"
    assert_untouched(srv, outside, before)
