"""FsPath: every rule and example of api.md §1.2 and §1.3."""

from __future__ import annotations

import pickle
from urllib.parse import quote

import pytest
from hypothesis import given
from hypothesis import strategies as st

from callfs_core.errors import InvalidPath
from callfs_core.paths import ROOT, FsPath


@pytest.mark.parametrize(
    ("raw", "canonical", "directory"),
    [
        ("dir/../secret.txt", "/secret.txt", False),
        ("./secret.txt", "/secret.txt", False),
        ("a/b/../../secret.txt", "/secret.txt", False),
        ("a/./b", "/a/b", False),
        ("a//b", "/a/b", False),
        ("a/b/.", "/a/b", False),
        ("a///b////c", "/a/b/c", False),
        ("a/./b/", "/a/b", True),
        ("dir/../other/", "/other", True),
        ("", "/", True),
        ("/", "/", True),
        (".", "/", True),
        ("./", "/", True),
        ("a/..", "/", True),
        ("a%2Fb", "/a/b", False),
        ("file+plus.txt", "/file+plus.txt", False),
        ("%252e", "/%2e", False),
        ("caf%C3%A9", "/café", False),
        ("...", "/...", False),
        (".hidden", "/.hidden", False),
        ("file%20with%20spaces.txt", "/file with spaces.txt", False),
        ("a@b", "/a@b", False),
        ("x%EF%BC%8Fy", "/x\uff0fy", False),
        ("tab%09name", "/tab\tname", False),
    ],
)
def test_url_paths_canonicalise(raw: str, canonical: str, directory: bool) -> None:
    url = FsPath.from_url(raw)
    assert str(url.path) == canonical
    assert url.directory is directory


@pytest.mark.parametrize(
    "raw",
    [
        "..",
        "../x",
        "a/../..",
        "dir/../../../etc/passwd",
        "a%5Cb",
        "a%00b",
        "a%01b",
        "a%0Ab",
        "a%E2%80%AEb",
        "a%E2%81%A6b",
        "%FF",
        "%2e%2e/x",
        "a/%2e%2e/%2e%2e",
        "x" * 256,
        "/".join(["d" * 200] * 21),
        "..%2Fetc",
    ],
)
def test_invalid_url_paths(raw: str) -> None:
    with pytest.raises(InvalidPath):
        FsPath.from_url(raw)


def test_segment_of_255_bytes_is_valid_and_256_is_not() -> None:
    assert FsPath.from_url(quote("é" * 127 + "a")).path.name == "é" * 127 + "a"
    with pytest.raises(InvalidPath):
        FsPath.from_url(quote("é" * 128))


@pytest.mark.parametrize(
    ("text", "canonical"),
    [("a/b", "/a/b"), ("/a/b/", "/a/b"), ("a//b/./c", "/a/b/c"), ("%2e", "/%2e"), ("/", "/")],
)
def test_body_paths(text: str, canonical: str) -> None:
    assert str(FsPath.from_body(text)) == canonical


@pytest.mark.parametrize("text", ["../a", "a\\b", "a\x00b", "/a/../../b"])
def test_invalid_body_paths(text: str) -> None:
    with pytest.raises(InvalidPath):
        FsPath.from_body(text)


def test_structure() -> None:
    p = FsPath.parse("/a/b/c.txt")
    assert p.name == "c.txt"
    assert str(p.parent) == "/a/b"
    assert p.parts == ("a", "b", "c.txt")
    assert [str(a) for a in p.ancestors()] == ["/", "/a", "/a/b"]
    assert ROOT.parent == ROOT
    assert ROOT.ancestors() == []
    assert p.is_within(FsPath.parse("/a"))
    assert not FsPath.parse("/ab").is_within(FsPath.parse("/a"))
    assert p.rebase(FsPath.parse("/a"), FsPath.parse("/z")) == FsPath.parse("/z/b/c.txt")
    assert FsPath.parse("/a").child("b") == FsPath.parse("/a/b")
    assert pickle.loads(pickle.dumps(p)) == p


@pytest.mark.parametrize("name", ["", ".", "..", "a/b", "a\\b", "a\x00"])
def test_child_rejects_bad_names(name: str) -> None:
    with pytest.raises(InvalidPath):
        ROOT.child(name)


def test_parse_rejects_non_canonical() -> None:
    with pytest.raises(InvalidPath):
        FsPath.parse("/a//b")
    with pytest.raises(TypeError):
        FsPath("/a")


def test_ordering_is_code_point_order() -> None:
    names = ["b", "B", "é", "a", "ａ"]
    ordered = sorted(FsPath.parse("/" + n) for n in names)
    assert [p.name for p in ordered] == sorted(names)


def test_lone_surrogates_are_invalid() -> None:
    with pytest.raises(InvalidPath):
        FsPath.from_body("a\ud800b")
    with pytest.raises(InvalidPath):
        ROOT.child("\udfff")


@given(
    st.text(
        alphabet=st.sampled_from(["a", "é", ".", "/", "\\", "\x00", "\u202e", " "]), max_size=12
    )
)
def test_parse_accepts_exactly_the_canonical_spellings(text: str) -> None:
    try:
        canonical = str(FsPath.from_body(text))
    except InvalidPath:
        canonical = None
    try:
        parsed = str(FsPath.parse(text))
    except InvalidPath:
        parsed = None
    if parsed is not None:
        assert parsed == text == (canonical if text != "/" else "/")
    if canonical is not None:
        assert str(FsPath.parse(canonical)) == canonical  # every canonical path round-trips
