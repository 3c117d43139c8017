"""Unix permissions with several API keys (api.md §1.4, §3)."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from helpers import assert_error, mkdir, put, raw_request

AUTH_BODY = b'{"code":"AUTHENTICATION_FAILED","message":"authentication failed"}'


def assert_denied(resp: httpx.Response) -> None:
    assert_error(resp, 403, "PERMISSION_DENIED")
    assert resp.json()["message"].startswith("permission denied"), resp.json()


def attrs(client: httpx.Client, path: str) -> httpx.Headers:
    resp = client.head(f"/v1/files/{path}")
    assert resp.status_code == 200, path
    return resp.headers


# --------------------------------------------------------------------------- other users


def test_bob_reads_but_cannot_overwrite_or_delete(
    alice: httpx.Client, bob: httpx.Client, server: Any, unique: str
) -> None:
    put(alice, f"{unique}/f.txt", b"alice's")
    got = bob.get(f"/v1/files/{unique}/f.txt")
    assert got.status_code == 200
    assert got.content == b"alice's"
    assert bob.head(f"/v1/files/{unique}/f.txt").status_code == 200

    assert_denied(bob.put(f"/v1/files/{unique}/f.txt", content=b"bob's"))
    assert_denied(bob.put(f"/v1/files/{unique}/f.txt", content=b"bob's", headers={"If-Match": "*"}))
    assert_denied(bob.delete(f"/v1/files/{unique}/f.txt"))
    assert_denied(bob.delete(f"/v1/files/{unique}", params={"recursive": "true"}))
    assert alice.get(f"/v1/files/{unique}/f.txt").content == b"alice's"
    assert server.storage.read(f"{unique}/f.txt") == b"alice's"


def test_bob_cannot_create_in_alice_directory(
    alice: httpx.Client, bob: httpx.Client, unique: str
) -> None:
    mkdir(alice, f"{unique}/d")
    assert attrs(alice, f"{unique}/d")["x-callfs-mode"] == "0755"
    assert_denied(bob.post(f"/v1/files/{unique}/d/new.txt", content=b"b"))
    assert_denied(bob.put(f"/v1/files/{unique}/d/new.txt", content=b"b"))
    assert_denied(bob.post(f"/v1/files/{unique}/d/sub/"))
    assert_denied(bob.post(f"/v1/files/{unique}/d/a/b/c.txt", content=b"b"))  # deepest ancestor
    assert alice.get(f"/v1/files/{unique}/d").json() == []


def test_bob_can_create_at_top_level(bob: httpx.Client, unique: str) -> None:
    resp = bob.post(f"/v1/files/{unique}-bob/x.txt", content=b"bob")
    assert resp.status_code == 201
    h = attrs(bob, f"{unique}-bob/x.txt")
    assert (h["x-callfs-owner"], h["x-callfs-group"], h["x-callfs-mode"]) == ("bob", "bob", "0644")
    h = attrs(bob, f"{unique}-bob")
    assert (h["x-callfs-owner"], h["x-callfs-group"], h["x-callfs-mode"]) == ("bob", "bob", "0755")
    assert bob.put(f"/v1/files/{unique}-top.txt", content=b"t").status_code == 201
    assert bob.delete(f"/v1/files/{unique}-top.txt").status_code == 204


def test_sticky_root_protects_top_level_entries(
    alice: httpx.Client, bob: httpx.Client, unique: str
) -> None:
    put(alice, f"{unique}-file.txt", b"mine", headers={"X-CallFS-Mode": "0666"})
    mkdir(alice, f"{unique}-emptydir", mode="0777")
    assert_denied(bob.delete(f"/v1/files/{unique}-file.txt"))
    assert_denied(bob.delete(f"/v1/files/{unique}-emptydir"))
    assert_denied(bob.delete(f"/v1/files/{unique}-emptydir", params={"recursive": "true"}))
    # 0666: bob may replace the content (w on the file), just not delete it
    assert bob.put(f"/v1/files/{unique}-file.txt", content=b"bob").status_code == 200
    assert alice.head(f"/v1/files/{unique}-file.txt").headers["x-callfs-owner"] == "alice"
    assert alice.delete(f"/v1/files/{unique}-file.txt").status_code == 204
    assert alice.delete(f"/v1/files/{unique}-emptydir").status_code == 204


def test_sticky_directory(alice: httpx.Client, bob: httpx.Client, server: Any, unique: str) -> None:
    mkdir(alice, unique, mode="1777")
    put(bob, f"{unique}/bobs.txt", b"b", headers={"X-CallFS-Mode": "0666"})
    with server.client("carol") as carol:
        put(carol, f"{unique}/carols.txt", b"c")
        assert_denied(carol.delete(f"/v1/files/{unique}/bobs.txt"))
        assert_denied(bob.delete(f"/v1/files/{unique}/carols.txt"))
        assert carol.delete(f"/v1/files/{unique}/carols.txt").status_code == 204
    # the directory's owner may delete any entry
    assert alice.delete(f"/v1/files/{unique}/bobs.txt").status_code == 204


def test_write_on_parent_allows_deleting_others_files(
    alice: httpx.Client, bob: httpx.Client, unique: str
) -> None:
    mkdir(alice, unique, mode="0777")  # not sticky
    put(alice, f"{unique}/a.txt", b"a", headers={"X-CallFS-Mode": "0600"})
    assert_denied(bob.get(f"/v1/files/{unique}/a.txt"))
    assert bob.delete(f"/v1/files/{unique}/a.txt").status_code == 204
    assert alice.get(f"/v1/files/{unique}/a.txt").status_code == 404


def test_missing_child_of_private_directory_is_403(
    alice: httpx.Client, bob: httpx.Client, unique: str
) -> None:
    mkdir(alice, unique)
    mkdir(alice, f"{unique}/priv", mode="0700")
    put(alice, f"{unique}/priv/real.txt", b"r")
    for name in ("missing.txt", "real.txt", "missing/deeper.txt"):
        url = f"/v1/files/{unique}/priv/{name}"
        assert_denied(bob.get(url))
        head = bob.head(url)
        assert head.status_code == 403
        assert head.content == b""
        assert_denied(bob.put(url, content=b"x"))
        assert_denied(bob.post(url, content=b"x"))
        assert_denied(bob.delete(url))
        assert_denied(bob.get(f"/v1/directories/{unique}/priv/{name}"))
    assert_denied(bob.get(f"/v1/files/{unique}/priv"))
    assert_denied(bob.get(f"/v1/directories/{unique}/priv"))
    # for alice the missing child is just missing
    assert_error(alice.get(f"/v1/files/{unique}/priv/missing.txt"), 404, "FILE_NOT_FOUND")
    assert [i["name"] for i in alice.get(f"/v1/files/{unique}/priv").json()] == ["real.txt"]


def test_readable_but_not_searchable_directory(
    alice: httpx.Client, bob: httpx.Client, unique: str
) -> None:
    mkdir(alice, unique)
    mkdir(alice, f"{unique}/rd", mode="0744")  # others: r, no x
    put(alice, f"{unique}/rd/f.txt", b"f")
    listing = bob.get(f"/v1/files/{unique}/rd")
    assert listing.status_code == 200
    assert [i["name"] for i in listing.json()] == ["f.txt"]
    assert_denied(bob.get(f"/v1/files/{unique}/rd/f.txt"))


def test_owner_class_only(alice: httpx.Client, bob: httpx.Client, unique: str) -> None:
    # Only the caller's class counts: the owner without r cannot read even if others can.
    put(alice, f"{unique}/f.txt", b"f", headers={"X-CallFS-Mode": "0044"})
    assert_denied(alice.get(f"/v1/files/{unique}/f.txt"))
    assert bob.get(f"/v1/files/{unique}/f.txt").content == b"f"
    put(alice, f"{unique}/ro.txt", b"ro", headers={"X-CallFS-Mode": "0444"})
    assert_denied(alice.put(f"/v1/files/{unique}/ro.txt", content=b"changed"))
    assert alice.get(f"/v1/files/{unique}/ro.txt").content == b"ro"
    # deleting needs w on the parent, not on the file
    assert alice.delete(f"/v1/files/{unique}/ro.txt").status_code == 204


def test_permission_checked_before_existence_conflict(
    alice: httpx.Client, bob: httpx.Client, unique: str
) -> None:
    put(alice, f"{unique}/d/f.txt", b"f")
    # POST of an existing file: the 409 table comes before the permission check
    assert_error(bob.post(f"/v1/files/{unique}/d/f.txt", content=b"x"), 409, "FILE_ALREADY_EXISTS")
    # PUT onto a directory: IS_A_DIRECTORY comes before the permission check
    assert_error(bob.put(f"/v1/files/{unique}/d", content=b"x"), 400, "IS_A_DIRECTORY")
    # existence before permission on delete
    assert_error(bob.delete(f"/v1/files/{unique}/d/missing"), 404, "FILE_NOT_FOUND")


# --------------------------------------------------------------------------- groups


def test_group_class(make_server: Any) -> None:
    srv = make_server({"auth": {"groups": {"alice": ["carol"]}}})
    with srv.client("alice") as alice, srv.client("bob") as bob, srv.client("carol") as carol:
        put(alice, "g/group-read.txt", b"g", headers={"X-CallFS-Mode": "0640"})
        assert attrs(alice, "g/group-read.txt")["x-callfs-group"] == "alice"
        assert carol.get("/v1/files/g/group-read.txt").content == b"g"
        assert_denied(bob.get("/v1/files/g/group-read.txt"))
        assert_denied(carol.put("/v1/files/g/group-read.txt", content=b"c"))

        # group class without r: denied for carol although "other" may read
        put(alice, "g/others-only.txt", b"o", headers={"X-CallFS-Mode": "0604"})
        assert_denied(carol.get("/v1/files/g/others-only.txt"))
        assert bob.get("/v1/files/g/others-only.txt").content == b"o"

        put(alice, "g/group-write.txt", b"w", headers={"X-CallFS-Mode": "0660"})
        assert carol.put("/v1/files/g/group-write.txt", content=b"carol").status_code == 200
        assert_denied(bob.put("/v1/files/g/group-write.txt", content=b"bob"))
        h = attrs(alice, "g/group-write.txt")
        assert (h["x-callfs-owner"], h["x-callfs-group"], h["x-callfs-mode"]) == (
            "alice",
            "alice",
            "0660",
        )

        mkdir(alice, "g/team", mode="0770")
        assert carol.put("/v1/files/g/team/c.txt", content=b"c").status_code == 201
        assert_denied(bob.put("/v1/files/g/team/b.txt", content=b"b"))
        assert_denied(bob.get("/v1/files/g/team"))
        h = attrs(carol, "g/team/c.txt")
        assert (h["x-callfs-owner"], h["x-callfs-group"]) == ("carol", "carol")
        assert carol.delete("/v1/files/g/team/c.txt").status_code == 204


def test_setgid_directory_group_inheritance(make_server: Any) -> None:
    srv = make_server({"auth": {"groups": {"alice": ["carol"]}}})
    with srv.client("alice") as alice, srv.client("carol") as carol, srv.client("bob") as bob:
        mkdir(alice, "proj", mode="2770")
        assert attrs(alice, "proj")["x-callfs-mode"] == "2770"
        assert carol.put("/v1/files/proj/c.txt", content=b"c").status_code == 201
        h = attrs(carol, "proj/c.txt")
        assert (h["x-callfs-owner"], h["x-callfs-group"], h["x-callfs-mode"]) == (
            "carol",
            "alice",
            "0644",
        )
        assert carol.post("/v1/files/proj/sub/").status_code == 201
        h = attrs(carol, "proj/sub")
        assert (h["x-callfs-owner"], h["x-callfs-group"], h["x-callfs-mode"]) == (
            "carol",
            "alice",
            "2755",
        )
        # auto-created parents inherit setgid and group too
        assert carol.put("/v1/files/proj/auto/deep/f.txt", content=b"f").status_code == 201
        for path in ("proj/auto", "proj/auto/deep"):
            h = attrs(carol, path)
            assert (h["x-callfs-group"], h["x-callfs-mode"]) == ("alice", "2755"), path
        assert attrs(carol, "proj/auto/deep/f.txt")["x-callfs-group"] == "alice"
        assert_denied(bob.get("/v1/files/proj/c.txt"))
        # alice (group member by name) reads carol's file through the group class
        assert alice.get("/v1/files/proj/c.txt").content == b"c"


# --------------------------------------------------------------------------- admins


def test_admin_overrides_everything(
    alice: httpx.Client, boss: httpx.Client, server: Any, unique: str
) -> None:
    mkdir(alice, f"{unique}-adm", mode="0700")
    put(alice, f"{unique}-adm/secret.txt", b"s", headers={"X-CallFS-Mode": "0000"})
    assert boss.get(f"/v1/files/{unique}-adm/secret.txt").content == b"s"
    assert [i["name"] for i in boss.get(f"/v1/files/{unique}-adm").json()] == ["secret.txt"]
    assert boss.put(f"/v1/files/{unique}-adm/secret.txt", content=b"boss").status_code == 200
    h = attrs(boss, f"{unique}-adm/secret.txt")
    assert (h["x-callfs-owner"], h["x-callfs-mode"]) == ("alice", "0000")
    assert boss.put(f"/v1/files/{unique}-adm/new.txt", content=b"n").status_code == 201
    assert attrs(boss, f"{unique}-adm/new.txt")["x-callfs-owner"] == "boss"
    mkdir(alice, f"{unique}-adm2/locked", mode="0500")
    put(boss, f"{unique}-adm2/locked/f.txt", b"f")
    assert boss.delete(f"/v1/files/{unique}-adm/secret.txt").status_code == 204
    # sticky root: the admin may delete alice's top-level entries, recursively
    assert boss.delete(f"/v1/files/{unique}-adm", params={"recursive": "true"}).status_code == 204
    assert boss.delete(f"/v1/files/{unique}-adm2", params={"recursive": "true"}).status_code == 204
    assert alice.get(f"/v1/files/{unique}-adm").status_code == 404
    assert server.storage.absent(f"{unique}-adm")
    assert server.storage.absent(f"{unique}-adm2")


def test_internal_proxy_secret_is_admin(server: Any, alice: httpx.Client, unique: str) -> None:
    put(alice, f"{unique}/f.txt", b"s", headers={"X-CallFS-Mode": "0600"})
    secret = server.config["auth"]["internal_proxy_secret"]
    with httpx.Client(
        base_url=server.base_url, verify=False, headers={"Authorization": f"Bearer {secret}"}
    ) as proxy:
        assert proxy.get(f"/v1/files/{unique}/f.txt").content == b"s"
        assert proxy.put(f"/v1/files/{unique}/p.txt", content=b"p").status_code == 201
        assert attrs(proxy, f"{unique}/p.txt")["x-callfs-owner"] == "internal-proxy"


# --------------------------------------------------------------------------- recursive delete


def test_recursive_delete_denied_without_read_on_subdirectory(
    alice: httpx.Client, server: Any, unique: str
) -> None:
    put(alice, f"{unique}/t/a.txt", b"a")
    put(alice, f"{unique}/t/sub/b.txt", b"b")
    mkdir(alice, f"{unique}/t/locked", mode="0300")  # w+x but no r for the owner
    put(alice, f"{unique}/t/locked/c.txt", b"c")
    assert_denied(alice.delete(f"/v1/files/{unique}/t", params={"recursive": "true"}))
    with server.client("boss") as boss:
        for name in ("t/a.txt", "t/sub/b.txt", "t/locked/c.txt"):
            assert boss.get(f"/v1/files/{unique}/{name}").status_code == 200, name
    for name in ("a.txt", "sub/b.txt", "locked/c.txt"):
        assert server.storage.read(f"{unique}/t/{name}") is not None, name


def test_recursive_delete_denied_for_subdirectory_of_another_user(
    alice: httpx.Client, bob: httpx.Client, server: Any, unique: str
) -> None:
    mkdir(alice, unique)
    mkdir(alice, f"{unique}/t", mode="0777")
    put(alice, f"{unique}/t/a.txt", b"a")
    put(bob, f"{unique}/t/bobdir/b.txt", b"b")  # bobdir: bob's, 0755
    assert attrs(alice, f"{unique}/t/bobdir")["x-callfs-owner"] == "bob"
    assert_denied(alice.delete(f"/v1/files/{unique}/t", params={"recursive": "true"}))
    assert alice.get(f"/v1/files/{unique}/t/a.txt").content == b"a"
    assert alice.get(f"/v1/files/{unique}/t/bobdir/b.txt").content == b"b"
    assert server.storage.read(f"{unique}/t/bobdir/b.txt") == b"b"
    # bob lacks w on alice's parent directory for his own subtree? No: t is 0777.
    assert (
        bob.delete(f"/v1/files/{unique}/t/bobdir", params={"recursive": "true"}).status_code == 204
    )
    assert alice.delete(f"/v1/files/{unique}/t", params={"recursive": "true"}).status_code == 204
    assert server.storage.absent(f"{unique}/t")


def test_recursive_delete_respects_sticky_rule_inside(
    alice: httpx.Client, bob: httpx.Client, carol: httpx.Client, server: Any, unique: str
) -> None:
    mkdir(alice, unique)
    mkdir(alice, f"{unique}/mid", mode="0777")
    mkdir(alice, f"{unique}/mid/drop", mode="1777")
    put(bob, f"{unique}/mid/drop/bob.txt", b"b", headers={"X-CallFS-Mode": "0666"})
    put(carol, f"{unique}/mid/drop/carol.txt", b"c", headers={"X-CallFS-Mode": "0666"})
    # carol owns neither bob.txt nor the sticky directory: denied, nothing deleted
    assert_denied(carol.delete(f"/v1/files/{unique}/mid/drop", params={"recursive": "true"}))
    names = [i["name"] for i in alice.get(f"/v1/files/{unique}/mid/drop").json()]
    assert names == ["bob.txt", "carol.txt"]
    assert server.storage.read(f"{unique}/mid/drop/carol.txt") is not None
    # alice owns the sticky directory, so she may remove everybody's entries
    resp = alice.delete(f"/v1/files/{unique}/mid/drop", params={"recursive": "true"})
    assert resp.status_code == 204
    assert alice.get(f"/v1/files/{unique}/mid").json() == []


# --------------------------------------------------------------------------- authentication


KEY_TEMPLATE = "Bearer {alice}"


def spell(server: Any, template: str) -> str:
    alice = server.config["auth"]["api_key_users"]["alice"]
    secret = server.config["auth"]["internal_proxy_secret"]
    return template.format(alice=alice, alice_prefix=alice[:-1], secret=secret)


@pytest.mark.parametrize(
    "authorization",
    [
        None,
        "",
        "Bearer ",
        "Bearer",
        "Bearer    ",
        "Bearer wrong-key-0123456789abcdef",
        "wrong-key",
        "bearer {alice}",
        "Token {alice}",
        "{alice}x",
        "Bearer {alice_prefix}",
        "Bearer {alice}{alice}",
        "Bearer {secret}x",
    ],
    ids=[
        "missing",
        "empty",
        "bearer-empty",
        "bearer-word",
        "bearer-spaces",
        "unknown",
        "bare-unknown",
        "lowercase-scheme",
        "other-scheme",
        "longer",
        "prefix",
        "doubled",
        "secret-longer",
    ],
)
def test_authentication_failed(server: Any, unique: str, authorization: str | None) -> None:
    headers = {} if authorization is None else {"Authorization": spell(server, authorization)}
    if authorization is not None and authorization != authorization.strip():
        # h11 refuses to send surrounding whitespace: use a raw connection
        for method in ("GET", "PUT"):
            raw = raw_request(
                server,
                method,
                f"/v1/files/{unique}/x",
                user=None,
                headers=headers,
                body=b"data" if method == "PUT" else b"",
            )
            assert raw.status == 401, method
            assert raw.content == AUTH_BODY
            assert raw.headers["www-authenticate"] == 'Bearer realm="callfs"'
        return
    with httpx.Client(base_url=server.base_url, verify=False, headers=headers) as c:
        requests = [
            ("GET", f"/v1/files/{unique}/x"),
            ("PUT", f"/v1/files/{unique}/x"),
            ("POST", f"/v1/files/{unique}/x"),
            ("DELETE", f"/v1/files/{unique}/x"),
            ("GET", f"/v1/directories/{unique}"),
            ("POST", "/v1/links/generate"),
            ("GET", "/v1/unknown"),
            ("GET", "/v1/"),
            ("OPTIONS", f"/v1/files/{unique}/x"),
            ("GET", "/v1/files/../etc/passwd"),
            ("GET", "/metrics"),
        ]
        for method, url in requests:
            resp = c.request(method, url, content=b"data" if method in ("PUT", "POST") else None)
            assert resp.status_code == 401, (method, url, resp.status_code)
            assert resp.content == AUTH_BODY, (method, url)
            assert resp.headers["content-type"] == "application/json"
            assert resp.headers["www-authenticate"] == 'Bearer realm="callfs"'
        head = c.head(f"/v1/files/{unique}/x")
        assert head.status_code == 401
        assert head.content == b""
        assert head.headers["www-authenticate"] == 'Bearer realm="callfs"'
    with server.client("alice") as alice:
        assert alice.get(f"/v1/files/{unique}/x").status_code == 404  # nothing was created


@pytest.mark.parametrize(
    "authorization",
    ["{alice}", "Bearer {alice}", "Bearer   {alice}", "  {alice}  ", "Bearer {alice}\t"],
    ids=["bare", "bearer", "extra-spaces", "surrounding-whitespace", "trailing-tab"],
)
def test_accepted_authorization_spellings(server: Any, unique: str, authorization: str) -> None:
    headers = {"Authorization": spell(server, authorization)}
    resp = raw_request(
        server, "PUT", f"/v1/files/{unique}/raw.txt", user=None, headers=headers, body=b"r"
    )
    assert resp.status == 201, resp.content
    with httpx.Client(
        base_url=server.base_url,
        verify=False,
        headers={"Authorization": spell(server, KEY_TEMPLATE)},
    ) as c:
        assert c.head(f"/v1/files/{unique}/raw.txt").headers["x-callfs-owner"] == "alice"


def test_unknown_url_with_key_is_404(alice: httpx.Client) -> None:
    assert_error(alice.get("/v1/unknown"), 404, "NOT_FOUND")


def test_positional_key_user(server: Any, alice: httpx.Client, unique: str) -> None:
    with server.client("api-user-0") as api:
        assert api.headers["authorization"] == f"Bearer {server.config['auth']['api_keys'][0]}"
        resp = api.put(f"/v1/files/{unique}-api/f.txt", content=b"p")
        assert resp.status_code == 201
        for path in (f"{unique}-api/f.txt", f"{unique}-api"):
            h = attrs(api, path)
            assert (h["x-callfs-owner"], h["x-callfs-group"]) == ("api-user-0", "api-user-0")
        listed = api.get(f"/v1/directories/{unique}-api").json()["items"]
        assert [(i["owner"], i["group"]) for i in listed] == [("api-user-0", "api-user-0")]
    assert alice.get(f"/v1/files/{unique}-api/f.txt").content == b"p"
    assert_denied(alice.put(f"/v1/files/{unique}-api/f.txt", content=b"a"))
    assert_denied(alice.delete(f"/v1/files/{unique}-api/f.txt"))
    assert_denied(alice.delete(f"/v1/files/{unique}-api", params={"recursive": "true"}))
