from __future__ import annotations

import pytest

from callfs_core.content_types import choose_content_type, guess_content_type


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("a.html", "text/html"),
        ("A.JPG", "image/jpeg"),
        ("x.tar.gz", "application/gzip"),
        (".bashrc", "application/octet-stream"),
        ("noext", "application/octet-stream"),
        ("a.yml", "application/yaml"),
        ("a.unknown", "application/octet-stream"),
    ],
)
def test_guess(name: str, expected: str) -> None:
    assert guess_content_type(name) == expected


@pytest.mark.parametrize(
    ("header", "name", "expected"),
    [
        ("Text/Plain; charset=UTF-8", "x.bin", "text/plain; charset=UTF-8"),
        ("application/octet-stream", "a.png", "image/png"),
        ("application/x-www-form-urlencoded", "a.json", "application/json"),
        (None, "a.css", "text/css"),
        ("garbage", "a.csv", "text/csv"),
        ("a/" + "b" * 300, "a.txt", "text/plain"),
        ("image/webp", "a.txt", "image/webp"),
    ],
)
def test_choose(header: str | None, name: str, expected: str) -> None:
    assert choose_content_type(header, name) == expected
