"""The HMAC signer passes the LinkSigner contract and matches api.md §4.1 exactly."""

from __future__ import annotations

import base64
import hashlib
import hmac
from datetime import UTC, timedelta

import pytest

from callfs_adapters.hmac_signer import HmacLinkSigner
from callfs_adapters.system import RandomIdGenerator, SystemClock
from callfs_core.paths import FsPath
from callfs_core.testing import LinkSignerContract


class TestHmacSigner(LinkSignerContract):
    @pytest.fixture
    def signer(self) -> HmacLinkSigner:
        return HmacLinkSigner("correct horse battery staple")

    @pytest.fixture
    def id_generator(self) -> RandomIdGenerator:
        return RandomIdGenerator()


def test_signature_is_hmac_sha256_keyed_with_the_secret_digest() -> None:
    secret = "s3cret-ü"
    token_id = "q3Jw0v1YtQ3xL2m8c5kU9A=="
    path = FsPath.parse("/docs/é.pdf")
    key = hashlib.sha256(secret.encode()).digest()
    mac = hmac.new(key, (token_id + "/docs/é.pdf").encode(), hashlib.sha256).digest()
    expected = base64.urlsafe_b64encode(mac).decode()
    assert HmacLinkSigner(secret).sign(token_id, path) == expected


def test_secrets_separate_signatures() -> None:
    path = FsPath.parse("/f")
    first, second = HmacLinkSigner("one"), HmacLinkSigner("two")
    token_id = RandomIdGenerator().token_id()
    assert not second.verify(token_id, path, first.sign(token_id, path))
    assert HmacLinkSigner("one").verify(token_id, path, first.sign(token_id, path))


def test_empty_secret_is_refused() -> None:
    with pytest.raises(ValueError):
        HmacLinkSigner("")


def test_system_clock_is_aware_utc() -> None:
    now = SystemClock().now()
    assert now.tzinfo is UTC
    assert now.utcoffset() == timedelta(0)
